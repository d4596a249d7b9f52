"""Corrections as the operator makes them: patient updates and merges, study moves, issuer
changes, rejections and restores, deletions and the lifecycle that deletes what is due; each
audited, journaled beside the store, and never rewriting a stored file.

The journal (`<storage.path>/corrections.jsonl`, one JSON object per line, appended and fsynced
after the index commit; an entry not yet there is appended by the next correction, lifecycle run
or node start) is what `reindex` replays onto an index rebuilt from the files alone, so that a
lost index does not lose a correction.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .auditing import AuditTrail, local_actor, new_session
from .config import Config
from .dicom.values import is_valid_uid
from .errors import Conflict, IndexUnavailable, InvalidInput, NotFound
from .index import Index
from .index.clock import utcnow
from .index.corrections import Frame
from .rules.access import Peer, visible_hospital
from .rules.audit import (
    DELETE,
    INSTANCES_ACCESSED,
    PATIENT_RECORD,
    STUDY_DELETED,
    UPDATE,
    Actor,
    AuditEvent,
)
from .rules.corrections import (
    Change,
    Demographics,
    check_demographics,
    check_patient_id,
    check_reason,
)
from .rules.rejection import (
    KOS_SOP_CLASS,
    NotANote,
    RejectionNote,
    read_rejection_note,
    rejection_code,
)
from .storage import CORRECTIONS_JOURNAL, FilesystemStorage

log = logging.getLogger(__name__)

LIFECYCLE_INTERVAL = 60.0  # seconds between a running node's lifecycle runs
LEVELS = ("study", "series", "instance")

# What kind of audit event each correction is (PS3.15 A.5.3), and its action.
_EVENTS = {
    "patient update": (PATIENT_RECORD, UPDATE),
    "patient merge": (PATIENT_RECORD, UPDATE),
    "issuer change": (PATIENT_RECORD, UPDATE),
    "study move": (INSTANCES_ACCESSED, UPDATE),
    "reject": (INSTANCES_ACCESSED, UPDATE),
    "restore": (INSTANCES_ACCESSED, UPDATE),
    "study delete": (STUDY_DELETED, DELETE),
    "series delete": (STUDY_DELETED, DELETE),
    "instance delete": (STUDY_DELETED, DELETE),
    "lifecycle delete": (STUDY_DELETED, DELETE),
}


class Corrections:
    """Every correction of the index, with its record, its journal entry and its files."""

    def __init__(
        self, config: Config, index: Index, storage: FilesystemStorage, audit: AuditTrail
    ) -> None:
        self.config = config
        self.index = index
        self.storage = storage
        self.audit = audit
        self._journal_lock = threading.Lock()

    @property
    def journal(self) -> Path:
        return self.storage.root / CORRECTIONS_JOURNAL

    def frame(
        self,
        reason: str,
        *,
        dry_run: bool = False,
        user: str | None = None,
        actor: Actor | None = None,
    ) -> Frame:
        """Who corrects (the operating system user; `user`, the node itself; `actor`, an AE
        over its association) and how it is recorded. Raises InvalidInput for a missing or
        malformed reason."""
        if actor is None:
            actor = local_actor()
            if user is not None:
                actor = dataclasses.replace(actor, user=user, ae_title=self.audit.ae_title)
        reason = check_reason(reason)

        def events(change: Change) -> Sequence[AuditEvent]:
            kind, action = _EVENTS[change.kind]
            return [
                AuditEvent(
                    kind,
                    action,
                    change.kind,
                    actor,
                    touched=change.touched,
                    detail=change.detail(reason),
                )
            ]

        record = (self.audit.node, events) if self.audit.enabled else None
        return Frame(reason, actor.user or actor.ae_title, dry_run=dry_run, record=record)

    # -- rejection notes (IHE IOCM) -----------------------------------------------------------

    def pending_note(
        self, header: Any, received: Path, size: int, peer: Peer, actor: Actor | None
    ) -> PendingNote | None:
        """For a KOS that is a valid rejection note (rules/rejection.py): what rejects its
        references in the commit that indexes it. None for any other instance; a KOS that
        means to be a rejection note but is not valid is stored as an ordinary KOS, with a
        warning."""
        if header.sop_class_uid != KOS_SOP_CLASS:
            return None
        parsed = read_rejection_note(received, size)
        if isinstance(parsed, NotANote):
            if parsed.reason:
                log.warning(
                    "KOS %s from %s is not a valid rejection note (%s): stored as an "
                    "ordinary KOS, nothing rejected",
                    header.sop_instance_uid,
                    peer.ae_title,
                    parsed.reason,
                )
            return None
        actor = actor or Actor(new_session(), ae_title=peer.ae_title, hospital=peer.hospital)
        frame = self.frame(
            f"rejection note {parsed.sop_uid} from {peer.ae_title}: {parsed.meaning}",
            actor=actor,
        )
        return PendingNote(self, parsed, peer, frame)

    # -- the operations -----------------------------------------------------------------------

    def update_patient(
        self,
        patient_id: str,
        issuer: str | None,
        *,
        name: str | None,
        birth_date: str | None,
        sex: str | None,
        frame: Frame,
    ) -> Change:
        name, birth_date, sex = check_demographics(name, birth_date, sex)
        if name is None and birth_date is None and sex is None:
            raise InvalidInput("give --name, --birth-date or --sex: nothing to change")
        return self._done(
            self.index.corrections.update_patient(
                _identity(patient_id, issuer),
                name=name,
                birth_date=birth_date,
                sex=sex,
                frame=frame,
            ),
            frame,
        )

    def merge_patients(
        self,
        patient_id: str,
        issuer: str | None,
        into_id: str,
        into_issuer: str | None,
        *,
        frame: Frame,
    ) -> Change:
        return self._done(
            self.index.corrections.merge_patients(
                _identity(patient_id, issuer), _identity(into_id, into_issuer), frame=frame
            ),
            frame,
        )

    def move_study(
        self,
        study_uid: str,
        patient_id: str,
        issuer: str | None,
        *,
        name: str | None = None,
        birth_date: str | None = None,
        sex: str | None = None,
        frame: Frame,
    ) -> Change:
        name, birth_date, sex = check_demographics(name, birth_date, sex)
        create = Demographics(name, birth_date or "", sex or "") if name is not None else None
        return self._done(
            self.index.corrections.move_study(
                study_uid, _identity(patient_id, issuer), create=create, frame=frame
            ),
            frame,
        )

    def change_issuer(self, code: str, issuer: str, *, merge: bool, frame: Frame) -> Change:
        issuer = check_patient_id(issuer, "--issuer")
        return self._done(
            self.index.corrections.change_issuer(code, issuer, merge=merge, frame=frame), frame
        )

    def reject(self, uids: Sequence[str], code: str, *, frame: Frame) -> Change:
        return self._done(
            self.index.corrections.reject(
                _uids(uids),
                rejection_code(code),
                delete_after_days=self.config.lifecycle.delete_rejected_after,
                frame=frame,
            ),
            frame,
        )

    def restore(self, uids: Sequence[str], *, frame: Frame) -> Change:
        return self._done(self.index.corrections.restore(_uids(uids), frame=frame), frame)

    def delete(self, level: str, uid: str, *, frame: Frame) -> Change:
        if level not in LEVELS:
            raise InvalidInput(f"level is one of {', '.join(LEVELS)}")
        (uid,) = _uids([uid])
        change = self.index.corrections.delete(level, uid, frame=frame)
        if not frame.dry_run:
            self._remove(change.paths)
        return self._done(change, frame)

    def run_lifecycle(self, now: datetime | None = None) -> list[Change]:
        """Delete the files of rejected instances that are due (lifecycle.delete_rejected_after),
        in batches until none is left; their rows stay without a file."""
        now = now or utcnow()
        frame = self.frame("lifecycle.delete_rejected_after", user="lifecycle")
        changes = []
        while True:
            change = self.index.corrections.delete_due(now=now, frame=frame)
            if change is None:
                break
            self._remove(change.paths)
            changes.append(change)
            log.info("lifecycle: %s", change.summary)
        self.flush_journal()
        return changes

    def _done(self, change: Change, frame: Frame) -> Change:
        if not frame.dry_run:
            log.info("correction: %s (by %s)", change.kind, frame.user)
            self.flush_journal()
        return change

    def _remove(self, paths: Sequence[str]) -> None:
        """Remove deleted instances' files; one that cannot be is logged (its row is gone or
        says deleted, so verify and reindex know it is no image)."""
        for path in paths:
            try:
                self.storage.remove(path)
            except (OSError, InvalidInput) as exc:
                log.error("deleted instance's file %s not removed: %s", path, exc)

    # -- the journal ---------------------------------------------------------------------------

    def flush_journal(self) -> int:
        """Append the corrections the journal lacks (fsynced), then mark them journaled.
        Logged, never raised: the index holds them until the next flush."""
        with self._journal_lock:
            try:
                entries = self.index.corrections.unjournaled()
                if not entries:
                    return 0
                lines = "".join(json.dumps(e, sort_keys=True) + "\n" for e in entries)
                fd = os.open(self.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # several nodes may share one store
                    os.write(fd, lines.encode())
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.index.corrections.mark_journaled([e["uid"] for e in entries])
                return len(entries)
            except (OSError, IndexUnavailable) as exc:
                log.error("corrections journal not written (kept in the index): %s", exc)
                return 0

    def journal_entries(self) -> list[dict[str, Any]]:
        """The journal's entries, each once, in order; a torn last line (a crash while
        appending) is skipped."""
        if not self.journal.exists():
            return []
        seen: set[str] = set()
        entries = []
        with open(self.journal, encoding="utf-8") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    log.warning("corrections journal: an unreadable line skipped")
                    continue
                if entry.get("uid") in seen:
                    continue
                seen.add(entry["uid"])
                entries.append(entry)
        return entries

    def replay_journal(self) -> tuple[int, list[str]]:
        """Apply the journal's corrections that the index lacks, in order (after a reindex
        rebuilt it from the files); (applied, problems)."""
        entries = self.journal_entries()
        known = self.index.corrections.known(e["uid"] for e in entries)
        applied, problems = 0, []
        for entry in entries:
            if entry["uid"] in known:
                continue
            try:
                self._replay(entry)
                applied += 1
            except (NotFound, InvalidInput, Conflict) as exc:
                problems.append(f"{entry['kind']} of {entry['time']}: {exc}")
        return applied, problems

    def _replay(self, entry: dict[str, Any]) -> None:
        operation = dict(entry["detail"].get("operation") or {})
        frame = Frame(
            entry["reason"],
            entry["user"],
            replayed={"uid": entry["uid"], "time": entry["time"]},
        )
        rows = self.index.corrections
        op = operation.pop("op", "")
        if op == "update_patient":
            rows.update_patient(tuple(operation.pop("patient")), frame=frame, **operation)
        elif op == "merge_patients":
            create = operation.get("create_target")
            rows.merge_patients(
                tuple(operation["source"]),
                tuple(operation["target"]),
                frame=frame,
                create_target=Demographics(**create) if create else None,
            )
        elif op == "change_issuer":
            rows.change_issuer(
                operation["code"], operation["issuer"], merge=operation["merge"], frame=frame
            )
        elif op == "move_study":
            create = operation["create"]
            rows.move_study(
                operation["study_uid"],
                tuple(operation["target"]),
                create=Demographics(**create) if create else None,
                frame=frame,
            )
        elif op == "reject":
            rows.reject(
                operation["uids"],
                operation["code"],
                delete_after_days=operation["delete_after_days"],
                frame=frame,
            )
        elif op == "restore":
            rows.restore(operation["uids"], frame=frame)
        elif op == "delete":
            change = rows.delete(operation["level"], operation["uid"], frame=frame)
            self._remove(change.paths)  # files a failed removal left, back in by the reindex
        elif op == "delete_due":
            # the files are gone: any row a leftover file brought back is rejected and deleted
            rows.reject(operation["uids"], "113039", delete_after_days=0, frame=frame)
        else:
            raise InvalidInput(f"unknown operation {op!r}")


class PendingNote:
    """A rejection note being stored: `apply` runs in the transaction that indexes it."""

    def __init__(
        self, corrections: Corrections, note: RejectionNote, peer: Peer, frame: Frame
    ) -> None:
        self.corrections = corrections
        self.note = note
        self.peer = peer
        self.frame = frame
        self.outcome: Change | str | None = None

    def apply(self) -> None:
        """Raises StoreRejected (REJECTION_FAILED): the note is not stored either."""
        self.outcome = self.corrections.index.corrections.apply_note_in_transaction(
            self.note,
            hospital=visible_hospital(self.peer),
            delete_after_days=self.corrections.config.lifecycle.delete_rejected_after,
            frame=self.frame,
        )

    def applied(self) -> None:
        """Once committed: say what it did, and journal it."""
        if isinstance(self.outcome, Change):
            log.info(
                "rejection note %s from %s (%s): %s",
                self.note.sop_uid,
                self.peer.ae_title,
                self.note.code,
                self.outcome.summary,
            )
            self.corrections.flush_journal()
        elif self.outcome:
            log.warning(
                "rejection note %s from %s rejects nothing: %s; stored as an ordinary KOS",
                self.note.sop_uid,
                self.peer.ae_title,
                self.outcome,
            )


def _identity(patient_id: str, issuer: str | None) -> tuple[str, str | None]:
    return (
        check_patient_id(patient_id, "patient ID"),
        None if issuer is None else check_patient_id(issuer, "--issuer"),
    )


def _uids(uids: Sequence[str]) -> list[str]:
    cleaned = [uid.strip() for uid in uids]
    if not cleaned:
        raise InvalidInput("give at least one UID")
    for uid in cleaned:
        if not is_valid_uid(uid):
            raise InvalidInput(f"not a UID (digits and dots, at most 64 characters): {uid!r}")
    return cleaned


class Lifecycle:
    """A running node's deletion of what is due (lifecycle.delete_rejected_after): every
    minute, on a thread of its own; a failure is logged and tried again the next minute."""

    def __init__(
        self,
        corrections: Corrections,
        interval: float | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.corrections = corrections
        self.interval = LIFECYCLE_INTERVAL if interval is None else interval
        self.now = now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lifecycle", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.corrections.run_lifecycle(self.now() if self.now else None)
            except (IndexUnavailable, Conflict) as exc:
                log.error("lifecycle run failed: %s", exc)
            except Exception:  # the thread goes on: the next minute tries again
                log.exception("lifecycle run failed")
            self._stop.wait(self.interval)
