"""HL7 v2 messages as the node takes them: the header (MSH) and its character set, orders
(ORM^O01, OMI^O23) as scheduled procedure steps, patient updates (ADT^A01/A04/A08/A28/A31) and
merges (ADT^A40), each field checked; and the acknowledgement (HL7 v2.5.1 chapter 2, original
mode) with an ERR segment naming the field at fault.

Parsing is python-hl7's (`hl7.parse`); the mapping of order fields follows IHE RAD TF-2 (RAD-4,
RAD-13) and dcm4chee-arc's: ORM^O01 accession OBR-18, requested procedure ID OBR-19, step ID
OBR-20, modality OBR-24, procedure OBR-4/OBR-44, start ORC-7.4 or OBR-27.4, station AE title
ORC-18, Study Instance UID ZDS-1; OMI^O23 IPC-1 to IPC-5 and IPC-9, start TQ1-7.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import hl7

from ..dicom.values import ae_title_problem, is_valid_uid, text_problem
from .matching import date_key

# HL7 table 0357 (message error condition codes)
REQUIRED_FIELD_MISSING = 101
DATA_TYPE_ERROR = 102
TABLE_VALUE_NOT_FOUND = 103
UNSUPPORTED_MESSAGE_TYPE = 200
UNSUPPORTED_EVENT = 201
UNSUPPORTED_PROCESSING_ID = 202
UNKNOWN_KEY = 204
INTERNAL_ERROR = 207
_MEANINGS = {
    100: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    UNKNOWN_KEY: "Unknown key identifier",
    INTERNAL_ERROR: "Application internal error",
}

# HL7 table 0211 (alternate character sets, MSH-18): the ones taken, as Python codecs. Without
# MSH-18 a message is ASCII (HL7 v2.5.1 2.15.9.18).
CHARSETS = {
    "": "ascii",
    "ASCII": "ascii",
    **{f"8859/{n}": f"iso8859_{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
    "UNICODE UTF-8": "utf-8",
}
ORDER_TYPES = {("ORM", "O01"), ("OMI", "O23")}
UPDATE_EVENTS = {"A01", "A04", "A08", "A28", "A31"}
MERGE_EVENT = "A40"
# ORC-1 order control (HL7 table 0119): what each does to the order's steps
ORDER_CONTROLS = {
    "NW": "new",
    "XO": "change",
    "SC": "change",
    "CA": "cancel",
    "OC": "cancel",
    "DC": "discontinue",
    "OD": "discontinue",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # C0 controls but TAB (and CR, LF: ends)
_SEX = {"M": "M", "F": "F", "O": "O", "U": "", "A": "O", "N": ""}


class MessageRefused(Exception):
    """A message not applied: answered `ack` (AE: its content is wrong; AR: it is not one the
    node takes) with an ERR segment at `location` (e.g. 'PID^1^3') and HL7 table 0357 `code`."""

    def __init__(self, ack: str, location: str, code: int, text: str) -> None:
        super().__init__(text)
        self.ack = ack
        self.location = location
        self.code = code
        self.text = text


def _error(location: str, code: int, text: str) -> MessageRefused:
    return MessageRefused("AE", location, code, text)


def _reject(location: str, code: int, text: str) -> MessageRefused:
    return MessageRefused("AR", location, code, text)


@dataclass(frozen=True)
class Header:
    """What MSH says: who sent it, what it is, its control ID, version and character set."""

    sending_application: str
    facility: str  # MSH-4.1
    receiving_application: str
    receiving_facility: str
    message_type: str  # MSH-9.1
    event: str  # MSH-9.2
    control_id: str  # MSH-10
    processing_id: str
    version: str
    charset: str  # MSH-18 as sent ('' for none)

    @property
    def kind(self) -> str:
        return f"{self.message_type}^{self.event}"


@dataclass(frozen=True)
class PatientFields:
    """The patient of a message (PID): identifier and issuer (the sender's hospital's), name
    as a DICOM PN, birth date (YYYYMMDD), sex (M, F, O); for each of the last three, None when
    the message leaves it out (nothing to change) and '' when it says '""' (delete it)."""

    patient_id: str
    issuer: str
    name: str | None
    birth_date: str | None
    sex: str | None


@dataclass(frozen=True)
class StepFields:
    """One scheduled procedure step of an order."""

    accession_number: str
    requested_procedure_id: str
    step_id: str
    modality: str
    procedure_code: str  # code^meaning^scheme of the requested procedure (OBR-44, OBR-4)
    procedure_description: str
    station_ae: str
    start_date: str
    start_time: str  # HHMMSS, or '' when the order gives only a day
    study_uid: str  # '' when the order names none (the node makes one)


@dataclass(frozen=True)
class OrderMessage:
    """One order of a message: what its control does (new, change, cancel, discontinue) to
    the steps of the order `order_key`, for `patient`."""

    control: str
    order_key: str
    patient: PatientFields
    steps: tuple[StepFields, ...]
    orc: int = 1  # its ORC's ordinal in the message (ERR-2 of an error about it)


@dataclass(frozen=True)
class PatientUpdate:
    """ADT^A01/A04/A08/A28/A31: the patient's demographics as the hospital's record has them."""

    patient: PatientFields


@dataclass(frozen=True)
class PatientMerge:
    """ADT^A40: the patient `prior_id` (MRG-1) is merged into `patient` (PID-3), both of the
    sender's hospital."""

    patient: PatientFields
    prior_id: str


