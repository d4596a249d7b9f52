"""Index rows of Storage Commitment requests: kept until their report is delivered.

A row is worked on by one claimant at a time (a node, named host:port), until its claim runs
out (`next_attempt_at`). Each new request under the same Transaction UID and each claim bumps
the row's generation, and every later write names the generation it was given: a worker whose
claim ran out, or whose request was replaced meanwhile, changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from peewee import Field, fn

from .clock import utcnow
from .records import CommitmentRecord
from .session import Role
from .tables import CommitmentRequest

PENDING = "pending"
DELIVERED = "delivered"
ABANDONED = "abandoned"


class CommitmentRows(Role):
    """The Storage Commitment requests, from their N-ACTION to their delivered report."""

    def add(
        self,
        requester: str,
        transaction_uid: str,
        references: str,
        *,
        claimant: str,
        claimed_until: datetime,
    ) -> CommitmentRecord:
        """Record a request (durably: it is answered only after this commit), claimed by
        `claimant` (the node holding the requesting association). The same requester repeating
        a Transaction UID replaces its earlier request: the report is made anew."""
        fields: dict[Field[Any], Any] = {
            CommitmentRequest.references: references,
            CommitmentRequest.result: None,
            CommitmentRequest.state: PENDING,
            CommitmentRequest.attempts: 0,
            CommitmentRequest.next_attempt_at: claimed_until,
            CommitmentRequest.claimed_by: claimant,
            CommitmentRequest.last_error: "",
            CommitmentRequest.created_at: utcnow(),
            CommitmentRequest.delivered_at: None,
        }
        key = (CommitmentRequest.requester == requester) & (
            CommitmentRequest.transaction_uid == transaction_uid
        )
        with self.session(write=True):
            CommitmentRequest.insert(
                requester=requester,
                transaction_uid=transaction_uid,
                generation=1,
                **{field.name: value for field, value in fields.items()},
            ).on_conflict(
                conflict_target=[CommitmentRequest.requester, CommitmentRequest.transaction_uid],
                update={**fields, CommitmentRequest.generation: CommitmentRequest.generation + 1},
            ).execute()
            return _record(CommitmentRequest.get(key))

    def claim(self, commitment_id: int, claimant: str, until: datetime) -> CommitmentRecord | None:
        """Take a due request for delivery until `until`; None when it is not pending, not due
        or someone else took it."""
        with self.session(write=True):
            claimed = (
                CommitmentRequest.update(
                    next_attempt_at=until,
                    claimed_by=claimant,
                    generation=CommitmentRequest.generation + 1,
                )
                .where(
                    (CommitmentRequest.id == commitment_id)
                    & (CommitmentRequest.state == PENDING)
                    & (CommitmentRequest.next_attempt_at <= utcnow())
                )
                .execute()
            )
            if not claimed:
                return None
            return _record(CommitmentRequest.get_by_id(commitment_id))

    def release_claims(self, claimant: str) -> None:
        """At `claimant`'s start-up, make due now the pending requests it held (a report a
        crashed node was delivering goes out at once, not when its claim runs out) and those
        nobody holds (a restart is a retry: what kept them back may have been fixed). Claims
        of other nodes on the same index stay theirs."""
        with self.session(write=True):
            CommitmentRequest.update(next_attempt_at=utcnow(), claimed_by="").where(
                (CommitmentRequest.state == PENDING)
                & CommitmentRequest.claimed_by.in_([claimant, ""])
            ).execute()

    def hand_over(self, record: CommitmentRecord) -> bool:
        """Give up a claim so that the report is due now for any worker; False when the row
        has moved on (a newer request or claim)."""
        with self.session(write=True):
            return bool(
                CommitmentRequest.update(next_attempt_at=utcnow(), claimed_by="")
                .where(_current(record))
                .execute()
            )

    def due(self, limit: int = 100) -> list[tuple[int, str]]:
        """(id, requester) of pending requests whose next attempt has come, oldest first."""
        with self.session():
            query = (
                CommitmentRequest.select(CommitmentRequest.id, CommitmentRequest.requester)
                .where(
                    (CommitmentRequest.state == PENDING)
                    & (CommitmentRequest.next_attempt_at <= utcnow())
                )
                .order_by(CommitmentRequest.next_attempt_at, CommitmentRequest.id)
                .limit(limit)
            )
            return list(cast(Iterable[tuple[int, str]], query.tuples()))

    def pending_count(self) -> int:
        """Reports not yet delivered (the metrics' gauge)."""
        with self.session():
            return CommitmentRequest.select().where(CommitmentRequest.state == PENDING).count()

    def next_due(self) -> datetime | None:
        """When the earliest pending request falls due (None: nothing pending)."""
        with self.session():
            return (
                CommitmentRequest.select(fn.MIN(CommitmentRequest.next_attempt_at))
                .where(CommitmentRequest.state == PENDING)
                .scalar()
            )

    def save_result(self, record: CommitmentRecord, result: str) -> bool:
        with self.session(write=True):
            return bool(CommitmentRequest.update(result=result).where(_current(record)).execute())

    def delivered(self, record: CommitmentRecord) -> bool:
        with self.session(write=True):
            return bool(
                CommitmentRequest.update(
                    state=DELIVERED,
                    delivered_at=utcnow(),
                    attempts=CommitmentRequest.attempts + 1,
                    last_error="",
                    claimed_by="",
                )
                .where(_current(record))
                .execute()
            )

    def not_delivered(
        self, record: CommitmentRecord, error: str, retry_at: datetime | None
    ) -> bool:
        """Record a failed delivery: try again at `retry_at`, or abandon when it is None."""
        fields = {
            "attempts": CommitmentRequest.attempts + 1,
            "last_error": error,
            "claimed_by": "",
        }
        if retry_at is None:
            fields["state"] = ABANDONED
        else:
            fields["next_attempt_at"] = retry_at
        with self.session(write=True):
            return bool(CommitmentRequest.update(**fields).where(_current(record)).execute())

    def postpone(self, requester: str, until: datetime) -> None:
        """Put off the pending reports to `requester` that would fall due before `until` (a
        delivery to it has just failed: the others would only wait out the same timeouts)."""
        with self.session(write=True):
            CommitmentRequest.update(next_attempt_at=until).where(
                (CommitmentRequest.requester == requester)
                & (CommitmentRequest.state == PENDING)
                & (CommitmentRequest.claimed_by == "")
                & (CommitmentRequest.next_attempt_at < until)
            ).execute()

    def listing(
        self, *, state: str | None = None, limit: int | None = None
    ) -> list[CommitmentRecord]:
        """Requests (newest first), for the operator."""
        with self.session():
            query = CommitmentRequest.select().order_by(CommitmentRequest.id.desc()).limit(limit)
            if state is not None:
                query = query.where(CommitmentRequest.state == state)
            return [_record(row) for row in query]


def _current(record: CommitmentRecord):
    """The row of `record`, while it is still pending in the generation the record has."""
    return (
        (CommitmentRequest.id == record.id)
        & (CommitmentRequest.generation == record.generation)
        & (CommitmentRequest.state == PENDING)
    )


def _record(row: CommitmentRequest) -> CommitmentRecord:
    return CommitmentRecord(
        id=row.id,
        requester=row.requester,
        transaction_uid=row.transaction_uid,
        references=row.references,
        result=row.result,
        state=row.state,
        generation=row.generation,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
    )
