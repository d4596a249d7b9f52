"""Index rows of Storage Commitment requests: kept until their report is delivered."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from .models import CommitmentRequest, Hospital, Instance, Series, Study, utcnow
from .records import CommitmentRecord, InstanceRecord, instance_record

PENDING = "pending"
DELIVERED = "delivered"
ABANDONED = "abandoned"

_UID_CHUNK = 500  # SQL parameters per IN (...) lookup


class CommitmentQueries:
    """Mixed into Index (repository.py)."""

    def add_commitment(
        self,
        requester: str,
        transaction_uid: str,
        references: str,
        reserved_until: datetime | None = None,
    ) -> int:
        """Record a request (durably: it is answered only after this commit) and return its
        id. Until `reserved_until` only the caller may claim it (reserved=True): the process
        holding the requesting association. The same requester repeating a Transaction UID
        replaces its earlier request: the report is made anew."""
        now = utcnow()
        fields = {
            CommitmentRequest.references: references,
            CommitmentRequest.result: None,
            CommitmentRequest.state: PENDING,
            CommitmentRequest.attempts: 0,
            CommitmentRequest.next_attempt_at: reserved_until or now,
            CommitmentRequest.last_error: "",
            CommitmentRequest.created_at: now,
            CommitmentRequest.delivered_at: None,
        }
        with self.session(write=True):
            CommitmentRequest.insert(
                requester=requester,
                transaction_uid=transaction_uid,
                **{field.name: value for field, value in fields.items()},
            ).on_conflict(
                conflict_target=[CommitmentRequest.requester, CommitmentRequest.transaction_uid],
                update=fields,
            ).execute()
            return (
                CommitmentRequest.select(CommitmentRequest.id)
                .where(
                    (CommitmentRequest.requester == requester)
                    & (CommitmentRequest.transaction_uid == transaction_uid)
                )
                .scalar()
            )

    def instances_by_uid(self, sop_uids: Iterable[str]) -> dict[str, InstanceRecord]:
        """The indexed instances among `sop_uids`, by SOP Instance UID."""
        uids = list(dict.fromkeys(sop_uids))
        found: dict[str, InstanceRecord] = {}
        with self.session():
            for start in range(0, len(uids), _UID_CHUNK):
                rows = (
                    Instance.select(Instance, Series.series_uid, Study.study_uid, Hospital.code)
                    .join(Series)
                    .join(Study)
                    .switch(Instance)
                    .join(Hospital)
                    .where(Instance.sop_uid.in_(uids[start : start + _UID_CHUNK]))
                )
                for row in rows:
                    found[row.sop_uid] = instance_record(row)
        return found

    def claim_commitment(
        self, commitment_id: int, until: datetime, *, reserved: bool = False
    ) -> CommitmentRecord | None:
        """Take a pending request for delivery until `until` (another worker or node skips it
        meanwhile); None when it is not pending or someone else holds it. `reserved`: the
        caller is the one add_commitment reserved it for."""
        condition = (CommitmentRequest.id == commitment_id) & (CommitmentRequest.state == PENDING)
        if not reserved:
            condition &= CommitmentRequest.next_attempt_at <= utcnow()
        with self.session(write=True):
            claimed = CommitmentRequest.update(next_attempt_at=until).where(condition).execute()
            if not claimed:
                return None
            return _record(CommitmentRequest.get_by_id(commitment_id))

    def release_commitment_claims(self) -> None:
        """Make every pending report due now: at start-up, so that a report a dead process
        was delivering goes out at once instead of when its claim expires. (With several
        nodes, one starting may deliver a report another is delivering: the requester then
        receives it twice, which is harmless; none is lost.)"""
        with self.session(write=True):
            CommitmentRequest.update(next_attempt_at=utcnow()).where(
                (CommitmentRequest.state == PENDING)
                & (CommitmentRequest.next_attempt_at > utcnow())
            ).execute()

    def due_commitments(self, limit: int = 100) -> list[int]:
        """Ids of pending requests whose next attempt has come, oldest first."""
        with self.session():
            query = (
                CommitmentRequest.select(CommitmentRequest.id)
                .where(
                    (CommitmentRequest.state == PENDING)
                    & (CommitmentRequest.next_attempt_at <= utcnow())
                )
                .order_by(CommitmentRequest.next_attempt_at, CommitmentRequest.id)
                .limit(limit)
            )
            return [row.id for row in query]

    def next_commitment_due(self) -> datetime | None:
        """When the earliest pending request falls due (None: nothing pending)."""
        with self.session():
            return (
                CommitmentRequest.select(CommitmentRequest.next_attempt_at)
                .where(CommitmentRequest.state == PENDING)
                .order_by(CommitmentRequest.next_attempt_at)
                .limit(1)
                .scalar()
            )

    def save_commitment_result(self, commitment_id: int, result: str) -> None:
        with self.session(write=True):
            CommitmentRequest.update(result=result).where(
                CommitmentRequest.id == commitment_id
            ).execute()

    def commitment_delivered(self, commitment_id: int) -> None:
        with self.session(write=True):
            CommitmentRequest.update(
                state=DELIVERED,
                delivered_at=utcnow(),
                attempts=CommitmentRequest.attempts + 1,
                last_error="",
            ).where(CommitmentRequest.id == commitment_id).execute()

    def commitment_not_delivered(
        self, commitment_id: int, error: str, retry_at: datetime | None
    ) -> None:
        """Record a failed delivery: try again at `retry_at`, or abandon when it is None."""
        fields = {"attempts": CommitmentRequest.attempts + 1, "last_error": error}
        if retry_at is None:
            fields["state"] = ABANDONED
        else:
            fields["next_attempt_at"] = retry_at
        with self.session(write=True):
            CommitmentRequest.update(**fields).where(
                CommitmentRequest.id == commitment_id
            ).execute()

    def commitments(
        self, *, state: str | None = None, limit: int | None = None
    ) -> list[CommitmentRecord]:
        """Requests (newest first), for the operator."""
        with self.session():
            query = CommitmentRequest.select().order_by(CommitmentRequest.id.desc()).limit(limit)
            if state is not None:
                query = query.where(CommitmentRequest.state == state)
            return [_record(row) for row in query]


def _record(row: CommitmentRequest) -> CommitmentRecord:
    return CommitmentRecord(
        id=row.id,
        requester=row.requester,
        transaction_uid=row.transaction_uid,
        references=row.references,
        result=row.result,
        state=row.state,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )
