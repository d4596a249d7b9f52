"""The audit trail as the node writes it (issue 19): each act recorded before it takes effect,
fail closed (AuditUnavailable), Security Alerts bounded per peer address, C-STORE tallies
sealed per association and study. What the events are is rules/audit.py's."""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from .config import Config
from .dicom import status as dimse
from .errors import AuditUnavailable, Conflict, IndexUnavailable, Refused
from .index import Index
from .index.audit_rows import Tally
from .rules.audit import (
    APPLICATION_ACTIVITY,
    APPLICATION_START,
    APPLICATION_STOP,
    EXECUTE,
    INSTANCES_ACCESSED,
    INSTANCES_TRANSFERRED,
    MINOR_FAILURE,
    QUERY,
    READ,
    SECURITY_ALERT,
    SECURITY_CONFIGURATION,
    SERIOUS_FAILURE,
    SUCCESS,
    Actor,
    AuditEvent,
    AuditRecord,
    EventKind,
    Touched,
    chain_breaks,
    per_study,
    prune_before,
    transfer_outcome,
)
from .rules.retrieve_plan import Outgoing, SubOperations

log = logging.getLogger(__name__)


def process_alive(pid: int) -> bool:
    """Whether a process of this host still runs (a zombie counts as gone only once reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: alive
        return True
    return True


def new_session() -> str:
    """A fresh session key: one per association or command run."""
    return uuid.uuid4().hex


def local_actor() -> Actor:
    """The operating system user running a command on this machine."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid {os.getuid()}"
    return Actor(session=new_session(), user=user, address="localhost", ae_title="")


