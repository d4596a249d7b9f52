"""The audit trail's rows: records appended to each node's hash chain (rules/audit.py), the
C-STORE tallies sealed into records, the trail's questions, pruning and the export cursor."""

from __future__ import annotations

import dataclasses
import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import Database, fn

from ..rules.audit import (
    AUDIT_LOG_USED,
    CREATE,
    DATA_IMPORT,
    DELETE,
    GENESIS,
    INSTANCES_TRANSFERRED,
    MINOR_FAILURE,
    SERIOUS_FAILURE,
    SUCCESS,
    Actor,
    AuditEvent,
    AuditRecord,
    Checkpoint,
    Head,
    Touched,
    chained,
    timestamp,
)
from .session import Role
from .tables import (
    AuditChain,
    AuditRecordRow,
    AuditTouched,
    Instance,
    Patient,
    Series,
    Study,
)

_PAGE = 1000  # records read at a time when walking a chain


@dataclass(frozen=True)
class Tally:
    """What one stored instance adds to its association's count for its study."""

    node: str
    actor: Actor
    study_uid: str
    patient_id: str
    issuer: str
    kind: str = "transfer"  # or 'import'


@dataclass(frozen=True)
class AuditFilter:
    """The questions `archive-node audit` asks of the trail; None or '' asks nothing."""

    patient_id: str = ""
    issuer: str | None = None
    study_uid: str = ""
    ae_title: str = ""
    hospital: str = ""
    event: str = ""
    since: str = ""  # a timestamp(): records at or after it
    until: str = ""  # records before it
    limit: int = 1000


# -- the C-STORE hot path: one statement in the instance's own transaction -------------------

_COUNT = """
INSERT INTO audit_tally (node, session, study_uid, patient_id, issuer, kind, ae_title, hospital,
                         address, user_name, stored, failed, status, started, process)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (session, study_uid) DO UPDATE SET
    stored = audit_tally.stored + excluded.stored,
    failed = audit_tally.failed + excluded.failed,
    status = CASE WHEN excluded.status = '' THEN audit_tally.status ELSE excluded.status END"""

# Writing a record, in hand-written SQL through the role's own database (as instance_insert.py):
# peewee's statement building cost more than the commit, and every write of a transaction goes
# through the connection that holds it.
_HEAD = "SELECT seq, hash FROM audit_chain WHERE node = ?"
_NEW_CHAIN = """
INSERT INTO audit_chain (node, seq, hash, pruned_seq, pruned_hash, sent_seq)
VALUES (?, 0, ?, 0, ?, 0) ON CONFLICT DO NOTHING"""
RECORD_COLUMNS = (
    "node",
    "seq",
    "time",
    "event",
    "event_code",
    "event_type",
    "action",
    "operation",
    "outcome",
    "status",
    "session",
    "ae_title",
    "hospital",
    "address",
    "user_name",
    "destination",
    "detail",
    "prev_hash",
    "hash",
)
_NEW_RECORD = (
    f"INSERT INTO audit_record ({', '.join(RECORD_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(RECORD_COLUMNS))})"
)
_NEW_TOUCHED = (
    "INSERT INTO audit_touched (record_id, patient_id, issuer, study_uid, instances) VALUES "
)
_TOUCHED_ROWS = 200  # rows per INSERT: psycopg2's executemany is a round trip per row
_MOVE_HEAD = "UPDATE audit_chain SET seq = ?, hash = ? WHERE node = ?"
_TALLIES = """
SELECT id, session, study_uid, patient_id, issuer, kind, ae_title, hospital, address,
       user_name, stored, failed, status, started
FROM audit_tally WHERE node = ?"""
_DROP_TALLY = "DELETE FROM audit_tally WHERE id = ?"
_MARK_SENT = "UPDATE audit_chain SET sent_seq = ? WHERE node = ? AND sent_seq < ?"

_statements: dict[tuple[str, str], str] = {}


def _sql(db: Database, template: str) -> str:
    """`template` (written with ? placeholders) in the backend's parameter style."""
    key = (db.param, template)
    sql = _statements.get(key)
    if sql is None:
        sql = _statements[key] = template.replace("?", db.param)
    return sql


def _run(db: Database, template: str, params: Sequence[Any]) -> Any:
    return db.execute_sql(_sql(db, template), tuple(params))


def _insert_touched(db: Database, record_id: int, touched: Sequence[Touched]) -> None:
    """The patients and studies of one record, a multi-row INSERT per _TOUCHED_ROWS."""
    for start in range(0, len(touched), _TOUCHED_ROWS):
        chunk = touched[start : start + _TOUCHED_ROWS]
        values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
        params = [
            value
            for t in chunk
            for value in (record_id, t.patient_id, t.issuer, t.study_uid, t.instances)
        ]
        _run(db, _NEW_TOUCHED + values, params)