Content = tuple[OrderMessage, ...] | PatientUpdate | PatientMerge
MAX_ORDERS = 50  # orders (ORC groups) in one message
MAX_STEPS = 100  # scheduled procedure steps in one message


# -- the header and the character set -------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """A message as read: its header, its text (decoded per MSH-18, segments ended by CR) and
    python-hl7's parse of it."""

    header: Header
    text: str
    parsed: Any


def read_message(raw: bytes) -> Received:
    """A message decoded in its character set (MSH-18), parsed once, its header read.

    Raises MessageRefused (AR) for a message that does not start with MSH, a character set
    the node does not take, or bytes that are not in the one it names."""
    if not raw.startswith(b"MSH") or len(raw) < 8:
        raise _reject("MSH^1", 100, "the message does not begin with an MSH segment")
    first = raw.split(b"\r", 1)[0].decode("latin-1")
    separator = first[3]
    fields = first.split(separator)
    charset_field = _field(fields, 18).split(first[5] if len(first) > 5 else "~")[0]
    charset = charset_field.split(first[4] if len(first) > 4 else "^")[0].strip()
    codec = CHARSETS.get(charset.upper())
    if codec is None:
        raise _reject(
            "MSH^1^18",
            TABLE_VALUE_NOT_FOUND,
            f"character set {charset[:32]!r} is not taken (ASCII, 8859/n, UNICODE UTF-8)",
        )
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError:
        raise _reject(
            "MSH^1^18",
            DATA_TYPE_ERROR,
            f"the message holds bytes that are not {charset or 'ASCII'} (MSH-18)",
        ) from None
    # Segments end with CR (HL7 v2.5.1 2.5.3); senders also end them with CRLF or LF, or leave
    # an empty line: each is read as the end of a segment.
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
    for line in lines:  # no other control character belongs in a message (2.7.1)
        if _CONTROL.search(line):
            name = line[:3]
            number = sum(1 for other in lines[: lines.index(line)] if other[:3] == name) + 1
            raise _reject(
                f"{escape(name)}^{number}", DATA_TYPE_ERROR, "a control character in the segment"
            )
    text = "\r".join(lines)
    try:
        message = hl7.parse(text)
        message.segment("MSH")
    except Exception:
        raise _reject("MSH^1", 100, "the MSH segment cannot be parsed") from None
    header = Header(
        sending_application=_get(message, "MSH.F3.R1.C1"),
        facility=_get(message, "MSH.F4.R1.C1"),
        receiving_application=_get(message, "MSH.F5.R1.C1"),
        receiving_facility=_get(message, "MSH.F6.R1.C1"),
        message_type=_get(message, "MSH.F9.R1.C1").upper(),
        event=_get(message, "MSH.F9.R1.C2").upper(),
        control_id=_get(message, "MSH.F10"),
        processing_id=_get(message, "MSH.F11.R1.C1"),
        version=_get(message, "MSH.F12.R1.C1"),
        charset=charset,
    )
    if not header.facility:
        raise _reject("MSH^1^4", REQUIRED_FIELD_MISSING, "MSH-4 sending facility is required")
    if not header.control_id:
        raise _reject("MSH^1^10", REQUIRED_FIELD_MISSING, "MSH-10 message control ID is required")
    for value, field, longest in ((header.facility, 4, 64), (header.control_id, 10, 199)):
        if len(value) > longest or not value.isprintable():
            raise _reject(
                f"MSH^1^{field}",
                DATA_TYPE_ERROR,
                f"MSH-{field}: more than {longest} characters or not printable",
            )
    return Received(header, text, message)


