"""C-CANCEL of a C-MOVE or C-GET (PS3.4 C.4.2.3.1, C.4.3.3.1) over real associations, during a
C-STORE sub-operation that a peer never answers and between sub-operations."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.sop_class import Verification

from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, store
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import (
    STUDY_GET,
    STUDY_MOVE,
    Destination,
    Received,
    failed_uids,
    get,
    get_association,
)

WORKSTATION = "UNN_WS"
INSTANCES = 5
PROMPT = 2.0  # seconds: the final response to a C-CANCEL comes within this (the standard
# says "interrupt"; the node looks every 50 ms)


def _study(node) -> str:
    study_uid = generate_uid()
    for _ in range(INSTANCES):
        ds = dicom_objects.secondary_capture(study_uid=study_uid)
        assert store(node, ds) == status.SUCCESS
    return study_uid


def _wait_until(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} never happened"
        time.sleep(0.005)


def _node_requestors(node) -> list[Any]:
    """The node's own associations (C-MOVE sub-associations) that are still running."""
    return [a for a in node.server.ae.active_associations if a.is_requestor]


class Stalling:
    """A C-STORE handler that never answers the first C-STORE until the test ends: `got` is set
    when it arrives; later ones are answered at once (there should be none)."""

    def __init__(self) -> None:
        self.got = threading.Event()
        self.release = threading.Event()
        self.held: str | None = None
        self.stores = 0

    def __call__(self, event: Any) -> int:
        self.stores += 1
        if self.held is None:
            self.held = str(event.request.AffectedSOPInstanceUID)
            self.got.set()
            self.release.wait(60)
        return 0x0000


# -- C-MOVE ------------------------------------------------------------------------------------


@pytest.fixture
def stalling(node, tmp_path):
    handler = Stalling()
    dest = Destination(tmp_path / "dest", ae_title="STALLING", on_store=handler)
    node.service.registry.add_ae("STALLING", "UNN", host="127.0.0.1", port=dest.port)
    try:
        yield handler
    finally:
        handler.release.set()
        dest.stop()


def test_cancel_during_a_stalled_c_store_is_answered_at_once(node, stalling):
    """The destination accepted the association and the first C-STORE, and never answers it:
    a C-CANCEL ends the C-MOVE within about a second (not after the DIMSE timeout), with the
    counts, the unanswered instance listed as failed, and the sub-association aborted."""
    study_uid = _study(node)
    assoc = associate(node, WORKSTATION, [STUDY_MOVE, Verification])
    assert assoc.is_established
    try:
        responses = assoc.send_c_move(
            identifier("STUDY", StudyInstanceUID=study_uid), "STALLING", STUDY_MOVE
        )
        assert stalling.got.wait(10), "the destination never got a C-STORE"
        subs = _node_requestors(node)
        assert len(subs) == 1
        started = time.monotonic()
        assoc.send_c_cancel(1, query_model=STUDY_MOVE)
        final, answer = None, None
        for rsp, identifier_ in responses:
            assert rsp, "no response from the node"
            final, answer = rsp, identifier_
        elapsed = time.monotonic() - started
        assert final is not None
        assert final.Status == status.CANCELLED
        assert elapsed < PROMPT, f"answered after {elapsed:.1f} s"
        # PS3.4 C.4.2.1.4.2 / C.4.2.3.1: Remaining counts those not started
        assert final.NumberOfRemainingSuboperations == INSTANCES - 1
        assert final.NumberOfCompletedSuboperations == 0
        assert final.NumberOfFailedSuboperations == 1
        assert final.NumberOfWarningSuboperations == 0
        assert failed_uids(answer) == [stalling.held]
        # the sub-association is gone, its threads with it
        _wait_until(lambda: not subs[0].is_alive(), "the sub-association's end")
        _wait_until(lambda: not subs[0].dul.is_alive(), "the sub-association's DUL end")
        assert _node_requestors(node) == []
        # the requesting association is still usable
        assert assoc.send_c_echo().Status == status.SUCCESS
    finally:
        assoc.release()
    assert stalling.stores == 1


