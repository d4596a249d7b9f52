"""C-MOVE and C-GET SCP (PS3.4 C.4.2, C.4.3): stored files sent as C-STORE sub-operations,
streamed from disk, to a registered destination or over the requesting association.

pynetdicom's own C-MOVE/C-GET service sends only decoded datasets (a whole video in memory),
names the archive as Move Originator and answers 0xA801 when a destination accepts none of the
contexts. The node replaces it for the Query/Retrieve MOVE and GET SOP classes:
patches/service_classes.py hands each such request of the node's associations to RetrieveSCP.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_GET, C_MOVE
from pynetdicom.dsutils import decode, encode
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.service_class import QueryRetrieveServiceClass

from ..dicom import status
from ..dicom.values import ae_title_problem
from ..errors import AuditUnavailable, ConfigError, IndexUnavailable, Refused
from ..logs import request_fields
from ..rules.access import UNKNOWN_DESTINATION, Peer, not_authorised_comment
from ..rules.audit import Actor
from ..rules.query import GET_SOP_CLASSES, MOVE_SOP_CLASSES, InvalidQuery
from ..rules.retrieve_plan import (
    Outgoing,
    SubOperations,
    batches,
    choose_syntax,
    fallback_syntaxes,
)
from ..service import ArchiveService
from . import patches
from .association import OUTGOING_HANDLERS, connected, response_status
from .patches import store_sending
from .patches.send_queue import bound_send_queue
from .patches.service_classes import Interrupted, waiting_for_answer
from .tls import TlsCredentials, tls_args_for
from .wire import commands

log = logging.getLogger(__name__)


class RetrieveSCP:
    """The node's C-MOVE and C-GET: rights, identifier, destination, then sub-operations."""

    def __init__(
        self,
        service: ArchiveService,
        peer_of: Callable[[Association], Peer | None],
        tls: TlsCredentials,
        actor_of: Callable[[Association], Actor | None],
    ) -> None:
        self.service = service
        self.peer_of = peer_of
        self.actor_of = actor_of
        self.tls = tls
        # told of each request's final status: the service ("C-MOVE" or "C-GET"), the status,
        # the completed, failed and warning sub-operations, and the seconds it took (metrics)
        self.on_done: Callable[[str, int, tuple[int, int, int], float], None] | None = None

    # -- C-MOVE -------------------------------------------------------------------------------

    def move(
        self, provider: QueryRetrieveServiceClass, req: C_MOVE, context: PresentationContext
    ) -> None:
        """PS3.4 C.4.2.3: sub-operations over an association the node opens to the Move
        Destination, whose address comes from the registry."""
        exchange = _Exchange(provider, req, context, C_MOVE(), self.on_done)
        actor = self.actor_of(provider.assoc)
        try:
            peer = self._peer(provider.assoc, "move", actor, "C-MOVE")
            assert actor is not None  # _peer refuses an association without one
            with _failing_clearly("C-MOVE", peer.ae_title):
                title = _destination_title(req, peer)
                destination, _ = self.service.move_destination(peer, title)  # logs why not
                if destination is None:
                    # the same answer whatever the reason: nothing to learn about other
                    # hospitals' AE titles (PS3.4 C.4.2.1.4.1, Table C.4-2)
                    raise Refused(status.MOVE_DESTINATION_UNKNOWN, UNKNOWN_DESTINATION)
                items = self._plan(peer, exchange, MOVE_SOP_CLASSES, "C-MOVE")
                self.service.audit.retrieve_started(actor, "C-MOVE", destination.ae_title, items)
        except Refused as refused:
            destination_title = str(req.MoveDestination or "").strip()
            self.service.audit.retrieve_refused(actor, "C-MOVE", destination_title, refused)
            exchange.refuse(refused)
            return
        log.info(
            "C-MOVE from %s (%s) to %s at %s:%s: %d instance(s)",
            peer.ae_title,
            peer.hospital,
            destination.ae_title,
            destination.host,
            destination.port,
            len(items),
        )
        ops = SubOperations(len(items))
        started = time.monotonic()
        with self._audited(actor, "C-MOVE", destination.ae_title, items, ops, exchange):
            self._move(provider, req, exchange, peer, destination, items, ops)
        _log_done("C-MOVE", peer, ops, started, exchange.cancelled)

    def _move(
        self,
        provider: QueryRetrieveServiceClass,
        req: C_MOVE,
        exchange: _Exchange,
        peer: Peer,
        destination: Peer,
        items: list[Outgoing],
        ops: SubOperations,
    ) -> None:
        for batch in batches(items):
            sub = self._open(provider.assoc.ae, destination, batch.contexts)
            if isinstance(sub, str):
                log.error(
                    "C-MOVE from %s: %s (%s:%s)",
                    peer.ae_title,
                    sub,
                    destination.host,
                    destination.port,
                )
                for item in batch.items:
                    ops.record(item.sop_instance_uid, None)
                exchange.comment = sub
                continue
            try:
                sender = _Sender(
                    self.service,
                    sub,
                    originator=(peer.ae_title, req.MessageID),
                    stop=exchange.should_stop,
                )
                if sender.fast is not None:  # paused once here, not for each C-STORE
                    store_sending.pause_reactor(sub)
                if not self._run(exchange, sender, batch.items, ops):
                    return
            finally:
                store_sending.resume_reactor(sub)
                _close(sub)
            if exchange.cancelled:
                break
        exchange.finish(ops)

    # -- C-GET --------------------------------------------------------------------------------

    def get(
        self, provider: QueryRetrieveServiceClass, req: C_GET, context: PresentationContext
    ) -> None:
        """PS3.4 C.4.3.3: sub-operations over the requesting association, in the storage
        contexts it proposed with SCP role selection (PS3.7 D.3.3.4)."""
        exchange = _Exchange(provider, req, context, C_GET(), self.on_done)
        actor = self.actor_of(provider.assoc)
        try:
            peer = self._peer(provider.assoc, "get", actor, "C-GET")
            assert actor is not None  # _peer refuses an association without one
            with _failing_clearly("C-GET", peer.ae_title):
                items = self._plan(peer, exchange, GET_SOP_CLASSES, "C-GET")
                self.service.audit.retrieve_started(actor, "C-GET", peer.ae_title, items)
        except Refused as refused:
            self.service.audit.retrieve_refused(actor, "C-GET", "", refused)
            exchange.refuse(refused)
            return
        log.info("C-GET from %s (%s): %d instance(s)", peer.ae_title, peer.hospital, len(items))
        ops = SubOperations(len(items))
        started = time.monotonic()
        sender = _Sender(self.service, provider.assoc, originator=None, stop=exchange.should_stop)
        with self._audited(actor, "C-GET", peer.ae_title, items, ops, exchange):
            if self._run(exchange, sender, items, ops):
                exchange.finish(ops)
                _log_done("C-GET", peer, ops, started, exchange.cancelled)

    # -- both ---------------------------------------------------------------------------------

    def _peer(self, assoc: Association, right: str, actor: Actor | None, operation: str) -> Peer:
        peer = self.peer_of(assoc)
        refused = self.service.authorise(peer, right, actor, operation)
        if refused or peer is None or actor is None:
            raise Refused(status.NOT_AUTHORISED, not_authorised_comment(right))
        return peer

    @contextmanager
    def _audited(
        self,
        actor: Actor | None,
        operation: str,
        destination: str,
        items: list[Outgoing],
        ops: SubOperations,
        exchange: _Exchange,
    ) -> Iterator[None]:
        """The sub-operations, then (however they end) the trail's record of what each study
        had sent, failed and not sent."""
        try:
            yield
        finally:
            if actor is not None:
                self.service.audit.retrieve_ended(
                    actor, operation, destination, items, ops, exchange.cancelled
                )

    def _plan(
        self, peer: Peer, exchange: _Exchange, models: dict[str, str], what: str
    ) -> list[Outgoing]:
        model = models[str(exchange.req.AffectedSOPClassUID)]
        try:
            identifier = exchange.identifier()
        except Exception as exc:
            log.warning("%s from %s: identifier cannot be decoded: %s", what, peer.ae_title, exc)
            raise Refused(status.UNABLE_TO_PROCESS, "identifier cannot be decoded") from None
        try:
            return self.service.plan_retrieve(peer, identifier, model)
        except InvalidQuery as exc:
            log.warning("%s from %s refused: 0x%04X %s", what, peer.ae_title, exc.status, exc)
            raise

    def _open(
        self, ae: AE, destination: Peer, contexts: Sequence[tuple[str, Sequence[str]]]
    ) -> Association | str:
        """An association to the destination proposing `contexts`, or why there is none."""
        where = destination.ae_title  # the address is for the log, not for the requester
        assert destination.port is not None  # move_refusal() refused one without
        try:
            tls_args = tls_args_for(self.tls, destination, self.service.registry.certificate_owner)
        except ConfigError as exc:
            log.error("C-MOVE to %s: %s", where, exc)
            return f"{where} needs TLS, and the node has no TLS certificate"
        try:
            sub = ae.associate(
                destination.host,
                destination.port,
                contexts=[build_context(sop_class, list(ts)) for sop_class, ts in contexts],
                ae_title=destination.ae_title,
                evt_handlers=OUTGOING_HANDLERS,
                tls_args=cast(Any, tls_args),  # an OutgoingTls in place of an SSLContext
            )
        except Exception as exc:  # e.g. a registered title pynetdicom will not call
            log.exception("association to %s failed", where)
            return f"{where} cannot be called: {type(exc).__name__}"
        if tls_args is not None and tls_args[0].problem:
            # the detail (another AE's title, perhaps another hospital's) is for the log only
            log.warning("%s over TLS is not that AE: %s", where, tls_args[0].problem)
            return f"{where}: its TLS certificate is not its own"
        if sub.is_established:
            return sub
        if sub.is_rejected:
            rsp = sub.acceptor.primitive
            assert rsp is not None  # the A-ASSOCIATE-RJ
            return (
                f"{where} rejected the association "
                f"(result {rsp.result}, source {rsp.result_source}, reason {rsp.diagnostic})"
            )
        if sub.rejected_contexts and not sub.accepted_contexts:
            return f"{where} accepted none of the {len(contexts)} proposed contexts"
        return f"{where} cannot be reached"

    def _run(
        self, exchange: _Exchange, sender: _Sender, items: Sequence[Outgoing], ops: SubOperations
    ) -> bool:
        """Send `items`, a pending response after each but the last; False when the requesting
        association has gone (no final response can be sent).

        With the speed patches' sender the pending response of one sub-operation goes out once
        the next C-STORE is on its way, and the next file is opened and its meta read, while
        that C-STORE's response is awaited (the destination's time, not the node's); without
        them, at once. Either way one pending response per sub-operation but the last, with
        the counts as they were after it, and all before the final response."""
        due: list[_Counts] = []

        def send_due() -> None:
            while due:
                exchange.pending(due.pop(0))

        def after_queued(position: int) -> None:
            send_due()
            if position + 1 < len(items):
                sender.prefetch(items[position + 1])

        try:
            return self._send_each(exchange, sender, items, ops, due, after_queued)
        finally:
            sender.drop_prefetched()
            if due and exchange.requester_alive():
                send_due()

    def _send_each(
        self,
        exchange: _Exchange,
        sender: _Sender,
        items: Sequence[Outgoing],
        ops: SubOperations,
        due: list[_Counts],
        after_queued: Callable[[int], None],
    ) -> bool:
        for position, item in enumerate(items):
            if not exchange.requester_alive():
                log.warning("retrieve ended: the requesting association is gone")
                return False
            if exchange.cancel_requested():
                return True
            answer = sender.send(item, lambda at=position: after_queued(at))  # type: ignore[misc]
            outcome = ops.record(item.sop_instance_uid, answer)
            if outcome != "completed":
                log.warning(
                    "sub-operation for instance %s %s: %s",
                    item.sop_instance_uid,
                    outcome,
                    sender.last_error or "the destination's status says so",
                )
            if exchange.cancelled:  # during the sub-operation: the rest stay remaining
                return True
            if not exchange.requester_alive():
                log.warning("retrieve ended: the requesting association is gone")
                return False
            if not sender.alive():  # the peer went away: what is left cannot be sent
                exchange.comment = sender.last_error or "the association was lost"
                for rest in items[position + 1 :]:
                    ops.record(rest.sop_instance_uid, None)
                return True
            if ops.remaining:
                due.append(_Counts(ops.remaining, ops.completed, ops.failed, ops.warning))
                if sender.fast is None or len(due) > 1:
                    exchange.pending(due.pop(0))
        return True