_process: tuple[int, str] = (0, "")


def this_process() -> str:
    """host:pid of the process counting: a worker that dies leaves tallies its successor
    can tell from a live process's. Worked out once per process (a fork gets its own)."""
    global _process
    pid = os.getpid()
    if _process[0] != pid:
        _process = (pid, f"{socket.gethostname()}:{pid}")
    return _process[1]


def count_store(
    db: Database, tally: Tally, *, stored: int = 1, failed: int = 0, status: str = ""
) -> None:
    """Count a stored (or failed) instance in its tally, in the caller's transaction."""
    actor = tally.actor
    db.execute_sql(
        _sql(db, _COUNT),
        (
            tally.node,
            actor.session,
            tally.study_uid,
            tally.patient_id,
            tally.issuer,
            tally.kind,
            actor.ae_title,
            actor.hospital,
            actor.address,
            actor.user,
            stored,
            failed,
            status,
            timestamp(),
            this_process(),
        ),
    )


class AuditRows(Role):
    """The trail's records: appended in chains, sealed from tallies, asked, walked, pruned."""

    # -- writing ---------------------------------------------------------------------------

    def append(self, node: str, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Add `events` to the end of `node`'s chain in one durable commit. Raises
        IndexUnavailable (nothing written)."""
        with self.session(write=True):
            return self._append(node, events)

    def _append(self, node: str, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """In the caller's transaction: the chain head is locked (PostgreSQL; SQLite's
        BEGIN IMMEDIATE serialises every writer), so concurrent writers of one node (threads,
        worker processes) each get the next number."""
        if not events:
            return []
        db = self.db
        head = self._head(node)
        if head is None:  # the node's first record starts its chain (once, whoever races)
            _run(db, _NEW_CHAIN, (node, GENESIS, GENESIS))
            head = self._head(node)
            assert head is not None  # just inserted, or by the writer that raced us
        seq, prev = head
        now = timestamp()
        postgres = bool(db.for_update)  # RETURNING the new id; SQLite gives lastrowid
        insert = _sql(db, _NEW_RECORD) + (" RETURNING id" if postgres else "")
        records = []
        for event in events:
            seq += 1
            record = chained(event, node=node, seq=seq, prev_hash=prev, time=now)
            columns = _columns(record)
            cursor = db.execute_sql(insert, tuple(columns[c] for c in RECORD_COLUMNS))
            record_id = cursor.fetchone()[0] if postgres else cursor.lastrowid
            _insert_touched(db, record_id, record.touched)
            records.append(record)
            prev = record.hash
        _run(db, _MOVE_HEAD, (seq, prev, node))
        return records

    def _head(self, node: str) -> tuple[int, str] | None:
        """The chain's last number and hash, locked until the transaction ends (PostgreSQL)."""
        sql = _sql(self.db, _HEAD) + (" FOR UPDATE" if self.db.for_update else "")
        row = self.db.execute_sql(sql, (node,)).fetchone()
        return (int(row[0]), str(row[1])) if row else None

    def count(self, tally: Tally, *, stored: int = 1, failed: int = 0, status: str = "") -> None:
        """Count an instance in its tally in a transaction of its own (a resend, a failure)."""
        with self.session(write=True):
            count_store(self.db, tally, stored=stored, failed=failed, status=status)

    def seal(
        self, node: str, session: str | None = None, *, process: str | None = None
    ) -> list[AuditRecord]:
        """Turn `node`'s tallies (of one association or command run, of one process that
        died, or all of them after a crash) into records, one per study, and remove them, in
        one commit."""
        with self.session(write=True):
            template, params = _TALLIES, [node]
            for column, value in (("session", session), ("process", process)):
                if value is not None:
                    template += f" AND {column} = ?"
                    params.append(value)
            tallies = [_Tallied(*row) for row in _run(self.db, template + " ORDER BY id", params)]
            if not tallies:
                return []
            records = self._append(node, [_sealed(t) for t in tallies])
            self.db.cursor().executemany(_sql(self.db, _DROP_TALLY), [(t.id,) for t in tallies])
            return records

    def tally_processes(self, node: str) -> list[str]:
        """The processes (host:pid) with tallies of `node` not yet sealed."""
        with self.session():
            rows = _run(
                self.db, "SELECT DISTINCT process FROM audit_tally WHERE node = ?", (node,)
            )
            return [str(process) for (process,) in rows]

    def instances_touched(self, sop_uids: Sequence[str]) -> list[Touched]:
        """The patients and studies of indexed instances, each with how many of them (a
        Storage Commitment's references); unknown UIDs touch nobody."""
        counts: dict[Touched, int] = {}
        with self.session():
            for start in range(0, len(sop_uids), 500):
                rows: Any = (
                    Instance.select(Patient.patient_id, Patient.issuer, Study.study_uid)
                    .join(Series)
                    .join(Study)
                    .join(Patient, on=(Study.patient == Patient.id))
                    .where(Instance.sop_uid.in_(list(sop_uids[start : start + 500])))
                    .tuples()
                )
                for patient_id, issuer, study_uid in rows:
                    key = Touched(patient_id, issuer, study_uid)
                    counts[key] = counts.get(key, 0) + 1
        return sorted(dataclasses.replace(k, instances=n) for k, n in counts.items())

    # -- asking ----------------------------------------------------------------------------

    def query(self, question: AuditFilter) -> list[AuditRecord]:
        """Records matching every condition of `question`, newest first."""
        with self.session():
            select = AuditRecordRow.select()
            touched = AuditTouched.select(AuditTouched.record)
            touched_where = []
            if question.patient_id:
                touched_where.append(AuditTouched.patient_id == question.patient_id)
                if question.issuer is not None:
                    touched_where.append(AuditTouched.issuer == question.issuer)
            if question.study_uid:
                touched_where.append(AuditTouched.study_uid == question.study_uid)
            conditions = []
            if touched_where:
                conditions.append(AuditRecordRow.id.in_(touched.where(*touched_where)))
            if question.ae_title:
                conditions.append(AuditRecordRow.ae_title == question.ae_title)
            if question.hospital:
                conditions.append(AuditRecordRow.hospital == question.hospital)
            if question.event:
                conditions.append(fn.LOWER(AuditRecordRow.event) == question.event.lower())
            if question.since:
                conditions.append(AuditRecordRow.time >= question.since)
            if question.until:
                conditions.append(AuditRecordRow.time < question.until)
            if conditions:
                select = select.where(*conditions)
            rows: list[Any] = list(
                select.order_by(AuditRecordRow.time.desc(), AuditRecordRow.id.desc())
                .limit(question.limit)
                .dicts()
            )
            return self._records(rows)

    def nodes(self) -> list[str]:
        """Every node with a chain in this index."""
        with self.session():
            nodes: Any = AuditChain.select(AuditChain.node).tuples()
            return [str(n) for (n,) in nodes]

    def chain(self, node: str) -> tuple[Checkpoint | None, Head | None, Iterator[AuditRecord]]:
        """Where `node`'s chain starts (after pruning), its head, and its records in order
        (read a page at a time)."""
        with self.session():
            row = AuditChain.get_or_none(AuditChain.node == node)
        if row is None:
            return None, None, iter(())
        start = Checkpoint(int(row.pruned_seq), str(row.pruned_hash)) if row.pruned_seq else None
        return start, Head(int(row.seq), str(row.hash)), self._walk(node)

    def _walk(self, node: str) -> Iterator[AuditRecord]:
        after = -1
        while True:
            with self.session():
                rows: list[Any] = list(
                    AuditRecordRow.select()
                    .where((AuditRecordRow.node == node) & (AuditRecordRow.seq > after))
                    .order_by(AuditRecordRow.seq, AuditRecordRow.id)
                    .limit(_PAGE)
                    .dicts()
                )
                records = self._records(rows)
            yield from records
            if len(rows) < _PAGE:
                return
            after = records[-1].seq

    def _records(self, rows: list[dict[str, Any]]) -> list[AuditRecord]:
        """Records of rows, with the patients and studies each touched."""
        touched: dict[int, list[Touched]] = {row["id"]: [] for row in rows}
        ids = list(touched)
        for start in range(0, len(ids), 500):
            chunk: Any = (
                AuditTouched.select(
                    AuditTouched.record,
                    AuditTouched.patient_id,
                    AuditTouched.issuer,
                    AuditTouched.study_uid,
                    AuditTouched.instances,
                )
                .where(AuditTouched.record.in_(ids[start : start + 500]))
                .tuples()
            )
            for record_id, *values in chunk:
                touched[record_id].append(Touched(*values))
        return [_record(row, touched[row["id"]]) for row in rows]

    # -- pruning and export ----------------------------------------------------------------

    def prune(
        self, node: str, before: str, actor: Actor, *, keep_unsent: bool = False
    ) -> AuditRecord | None:
        """Remove `node`'s records older than `before` (a timestamp()), with `keep_unsent`
        none the export has still to send; the checkpoint record appended says how many and
        keeps the hash of the last one removed, which is where verification starts."""
        with self.session(write=True):
            chain = _run(self.db, "SELECT sent_seq FROM audit_chain WHERE node = ?", (node,))
            sent = chain.fetchone()
            if sent is None:
                return None
            old = "node = ? AND time < ?" + (" AND seq <= ?" if keep_unsent else "")
            params = (node, before, sent[0]) if keep_unsent else (node, before)
            last = _run(
                self.db,
                f"SELECT seq, hash FROM audit_record WHERE {old} ORDER BY seq DESC LIMIT 1",
                params,
            ).fetchone()
            if last is None:
                return None
            seq, hash_ = int(last[0]), str(last[1])
            upto = "node = ? AND seq <= ?"
            (removed,) = _run(
                self.db, f"SELECT COUNT(*) FROM audit_record WHERE {upto}", (node, seq)
            ).fetchone()
            _run(
                self.db,
                f"DELETE FROM audit_touched WHERE record_id IN "
                f"(SELECT id FROM audit_record WHERE {upto})",
                (node, seq),
            )
            _run(self.db, f"DELETE FROM audit_record WHERE {upto}", (node, seq))
            _run(
                self.db,
                "UPDATE audit_chain SET pruned_seq = ?, pruned_hash = ? WHERE node = ?",
                (seq, hash_, node),
            )
            checkpoint = AuditEvent(
                kind=AUDIT_LOG_USED,
                action=DELETE,
                operation="audit prune",
                actor=actor,
                detail={
                    "pruned_through": seq,
                    "pruned_hash": hash_,
                    "records": int(removed),
                    "before": before,
                },
            )
            return self._append(node, [checkpoint])[0]

    def unsent(self, node: str, limit: int) -> list[AuditRecord]:
        """`node`'s records not yet exported, in order (the outbox is the trail itself)."""
        with self.session():
            sent = (
                AuditChain.select(AuditChain.sent_seq).where(AuditChain.node == node).scalar() or 0
            )
            rows: list[Any] = list(
                AuditRecordRow.select()
                .where((AuditRecordRow.node == node) & (AuditRecordRow.seq > sent))
                .order_by(AuditRecordRow.seq)
                .limit(limit)
                .dicts()
            )
            return self._records(rows)

    def mark_sent(self, node: str, seq: int) -> None:
        """Records of `node` up to `seq` have reached the repository."""
        with self.session(write=True):
            _run(self.db, _MARK_SENT, (seq, node, seq))

    def unsent_count(self, node: str) -> int:
        """How many of `node`'s records the export has still to send."""
        with self.session():
            row = AuditChain.get_or_none(AuditChain.node == node)
            return int(row.seq - row.sent_seq) if row else 0


