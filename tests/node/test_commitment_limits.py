"""Storage Commitment's work per request is bounded (PS3.4 J.3): a repeated reference is
answered once and its file read once, and at most commitment.max_verify_bytes of stored files
are re-read; references past that fail (0x0110) and are committed when asked for again."""

from __future__ import annotations

import logging

import pytest

from archive_node.dicom import status
from archive_node.rules.commitment import EVENT_ALL_COMMITTED, EVENT_FAILURES_EXIST
from tests.helpers import dicom_objects
from tests.helpers.commitment import modality, n_action, request
from tests.helpers.dimse import store
from tests.helpers.serving import node_with


def kept_size(node, ds) -> int:
    return node.service.index.instances.find(ds.SOPInstanceUID).size


def ask(node, refs, title="UNN_US"):
    """(event type, [committed UIDs in order], [(failed UID, reason)] in order)."""
    with modality(title) as scu:
        assoc = scu.associate(node)
        assert n_action(assoc, request(refs)).Status == status.SUCCESS
        _, event_type, info = scu.report()
        assoc.release()
    committed = [i.ReferencedSOPInstanceUID for i in info.get("ReferencedSOPSequence", [])]
    failed = [
        (i.ReferencedSOPInstanceUID, i.FailureReason) for i in info.get("FailedSOPSequence", [])
    ]
    return event_type, committed, failed


@pytest.fixture
def capped(tmp_path, index_url, registry):
    """capped(n): a node on the test's index and store with commitment.max_verify_bytes n."""

    def serve(cap: int):
        return node_with(tmp_path, index_url, commitment={"max_verify_bytes": cap})

    return serve


def keep(node, *datasets):
    for ds in datasets:
        assert store(node, ds) == status.SUCCESS
    return [(ds.SOPClassUID, ds.SOPInstanceUID) for ds in datasets]


def test_a_repeated_reference_is_answered_once_and_read_once(capped, registry):
    one = dicom_objects.secondary_capture()
    with capped(1) as probe:
        keep(probe, one)
        size = kept_size(probe, one)
    # room for that file once: read twice, the repeats would fail past the cap
    with capped(size) as node:
        refs = [(one.SOPClassUID, one.SOPInstanceUID)]
        unknown = ("1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5.6.7")
        event_type, committed, failed = ask(node, refs * 500 + [unknown] * 3 + refs)
    assert event_type == EVENT_FAILURES_EXIST
    assert committed == [one.SOPInstanceUID]
    assert failed == [(unknown[1], 0x0112)]


def test_references_past_the_cap_fail_and_are_committed_when_asked_again(capped, registry, caplog):
    datasets = [dicom_objects.secondary_capture() for _ in range(3)]
    uids = [ds.SOPInstanceUID for ds in datasets]
    with capped(1) as probe:
        refs = keep(probe, *datasets)
        sizes = [kept_size(probe, ds) for ds in datasets]
    with capped(sizes[0] + sizes[1]) as node:
        caplog.set_level(logging.WARNING, logger="archive_node")
        event_type, committed, failed = ask(node, refs)
        assert event_type == EVENT_FAILURES_EXIST
        assert committed == uids[:2] and failed == [(uids[2], 0x0110)]
        assert "commitment.max_verify_bytes" in caplog.text
        # a new request for what failed: committed
        assert ask(node, refs[2:]) == (EVENT_ALL_COMMITTED, uids[2:], [])


def test_a_file_larger_than_the_cap_fails_and_smaller_ones_after_it_are_read(capped, registry):
    big = dicom_objects.us_multiframe(frames=8)
    small = dicom_objects.secondary_capture()
    with capped(1) as probe:
        refs = keep(probe, big, small)
        cap = kept_size(probe, small)
        assert kept_size(probe, big) > cap
    with capped(cap) as node:
        event_type, committed, failed = ask(node, refs)
    assert committed == [small.SOPInstanceUID]
    assert failed == [(big.SOPInstanceUID, 0x0110)]
    assert event_type == EVENT_FAILURES_EXIST


def test_the_cap_counts_only_files_that_are_read(capped, registry):
    """References that fail before any file is read (unknown, another class, not the
    requester's) take nothing of the cap."""
    mine = dicom_objects.secondary_capture()
    theirs = dicom_objects.secondary_capture()
    with capped(1) as probe:
        keep(probe, mine)
        assert store(probe, theirs, "NLSH_CAM") == status.SUCCESS
        size = kept_size(probe, mine)
    refs = [
        (theirs.SOPClassUID, theirs.SOPInstanceUID),  # NLSH's: 0x0112 for UNN_US
        (dicom_objects.CT_IMAGE, mine.SOPInstanceUID),  # another class: 0x0119
        (mine.SOPClassUID, mine.SOPInstanceUID),
    ]
    with capped(size) as node:
        _, committed, failed = ask(node, refs)
    assert committed == [mine.SOPInstanceUID]
    assert failed == [(theirs.SOPInstanceUID, 0x0112), (mine.SOPInstanceUID, 0x0119)]