def _field(fields: list[str], number: int) -> str:
    """MSH-n of an MSH split on its field separator (MSH-1 is the separator itself)."""
    index = number - 1
    return fields[index] if index < len(fields) else ""


def _get(message: Any, key: str) -> str:
    """One value by python-hl7's accessor ('PID.F3.R1.C1'), unescaped; '' when absent. A key
    without a subcomponent takes the first one when the value has several."""
    for attempt in (key, key + ".S1"):
        try:
            value = message[attempt]
        except (IndexError, KeyError, ValueError):
            continue
        if isinstance(value, str):
            return value.strip()
    return ""


# -- what a message says -------------------------------------------------------------------------


class _Segments:
    """A parsed message's segments, walked once: each with its ordinal among its kind (the
    'sequence' of an ERR-2 location), in order."""

    def __init__(self, message: Any) -> None:
        self.items: list[tuple[str, int, Any]] = []
        seen: dict[str, int] = {}
        for segment in message:
            name = str(segment[0]).strip().upper()
            seen[name] = seen.get(name, 0) + 1
            self.items.append((name, seen[name], segment))

    def first(self, name: str) -> tuple[int, Any] | None:
        return next(((n, s) for kind, n, s in self.items if kind == name), None)

    def groups(self) -> list[dict[str, list[tuple[int, Any]]]]:
        """The order groups: each ORC with the TQ1, OBR, IPC and ZDS segments after it."""
        groups: list[dict[str, list[tuple[int, Any]]]] = []
        for name, number, segment in self.items:
            if name == "ORC":
                groups.append({"ORC": [(number, segment)]})
            elif groups and name in ("TQ1", "OBR", "IPC", "ZDS"):
                groups[-1].setdefault(name, []).append((number, segment))
        return groups


def _value(segment: Any, field: int, repetition: int = 1, component: int = 1, sub: int = 1) -> str:
    """SEG-field.repetition.component.subcomponent, unescaped and stripped; '' when absent
    (python-hl7's extract_field: a leaf reached early is the value of its first child)."""
    try:
        value = segment.extract_field(1, field, repetition, component, sub)
    except (IndexError, KeyError, ValueError):
        try:
            value = segment.extract_field(1, field, repetition, component)
        except (IndexError, KeyError, ValueError):
            return ""
    return value.strip() if isinstance(value, str) else ""


def interpret(received: Received, issuer: str) -> Content:
    """What a message asks of the sender's hospital, whose Issuer of Patient ID is `issuer`.
    Raises MessageRefused: AR for a message type, event or processing ID the node does not
    take; AE naming the field for a missing or malformed value, or a patient of another
    issuer."""
    header = received.header
    kind = (header.message_type, header.event)
    if header.message_type not in ("ORM", "OMI", "ADT"):
        raise _reject(
            "MSH^1^9",
            UNSUPPORTED_MESSAGE_TYPE,
            f"message type {header.message_type[:8]!r} is not taken (ORM, OMI, ADT)",
        )
    unsupported_event = (header.message_type in ("ORM", "OMI") and kind not in ORDER_TYPES) or (
        header.message_type == "ADT" and header.event not in UPDATE_EVENTS | {MERGE_EVENT}
    )
    if unsupported_event:
        raise _reject("MSH^1^9^1^2", UNSUPPORTED_EVENT, f"{header.kind[:16]} is not taken")
    if header.processing_id not in ("", "P"):
        raise _reject(
            "MSH^1^11",
            UNSUPPORTED_PROCESSING_ID,
            "only production messages (MSH-11 P) are taken",
        )
    segments = _Segments(received.parsed)
    patient = _patient(segments, issuer)
    if header.message_type == "ADT":
        if header.event != MERGE_EVENT:
            return PatientUpdate(patient)
        found = segments.first("MRG")
        prior = _identifier(found[1], 1, issuer, f"MRG^{found[0]}^1") if found else None
        if prior is None:
            raise _error(
                "MRG^1^1", REQUIRED_FIELD_MISSING, "MRG-1 prior patient identifier is required"
            )
        return PatientMerge(patient, prior)
    groups = segments.groups()
    if not groups:
        raise _error("ORC", REQUIRED_FIELD_MISSING, "the ORC segment is required")
    if len(groups) > MAX_ORDERS:
        raise _error("ORC", 100, f"more than {MAX_ORDERS} orders in one message")
    read = _orm_group if header.message_type == "ORM" else _omi_group
    orders = tuple(read(group, patient) for group in groups)
    if sum(len(order.steps) for order in orders) > MAX_STEPS:
        raise _error("OBR", 100, f"more than {MAX_STEPS} procedure steps in one message")
    return orders