@dataclass(frozen=True)
class _Tallied:
    """One row of audit_tally, in _TALLIES's column order."""

    id: int
    session: str
    study_uid: str
    patient_id: str
    issuer: str
    kind: str
    ae_title: str
    hospital: str
    address: str
    user_name: str
    stored: int
    failed: int
    status: str
    started: str


def _sealed(tally: _Tallied) -> AuditEvent:
    """The record of one tally: instances of one study stored over one association."""
    stored, failed = int(tally.stored), int(tally.failed)
    outcome = SUCCESS if not failed else MINOR_FAILURE if stored else SERIOUS_FAILURE
    imported = tally.kind == "import"
    return AuditEvent(
        kind=DATA_IMPORT if imported else INSTANCES_TRANSFERRED,
        action=CREATE,
        operation="import" if imported else "C-STORE",
        actor=Actor(
            session=tally.session,
            ae_title=tally.ae_title,
            hospital=tally.hospital,
            address=tally.address,
            user=tally.user_name,
        ),
        outcome=outcome,
        status=tally.status if failed else "",
        touched=(Touched(tally.patient_id, tally.issuer, tally.study_uid, stored),),
        detail={"stored": stored, "failed": failed, "started": tally.started},
    )


_RENAMED = {"user_name": "user"}


def _columns(record: AuditRecord) -> dict[str, Any]:
    values = dataclasses.asdict(record)
    del values["touched"]
    values["user_name"] = values.pop("user")
    return values


def _record(row: dict[str, Any], touched: Iterable[Touched]) -> AuditRecord:
    values = {_RENAMED.get(k, k): v for k, v in row.items() if k != "id"}
    values["seq"] = int(values["seq"])
    values["outcome"] = int(values["outcome"])
    return AuditRecord(**values, touched=tuple(sorted(touched)))
