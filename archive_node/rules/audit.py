"""The audit trail's rules: which PS3.15 A.5.3 event each act of the node is, what one record
holds, and the hash chain that makes a changed, removed or inserted record show (pure)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# -- events: PS3.15 A.5.3, codes of PS3.16 (DCM) ------------------------------------------------


@dataclass(frozen=True)
class EventKind:
    """One audit event of PS3.15 A.5.3: its name as the trail shows it, EventID (CID 400)."""

    name: str
    code: str  # DCM code value of EventID


APPLICATION_ACTIVITY = EventKind("Application Activity", "110100")  # A.5.3.1
AUDIT_LOG_USED = EventKind("Audit Log Used", "110101")  # A.5.3.2
INSTANCES_ACCESSED = EventKind("DICOM Instances Accessed", "110103")  # A.5.3.4
INSTANCES_TRANSFERRED = EventKind("DICOM Instances Transferred", "110104")  # A.5.3.5
STUDY_DELETED = EventKind("DICOM Study Deleted", "110105")  # A.5.3.6
DATA_IMPORT = EventKind("Import", "110107")  # A.5.3.8
ORDER_RECORD = EventKind("Order Record", "110109")  # A.5.3.10
PATIENT_RECORD = EventKind("Patient Record", "110110")  # A.5.3.11
QUERY = EventKind("Query", "110112")  # A.5.3.13
SECURITY_ALERT = EventKind("Security Alert", "110113")  # A.5.3.14

EVENTS: dict[str, EventKind] = {
    kind.name.lower(): kind
    for kind in (
        APPLICATION_ACTIVITY,
        AUDIT_LOG_USED,
        INSTANCES_ACCESSED,
        INSTANCES_TRANSFERRED,
        STUDY_DELETED,
        DATA_IMPORT,
        ORDER_RECORD,
        PATIENT_RECORD,
        QUERY,
        SECURITY_ALERT,
    )
}

# EventTypeCode (DCM), PS3.16 CID 432 (application activity) and CID 403 (security alert)
EVENT_TYPES: dict[str, str] = {
    "110120": "Application Start",
    "110121": "Application Stop",
    "110126": "Node Authentication",
    "110129": "Security Configuration",
    "110132": "Use of Restricted Function",
    "110141": "Local Service Operation Started",
    "110142": "Local Service Operation Stopped",
}
APPLICATION_START = "110120"
APPLICATION_STOP = "110121"
NODE_AUTHENTICATION = "110126"
SECURITY_CONFIGURATION = "110129"
RESTRICTED_FUNCTION = "110132"
LOCAL_SERVICE_OPERATION = "110142"

# EventActionCode, PS3.15 A.5.1 (RFC 3881): Create, Read, Update, Delete, Execute
CREATE, READ, UPDATE, DELETE, EXECUTE = "C", "R", "U", "D", "E"

# EventOutcomeIndicator, PS3.15 A.5.1
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12
OUTCOMES = {
    SUCCESS: "success",
    MINOR_FAILURE: "minor failure",
    SERIOUS_FAILURE: "serious failure",
    MAJOR_FAILURE: "major failure",
}


def event_kind(name: str) -> EventKind | None:
    """The event a name stands for, case-insensitively ('query', 'Security Alert')."""
    return EVENTS.get(" ".join(name.split()).lower())


# -- who acts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who does what the record records: a calling AE over an association (its hospital, its
    peer address, the user identity it asserted, PS3.7 D.3.3.7), or a local command run by an
    operating system user. `session` tells one association (or one command run) from another."""

    session: str
    ae_title: str = ""
    hospital: str = ""
    address: str = ""
    user: str = ""


# PS3.7 D.3.3.7.1 User-Identity-Type; of types 3-5 only the kind is kept (they are credentials)
USER_IDENTITY_TYPES = {3: "(Kerberos ticket)", 4: "(SAML assertion)", 5: "(JSON Web Token)"}
MAX_USER = 64