def _patient(segments: _Segments, issuer: str) -> PatientFields:
    found = segments.first("PID")
    if found is None:
        raise _error("PID", REQUIRED_FIELD_MISSING, "the PID segment is required")
    number, pid = found
    patient_id = _identifier(pid, 3, issuer, f"PID^{number}^3")
    if patient_id is None:
        raise _error(
            f"PID^{number}^3", REQUIRED_FIELD_MISSING, "PID-3 patient identifier is required"
        )
    name = _nullable(_person_name(pid, 5))
    if name:
        _check(name, "PN", f"PID^{number}^5", "PID-5 patient name")
    birth = _nullable(_value(pid, 7))
    if birth:
        birth = date_key(birth[:8])
        if not birth:
            raise _error(f"PID^{number}^7", DATA_TYPE_ERROR, "PID-7 birth date is not a date")
    sex = _nullable(_value(pid, 8).upper())
    if sex:
        if sex not in _SEX:
            raise _error(
                f"PID^{number}^8",
                TABLE_VALUE_NOT_FOUND,
                "PID-8 sex is not one of M, F, O, U, A, N",
            )
        sex = _SEX[sex]
    return PatientFields(patient_id, issuer, name, birth, sex)


def _nullable(value: str) -> str | None:
    """A field's value: None when absent (nothing to change), '' for the HL7 null '""' (HL7
    v2.5.1 2.5.3: delete the value), else the value."""
    if value == '""':
        return ""
    return value or None


def _identifier(segment: Any, field: int, issuer: str, location: str) -> str | None:
    """The identifier of a CX list (PID-3, MRG-1) in the hospital's domain: the first
    repetition whose assigning authority (HD namespace, else universal ID) is `issuer`, else
    the first without one; None when the list is empty. Raises MessageRefused (AE) when
    every identifier belongs to another authority: a sender speaks for its own hospital's
    patients only."""
    candidates = []
    for repetition in range(1, 21):
        value = _value(segment, field, repetition, 1)
        authority = _value(segment, field, repetition, 4, 1) or _value(
            segment, field, repetition, 4, 2
        )
        if value:
            candidates.append((value, authority))
    if not candidates:
        return None
    chosen = next((v for v, a in candidates if a == issuer), None)
    if chosen is None:
        chosen = next((v for v, a in candidates if not a), None)
    if chosen is None:
        raise _error(
            f"{location}^1^4",
            TABLE_VALUE_NOT_FOUND,
            "no identifier of the sending hospital's assigning authority (its Issuer of "
            "Patient ID)",
        )
    _check(chosen, "LO", location, "patient identifier")
    return chosen


def _person_name(segment: Any, field: int) -> str:
    """An XPN as a DICOM PN: family^given^middle^prefix^suffix (HL7 puts the suffix before
    the prefix), empty trailing components dropped; '""' stays the HL7 null."""
    family = _value(segment, field, 1, 1)
    if family == '""':
        return family
    given, middle = _value(segment, field, 1, 2), _value(segment, field, 1, 3)
    suffix, prefix = _value(segment, field, 1, 4), _value(segment, field, 1, 5)
    return "^".join([family, given, middle, prefix, suffix]).rstrip("^")


def _check(value: str, vr: str, location: str, what: str) -> None:
    problem = text_problem(value, vr)
    if problem:
        raise _error(location, DATA_TYPE_ERROR, f"{what}: {problem}")


def _order(group: dict[str, list[tuple[int, Any]]]) -> tuple[str, str, int, Any]:
    """(control, order key, ORC ordinal, ORC) of an order group."""
    number, orc = group["ORC"][0]
    control = _value(orc, 1).upper()
    if not control:
        raise _error(f"ORC^{number}^1", REQUIRED_FIELD_MISSING, "ORC-1 order control is required")
    if control not in ORDER_CONTROLS:
        raise _error(
            f"ORC^{number}^1",
            TABLE_VALUE_NOT_FOUND,
            f"ORC-1 order control {control[:4]!r} is not taken ({', '.join(ORDER_CONTROLS)})",
        )
    key = _value(orc, 2) or _value(orc, 3)
    if not key:
        raise _error(
            f"ORC^{number}^2",
            REQUIRED_FIELD_MISSING,
            "ORC-2 placer order number (or ORC-3 filler order number) is required",
        )
    _check(key, "LO", f"ORC^{number}^2", "ORC-2 order number")
    return ORDER_CONTROLS[control], key, number, orc


