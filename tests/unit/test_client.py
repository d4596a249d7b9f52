"""net/client.py without a network: how the answers of a C-FIND are collected."""

from __future__ import annotations

from pydicom.dataset import Dataset

from archive_node.net.client import collect_find
from tests.helpers.identifiers import identifier


def _status(code: int, comment: str = "") -> Dataset:
    rsp = Dataset()
    rsp.Status = code
    if comment:
        rsp.ErrorComment = comment
    return rsp


def test_matches_then_the_final_status():
    first, second = identifier("STUDY", PatientID="P1"), identifier("STUDY", PatientID="P2")
    result = collect_find(
        [(_status(0xFF00), first), (_status(0xFF01), second), (_status(0x0000), None)]
    )
    assert (result.status, result.matches, result.undecodable) == (0, [first, second], 0)


def test_an_answer_pynetdicom_could_not_decode_is_counted_not_matched():
    """pynetdicom yields (pending status, None) for an identifier it cannot decode."""
    answer = identifier("STUDY", PatientID="P1")
    result = collect_find(
        [(_status(0xFF00), None), (_status(0xFF00), answer), (_status(0x0000), None)]
    )
    assert result.matches == [answer] and result.undecodable == 1 and result.status == 0


def test_an_association_that_ends_early_has_no_final_status():
    result = collect_find([(_status(0xFF00), identifier("STUDY")), (Dataset(), None)])
    assert result.status is None and len(result.matches) == 1


def test_a_failure_keeps_its_comment():
    result = collect_find([(_status(0xC000, "bad key"), None)])
    assert (result.status, result.comment, result.matches) == (0xC000, "bad key", [])