def asserted_user(identity_type: int | None, primary: bytes | None) -> str:
    """What the trail keeps of an association's User Identity: the username of types 1 and 2
    (never the passcode), or the kind of a token; '' without one."""
    if identity_type in (1, 2) and primary:
        text = primary.decode("utf-8", "replace")
        return "".join(c if c.isprintable() else "?" for c in text)[:MAX_USER]
    return USER_IDENTITY_TYPES.get(identity_type or 0, "")


# -- what one record holds ----------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Touched:
    """A patient (PatientID and IssuerOfPatientID), and one of their studies, that an event
    touched, with how many instances (0 when not counted: a query's answer, a patient)."""

    patient_id: str = ""
    issuer: str = ""
    study_uid: str = ""
    instances: int = 0


@dataclass(frozen=True)
class AuditEvent:
    """What happened, before the trail numbers and chains it."""

    kind: EventKind
    action: str  # EventActionCode
    operation: str  # what the node did, as the trail shows it: 'C-STORE', 'ae add'
    actor: Actor
    outcome: int = SUCCESS
    status: str = ""  # the failure: '0xA701 out of resources'
    event_type: str = ""  # EventTypeCode, where the event has one
    destination: str = ""  # the AE a retrieve sent to
    touched: tuple[Touched, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)  # JSON: counts, query keys


@dataclass(frozen=True)
class AuditRecord:
    """One record of the trail: an event with its node, sequence number, time and hashes."""

    node: str
    seq: int
    time: str  # UTC, ISO 8601 with microseconds and Z
    event: str
    event_code: str
    event_type: str
    action: str
    operation: str
    outcome: int
    status: str
    session: str
    ae_title: str
    hospital: str
    address: str
    user: str
    destination: str
    detail: str  # canonical JSON
    touched: tuple[Touched, ...]
    prev_hash: str
    hash: str

    @property
    def details(self) -> dict[str, Any]:
        return dict(json.loads(self.detail or "{}"))

    def content(self) -> dict[str, Any]:
        """Everything the hash covers, but the hash itself (the touched patients and studies
        as [patient_id, issuer, study_uid, instances] lists, in order)."""
        values = {name: getattr(self, name) for name in _CONTENT_FIELDS}
        values["touched"] = [
            (t.patient_id, t.issuer, t.study_uid, t.instances) for t in sorted(self.touched)
        ]
        return values


_CONTENT_FIELDS = tuple(
    f.name for f in dataclasses.fields(AuditRecord) if f.name not in ("hash", "touched")
)
GENESIS = "0" * 64  # the previous hash of a chain's first record
MAX_DETAIL_BYTES = 65536  # a query's keys are bounded by query.max_identifier_bytes before


def timestamp(moment: datetime | None = None) -> str:
    """A record's time: UTC with microseconds, a fixed width that sorts as text."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def prune_before(days: int, now: datetime | None = None) -> str:
    """The start of the day (UTC) `days` whole days ago (audit.retain_days): records before
    it are pruned."""
    now = now or datetime.now(UTC)
    day = (now - timedelta(days=days)).date()
    return timestamp(datetime(day.year, day.month, day.day))


def canonical_json(value: Mapping[str, Any]) -> str:
    """The one text of a JSON value: keys sorted, no spaces, UTF-8 kept."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def record_hash(record: AuditRecord) -> str:
    """SHA-256 over the previous record's hash and this record's canonical content."""
    text = canonical_json(record.content())
    return hashlib.sha256(f"{record.prev_hash}\n{text}".encode()).hexdigest()


