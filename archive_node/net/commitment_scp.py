"""Storage Commitment Push Model SCP (PS3.4 J.3): the N-ACTION, then the N-EVENT-REPORT.

- The N-ACTION is answered as soon as the request is durably recorded, claimed by this node.
- Right after pynetdicom has sent that answer, in the association's own thread, the node
  decides the request and sends the report on the requesting association (J.3.3 allows it),
  serving whatever the modality sends meanwhile: one thread per association, as pynetdicom
  wants, and no other thread ever touches it.
- When that cannot be done (the modality released, or answered the report with a failure, or
  the association is gone), and for reports left pending by a stopped or crashed node, a
  sender thread calls the requester back at its registered host and port, proposing the SCP
  role for itself by SCP/SCU Role Selection (PS3.4 J.3.3, PS3.7 D.3.3.4). An undelivered
  report is retried with a growing delay until commitment.give_up_after.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from datetime import timedelta
from io import BytesIO
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import N_ACTION, N_EVENT_REPORT
from pynetdicom.dsutils import encode
from pynetdicom.events import Event
from pynetdicom.pdu_primitives import A_RELEASE

from ..auditing import new_session
from ..dicom import status
from ..errors import AuditUnavailable, ConfigError, IndexUnavailable, Refused
from ..index import CommitmentRecord
from ..index.clock import utcnow
from ..rules.access import Peer, not_authorised_comment
from ..rules.audit import Actor
from ..rules.commitment import (
    STORAGE_COMMITMENT_CLASS,
    STORAGE_COMMITMENT_INSTANCE,
    CommitmentResult,
    event_information,
    next_attempt,
    references_from_json,
)
from ..service import ArchiveService
from .association import OUTGOING_HANDLERS, connected, response_status
from .tls import TlsCredentials, tls_args_for

log = logging.getLogger(__name__)
# proposed for a report sent on an association of the node's own (conformance.py lists them)
REPORT_TRANSFER_SYNTAXES: list[str | UID] = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]

# How long a claim on a request holds off other workers (and other nodes on the same index).
_CLAIM = timedelta(minutes=5)
# While idle, the index is asked this often for reports that fell due (also another node's).
_IDLE_POLL = 5.0

_message_ids = itertools.count(1)
_answers: weakref.WeakKeyDictionary[Association, dict[int, N_EVENT_REPORT]] = (
    weakref.WeakKeyDictionary()
)


class CommitmentSCP:
    """Answers N-ACTION requests, reports on the requesting association, calls back later."""

    def __init__(
        self,
        service: ArchiveService,
        ae: AE,
        peer_of: Callable[[Association], Peer | None],
        tls: TlsCredentials,
        actor_of: Callable[[Association], Actor | None],
    ) -> None:
        self.service = service
        self.ae = ae
        self.peer_of = peer_of
        self.actor_of = actor_of
        self.tls = tls
        self.claimant = ""  # this node, host:port, once it listens
        self._answered: weakref.WeakKeyDictionary[Association, CommitmentRecord] = (
            weakref.WeakKeyDictionary()
        )
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- on the requesting association --------------------------------------------------------

    def on_n_action(self, event: Event) -> tuple[int | Dataset, None]:
        """Record the request and answer at once; the report follows (report_after_answer)."""
        peer, actor = self.peer_of(event.assoc), self.actor_of(event.assoc)
        refused = self.service.authorise(peer, "store", actor, "N-ACTION")
        if refused or peer is None or actor is None:
            return response_status(status.NOT_AUTHORISED, not_authorised_comment("store")), None
        request = cast(N_ACTION, event.request)
        try:
            info = event.action_information
        except Exception as exc:
            log.warning("N-ACTION from %s: undecodable Action Information: %s", peer.ae_title, exc)
            return response_status(
                status.INVALID_ARGUMENT_VALUE, "Action Information cannot be decoded"
            ), None
        try:
            record = self.service.commitments.request(
                peer,
                request.ActionTypeID,
                str(request.RequestedSOPInstanceUID or ""),
                info,
                claimant=self.claimant,
                claimed_until=utcnow() + _CLAIM,
            )
        except Refused as exc:
            log.warning(
                "storage commitment from %s refused: 0x%04X %s", peer.ae_title, exc.status, exc
            )
            return response_status(exc.status, str(exc), exc.keyword), None
        except IndexUnavailable as exc:
            log.error("storage commitment from %s failed: %s", peer.ae_title, exc)
            return response_status(status.PROCESSING_FAILURE, "index unavailable"), None
        uids = [uid for _sop_class, uid in references_from_json(record.references)]
        with contextlib.suppress(AuditUnavailable):  # logged; its report needs a record
            self.service.audit.commitment(
                actor, "N-ACTION", record.transaction_uid, {"references": len(uids)}, uids
            )
        self._answered[event.assoc] = record
        return status.SUCCESS, None

    def report_after_answer(self, assoc: Association) -> None:
        """Decide the request just answered on `assoc` and report on it; hand it to the sender
        thread when the requester does not take it there."""
        record = self._answered.pop(assoc, None)
        if record is None:  # refused, or not a request for commitment
            return
        what = _what(record)
        try:
            result = self.service.commitments.result(record, self.peer_of(assoc))
            report = event_information(
                record.transaction_uid, result, self.service.config.node.ae_title
            )
            self._audit_report(self.actor_of(assoc), record, result)
            error = _exchange_report(assoc, report, result.event_type)
            if error is None and self.service.index.commitments.delivered(record):
                log.info("%s sent on the requesting association", what)
                return
        except IndexUnavailable as exc:
            error = f"index unavailable: {exc}"
        except AuditUnavailable as exc:
            error = str(exc)
        except Exception as exc:  # never a traceback into pynetdicom's reactor
            log.exception("%s failed unexpectedly", what)
            error = f"{type(exc).__name__}: {exc}"
        if error is None:  # delivered, but the request was replaced meanwhile: its own turn
            return
        log.warning("%s not taken on the requesting association (%s): calling back", what, error)
        try:
            self.service.index.commitments.hand_over(record)
        except IndexUnavailable:
            log.error("%s waits for its claim to run out (index unavailable)", what)
        self._wake.set()

    def _audit_report(
        self, actor: Actor | None, record: CommitmentRecord, result: CommitmentResult
    ) -> None:
        """The record of a report about to be sent. Raises AuditUnavailable."""
        if actor is None:  # the requesting association is gone: the call-back records it
            raise AuditUnavailable("the requesting association is gone")
        counts = {"committed": len(result.committed), "failed": len(result.failed)}
        committed = [uid for _sop_class, uid in result.committed]
        self.service.audit.commitment(
            actor, "N-EVENT-REPORT", record.transaction_uid, counts, committed
        )

    # -- the sender thread: calling back ------------------------------------------------------

    def start(self, claimant: str) -> None:
        """Start calling back; reports this node held when it stopped are due at once."""
        self.claimant = claimant
        try:
            self.service.index.commitments.release_claims(claimant)
        except IndexUnavailable as exc:
            log.error("storage commitment reports wait for the index: %s", exc)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="archive-node-commitment", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._idle_wait())
            self._wake.clear()
            try:
                for commitment_id, _requester in self.service.index.commitments.due():
                    if self._stopping.is_set():
                        return
                    self._call_back(commitment_id)
            except IndexUnavailable as exc:
                log.error("storage commitment reports wait for the index: %s", exc)
                self._stopping.wait(_IDLE_POLL)
            except Exception:  # the thread must outlive any one report
                log.exception("storage commitment report failed unexpectedly")
                self._stopping.wait(_IDLE_POLL)

    def _idle_wait(self) -> float:
        try:
            due = self.service.index.commitments.next_due()
        except IndexUnavailable:
            return _IDLE_POLL
        if due is None:
            return _IDLE_POLL
        return min(max((due - utcnow()).total_seconds(), 0.01), _IDLE_POLL)

    def _call_back(self, commitment_id: int) -> None:
        """Claim a due request, decide it if not yet done, and try once to deliver its report
        on a new association to the requester as registered now."""
        record = self.service.index.commitments.claim(
            commitment_id, self.claimant, utcnow() + _CLAIM
        )
        if record is None:  # delivered, abandoned, or another worker was quicker
            return
        what = _what(record)
        callee = self.service.registry.peer(record.requester)
        result = self.service.commitments.result(record, callee)
        error: str | None
        if callee is None:
            error = "the requester is no longer registered"
        elif not callee.enabled:
            error = "the requester is disabled"
        elif not callee.host or not callee.port:
            error = (
                "the requesting association is closed and the AE has no registered host and "
                "port to call back (ae update --host --port)"
            )
        else:
            report = event_information(
                record.transaction_uid, result, self.service.config.node.ae_title
            )
            called = Actor(
                new_session(),
                ae_title=callee.ae_title,
                hospital=callee.hospital,
                address=callee.host,
            )
            try:
                self._audit_report(called, record, result)
                error = self._send_on_new_association(callee, report, result.event_type)
            except AuditUnavailable as exc:
                error = str(exc)
            if error is None:
                if self.service.index.commitments.delivered(record):
                    log.info("%s sent on a new association", what)
                return
        cfg = self.service.config.commitment
        retry_at = next_attempt(
            record.attempts + 1,
            record.created_at,
            utcnow(),
            interval=cfg.retry_interval,
            give_up_after_hours=cfg.give_up_after,
        )
        if not self.service.index.commitments.not_delivered(record, error, retry_at):
            return  # replaced by a newer request meanwhile
        if retry_at is None:
            log.error("%s abandoned after %d attempt(s): %s", what, record.attempts + 1, error)
            return
        log.warning("%s not delivered (%s): retrying at %s UTC", what, error, retry_at)
        # the requester's other reports would only wait out the same timeouts now
        self.service.index.commitments.postpone(record.requester, retry_at)

    def _send_on_new_association(self, peer: Peer, report: Dataset, event_type: int) -> str | None:
        assert peer.port is not None  # _call_back() calls back only an AE with a port
        try:
            tls_args = tls_args_for(self.tls, peer, self.service.registry.certificate_owner)
        except ConfigError as exc:
            return str(exc)
        try:
            assoc = self.ae.associate(
                peer.host,
                peer.port,
                ae_title=peer.ae_title,
                contexts=[build_context(STORAGE_COMMITMENT_CLASS, REPORT_TRANSFER_SYNTAXES)],
                ext_neg=[build_role(STORAGE_COMMITMENT_CLASS, scu_role=False, scp_role=True)],
                evt_handlers=OUTGOING_HANDLERS,
                tls_args=cast(Any, tls_args),  # an OutgoingTls in place of an SSLContext
            )
        except Exception as exc:
            return f"cannot call {peer.ae_title}: {type(exc).__name__}: {exc}"
        if tls_args is not None and tls_args[0].problem:
            return f"{peer.ae_title} over TLS is not that AE: {tls_args[0].problem}"
        if not assoc.is_established:
            return f"{peer.ae_title} at its registered address did not accept an association"
        try:
            if not any(
                cx.abstract_syntax == STORAGE_COMMITMENT_CLASS for cx in assoc.accepted_contexts
            ):
                return f"{peer.ae_title} did not accept the Storage Commitment context"
            rsp, _ = assoc.send_n_event_report(
                report,
                event_type,
                STORAGE_COMMITMENT_CLASS,
                STORAGE_COMMITMENT_INSTANCE,
                msg_id=_next_message_id(),
            )
            return _outcome(getattr(rsp, "Status", None))
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            if assoc.is_established:
                assoc.release()


def _exchange_report(assoc: Association, report: Dataset, event_type: int) -> str | None:
    """Send the N-EVENT-REPORT on `assoc` from its own reactor thread and wait for the answer,
    serving any request the requester sends meanwhile as the reactor would (PS3.7 D.3.3.3:
    it may have one outstanding while the report is). None when answered with success.

    The wait ends as soon as the requester asks to release or the association closes (a
    modality that releases right after its N-ACTION expects the report on a new association),
    instead of lasting the whole DIMSE timeout.
    """
    if not connected(assoc):
        return "the requesting association closed before the report"
    context = assoc._get_valid_context(STORAGE_COMMITMENT_CLASS, "", None)
    syntax = context.transfer_syntax[0]
    request = N_EVENT_REPORT()
    request.MessageID = _next_message_id()
    request.AffectedSOPClassUID = STORAGE_COMMITMENT_CLASS
    request.AffectedSOPInstanceUID = STORAGE_COMMITMENT_INSTANCE
    request.EventTypeID = event_type
    request.EventInformation = BytesIO(
        encode(  # type: ignore[arg-type]  # None (not encoded): BytesIO() is empty
            report, syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated
        )
    )
    assoc.dimse.send_msg(request, cast(int, context.context_id))
    deadline = time.monotonic() + (assoc.dimse_timeout or 30.0)
    # Answers by Message ID: a request served meanwhile may be another N-ACTION, whose own
    # report's wait may take this report's answer off the queue (and the other way round).
    answers = _answers.setdefault(assoc, {})
    while True:
        if request.MessageID in answers:
            return _outcome(answers.pop(request.MessageID).Status)
        context_id, message = assoc.dimse.get_msg(block=False)
        if isinstance(message, N_EVENT_REPORT) and message.is_valid_response:
            answers[cast(int, message.MessageIDBeingRespondedTo)] = message
            continue
        if message is not None:  # a request sent meanwhile: serve it now, in this thread
            assoc._serve_request(message, cast(int, context_id))
            deadline = time.monotonic() + (assoc.dimse_timeout or 30.0)
            continue
        pdu = assoc.dul.peek_next_pdu()
        if isinstance(pdu, A_RELEASE) and pdu.result is None:
            return "the requester released the association before answering"
        if not connected(assoc):
            return "the association closed before the report was answered"
        if time.monotonic() > deadline:
            return "no N-EVENT-REPORT response within the DIMSE timeout"
        time.sleep(0.001)


def _outcome(code: int | None) -> str | None:
    if code is None:
        return "no N-EVENT-REPORT response (timeout or abort)"
    return None if code == status.SUCCESS else f"the requester answered 0x{code:04X}"


def _next_message_id() -> int:
    return next(_message_ids) % 65535 + 1


def _what(record: CommitmentRecord) -> str:
    return f"storage commitment report {record.transaction_uid} to {record.requester}"