@dataclass(frozen=True)
class _Counts:
    """The sub-operation counts of a pending response, as they were after one sub-operation."""

    remaining: int
    completed: int
    failed: int
    warning: int
    failed_uids: tuple[str, ...] = ()  # a pending response lists none


@contextmanager
def _failing_clearly(what: str, peer_title: str) -> Iterator[None]:
    """An unreachable index, an audit record that cannot be written or an unexpected error
    becomes a failure status (0xC001), never a
    traceback to pynetdicom (which would abort the association)."""
    try:
        yield
    except Refused:
        raise
    except AuditUnavailable as exc:  # logged: nothing is sent without its record
        raise Refused(status.QUERY_FAILED, str(exc)) from None
    except IndexUnavailable as exc:
        log.error("%s from %s failed: %s", what, peer_title, exc)
        raise Refused(status.QUERY_FAILED, "index unavailable") from None
    except Exception as exc:
        log.exception("%s from %s failed unexpectedly", what, peer_title)
        raise Refused(status.QUERY_FAILED, f"internal error: {type(exc).__name__}") from None


class _Exchange:
    """One C-MOVE or C-GET request and its responses (PS3.7 9.1.3.1, 9.1.4.1)."""

    def __init__(
        self,
        provider: QueryRetrieveServiceClass,
        req: C_MOVE | C_GET,
        context: PresentationContext,
        rsp: C_MOVE | C_GET,
        on_done: Callable[[str, int, tuple[int, int, int], float], None] | None = None,
    ) -> None:
        self.provider = provider
        self.req = req
        self.context = context
        self.rsp = rsp
        self.on_done = on_done
        self.started = time.monotonic()
        self.cancelled = False
        self.comment = ""
        self.syntax = context.transfer_syntax[0]

    def identifier(self) -> Dataset:
        ts = self.syntax
        identifier = cast(BytesIO, self.req.Identifier)
        return decode(identifier, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated)

    def requester_alive(self) -> bool:
        return connected(self.provider.assoc)

    def cancel_requested(self) -> bool:
        """A C-CANCEL for this request arrived (PS3.7 9.3.2.3); checked between sub-operations
        and, every POLL seconds, while one waits for its C-STORE response (pynetdicom reports
        a cancel once: it is kept in `cancelled`)."""
        if not self.cancelled and self.provider.is_cancelled(cast(int, self.req.MessageID)):
            log.info("retrieve cancelled by the SCU")
            self.cancelled = True
        return self.cancelled

    def should_stop(self) -> bool:
        """Whether a sub-operation under way should be given up: cancelled, or no one left to
        answer (PS3.4 C.4.2.3.1: the SCP interrupts the C-STORE sub-operations)."""
        return self.cancel_requested() or not self.requester_alive()

    def refuse(self, refused: Refused) -> None:
        self._send(response_status(refused.status, str(refused), refused.keyword))

    def pending(self, ops: SubOperations | _Counts) -> None:
        """A pending response with the counts; packed by hand (wire/commands.py) with the speed
        patches."""
        if not patches.packs_responses(self.provider.assoc.ae):
            self._send(response_status(status.PENDING), cast(SubOperations, ops))
            return
        command = commands.pending_response(
            commands.C_MOVE_RSP if isinstance(self.rsp, C_MOVE) else commands.C_GET_RSP,
            cast(UID, self.req.AffectedSOPClassUID),
            cast(int, self.req.MessageID),
            remaining=ops.remaining,
            completed=ops.completed,
            failed=ops.failed,
            warning=ops.warning,
        )
        dimse = self.provider.dimse
        context_id = cast(int, self.context.context_id)
        commands.queue(dimse.dul, context_id, command, dimse.maximum_pdu_size)

    def finish(self, ops: SubOperations) -> None:
        code = ops.final_status(self.cancelled)
        comment = self.comment if code not in (status.SUCCESS, status.CANCELLED) else ""
        self._send(response_status(code, comment), ops)

    def _send(self, outcome: Dataset, ops: SubOperations | None = None) -> None:
        """One response: the status (with its comment) of `outcome`, and the counts of `ops`;
        Remaining only on pending and cancel responses, the failed instances on the others
        (PS3.4 C.4.2.1.4, C.4.3.1.3)."""
        req, rsp = self.req, self.rsp
        rsp.MessageIDBeingRespondedTo = req.MessageID
        rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
        rsp.Status = code = outcome.Status
        rsp.Identifier = None
        rsp.ErrorComment = outcome.get("ErrorComment")
        rsp.OffendingElement = outcome.get("OffendingElement")
        if ops is not None:
            running = code in (status.PENDING, status.CANCELLED)
            rsp.NumberOfRemainingSuboperations = ops.remaining if running else None
            rsp.NumberOfCompletedSuboperations = ops.completed
            rsp.NumberOfFailedSuboperations = ops.failed
            rsp.NumberOfWarningSuboperations = ops.warning
            if code != status.PENDING and ops.failed_uids:
                # PS3.4 C.4.2.1.4.2: the instances whose sub-operation failed
                listed = Dataset()
                ts = self.syntax
                listed.FailedSOPInstanceUIDList = _listable(ops.failed_uids, ts.is_implicit_VR)
                rsp.Identifier = BytesIO(
                    encode(  # type: ignore[arg-type]  # None (not encoded): BytesIO() is empty
                        listed, ts.is_implicit_VR, ts.is_little_endian, ts.is_deflated
                    )
                )
        self.provider.dimse.send_msg(rsp, cast(int, self.context.context_id))
        if code != status.PENDING and self.on_done is not None:
            counts = (ops.completed, ops.failed, ops.warning) if ops is not None else (0, 0, 0)
            service = "C-MOVE" if isinstance(rsp, C_MOVE) else "C-GET"
            self.on_done(service, int(code), counts, time.monotonic() - self.started)


