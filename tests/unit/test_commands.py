"""Hand-packed pending C-MOVE/C-GET responses are the bytes pynetdicom would encode."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_FIND_RSP, C_GET_RSP, C_MOVE_RSP
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import encode

from archive_node.net.wire import commands

STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"  # odd length: padded


@pytest.mark.parametrize(
    ("primitive", "message", "field", "sop_class"),
    [
        (C_MOVE, C_MOVE_RSP, commands.C_MOVE_RSP, STUDY_MOVE),
        (C_GET, C_GET_RSP, commands.C_GET_RSP, STUDY_GET),
    ],
)
def test_pending_response_is_what_pynetdicom_encodes(primitive, message, field, sop_class):
    rsp = primitive()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = 0xFF00
    rsp.NumberOfRemainingSuboperations = 997
    rsp.NumberOfCompletedSuboperations = 2
    rsp.NumberOfFailedSuboperations = 1
    rsp.NumberOfWarningSuboperations = 0
    msg = message()
    msg.primitive_to_message(rsp)
    expected = encode(msg.command_set, True, True)
    packed = commands.pending_response(
        field, sop_class, 7, remaining=997, completed=2, failed=1, warning=0
    )
    assert packed == expected


def test_counts_beyond_an_unsigned_short_are_capped():
    packed = commands.pending_response(
        commands.C_MOVE_RSP, STUDY_MOVE, 1, remaining=70_000, completed=0, failed=0, warning=0
    )
    assert b"\x00\x00\x20\x10\x02\x00\x00\x00\xff\xff" in packed


@pytest.mark.parametrize("status", [0x0000, 0xB000])
def test_store_response_is_what_pynetdicom_encodes(status):
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE

    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 12
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    rsp.AffectedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    rsp.Status = status
    msg = C_STORE_RSP()
    msg.primitive_to_message(rsp)
    packed = commands.store_response(
        "1.2.840.10008.5.1.4.1.1.7", 12, status, "1.2.826.0.1.3680043.8.498.1"
    )
    assert packed == encode(msg.command_set, True, True)


@pytest.mark.parametrize("status", [0x0000, 0xFE00])
def test_find_final_response_is_what_pynetdicom_encodes(status):
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = 3
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"
    rsp.Status = status
    msg = C_FIND_RSP()
    msg.primitive_to_message(rsp)
    packed = commands.find_final_response("1.2.840.10008.5.1.4.1.2.2.1", 3, status)
    assert packed == encode(msg.command_set, True, True)