def _orm_group(group: dict[str, list[tuple[int, Any]]], patient: PatientFields) -> OrderMessage:
    """An ORM^O01 order: its ORC, and a step per OBR (with the ZDS after it)."""
    control, key, number, orc = _order(group)
    if control not in ("new", "change"):
        return OrderMessage(control, key, patient, (), number)
    requests = group.get("OBR", [])
    if not requests:
        raise _error("OBR", REQUIRED_FIELD_MISSING, "the OBR segment is required")
    studies = group.get("ZDS", [])
    steps = []
    for index, (n, obr) in enumerate(requests):
        start, where = _value(orc, 7, 1, 4), f"ORC^{number}^7"
        if not start:
            start, where = _value(obr, 27, 1, 4), f"OBR^{n}^27"
        zds = studies[index] if index < len(studies) else None
        steps.append(
            _step(
                accession=(_value(obr, 18), f"OBR^{n}^18"),
                requested=(_value(obr, 19), f"OBR^{n}^19"),
                step_id=(_value(obr, 20), f"OBR^{n}^20"),
                modality=(_value(obr, 24), f"OBR^{n}^24"),
                procedure=_procedure(obr, n),
                station=(_value(orc, 18), f"ORC^{number}^18"),
                start=(start, where),
                study_uid=(_value(zds[1], 1) if zds else "", f"ZDS^{zds[0] if zds else 1}^1"),
            )
        )
    return OrderMessage(control, key, patient, tuple(steps), number)


def _omi_group(group: dict[str, list[tuple[int, Any]]], patient: PatientFields) -> OrderMessage:
    """An OMI^O23 order: its ORC, TQ1 (the start), OBR (the procedure) and a step per IPC."""
    control, key, number, _ = _order(group)
    if control not in ("new", "change"):
        return OrderMessage(control, key, patient, (), number)
    imaging = group.get("IPC", [])
    if not imaging:
        raise _error("IPC", REQUIRED_FIELD_MISSING, "the IPC segment is required")
    timing = group.get("TQ1", [])
    start = (_value(timing[0][1], 7), f"TQ1^{timing[0][0]}^7") if timing else ("", "TQ1^1^7")
    requests = group.get("OBR", [])
    procedure = _procedure(requests[0][1], requests[0][0]) if requests else ("", "")
    steps = [
        _step(
            accession=(_value(ipc, 1), f"IPC^{n}^1"),
            requested=(_value(ipc, 2), f"IPC^{n}^2"),
            step_id=(_value(ipc, 4), f"IPC^{n}^4"),
            modality=(_value(ipc, 5), f"IPC^{n}^5"),
            procedure=procedure,
            station=(_value(ipc, 9), f"IPC^{n}^9"),
            start=start,
            study_uid=(_value(ipc, 3), f"IPC^{n}^3"),
        )
        for n, ipc in imaging
    ]
    return OrderMessage(control, key, patient, tuple(steps), number)


def _procedure(obr: Any, number: int) -> tuple[str, str]:
    """The requested procedure: (code^meaning^scheme, meaning) of OBR-44 (procedure code),
    else of OBR-4 (universal service ID)."""
    for field in (44, 4):
        code, meaning = _value(obr, field, 1, 1), _value(obr, field, 1, 2)
        if code or meaning:
            if meaning:
                _check(meaning, "LO", f"OBR^{number}^{field}", "the procedure's text")
            scheme = _value(obr, field, 1, 3)
            return "^".join([code, meaning, scheme]).rstrip("^")[:200], meaning
    return "", ""