def _listable(uids: list[str], implicit: bool) -> list[str]:
    """The UIDs an identifier can carry: all in implicit VR; in explicit VR as many as fit in
    a UI value of at most 0xFFFE bytes (its length field has 16 bits), the first ones."""
    if implicit:
        return uids
    kept: list[str]
    kept, size = [], -1
    for uid in uids:
        size += len(uid) + 1
        if size > 0xFFFE:
            log.warning(
                "Failed SOP Instance UID List cut to %d of %d (explicit VR)", len(kept), len(uids)
            )
            break
        kept.append(uid)
    return kept


class _Sender:
    """C-STOREs over one association: each stored file streamed in the syntax chosen for it."""

    def __init__(
        self,
        service: ArchiveService,
        assoc: Association,
        originator: tuple[str, int | None] | None,
        stop: Callable[[], bool],
    ) -> None:
        self.service = service
        self.assoc = assoc
        self.originator = originator  # None: C-GET, over the requester's own association
        self.stop = stop
        self.last_error = ""
        # What the peer accepted for us to send, per SOP class (for C-GET: the contexts the SCU
        # proposed with the SCP role for itself).
        self.accepted: dict[str, set[str]] = {}
        for cx in assoc.accepted_contexts:
            if cx.as_scu:
                self.accepted.setdefault(str(cx.abstract_syntax), set()).add(
                    str(cx.transfer_syntax[0])
                )
        if not patches.sends_files_whole(assoc.ae):  # then pynetdicom queues every PDU
            bound_send_queue(assoc)
        # the speed patches' own C-STORE (store_sending.py), or pynetdicom's send_c_store
        self.fast: store_sending.StoreSender | None = None
        if store_sending.takes(assoc):
            aet, message_id = originator or (None, None)
            self.fast = store_sending.StoreSender(assoc, aet, message_id)

    def alive(self) -> bool:
        return connected(self.assoc)

    def prefetch(self, item: Outgoing) -> None:
        """Open the file of the next item, sent as stored, while a response is awaited."""
        if self.fast is None or item.path is None or item.patient is not None:
            return
        if choose_syntax(item, self.accepted) == item.transfer_syntax_uid:
            self.fast.prefetch(item.path)

    def drop_prefetched(self) -> None:
        if self.fast is not None:
            self.fast.drop_prefetched()

    def send(self, item: Outgoing, after_queued: Callable[[], None] | None = None) -> int | None:
        """One C-STORE sub-operation: the peer's status, or None when it was not sent or no
        response came (last_error says why)."""
        self.last_error = ""
        syntax = choose_syntax(item, self.accepted)
        if syntax is None:
            self.last_error = (
                f"no accepted context for {item.sop_class_uid} in {item.transfer_syntax_uid}"
            )
            if not fallback_syntaxes(item.transfer_syntax_uid):
                self.last_error += " (a syntax the node does not convert or decompress)"
            return None
        if item.path is None:
            self.last_error = "its index row names no file in the store"
            return None
        converted = None
        if syntax != item.transfer_syntax_uid:
            try:
                converted = self.service.converted_copy(item, syntax)
            except FileNotFoundError:
                self.last_error = "the stored file is missing"
                log.error(
                    "instance %s: stored file %s is missing", item.sop_instance_uid, item.path
                )
                return None
            except Exception as exc:  # nothing was sent: the association goes on
                self.last_error = (
                    f"cannot be converted from {UID(item.transfer_syntax_uid).name} to "
                    f"{UID(syntax).name}: {type(exc).__name__}: {exc}"
                )
                if not isinstance(exc, ValueError):  # an undecodable object is logged by _run
                    log.exception(
                        "instance %s: conversion to %s failed", item.sop_instance_uid, syntax
                    )
                return None
        corrected = None
        if item.patient is not None:  # a corrected study: its patient as the index has it
            try:
                corrected = self.service.corrected_copy(item, converted or item.path)
            except FileNotFoundError:
                self.last_error = "the stored file is missing"
                log.error(
                    "instance %s: stored file %s is missing", item.sop_instance_uid, item.path
                )
            except Exception as exc:  # nothing was sent: the association goes on
                self.last_error = f"cannot carry its correction: {type(exc).__name__}: {exc}"
                log.error("instance %s: %s", item.sop_instance_uid, self.last_error)
            if corrected is None:
                if converted is not None:
                    converted.unlink(missing_ok=True)
                return None
        try:
            path = corrected or converted or item.path
            own_id = _next_message_id(self.assoc)
            aet, message_id = self.originator or (None, None)
            if self.fast is not None:
                answer = self.fast.send(path, own_id, self.stop, after_queued)
                if answer is None:
                    self.last_error = "no response (association aborted or timed out)"
                return answer
            with waiting_for_answer(self.assoc.dimse, own_id, self.stop):
                rsp = self.assoc.send_c_store(
                    path, msg_id=own_id, originator_aet=aet, originator_id=message_id
                )
        except Interrupted:
            self.last_error = "interrupted (C-CANCEL, or the requester has gone)"
            if self.fast is None:
                self.assoc._reactor_checkpoint.set()  # send_c_store raised before resuming it
            if self.originator is not None and self.assoc.is_established:
                # a C-MOVE's own sub-association: its unanswered C-STORE ends with it
                self.assoc.abort()
            # a C-GET's C-STORE went over the requester's association, which stays: its late
            # response is passed over (waiting_for_answer) or ignored by pynetdicom's reactor
            return None
        except FileNotFoundError:
            self.last_error = "the stored file is missing"
            log.error("instance %s: stored file %s is missing", item.sop_instance_uid, item.path)
            return None
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            # send_c_store paused the association's reactor and, raising, never resumed it:
            # resume it, or the association's thread waits forever (the fast sender's
            # C-MOVE stays paused until its batch ends: RetrieveSCP._move resumes it)
            if self.fast is None:
                self.assoc._reactor_checkpoint.set()
            if isinstance(exc, OSError) and self.assoc.is_established:
                self.assoc.abort()  # a C-STORE cut off part way cannot be resumed
            return None
        finally:
            for copy in (converted, corrected):
                if copy is not None:
                    copy.unlink(missing_ok=True)
        if "Status" not in rsp:
            self.last_error = "no response (association aborted or timed out)"
            return None
        return int(rsp.Status)


