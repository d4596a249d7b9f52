"""Storage Commitment's pure rules: a request's references once each, and what each AE may be
told about an instance from what was acknowledged to whom (a truth table)."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from archive_node.rules.access import Peer
from archive_node.rules.commitment import (
    FAILURE_NO_SUCH_INSTANCE,
    FAILURE_PROCESSING,
    STORAGE_COMMITMENT_INSTANCE,
    Acknowledged,
    acknowledgement_failure,
    answers_only_own,
    parse_request,
)

SC = "1.2.840.10008.5.1.4.1.1.7"
CT = "1.2.840.10008.5.1.4.1.1.2"
KEPT, OTHER = "k" * 64, "o" * 64


def peer(title="US1", hospital="UNN", allow=("echo", "store"), scope="region") -> Peer:
    return Peer(title, hospital, hospital, "", None, frozenset(allow), scope)


def action_information(references) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = "1.2.3.4"
    items = []
    for class_uid, instance_uid in references:
        item = Dataset()
        item.ReferencedSOPClassUID = class_uid
        item.ReferencedSOPInstanceUID = instance_uid
        items.append(item)
    ds.ReferencedSOPSequence = items
    return ds


def test_repeated_references_are_kept_once_in_their_first_place():
    refs = [(SC, "1.1"), (SC, "1.2"), (SC, "1.1"), (CT, "1.1"), (SC, "1.2")]
    request = parse_request(1, STORAGE_COMMITMENT_INSTANCE, action_information(refs))
    assert request.references == ((SC, "1.1"), (SC, "1.2"), (CT, "1.1"))


@pytest.mark.parametrize(
    ("allow", "scope", "expected"),
    [
        (("echo", "store"), "region", True),  # a store-only modality
        (("echo", "store", "find"), "region", False),
        (("echo", "store", "find"), "hospital", True),
        (("store",), "hospital", True),
    ],
)
def test_who_is_answered_only_about_its_own_hospitals_instances(allow, scope, expected):
    assert answers_only_own(peer(allow=allow, scope=scope)) is expected


MODALITY = peer()  # store-only, region
SCOPED_WS = peer("WS1", allow=("echo", "store", "find"), scope="hospital")
REGION_WS = peer("WS2", allow=("echo", "store", "find"), scope="region")


@pytest.mark.parametrize(
    ("who", "acknowledged", "expected"),
    [
        # it sent what is kept
        (MODALITY, [Acknowledged("US1", "UNN", KEPT)], None),
        # it sent something else, now kept by another AE of its hospital or not at all
        (MODALITY, [Acknowledged("US2", "UNN", KEPT), Acknowledged("US1", "UNN", OTHER)], 0x0110),
        # it sent the old and the new content: the new is kept
        (MODALITY, [Acknowledged("US1", "UNN", OTHER), Acknowledged("US1", "UNN", KEPT)], None),
        # another AE of its hospital sent it
        (MODALITY, [Acknowledged("US2", "UNN", KEPT)], None),
        (MODALITY, [Acknowledged("US2", "UNN", OTHER)], 0x0110),
        # only another hospital sent it: as unknown
        (MODALITY, [Acknowledged("NL1", "NLSH", KEPT)], FAILURE_NO_SUCH_INSTANCE),
        (SCOPED_WS, [Acknowledged("NL1", "NLSH", KEPT)], FAILURE_NO_SUCH_INSTANCE),
        (SCOPED_WS, [Acknowledged("US1", "UNN", KEPT)], None),
        # the same title moved to another hospital: its old acknowledgements are not its own
        (MODALITY, [Acknowledged("US1", "NLSH", KEPT)], FAILURE_NO_SUCH_INSTANCE),
        # a region AE with find: what others sent is answered as it is kept...
        (REGION_WS, [Acknowledged("NL1", "NLSH", KEPT)], None),
        # ...but its own acknowledged content must be what is kept
        (
            REGION_WS,
            [Acknowledged("NL1", "NLSH", KEPT), Acknowledged("WS2", "UNN", OTHER)],
            0x0110,
        ),
    ],
)
def test_what_an_ae_is_told_about_an_instance(who, acknowledged, expected):
    assert acknowledgement_failure(who, KEPT, acknowledged) == expected
    assert expected in (None, FAILURE_NO_SUCH_INSTANCE, FAILURE_PROCESSING)
