"""Storage Commitment Push Model SCP (PS3.4 J.3): the N-ACTION handler and the report sender.

The N-ACTION is answered as soon as the request is durably recorded. One thread per node then
decides each request (service.commitment_result) and sends the N-EVENT-REPORT:
- on the requesting association, if it is still open (J.3.3: the SCP may use it);
- otherwise on an association the node opens to the requester's registered host and port,
  proposing the SCP role for itself by SCP/SCU Role Selection (PS3.4 J.3.3, PS3.7 D.3.3.4);
- a report that cannot go out yet stays pending in the index and is retried with a growing
  delay (commitment.retry_interval), also after a restart, until commitment.give_up_after.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from datetime import timedelta
from io import BytesIO
from typing import Any

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, build_role, evt
from pynetdicom.dimse_primitives import N_EVENT_REPORT
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import A_RELEASE

from . import status
from .commitment import (
    STORAGE_COMMITMENT_CLASS,
    STORAGE_COMMITMENT_INSTANCE,
    event_information,
    next_attempt,
)
from .errors import IndexUnavailable, Refused
from .handlers import response_status, set_tcp_nodelay, wake_waiting_sender
from .index.models import utcnow
from .policy import Peer
from .retrieve_scp import connected
from .service import ArchiveService

log = logging.getLogger(__name__)

# How long one delivery attempt may hold a report before another worker may take it.
_CLAIM = timedelta(minutes=5)
# While idle, the index is asked this often for reports that fell due (also another node's).
_IDLE_POLL = 5.0


class CommitmentSCP:
    """Answers N-ACTION requests and delivers their N-EVENT-REPORTs from its own thread."""

    def __init__(self, service: ArchiveService, ae: Any, peer_of: Any) -> None:
        self.service = service
        self.ae = ae
        self.peer_of = peer_of
        self._hints: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._message_ids = itertools.count(1)

    # -- the N-ACTION -----------------------------------------------------------------------

    def on_n_action(self, event: Any) -> tuple[Any, None]:
        """Record the request and answer at once; the report follows from the sender thread."""
        peer = self.peer_of(event.assoc)
        refused = self.service.authorise(peer, "store")
        if refused or peer is None:
            return refused, None
        request = event.request
        try:
            info = event.action_information
        except Exception as exc:
            log.warning("N-ACTION from %s: undecodable Action Information: %s", peer.ae_title, exc)
            return response_status(
                status.INVALID_ARGUMENT_VALUE, "Action Information cannot be decoded"
            ), None
        try:
            commitment_id = self.service.request_commitment(
                peer,
                request.ActionTypeID,
                str(request.RequestedSOPInstanceUID or ""),
                info,
                # this process holds the association: no other worker takes the report first
                reserved_until=utcnow() + _CLAIM,
            )
        except Refused as exc:
            log.warning(
                "storage commitment from %s refused: 0x%04X %s", peer.ae_title, exc.status, exc
            )
            return response_status(exc.status, str(exc), exc.keyword), None
        except IndexUnavailable as exc:
            log.error("storage commitment from %s failed: %s", peer.ae_title, exc)
            return response_status(status.PROCESSING_FAILURE, "index unavailable"), None
        self._hints.put((commitment_id, event.assoc))
        return status.SUCCESS, None

    # -- the sender thread ------------------------------------------------------------------

    def start(self) -> None:
        """Start sending reports, the ones left pending by an earlier run first."""
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="archive-node-commitment", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._hints.put((0, None))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                commitment_id, assoc = self._hints.get(timeout=self._idle_wait())
            except queue.Empty:
                commitment_id, assoc = 0, None
            if self._stopping.is_set():
                return
            try:
                if commitment_id:
                    self._attempt(commitment_id, assoc)
                for due in self.service.index.due_commitments():
                    if self._stopping.is_set():
                        return
                    self._attempt(due, None)
            except IndexUnavailable as exc:
                log.error("storage commitment reports wait for the index: %s", exc)
                self._stopping.wait(_IDLE_POLL)
            except Exception:  # the thread must outlive any one report
                log.exception("storage commitment report failed unexpectedly")
                self._stopping.wait(_IDLE_POLL)

    def _idle_wait(self) -> float:
        try:
            due = self.service.index.next_commitment_due()
        except IndexUnavailable:
            return _IDLE_POLL
        if due is None:
            return _IDLE_POLL
        return min(max((due - utcnow()).total_seconds(), 0.01), _IDLE_POLL)

    def _attempt(self, commitment_id: int, assoc: Any) -> None:
        """Decide the request if not yet done, then try to deliver its report once."""
        record = self.service.index.claim_commitment(
            commitment_id, utcnow() + _CLAIM, reserved=assoc is not None
        )
        if record is None:  # delivered, abandoned, or in another worker's hands
            return
        peer = (self.peer_of(assoc) if assoc is not None else None) or self.service.registry.peer(
            record.requester
        )
        result = self.service.commitment_result(record, peer)
        report = event_information(
            record.transaction_uid, result, self.service.config.node.ae_title
        )
        what = f"storage commitment report {record.transaction_uid} to {record.requester}"
        error = self._deliver(record.requester, assoc, report, result.event_type, what)
        if error is None:
            self.service.index.commitment_delivered(record.id)
            return
        cfg = self.service.config.commitment
        retry_at = next_attempt(
            record.attempts + 1,
            record.created_at,
            utcnow(),
            interval=cfg.retry_interval,
            give_up_after_hours=cfg.give_up_after,
        )
        self.service.index.commitment_not_delivered(record.id, error, retry_at)
        if retry_at is None:
            log.error("%s abandoned after %d attempt(s): %s", what, record.attempts + 1, error)
        else:
            log.warning("%s not delivered (%s): retrying at %s UTC", what, error, retry_at)

    def _deliver(
        self, requester: str, assoc: Any, report: Any, event_type: int, what: str
    ) -> str | None:
        """Send the report on the requesting association if open, else on a new one to the
        requester as registered now; None when delivered, else why not."""
        if assoc is not None and connected(assoc):
            error = self._send(assoc, report, event_type)
            if error is None:
                log.info("%s sent on the requesting association", what)
                return None
            log.warning("%s: %s; trying a new association", what, error)
        callee = self.service.registry.peer(requester)
        if callee is None:
            return "the requester is no longer registered"
        if not callee.enabled:
            return "the requester is disabled"
        if not callee.host or not callee.port:
            return (
                "the requesting association is closed and the AE has no registered host and "
                "port to call back (ae update --host --port)"
            )
        error = self._send_on_new_association(callee, report, event_type)
        if error is None:
            log.info("%s sent on a new association", what)
        return error

    def _send(self, assoc: Any, report: Any, event_type: int) -> str | None:
        """Send the N-EVENT-REPORT on `assoc`; None when the peer answered success.

        As pynetdicom's send_n_event_report, but its wait for the response ends as soon as the
        peer asks to release or closes the association (a modality that releases right after
        its N-ACTION expects the report on a new association) or sends something else, instead
        of lasting the whole DIMSE timeout.
        """
        try:
            context = assoc._get_valid_context(STORAGE_COMMITMENT_CLASS, "", None)
            syntax = context.transfer_syntax[0]
            request = N_EVENT_REPORT()
            request.MessageID = next(self._message_ids) % 65536
            request.AffectedSOPClassUID = STORAGE_COMMITMENT_CLASS
            request.AffectedSOPInstanceUID = STORAGE_COMMITMENT_INSTANCE
            request.EventTypeID = event_type
            request.EventInformation = BytesIO(
                encode(report, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
            )
        except Exception as exc:  # no such context, or the report cannot be encoded
            return f"{type(exc).__name__}: {exc}"
        try:
            _pause_reactor(assoc)
            assoc.dimse.send_msg(request, context.context_id)
            return _await_response(assoc, request.MessageID)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            assoc._reactor_checkpoint.set()

    def _send_on_new_association(self, peer: Peer, report: Any, event_type: int) -> str | None:
        try:
            assoc = self.ae.associate(
                peer.host,
                peer.port,
                ae_title=peer.ae_title,
                contexts=[
                    build_context(
                        STORAGE_COMMITMENT_CLASS, [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
                    )
                ],
                ext_neg=[build_role(STORAGE_COMMITMENT_CLASS, scu_role=False, scp_role=True)],
                evt_handlers=[
                    (evt.EVT_CONN_OPEN, set_tcp_nodelay),
                    (evt.EVT_CONN_CLOSE, wake_waiting_sender),
                ],
            )
        except Exception as exc:
            return f"cannot call {peer.ae_title}: {type(exc).__name__}: {exc}"
        if not assoc.is_established:
            return f"{peer.ae_title} at its registered address did not accept an association"
        try:
            if not any(
                cx.abstract_syntax == STORAGE_COMMITMENT_CLASS for cx in assoc.accepted_contexts
            ):
                return f"{peer.ae_title} did not accept the Storage Commitment context"
            return self._send(assoc, report, event_type)
        finally:
            if assoc.is_established:
                assoc.release()


def _await_response(assoc: Any, message_id: int) -> str | None:
    """Wait for the N-EVENT-REPORT response: None on success, else why not."""
    deadline = time.monotonic() + (assoc.dimse_timeout or 30.0)
    while True:
        _, message = assoc.dimse.peek_msg()
        if isinstance(message, N_EVENT_REPORT) and message.is_valid_response:
            assoc.dimse.get_msg(block=False)
            if message.MessageIDBeingRespondedTo != message_id:
                return "the requester answered another message"
            code = message.Status
            return None if code == status.SUCCESS else f"the requester answered 0x{code:04X}"
        if message is not None:
            return "the requester sent a request instead of answering the report"
        pdu = assoc.dul.peek_next_pdu()
        if isinstance(pdu, A_RELEASE) and pdu.result is None:
            return "the requester released the association before answering"
        if not connected(assoc):
            return "the association closed before the report was answered"
        if time.monotonic() > deadline:
            return "no N-EVENT-REPORT response within the DIMSE timeout"
        time.sleep(0.001)


def _pause_reactor(assoc: Any, settle: float = 0.002) -> None:
    """Hold the association's reactor (as pynetdicom's own send methods do) before another
    thread sends on it, and make sure it is really held: the reactor may have just passed its
    checkpoint, and would then take the report's response off the queue as a new request."""
    assoc._reactor_checkpoint.clear()
    for _ in range(2):
        deadline = time.monotonic() + (assoc.dimse_timeout or 30.0)
        while not assoc._is_paused:
            if time.monotonic() > deadline or not connected(assoc):
                raise TimeoutError("the association stayed busy")
            time.sleep(0.0005)
        time.sleep(settle)