# The Message ID of the last C-STORE the node sent on each association. A C-GET's C-STOREs go
# over the requester's association, where a later C-GET must not reuse the ID of one whose
# response has not come (a cancelled one's): the IDs go on from one C-GET to the next.
_last_message_ids: weakref.WeakKeyDictionary[Association, int] = weakref.WeakKeyDictionary()


def _next_message_id(assoc: Association) -> int:
    message_id = _last_message_ids.get(assoc, 0) % 65535 + 1
    _last_message_ids[assoc] = message_id
    return message_id


def _destination_title(req: C_MOVE, peer: Peer) -> str:
    """The Move Destination, or 0xA801 for one that is no AE title (PS3.4 C.4.2.1.4.1): empty,
    all spaces, over 16 characters, control characters (patches/service_classes.py lets such
    a request through pynetdicom's decoding)."""
    raw = str(req.MoveDestination or "")
    problem = ae_title_problem(raw.rstrip(" "))  # trailing spaces pad an AE (PS3.5 6.2)
    if problem:
        log.warning("C-MOVE from %s refused: the Move Destination: %s", peer.ae_title, problem)
        raise Refused(status.MOVE_DESTINATION_UNKNOWN, "Move Destination is not a valid AE title")
    return raw.strip()


def _close(sub: Association) -> None:
    # not is_established alone: the sub-association's reactor may not have seen the peer's
    # abort yet, and a release sent then would wait for an answer that never comes
    if connected(sub):
        sub.release()


def _log_done(what: str, peer: Peer, ops: SubOperations, started: float, cancelled: bool) -> None:
    log.info(
        "%s from %s %s: %d completed, %d failed, %d warning, %d not sent, in %.1f s",
        what,
        peer.ae_title,
        "cancelled" if cancelled else "done",
        ops.completed,
        ops.failed,
        ops.warning,
        ops.remaining,
        time.monotonic() - started,
        extra=request_fields(ops.final_status(cancelled), started),
    )