def _step(
    *,
    accession: tuple[str, str],
    requested: tuple[str, str],
    step_id: tuple[str, str],
    modality: tuple[str, str],
    procedure: tuple[str, str],
    station: tuple[str, str],
    start: tuple[str, str],
    study_uid: tuple[str, str],
) -> StepFields:
    if not accession[0]:
        raise _error(accession[1], REQUIRED_FIELD_MISSING, "the accession number is required")
    _check(accession[0], "SH", accession[1], "accession number")
    for value, where in (requested, step_id):
        if value:
            _check(value, "SH", where, "procedure or step ID")
    if not modality[0]:
        raise _error(modality[1], REQUIRED_FIELD_MISSING, "the modality is required")
    _check(modality[0].upper(), "CS", modality[1], "modality")
    if station[0] and ae_title_problem(station[0]):
        raise _error(
            station[1], DATA_TYPE_ERROR, f"station AE title: {ae_title_problem(station[0])}"
        )
    if not start[0]:
        raise _error(start[1], REQUIRED_FIELD_MISSING, "the scheduled start is required")
    start_date, start_time = parse_timestamp(start[0])
    if not start_date:
        raise _error(start[1], DATA_TYPE_ERROR, "the scheduled start is not a date and time")
    if study_uid[0] and not is_valid_uid(study_uid[0]):
        raise _error(study_uid[1], DATA_TYPE_ERROR, "the Study Instance UID is not a UID")
    return StepFields(
        accession_number=accession[0],
        requested_procedure_id=requested[0],
        step_id=step_id[0] or requested[0] or accession[0],
        modality=modality[0].upper(),
        procedure_code=procedure[0],
        procedure_description=procedure[1],
        station_ae=station[0].strip(),
        start_date=start_date,
        start_time=start_time,
        study_uid=study_uid[0],
    )


def parse_timestamp(value: str) -> tuple[str, str]:
    """An HL7 TS/DTM (YYYYMMDD[HH[MM[SS[.S]]]][+ZZZZ]) as (YYYYMMDD, HHMMSS or ''), the time
    padded with zeros, as steps keep it (the worklist matches it as text); ('', '') when it is
    not one. The offset is dropped: the worklist is in the hospital's time."""
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    if not digits.isdigit() or len(digits) < 8:
        return "", ""
    day = date_key(digits[:8])
    clock = digits[8:14]
    if not day or len(clock) not in (0, 2, 4, 6):
        return "", ""
    if clock and (int(clock[:2]) > 23 or (len(clock) >= 4 and int(clock[2:4]) > 59)):
        return "", ""
    return day, clock.ljust(6, "0") if clock else ""


# -- the acknowledgement -------------------------------------------------------------------------

_ENCODING = "^~\\&"


def escape(value: str) -> str:
    """A value as HL7 text (HL7 v2.5.1 2.7.4), with the default encoding characters."""
    out = value.replace("\\", "\\E\\")
    for char, sequence in (("|", "\\F\\"), ("^", "\\S\\"), ("~", "\\R\\"), ("&", "\\T\\")):
        out = out.replace(char, sequence)
    return "".join(c if c.isprintable() else " " for c in out)


def acknowledgement(
    header: Header | None,
    ack: str,
    *,
    application: str,
    facility: str,
    control_id: str,
    text: str = "",
    error: MessageRefused | None = None,
    now: datetime | None = None,
) -> str:
    """The ACK of a message (original mode): MSH, MSA (MSA-2: its control ID) and, for an
    error, ERR (ERR-2 location, ERR-3 code of table 0357, ERR-4 severity E, ERR-8 the text).
    `header` is None when the message's own could not be read."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    event = header.event if header else ""
    version = header.version if header and header.version else "2.5.1"
    msh = [
        "MSH",
        _ENCODING,
        escape(application),
        escape(facility),
        escape(header.sending_application) if header else "",
        escape(header.facility) if header else "",
        stamp,
        "",
        f"ACK^{escape(event)}^ACK" if event else "ACK",
        escape(control_id),
        header.processing_id if header and header.processing_id in ("P", "T", "D") else "P",
        escape(version[:8]),
        *[""] * 5,
        escape(header.charset) if header else "",
    ]
    segments = ["|".join(msh).rstrip("|")]
    segments.append(
        "|".join(["MSA", ack, escape(header.control_id if header else ""), escape(text[:80])])
    )
    if error is not None:
        parts = [escape(part) for part in error.location.split("^")]
        location = "^".join(parts)
        meaning = _MEANINGS.get(error.code, "")
        # ERR-1 (ELD: segment^sequence^field^code), which HL7 v2.3 and v2.4 receivers read;
        # ERR-2 (ERL) and ERR-3 are v2.5's. Both are sent.
        segment, sequence, field = [*parts, "", "", ""][:3]
        eld = "^".join([segment, sequence, field])
        eld += f"^{error.code}&{escape(meaning)}&HL70357"
        segments.append(
            "|".join(
                [
                    "ERR",
                    eld,
                    location,
                    f"{error.code}^{escape(meaning)}^HL70357",
                    "E",
                    "",
                    "",
                    "",
                    escape(error.text[:250]),
                ]
            )
        )
    return "\r".join(segments) + "\r"
