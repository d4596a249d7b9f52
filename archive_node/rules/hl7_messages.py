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
UNKNOWN_KEY = 204
INTERNAL_ERROR = 207
_MEANINGS = {
    100: "Segment sequence error",
    REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error",
    TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    UNSUPPORTED_EVENT: "Unsupported event code",
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
    """The patient of a message (PID): identifier, issuer (None: the sender's hospital's),
    name as a DICOM PN, birth date (YYYYMMDD or ''), sex (M, F, O or '')."""

    patient_id: str
    issuer: str | None
    name: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class StepFields:
    """One scheduled procedure step of an order."""

    accession_number: str
    requested_procedure_id: str
    step_id: str
    modality: str
    procedure_code: str
    procedure_description: str
    station_ae: str
    start_date: str
    start_time: str
    study_uid: str  # '' when the order names none (the node makes one)


@dataclass(frozen=True)
class OrderMessage:
    """An order message: what its control does (new, change, cancel, discontinue) to the
    steps of the order `order_key`, for `patient`."""

    control: str
    order_key: str
    patient: PatientFields
    steps: tuple[StepFields, ...]


@dataclass(frozen=True)
class PatientUpdate:
    """ADT^A01/A04/A08/A28/A31: the patient's demographics as the hospital's record has them."""

    patient: PatientFields


@dataclass(frozen=True)
class PatientMerge:
    """ADT^A40: the patient `prior` (MRG-1) is merged into `patient` (PID-3)."""

    patient: PatientFields
    prior_id: str
    prior_issuer: str | None


Content = OrderMessage | PatientUpdate | PatientMerge


# -- the header and the character set -------------------------------------------------------


def read_header(raw: bytes) -> tuple[Header, str]:
    """The header of a message and the message decoded in its character set (MSH-18).

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
    text = "\r".join(line for line in re.split(r"\r\n|\r|\n", text) if line.strip())
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
    if len(header.control_id) > 199 or len(header.facility) > 64:
        raise _reject("MSH^1^10", DATA_TYPE_ERROR, "MSH-4 or MSH-10 is too long")
    return header, text


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


def interpret(header: Header, text: str) -> Content:
    """What a message (decoded, its header read) asks. Raises MessageRefused: AR for a message
    type or event the node does not take; AE naming the field for a missing or malformed
    value."""
    kind = (header.message_type, header.event)
    if header.message_type not in ("ORM", "OMI", "ADT"):
        raise _reject(
            "MSH^1^9",
            UNSUPPORTED_MESSAGE_TYPE,
            f"message type {header.message_type[:8]!r} is not taken (ORM, OMI, ADT)",
        )
    if header.message_type in ("ORM", "OMI") and kind not in ORDER_TYPES:
        raise _reject("MSH^1^9^2", UNSUPPORTED_EVENT, f"{header.kind[:16]} is not taken")
    if header.message_type == "ADT" and header.event not in UPDATE_EVENTS | {MERGE_EVENT}:
        raise _reject("MSH^1^9^2", UNSUPPORTED_EVENT, f"{header.kind[:16]} is not taken")
    try:
        message = hl7.parse(text)
    except Exception:
        raise _error("MSH^1", 100, "the message cannot be parsed") from None
    patient = _patient(message)
    if header.message_type == "ADT":
        if header.event == MERGE_EVENT:
            prior_id = _get(message, "MRG.F1.R1.C1")
            if not prior_id:
                raise _error(
                    "MRG^1^1", REQUIRED_FIELD_MISSING, "MRG-1 prior patient identifier is required"
                )
            _check(prior_id, "LO", "MRG^1^1", "MRG-1 prior patient identifier")
            authority = _authority(message, "MRG.F1.R1.C4")
            return PatientMerge(patient, prior_id, authority)
        return PatientUpdate(patient)
    if header.message_type == "ORM":
        return _orm(message, patient)
    return _omi(message, patient)


def _segments(message: Any, name: str) -> int:
    try:
        return len(message.segments(name))
    except KeyError:
        return 0


def _patient(message: Any) -> PatientFields:
    if not _segments(message, "PID"):
        raise _error("PID", REQUIRED_FIELD_MISSING, "the PID segment is required")
    # PID-3: the identifier of the first repetition that has one
    repetition = next(
        (r for r in range(1, 11) if _get(message, f"PID.F3.R{r}.C1")),
        None,
    )
    if repetition is None:
        raise _error("PID^1^3", REQUIRED_FIELD_MISSING, "PID-3 patient identifier is required")
    patient_id = _get(message, f"PID.F3.R{repetition}.C1")
    _check(patient_id, "LO", "PID^1^3", "PID-3 patient identifier")
    issuer = _authority(message, f"PID.F3.R{repetition}.C4")
    name = _person_name(message, "PID.F5.R1")
    if name:
        _check(name, "PN", "PID^1^5", "PID-5 patient name")
    birth = _get(message, "PID.F7.R1.C1")
    birth_date = ""
    if birth:
        birth_date = date_key(birth[:8])
        if not birth_date:
            raise _error("PID^1^7", DATA_TYPE_ERROR, "PID-7 birth date is not a date")
    sex_code = _get(message, "PID.F8.R1.C1").upper()
    if sex_code and sex_code not in _SEX:
        raise _error("PID^1^8", TABLE_VALUE_NOT_FOUND, "PID-8 sex is not one of M, F, O, U, A, N")
    return PatientFields(patient_id, issuer, name, birth_date, _SEX.get(sex_code, ""))


def _authority(message: Any, key: str) -> str | None:
    """A CX's assigning authority (HD): its namespace ID, else its universal ID; None when the
    identifier has none."""
    namespace = _get(message, key + ".S1") or _get(message, key)
    universal = _get(message, key + ".S2")
    value = namespace or universal
    if not value:
        return None
    _check(value, "LO", key.replace(".", "^"), "assigning authority")
    return value


def _person_name(message: Any, key: str) -> str:
    """An XPN as a DICOM PN: family^given^middle^prefix^suffix (HL7 puts the suffix before
    the prefix), empty trailing components dropped."""
    family = _get(message, f"{key}.C1")
    given, middle = _get(message, f"{key}.C2"), _get(message, f"{key}.C3")
    suffix, prefix = _get(message, f"{key}.C4"), _get(message, f"{key}.C5")
    return "^".join([family, given, middle, prefix, suffix]).rstrip("^")


def _check(value: str, vr: str, location: str, what: str) -> None:
    problem = text_problem(value, vr)
    if problem:
        raise _error(location, DATA_TYPE_ERROR, f"{what}: {problem}")


def _orm(message: Any, patient: PatientFields) -> OrderMessage:
    """ORM^O01: one ORC and OBR (and ZDS) per step, the first ORC's control for them all."""
    orders, requests = _segments(message, "ORC"), _segments(message, "OBR")
    if not orders:
        raise _error("ORC", REQUIRED_FIELD_MISSING, "the ORC segment is required")
    control, order_key = _order(message, "ORC1")
    steps = []
    if ORDER_CONTROLS[control] in ("new", "change"):
        if not requests:
            raise _error("OBR", REQUIRED_FIELD_MISSING, "the OBR segment is required")
        for n in range(1, requests + 1):
            orc = f"ORC{min(n, orders)}"
            obr = f"OBR{n}"
            start = _get(message, f"{orc}.F7.R1.C4") or _get(message, f"{obr}.F27.R1.C4")
            where = (
                f"ORC^{min(n, orders)}^7" if _get(message, f"{orc}.F7.R1.C4") else f"OBR^{n}^27"
            )
            study_uid = _get(message, f"ZDS{n}.F1.R1.C1") if _segments(message, "ZDS") >= n else ""
            code = _get(message, f"{obr}.F44.R1.C1")
            steps.append(
                _step(
                    accession=(_get(message, f"{obr}.F18"), f"OBR^{n}^18"),
                    requested=(_get(message, f"{obr}.F19"), f"OBR^{n}^19"),
                    step_id=(_get(message, f"{obr}.F20"), f"OBR^{n}^20"),
                    modality=(_get(message, f"{obr}.F24"), f"OBR^{n}^24"),
                    procedure=_procedure(message, obr, code),
                    station=(_get(message, f"{orc}.F18.R1.C1"), f"ORC^{min(n, orders)}^18"),
                    start=(start, where),
                    study_uid=(study_uid, f"ZDS^{n}^1"),
                )
            )
    return OrderMessage(ORDER_CONTROLS[control], order_key, patient, tuple(steps))


def _omi(message: Any, patient: PatientFields) -> OrderMessage:
    """OMI^O23: one ORC, its TQ1 and OBR, and an IPC per step."""
    if not _segments(message, "ORC"):
        raise _error("ORC", REQUIRED_FIELD_MISSING, "the ORC segment is required")
    control, order_key = _order(message, "ORC1")
    steps = []
    if ORDER_CONTROLS[control] in ("new", "change"):
        count = _segments(message, "IPC")
        if not count:
            raise _error("IPC", REQUIRED_FIELD_MISSING, "the IPC segment is required")
        start = _get(message, "TQ1.F7.R1.C1") if _segments(message, "TQ1") else ""
        code = _get(message, "OBR.F44.R1.C1") if _segments(message, "OBR") else ""
        procedure = _procedure(message, "OBR", code) if _segments(message, "OBR") else ("", "")
        for n in range(1, count + 1):
            ipc = f"IPC{n}"
            steps.append(
                _step(
                    accession=(_get(message, f"{ipc}.F1.R1.C1"), f"IPC^{n}^1"),
                    requested=(_get(message, f"{ipc}.F2.R1.C1"), f"IPC^{n}^2"),
                    step_id=(_get(message, f"{ipc}.F4.R1.C1"), f"IPC^{n}^4"),
                    modality=(_get(message, f"{ipc}.F5.R1.C1"), f"IPC^{n}^5"),
                    procedure=procedure,
                    station=(_get(message, f"{ipc}.F9.R1.C1"), f"IPC^{n}^9"),
                    start=(start, "TQ1^1^7"),
                    study_uid=(_get(message, f"{ipc}.F3.R1.C1"), f"IPC^{n}^3"),
                )
            )
    return OrderMessage(ORDER_CONTROLS[control], order_key, patient, tuple(steps))


def _order(message: Any, orc: str) -> tuple[str, str]:
    control = _get(message, f"{orc}.F1").upper()
    if not control:
        raise _error("ORC^1^1", REQUIRED_FIELD_MISSING, "ORC-1 order control is required")
    if control not in ORDER_CONTROLS:
        raise _error(
            "ORC^1^1",
            TABLE_VALUE_NOT_FOUND,
            f"ORC-1 order control {control[:4]!r} is not taken ({', '.join(ORDER_CONTROLS)})",
        )
    key = _get(message, f"{orc}.F2.R1.C1") or _get(message, f"{orc}.F3.R1.C1")
    if not key:
        raise _error(
            "ORC^1^2",
            REQUIRED_FIELD_MISSING,
            "ORC-2 placer order number (or ORC-3 filler order number) is required",
        )
    _check(key, "LO", "ORC^1^2", "ORC-2 order number")
    return control, key


def _procedure(message: Any, obr: str, code: str) -> tuple[str, str]:
    """(code^meaning^scheme, meaning) of OBR-4 (universal service ID), OBR-44's code first."""
    own = _get(message, f"{obr}.F4.R1.C1")
    meaning = _get(message, f"{obr}.F4.R1.C2")
    scheme = _get(message, f"{obr}.F4.R1.C3")
    value = "^".join([code or own, meaning, scheme]).rstrip("^")
    if meaning:
        _check(meaning, "LO", f"{obr.rstrip('0123456789')}^1^4", "OBR-4 procedure")
    return value[:200], meaning


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
    """An HL7 TS/DTM (YYYYMMDD[HHMM[SS[.S]]][+ZZZZ]) as (YYYYMMDD, HHMMSS or HHMM or ''); ('',
    '') when it is not one. The offset is dropped: the worklist is in the hospital's time."""
    digits = value.split("+")[0].split("-")[0].split(".")[0]
    if not digits.isdigit() or len(digits) < 8:
        return "", ""
    day = date_key(digits[:8])
    clock = digits[8:14]
    if not day or len(clock) not in (0, 2, 4, 6):
        return "", ""
    if clock and (int(clock[:2]) > 23 or (len(clock) >= 4 and int(clock[2:4]) > 59)):
        return "", ""
    return day, clock


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
        location = "^".join(escape(part) for part in error.location.split("^"))
        meaning = _MEANINGS.get(error.code, "")
        segments.append(
            "|".join(
                [
                    "ERR",
                    "",
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