def chained(event: AuditEvent, *, node: str, seq: int, prev_hash: str, time: str) -> AuditRecord:
    """The record of `event`, numbered `seq` in `node`'s chain after a record hashed
    `prev_hash`."""
    detail = canonical_json(event.detail)
    if len(detail.encode()) > MAX_DETAIL_BYTES:
        detail = canonical_json({"truncated": True, "bytes": len(detail.encode())})
    actor = event.actor
    record = AuditRecord(
        node=node,
        seq=seq,
        time=time,
        event=event.kind.name,
        event_code=event.kind.code,
        event_type=event.event_type,
        action=event.action,
        operation=event.operation,
        outcome=event.outcome,
        status=event.status,
        session=actor.session,
        ae_title=actor.ae_title,
        hospital=actor.hospital,
        address=actor.address,
        user=actor.user,
        destination=event.destination,
        detail=detail,
        touched=tuple(sorted(event.touched)),
        prev_hash=prev_hash,
        hash="",
    )
    return dataclasses.replace(record, hash=record_hash(record))


# -- retrieves: one record per study before the first sub-operation, one after the last -------


def per_study(
    items: Iterable[Any], outcomes: Mapping[str, str] | None = None
) -> dict[Touched, dict[str, int]]:
    """The studies of a retrieve's instances (retrieve_plan.Outgoing), each with its counts:
    'instances' before it starts; with the sub-operations' `outcomes` by SOP Instance UID,
    also 'completed', 'warning', 'failed' and 'not_sent' (cancelled or left over)."""
    studies: dict[Touched, dict[str, int]] = {}
    for item in items:
        key = Touched(item.patient_id, item.issuer, item.study_uid)
        counts = studies.setdefault(key, {"instances": 0})
        counts["instances"] += 1
        if outcomes is not None:
            outcome = outcomes.get(item.sop_instance_uid, "not_sent")
            counts[outcome] = counts.get(outcome, 0) + 1
    return studies


def transfer_outcome(counts: Mapping[str, int]) -> int:
    """A study's retrieve: success when every instance was sent (a warning status is sent),
    a minor failure when some were, a serious one when none was."""
    sent = counts.get("completed", 0) + counts.get("warning", 0)
    if sent == counts.get("instances", 0):
        return SUCCESS
    return MINOR_FAILURE if sent else SERIOUS_FAILURE


# -- verification -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """What `audit prune` left of a chain's start: the last pruned record's number and hash."""

    seq: int
    hash: str


@dataclass(frozen=True)
class Head:
    """The chain's head as kept beside the records: its last record's number and hash."""

    seq: int
    hash: str


def chain_breaks(
    records: Iterable[AuditRecord], *, start: Checkpoint | None, head: Head | None
) -> Iterator[str]:
    """Each break of one node's chain, read in sequence order: a record whose content no
    longer gives its hash (changed), a gap in the numbers (removed), a record that does not
    follow its predecessor's hash or repeats a number (inserted), and a chain that ends before
    or after its head (removed at the end, or appended around the trail)."""
    expected_seq = start.seq + 1 if start else 1
    expected_prev = start.hash if start else GENESIS
    last: AuditRecord | None = None
    for record in records:
        if record_hash(record) != record.hash:
            yield f"record {record.seq}: changed (its content does not give its hash)"
        if last is not None and record.seq == last.seq:
            yield f"record {record.seq}: inserted (the number is used twice)"
            continue
        if record.seq > expected_seq:
            gap = (
                f"record {expected_seq}"
                if record.seq == expected_seq + 1
                else f"records {expected_seq}-{record.seq - 1}"
            )
            yield f"{gap}: removed"
        elif record.prev_hash != expected_prev:
            yield (
                f"record {record.seq}: inserted or re-chained (it does not follow record "
                f"{record.seq - 1}'s hash)"
            )
        expected_seq, expected_prev, last = record.seq + 1, record.hash, record
    if head is None:
        if last is not None:
            yield "the chain's head is missing"
        return
    if last is None or last.seq < head.seq:
        first = last.seq + 1 if last else expected_seq
        gap = f"record {head.seq}" if first == head.seq else f"records {first}-{head.seq}"
        yield f"{gap}: removed (the chain's head is record {head.seq})"
    elif last.seq > head.seq:
        yield f"records {head.seq + 1}-{last.seq}: inserted after the chain's head"
    elif last.hash != head.hash:
        yield f"record {last.seq}: changed (it is not the chain's head)"