class AlertGate:
    """At most `per_minute` Security Alerts per peer address in any minute; the ones held
    back are counted into the next one let through (a flood cannot fill the trail or the
    disk, and is still accounted for)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[float, int, int]] = {}  # start, let through, held back

    def take(self, address: str) -> int | None:
        """None when this alert is held back; else how many were held back before it."""
        now = self.clock()
        with self._lock:
            start, passed, held = self._windows.get(address, (now, 0, 0))
            if now - start >= 60.0:
                start, passed = now, 0
            if passed >= self.per_minute:
                self._windows[address] = (start, passed, held + 1)
                return None
            self._windows[address] = (start, passed + 1, 0)
            if len(self._windows) > 10000:  # many addresses: forget the oldest windows
                for key in sorted(self._windows, key=lambda k: self._windows[k][0])[:5000]:
                    del self._windows[key]
            return held


class AuditTrail:
    """Writes the node's audit records to its chain in the index."""

    def __init__(self, config: Config, index: Index) -> None:
        self.enabled = config.audit.enabled
        self.node = config.audit.source_id or config.node.ae_title
        self.ae_title = config.node.ae_title
        self.repository = config.audit.repository
        self.index = index
        self.alerts = AlertGate(config.audit.max_alerts_per_minute)
        self.on_recorded: Callable[[], None] = lambda: None  # the exporter's wake-up

    def record(self, *events: AuditEvent) -> list[AuditRecord]:
        """Append `events` durably. Raises AuditUnavailable (logged) when they cannot be:
        the caller must not do what they record."""
        if not self.enabled or not events:
            return []
        try:
            records = self.index.audit.append(self.node, events)
        except (IndexUnavailable, Conflict) as exc:
            log.error("audit record (%s) not written: %s", events[0].operation, exc)
            raise AuditUnavailable("audit trail unavailable") from None
        self.on_recorded()
        return records

    def alert(
        self,
        actor: Actor,
        operation: str,
        reason: str,
        *,
        event_type: str,
        status: str = "",
    ) -> None:
        """A Security Alert (PS3.15 A.5.3.14) for a refused association or request; never
        raises (the refusal stands either way), held back past audit.max_alerts_per_minute."""
        if not self.enabled:
            return
        held = self.alerts.take(actor.address)
        if held is None:
            return
        detail: dict[str, Any] = {"reason": reason}
        if held:
            detail["held_back"] = held
        event = AuditEvent(
            SECURITY_ALERT,
            EXECUTE,
            operation,
            actor,
            outcome=MINOR_FAILURE,
            status=status,
            event_type=event_type,
            detail=detail,
        )
        with contextlib.suppress(AuditUnavailable):  # logged; refused either way
            self.record(event)

    def admin_change(self, actor: Actor, operation: str, detail: Mapping[str, Any]) -> None:
        """A registry change by an operator (a Security Alert of type Security Configuration,
        PS3.16 CID 403). Raises AuditUnavailable."""
        self.record(
            AuditEvent(
                SECURITY_ALERT,
                "U",
                operation,
                actor,
                event_type=SECURITY_CONFIGURATION,
                detail=dict(detail),
            )
        )

    def event(
        self,
        kind: EventKind,
        action: str,
        operation: str,
        actor: Actor,
        *,
        touched: Iterable[Touched] = (),
        **fields: Any,
    ) -> None:
        """Record one event. Raises AuditUnavailable."""
        self.record(AuditEvent(kind, action, operation, actor, touched=tuple(touched), **fields))

    def application(self, started: bool, detail: Mapping[str, Any]) -> None:
        """The node starting (after sealing what a crash left) or stopping: Application
        Activity (PS3.15 A.5.3.1). Logged, never raised: a node that cannot write its trail
        refuses each act that needs a record instead."""
        if not self.enabled:
            return
        if started:
            self.seal()
        actor = dataclasses.replace(local_actor(), ae_title=self.ae_title)
        with contextlib.suppress(AuditUnavailable):
            self.event(
                APPLICATION_ACTIVITY,
                EXECUTE,
                "start" if started else "stop",
                actor,
                event_type=APPLICATION_START if started else APPLICATION_STOP,
                detail=dict(detail),
            )

    # -- the trail's own upkeep ----------------------------------------------------------------

    def verify(self) -> dict[str, tuple[int, list[str]]]:
        """Walk every node's chain: (records read, breaks) by node. A chain pruned without
        its checkpoint record, or whose checkpoint disagrees with where it starts, is a
        break too. Raises IndexUnavailable."""
        found: dict[str, tuple[int, list[str]]] = {}
        for node in self.index.audit.nodes():
            start, head, records = self.index.audit.chain(node)
            seen = 0
            checkpoint: int | None = None

            def counted(records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
                nonlocal seen, checkpoint
                for record in records:
                    seen += 1
                    if record.operation == "audit prune":
                        checkpoint = int(record.details.get("pruned_through", -1))
                    yield record

            breaks = list(chain_breaks(counted(records), start=start, head=head))
            if start is not None and checkpoint != start.seq:
                breaks.append(
                    f"records 1-{start.seq} were pruned, but no checkpoint record says so"
                )
            found[node] = (seen, breaks)
        return found

    def prune(self, before: str, actor: Actor) -> AuditRecord | None:
        """Remove this node's records older than `before` (never unexported ones while a
        repository is set), leaving a checkpoint record. Raises IndexUnavailable."""
        record = self.index.audit.prune(
            self.node, before, actor, keep_unsent=bool(self.repository)
        )
        if record is not None:
            self.on_recorded()
        return record

    # -- C-MOVE and C-GET: per study, before and after ----------------------------------------

    def retrieve_started(
        self, actor: Actor, operation: str, destination: str, items: list[Outgoing]
    ) -> None:
        """Before the first sub-operation of a C-MOVE or C-GET: one DICOM Instances Transferred
        record per study, of what is about to be sent. Raises AuditUnavailable."""
        self.record(
            *(
                _transfer(
                    actor, operation, destination, study, counts["instances"], counts, "started"
                )
                for study, counts in per_study(items).items()
            )
        )

    def retrieve_refused(
        self, actor: Actor | None, operation: str, destination: str, refused: Refused
    ) -> None:
        """A C-MOVE or C-GET refused before any sub-operation (a bad identifier, an unknown
        destination, too many instances): a failed DICOM Instances Transferred record, best
        effort (nothing was sent). A refusal for want of the right is a Security Alert
        already (authorise)."""
        if actor is None or refused.status == dimse.NOT_AUTHORISED:
            return
        with contextlib.suppress(AuditUnavailable):
            self.event(
                INSTANCES_TRANSFERRED,
                READ,
                operation,
                actor,
                destination=destination[:16],
                outcome=SERIOUS_FAILURE,
                status=f"0x{refused.status:04X} {refused}",
                detail={"phase": "refused"},
            )

    def retrieve_ended(
        self,
        actor: Actor,
        operation: str,
        destination: str,
        items: list[Outgoing],
        ops: SubOperations,
        cancelled: bool,
    ) -> None:
        """After the last sub-operation: per study, what was sent, failed and not sent
        (cancelled, or the requester gone). Logged, never raised: what was sent is sent."""
        events = []
        for study, counts in per_study(items, ops.outcomes).items():
            outcome = transfer_outcome(counts)
            sent = counts.get("completed", 0) + counts.get("warning", 0)
            events.append(
                _transfer(
                    actor,
                    operation,
                    destination,
                    study,
                    sent,
                    counts,
                    "ended",
                    outcome=outcome,
                    status="cancelled" if cancelled and outcome else "",
                )
            )
        with contextlib.suppress(AuditUnavailable):
            self.record(*events)

    # -- Storage Commitment -------------------------------------------------------------------

    def commitment(
        self,
        actor: Actor,
        operation: str,
        transaction_uid: str,
        counts: dict[str, int],
        sop_uids: list[str],
    ) -> None:
        """A Storage Commitment request taken (N-ACTION) or its report about to be sent
        (N-EVENT-REPORT): a DICOM Instances Accessed record (PS3.15 A.5.3.4) naming the
        patients and studies of `sop_uids` (the references, or those committed). Raises
        AuditUnavailable: a report, which acknowledges storage, is not sent without it."""
        if not self.enabled:
            return
        try:
            touched = self.index.audit.instances_touched(sop_uids)
        except IndexUnavailable as exc:
            log.error("audit record (%s) not written: %s", operation, exc)
            raise AuditUnavailable("audit trail unavailable") from None
        failed = counts.get("failed", 0)
        self.event(
            INSTANCES_ACCESSED,
            READ,
            operation,
            actor,
            touched=touched,
            outcome=MINOR_FAILURE if failed else SUCCESS,
            status=f"{failed} not committed" if failed else "",
            detail={"transaction_uid": transaction_uid, **counts},
        )

    # -- C-STORE: tallies, sealed per association and study --------------------------------

    def tally(
        self, actor: Actor | None, study_uid: str, patient_id: str, issuer: str, kind: str
    ) -> Tally | None:
        """What a stored instance adds to its association's count (None: not audited)."""
        if not self.enabled or actor is None:
            return None
        return Tally(self.node, actor, study_uid, patient_id, issuer, kind)

    def count(self, tally: Tally | None, *, stored: int = 1, status: str = "") -> None:
        """Count a stored instance (stored=1) or a failed one (stored=0, with its status) in a
        commit of its own. Raises AuditUnavailable for a stored one; a failure's count is
        best-effort (logged)."""
        if tally is None:
            return
        try:
            self.index.audit.count(tally, stored=stored, failed=1 - stored, status=status)
        except (IndexUnavailable, Conflict) as exc:
            log.error("audit count of a C-STORE not written: %s", exc)
            if stored:
                raise AuditUnavailable("audit trail unavailable") from None

    def seal_orphans(self, alive: Callable[[int], bool] = process_alive) -> None:
        """Seal the tallies of this host's processes of the node that are gone (a worker that
        died under `serve --workers`: its successor seals them). Never raises."""
        if not self.enabled:
            return
        host = socket.gethostname()
        try:
            for process in self.index.audit.tally_processes(self.node):
                name, _, pid = process.rpartition(":")
                dead = name == host and pid.isdigit() and not alive(int(pid))
                if dead and self.index.audit.seal(self.node, process=process):
                    self.on_recorded()
        except (IndexUnavailable, Conflict) as exc:
            log.error("audit records of a dead worker's stores wait for the next start: %s", exc)

    def seal(self, session: str | None = None) -> None:
        """Turn the tallies of one association (or, at start, every one a crash left) into
        records; on failure they stay, for the next start. Never raises."""
        if not self.enabled:
            return
        try:
            if self.index.audit.seal(self.node, session):
                self.on_recorded()
        except (IndexUnavailable, Conflict) as exc:
            log.error("audit records of stored instances wait for the next start: %s", exc)


def _transfer(
    actor: Actor,
    operation: str,
    destination: str,
    study: Touched,
    instances: int,
    counts: dict[str, int],
    phase: str,
    *,
    outcome: int = SUCCESS,
    status: str = "",
) -> AuditEvent:
    """A retrieve's record for one study: before it (phase 'started', `instances` about to be
    sent) or after it ('ended', with `outcome`; `instances` sent)."""
    return AuditEvent(
        INSTANCES_TRANSFERRED,
        READ,
        operation,
        actor,
        destination=destination,
        outcome=outcome,
        status=status,
        touched=(dataclasses.replace(study, instances=instances),),
        detail={"phase": phase, **counts},
    )


# what a match says of whom it touches, below PATIENT level (False) and at it (True)
_WHO = {
    False: ("PatientID", "IssuerOfPatientID", "StudyInstanceUID"),
    True: ("PatientID", "IssuerOfPatientID"),
}


class QueryRecord:
    """The Query audit record of one C-FIND (PS3.15 A.5.3.13)."""

    def __init__(
        self,
        trail: AuditTrail,
        actor: Actor | None,
        identifier: Any,
        model: str,
        sop_class: str,
    ) -> None:
        self.trail = trail
        self.actor = actor
        self.identifier = identifier
        self.detail: dict[str, Any] = {"model": model, "sop_class": sop_class}

    def _keys(self) -> Any:
        """The identifier as sent, in the DICOM JSON model (PS3.18 F.2)."""
        try:
            return self.identifier.to_json_dict(bulk_data_threshold=1 << 20)
        except Exception as exc:  # a value pydicom cannot render: the trail says so
            return {"unreadable": type(exc).__name__}

    def widened(self, query: Any) -> Any:
        """The query to ask the index: with the keys that say whom each match touches
        (PatientID, IssuerOfPatientID and, below PATIENT level, StudyInstanceUID) among
        those it returns, read in the same SELECT; the answers keep the keys asked for."""
        if self.actor is None or not self.trail.enabled:
            return query
        keys = _WHO[query.level == "PATIENT"]
        return dataclasses.replace(
            query, requested=tuple(dict.fromkeys((*query.requested, *keys)))
        )

    def answered(self, level: str, matches: list[Any], overflow: bool, limit: int) -> None:
        """Before the first answer: what the query asked and whom it touched (read by the
        widened query). Raises AuditUnavailable."""
        if self.actor is None or not self.trail.enabled:
            return
        touched = sorted(
            {
                Touched(
                    m.values.get("PatientID") or "",
                    m.values.get("IssuerOfPatientID") or "",
                    m.values.get("StudyInstanceUID") or "",
                )
                for m in matches
            }
        )
        self.trail.event(
            QUERY,
            EXECUTE,
            "C-FIND",
            self.actor,
            touched=touched,
            outcome=MINOR_FAILURE if overflow else SUCCESS,
            status=f"0x{dimse.OUT_OF_RESOURCES:04X} more than {limit} matches" if overflow else "",
            detail={**self.detail, "level": level, "matches": len(matches), "query": self._keys()},
        )

    def refused(self, code: int, reason: str) -> None:
        """A query refused before the index was asked (best effort: it returns nothing)."""
        if self.actor is None:
            return
        with contextlib.suppress(AuditUnavailable):
            self.trail.event(
                QUERY,
                EXECUTE,
                "C-FIND",
                self.actor,
                outcome=MINOR_FAILURE,
                status=f"0x{code:04X} {reason}",
                detail={**self.detail, "query": self._keys()},
            )


class DailyPrune:
    """A running node's retention (audit.retain_days): prune once at start, then daily, on a
    thread of its own; a failure is logged and tried again the next day."""

    def __init__(
        self,
        trail: AuditTrail,
        retain_days: int,
        interval: float = 86400.0,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.trail = trail
        self.now = now
        self.retain_days = retain_days
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self.trail.enabled or not self.retain_days:
            return
        self._thread = threading.Thread(target=self._run, name="audit-prune", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval)

    def run_once(self) -> AuditRecord | None:
        """Prune what audit.retain_days no longer keeps; the checkpoint record, or None."""
        actor = dataclasses.replace(local_actor(), ae_title=self.trail.ae_title)
        try:
            record = self.trail.prune(prune_before(self.retain_days, self.now()), actor)
        except (IndexUnavailable, Conflict) as exc:
            log.error("audit records not pruned: %s", exc)
            return None
        if record is not None:
            log.info(
                "audit: pruned %s record(s) older than %d days",
                record.details.get("records"),
                self.retain_days,
            )
        return record