def test_cancel_between_sub_operations_is_answered_with_the_counts(node, tmp_path):
    """A C-CANCEL sent while the destination answers the second C-STORE: the node stops
    before the third (or gives up the third if the cancel is read after it began)."""
    study_uid = _study(node)
    assoc = associate(node, WORKSTATION, [STUDY_MOVE, Verification])
    assert assoc.is_established
    stores: list[str] = []
    sent_at: list[float] = []

    def cancel_on_the_second(event: Any) -> int:
        stores.append(str(event.request.AffectedSOPInstanceUID))
        if len(stores) == 2:
            sent_at.append(time.monotonic())
            assoc.send_c_cancel(1, query_model=STUDY_MOVE)
        return 0x0000

    dest = Destination(tmp_path / "dest", ae_title="CANCELLER", on_store=cancel_on_the_second)
    node.service.registry.add_ae("CANCELLER", "UNN", host="127.0.0.1", port=dest.port)
    try:
        responses = assoc.send_c_move(
            identifier("STUDY", StudyInstanceUID=study_uid), "CANCELLER", STUDY_MOVE
        )
        final, answer = None, None
        for rsp, identifier_ in responses:
            assert rsp, "no response from the node"
            final, answer = rsp, identifier_
        elapsed = time.monotonic() - sent_at[0]
        assert assoc.send_c_echo().Status == status.SUCCESS
    finally:
        assoc.release()
        dest.stop()
    assert final is not None
    assert final.Status == status.CANCELLED
    assert elapsed < PROMPT
    # The C-CANCEL (requesting association) and the second C-STORE's response (the
    # sub-association) race: the node stops before the third, or interrupts it.
    done = final.NumberOfCompletedSuboperations + final.NumberOfFailedSuboperations
    assert done in (2, 3) and final.NumberOfRemainingSuboperations == INSTANCES - done
    assert final.NumberOfCompletedSuboperations >= 2
    assert len(failed_uids(answer)) == final.NumberOfFailedSuboperations
    assert len(stores) == done
    _wait_until(lambda: not _node_requestors(node), "the sub-association's end")


# -- C-GET -------------------------------------------------------------------------------------


def test_c_get_cancel_during_a_stalled_c_store_keeps_the_association(node, tmp_path):
    """The C-GET SCU's own C-STORE handler stalls on the first instance: the node answers the
    C-CANCEL at once over the same association, passes over the late C-STORE response, and
    the association serves the next C-GET."""
    study_uid = _study(node)
    stalling = Stalling()
    tmp_path.joinpath("in").mkdir()
    received = Received(tmp_path / "in")
    assoc = get_association(node, WORKSTATION, received, on_store=stalling)
    assert assoc.is_established
    arrived: list[tuple[float, int]] = []

    def note_final(event: Any) -> None:  # in the SCU's DUL thread, as the response arrives
        command = event.message.command_set
        if command.CommandField == 0x8010 and command.Status != status.PENDING:
            arrived.append((time.monotonic(), command.Status))

    assoc.bind(evt.EVT_DIMSE_RECV, note_final)
    outcome: list[Any] = []
    query = identifier("STUDY", StudyInstanceUID=study_uid)
    worker = threading.Thread(target=lambda: outcome.append(get(assoc, query)), daemon=True)
    try:
        worker.start()
        assert stalling.got.wait(10), "the SCU never got a C-STORE"
        started = time.monotonic()
        assoc.send_c_cancel(1, query_model=STUDY_GET)
        _wait_until(lambda: arrived, "the final C-GET response", timeout=PROMPT + 5)
        assert arrived[0][1] == status.CANCELLED
        assert arrived[0][0] - started < PROMPT
        stalling.release.set()  # its late C-STORE response goes to the node now
        worker.join(10)
        assert not worker.is_alive()
        final, _, answer = outcome[0]
        assert final.Status == status.CANCELLED
        assert final.NumberOfRemainingSuboperations == INSTANCES - 1
        assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 1)
        assert failed_uids(answer) == [stalling.held]
        # the same association: a whole C-GET now
        final, _, _ = get(assoc, query)
        assert final.Status == status.SUCCESS
        assert final.NumberOfCompletedSuboperations == INSTANCES
    finally:
        stalling.release.set()
        assoc.release()


def test_c_get_cancel_between_sub_operations(node, tmp_path):
    study_uid = _study(node)
    tmp_path.joinpath("in").mkdir()
    received = Received(tmp_path / "in")
    count: list[int] = []

    def cancel_on_the_second(event: Any) -> int:
        count.append(1)
        if len(count) == 2:
            event.assoc.send_c_cancel(1, query_model=STUDY_GET)
        return 0x0000

    assoc = get_association(node, WORKSTATION, received, on_store=cancel_on_the_second)
    assert assoc.is_established
    try:
        started = time.monotonic()
        final, _, answer = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
        elapsed = time.monotonic() - started
    finally:
        assoc.release()
    assert final.Status == status.CANCELLED
    assert elapsed < PROMPT + 1
    done = final.NumberOfCompletedSuboperations + final.NumberOfFailedSuboperations
    assert done == 2 and final.NumberOfRemainingSuboperations == INSTANCES - 2
    assert len(failed_uids(answer)) == final.NumberOfFailedSuboperations
    assert len(count) == 2
