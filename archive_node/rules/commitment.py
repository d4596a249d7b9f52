"""Storage Commitment Push Model (PS3.4 Annex J.3): the request, its outcome and the report.

Pure: parses the N-ACTION's Action Information, holds the per-instance outcome (stored as JSON
in the index until the report is delivered) and builds the N-EVENT-REPORT's Event Information.
Deciding whether an instance is committed needs the store and the index: service.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydicom.dataset import Dataset

from ..dicom import status
from ..dicom.values import is_valid_uid
from ..errors import Refused
from .access import Peer

STORAGE_COMMITMENT_CLASS = "1.2.840.10008.1.20.1"  # Storage Commitment Push Model SOP Class
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"  # its well-known SOP Instance
REQUEST_COMMITMENT = 1  # PS3.4 J.3.2.1 Action Type ID: Request Storage Commitment
EVENT_ALL_COMMITTED = 1  # J.3.3.1 Event Type ID: Storage Commitment Request Successful
EVENT_FAILURES_EXIST = 2  # J.3.3.1: Storage Commitment Request Complete - Failures Exist
# One request names at most this many instances: a study of 65,535 instances is a C-MOVE's
# limit too, and the report must fit in memory on both sides.
MAX_REFERENCES = 65535

# PS3.4 J.3.3.1.1 Failure Reason values the node reports.
FAILURE_PROCESSING = status.PROCESSING_FAILURE  # 0x0110: e.g. the file no longer matches
FAILURE_NO_SUCH_INSTANCE = status.NO_SUCH_SOP_INSTANCE  # 0x0112: not held (or not visible)
FAILURE_CLASS_CONFLICT = status.CLASS_INSTANCE_CONFLICT  # 0x0119: held under another class
# The Failure Reasons of PS3.4 J.3.3.1.1 in words, for the log and `archive-node commitments`.
FAILURE_WORDS = {
    FAILURE_PROCESSING: "processing failure",
    FAILURE_NO_SUCH_INSTANCE: "no such object instance",
    status.RESOURCE_LIMITATION: "resource limitation",
    0x0122: "referenced SOP class not supported",
    FAILURE_CLASS_CONFLICT: "class/instance conflict",
    0x0131: "duplicate transaction UID",
}
# The log names at most this many failed instances of one report, then how many more.
MAX_LOGGED_FAILURES = 20

Reference = tuple[str, str]  # (Referenced SOP Class UID, Referenced SOP Instance UID)


@dataclass(frozen=True)
class Acknowledged:
    """Who was told (C-STORE 0x0000) that an instance is stored, and for which content."""

    calling_ae: str
    hospital: str
    sha256: str


@dataclass(frozen=True)
class CommitmentRequest:
    """What an N-ACTION asks the node to commit to."""

    transaction_uid: str
    references: tuple[Reference, ...]


@dataclass(frozen=True)
class Failure:
    sop_class_uid: str
    sop_instance_uid: str
    reason: int


@dataclass(frozen=True)
class CommitmentResult:
    """The outcome of a request: the instances committed and those that failed, with why."""

    committed: tuple[Reference, ...]
    failed: tuple[Failure, ...]

    @property
    def event_type(self) -> int:
        return EVENT_FAILURES_EXIST if self.failed else EVENT_ALL_COMMITTED

    def to_json(self) -> str:
        return json.dumps(
            {
                "committed": [list(ref) for ref in self.committed],
                "failed": [[f.sop_class_uid, f.sop_instance_uid, f.reason] for f in self.failed],
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> CommitmentResult:
        data = json.loads(text)
        return cls(
            committed=tuple((c, i) for c, i in data["committed"]),
            failed=tuple(Failure(c, i, int(r)) for c, i, r in data["failed"]),
        )


def failure_words(reason: int) -> str:
    """A Failure Reason as the log and the CLI show it: '0x0112 no such object instance'."""
    return f"0x{reason:04X} {FAILURE_WORDS.get(reason, 'failure')}"


def failure_lines(failed: tuple[Failure, ...], limit: int = MAX_LOGGED_FAILURES) -> list[str]:
    """What the log says of a report's failed instances: one line each (SOP Instance UID,
    SOP Class UID and reason; UIDs are not patient data), at most `limit`, then one line
    saying how many more there are."""
    lines = [
        f"{f.sop_instance_uid} ({f.sop_class_uid}) not committed: {failure_words(f.reason)}"
        for f in failed[:limit]
    ]
    if len(failed) > limit:
        lines.append(f"and {len(failed) - limit} more instance(s) not committed")
    return lines


def references_to_json(references: tuple[Reference, ...]) -> str:
    return json.dumps([list(ref) for ref in references], separators=(",", ":"))


def references_from_json(text: str) -> tuple[Reference, ...]:
    return tuple((c, i) for c, i in json.loads(text))


def parse_request(action_type: int | None, instance_uid: str, info: Any) -> CommitmentRequest:
    """Validate an N-ACTION request for Storage Commitment (PS3.4 J.3.2.1, Table J.3-1).

    Raises Refused: 0x0123 for another Action Type ID, 0x0112 when the Requested SOP Instance
    is not the well-known one, 0x0115 for Action Information without a valid Transaction UID
    or a Referenced SOP Sequence whose items each carry both UIDs, 0x0213 past MAX_REFERENCES.
    A referenced UID that is not a valid UID is not refused here: the report fails that
    instance (the node cannot hold it). A reference repeated in the Referenced SOP Sequence is
    kept once, in the place it first had: the report (PS3.4 J.3.3, Table J.3-2) lists each
    instance once, as committed or as failed.
    """
    if action_type != REQUEST_COMMITMENT:
        raise Refused(status.NO_SUCH_ACTION, f"no action type {action_type}: only 1 (request)")
    if instance_uid.strip() != STORAGE_COMMITMENT_INSTANCE:
        raise Refused(
            status.NO_SUCH_SOP_INSTANCE,
            f"requested SOP instance must be {STORAGE_COMMITMENT_INSTANCE}",
        )
    if info is None:
        raise Refused(status.INVALID_ARGUMENT_VALUE, "no Action Information")
    transaction_uid = str(info.get("TransactionUID", "") or "").strip()
    if not is_valid_uid(transaction_uid):
        raise Refused(
            status.INVALID_ARGUMENT_VALUE,
            "Transaction UID missing or not a valid UID",
            "TransactionUID",
        )
    items = info.get("ReferencedSOPSequence") or []
    if not items:
        raise Refused(
            status.INVALID_ARGUMENT_VALUE,
            "Referenced SOP Sequence missing or empty",
            "ReferencedSOPSequence",
        )
    if len(items) > MAX_REFERENCES:
        raise Refused(
            status.RESOURCE_LIMITATION,
            f"{len(items)} references: at most {MAX_REFERENCES} per request",
            "ReferencedSOPSequence",
        )
    references = []
    for number, item in enumerate(items, 1):
        class_uid = str(item.get("ReferencedSOPClassUID", "") or "").strip()
        instance = str(item.get("ReferencedSOPInstanceUID", "") or "").strip()
        if not class_uid or not instance:
            raise Refused(
                status.INVALID_ARGUMENT_VALUE,
                f"Referenced SOP Sequence item {number} lacks a SOP Class or Instance UID",
                "ReferencedSOPSequence",
            )
        references.append((class_uid, instance))
    return CommitmentRequest(transaction_uid, tuple(dict.fromkeys(references)))


def answers_only_own(peer: Peer) -> bool:
    """True when Storage Commitment tells this AE only about instances its own hospital sent:
    an AE of scope hospital, or one without the find right (a store-only modality), which
    may not learn by commitment what it could not find."""
    return peer.scope == "hospital" or "find" not in peer.allow


def acknowledgement_failure(
    peer: Peer, kept_sha256: str, acknowledged: list[Acknowledged]
) -> int | None:
    """The Failure Reason (PS3.4 J.3.3.1.1) owed to `peer` for an indexed instance from what
    was acknowledged under its UID, or None when the content kept may be committed to it.

    An AE that was acknowledged content (or, answered only about its own hospital's, whose
    hospital was) is committed only if that content is what is kept: 0x0110 otherwise (what
    it sent is not kept). An AE answered only about its own hospital's instances gets 0x0112
    for an instance its hospital never sent, as for an unknown UID.
    """
    own = [a for a in acknowledged if (a.calling_ae, a.hospital) == (peer.ae_title, peer.hospital)]
    if answers_only_own(peer):
        own = own or [a for a in acknowledged if a.hospital == peer.hospital]
        if not own:
            return FAILURE_NO_SUCH_INSTANCE
    if own and all(a.sha256 != kept_sha256 for a in own):
        return FAILURE_PROCESSING
    return None


MAX_RETRY_DELAY = 3600.0  # seconds


def next_attempt(
    failures: int,
    created_at: datetime,
    now: datetime,
    *,
    interval: float,
    give_up_after_hours: float,
) -> datetime | None:
    """When to try delivering a report again after its `failures`-th failed attempt: `interval`
    seconds, doubled per earlier failure, at most an hour; None (abandon) once
    `give_up_after_hours` have passed since the request."""
    if now - created_at >= timedelta(hours=give_up_after_hours):
        return None
    delay = min(interval * 2 ** min(max(failures - 1, 0), 30), MAX_RETRY_DELAY)
    return now + timedelta(seconds=delay)


def event_information(transaction_uid: str, result: CommitmentResult, our_title: str) -> Dataset:
    """The N-EVENT-REPORT's Event Information (PS3.4 J.3.3.1, Table J.3-2): the Transaction
    UID, the committed instances (with where to retrieve them) and the failed ones."""
    ds = Dataset()
    ds.TransactionUID = transaction_uid
    ds.RetrieveAETitle = our_title
    if result.committed or not result.failed:
        ds.ReferencedSOPSequence = [
            _item(class_uid, instance) for class_uid, instance in result.committed
        ]
    if result.failed:
        failed = []
        for failure in result.failed:
            item = _item(failure.sop_class_uid, failure.sop_instance_uid)
            item.FailureReason = failure.reason
            failed.append(item)
        ds.FailedSOPSequence = failed
    return ds


def _item(class_uid: str, instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = class_uid
    item.ReferencedSOPInstanceUID = instance_uid
    return item
