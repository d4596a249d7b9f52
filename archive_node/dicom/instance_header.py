"""Read what the index needs from a stored Part 10 file's header, never its pixel data."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from ..errors import StoreRejected
from . import header_scan, status
from .values import is_valid_uid

log = logging.getLogger(__name__)

# Values larger than this are left on disk while parsing (an Encapsulated MP4 or PDF, say).
DEFER_SIZE = 64 * 1024


@dataclass(frozen=True)
class InstanceHeader:
    """The attributes of one instance that the index keeps (PS3.4 C.6.1.1 levels)."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_uid: str
    series_uid: str
    patient_id: str
    issuer_of_patient_id: str | None
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    referring_physician: str
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    instance_number: int | None
    number_of_frames: int | None


# The index's attributes of a dataset, by tag: read from the raw bytes where they are plain
# (_plain), by pydicom otherwise.
_TAGS = {
    "SOPInstanceUID": 0x00080018,
    "SOPClassUID": 0x00080016,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "PatientID": 0x00100020,
    "IssuerOfPatientID": 0x00100021,
    "PatientName": 0x00100010,
    "PatientBirthDate": 0x00100030,
    "PatientSex": 0x00100040,
    "StudyDate": 0x00080020,
    "StudyTime": 0x00080030,
    "AccessionNumber": 0x00080050,
    "StudyID": 0x00200010,
    "StudyDescription": 0x00081030,
    "ReferringPhysicianName": 0x00080090,
    "Modality": 0x00080060,
    "SeriesNumber": 0x00200011,
    "SeriesDescription": 0x0008103E,
    "BodyPartExamined": 0x00180015,
    "InstanceNumber": 0x00200013,
    "NumberOfFrames": 0x00280008,
}
# The VRs of those attributes (PS3.6), and None: an implicit VR syntax's raw element has none.
_TEXT_VRS = frozenset({None, "UI", "LO", "PN", "DA", "TM", "CS", "SH", "IS"})
# One value of printable ASCII: the same characters in every character set PS3.3 C.12.1.1.2
# allows (each keeps G0 ASCII; ISO 2022 switches only with ESC, which is not printable).
_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")  # no backslash: a single value
_DIGITS = re.compile(r"[+-]?[0-9]+")
USE_PLAIN_VALUES = True  # False: every value through pydicom (a test compares the two)


def _plain(ds: Any, keyword: str) -> str | None:
    """A top-level attribute's value read from its raw bytes, as _text would give it ('' when
    absent), or None when pydicom must convert it: anything but one value of printable ASCII
    in a text VR. pydicom's conversion of such a value only strips it, so the two agree
    (tests/unit/test_instance_header_plain.py); the ~20 conversions per instance were a
    sixth of the node's CPU per small C-STORE."""
    if not USE_PLAIN_VALUES:
        return None
    try:
        raw = ds.get_item(_TAGS[keyword])
    except Exception:
        return None
    if raw is None:
        return ""
    value = getattr(raw, "value", None)
    if not isinstance(value, bytes) or getattr(raw, "VR", "") not in _TEXT_VRS:
        return None  # converted already, deferred, or not text
    if not _PLAIN.fullmatch(value):
        return None
    return value.decode("ascii").strip()


def _text(ds: Any, keyword: str) -> str:
    """A string attribute as text ('' when absent or unreadable); PN as Family^Given..."""
    plain = _plain(ds, keyword)
    if plain is not None:
        return plain
    try:
        value = ds.get(keyword)
    except Exception:  # a malformed optional value must not refuse the instance
        log.debug("unreadable %s, recorded as empty", keyword)
        return ""
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _integer(ds: Any, keyword: str) -> int | None:
    plain = _plain(ds, keyword)
    if plain == "":
        return None
    if plain is not None and _DIGITS.fullmatch(plain):
        return int(plain)
    try:
        value = ds.get(keyword)
        return None if value is None or value == "" else int(value)
    except Exception:
        log.debug("unreadable %s, recorded as empty", keyword)
        return None


def read_header(
    path: Path, *, expected_sop_class: str, expected_sop_instance: str
) -> InstanceHeader:
    """Parse the header of a received file and check it against the C-STORE command.

    Raises StoreRejected with 0xC000 when the dataset cannot be parsed, 0xA902 when a Study,
    Series or SOP Instance UID is missing, 0xA903 when one is malformed, and 0xA901/0xA900 when
    the dataset's SOP Instance/Class UID differs from the command's Affected SOP Instance/Class.
    """
    try:
        header = _scanned(path) or _parse(path)[1]
    except OSError:
        if not path.is_file():  # the file went away: our storage's problem, not the sender's
            raise
        raise StoreRejected(
            status.CANNOT_UNDERSTAND, "dataset cannot be parsed: truncated"
        ) from None
    if header.sop_instance_uid != expected_sop_instance.strip():
        raise StoreRejected(
            status.UID_MISMATCH,
            # the reason first: an Error Comment is cut at 64 characters, the log keeps all
            f"SOPInstanceUID differs from the request's: dataset {header.sop_instance_uid}, "
            f"request {expected_sop_instance}",
        )
    if header.sop_class_uid != expected_sop_class.strip():
        raise StoreRejected(
            status.DATASET_MISMATCH,
            f"SOPClassUID differs from the request's: dataset {header.sop_class_uid}, "
            f"request {expected_sop_class}",
        )
    return header


def read_kept_header(path: Path) -> tuple[InstanceHeader, Any]:
    """The index's attributes of a file already in the store, and its File Meta Information
    (provenance.from_file_meta reads the sender from it), for `verify` and `reindex`.

    Checked as read_header checks a received file, but against no C-STORE command. Raises
    OSError when the file cannot be read (a truncated one included), StoreRejected (0xC000,
    0xA902, 0xA903: see read_header) when it is not a DICOM file the node would have kept.
    """
    ds, header = _parse(path)
    return header, ds.file_meta


_WANTED = frozenset(_TAGS.values())
_KEYWORDS = {tag: keyword for keyword, tag in _TAGS.items()}
_UIDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")
_INTEGERS = ("SeriesNumber", "InstanceNumber", "NumberOfFrames")


def _scanned(path: Path) -> InstanceHeader | None:
    """The header read without pydicom (header_scan.py) when every attribute the index keeps
    is plain (_plain's rule; a UID's one NUL of padding dropped, as pydicom drops it), else
    None. Raises OSError, or StoreRejected for a missing or malformed UID."""
    if not USE_PLAIN_VALUES:
        return None
    found = header_scan.scan(path, _WANTED)
    if found is None:
        return None
    syntax, raw = found
    values = dict.fromkeys(_TAGS, "")
    for tag, (vr, value) in raw.items():
        keyword = _KEYWORDS[tag]
        vr_name = vr.decode("ascii", "replace") if vr is not None else None
        if vr_name not in _TEXT_VRS:
            return None
        if (vr_name == "UI" or (vr is None and keyword in _UIDS)) and value.endswith(b"\x00"):
            value = value[:-1]  # PS3.5 6.2: a UID is padded with one NUL
        if not _PLAIN.fullmatch(value):
            return None
        values[keyword] = value.decode("ascii").strip()
    if any(values[k] and not _DIGITS.fullmatch(values[k]) for k in _INTEGERS):
        return None
    _check_uids({keyword: values[keyword] for keyword in _UIDS})
    return _header(
        syntax, values, lambda keyword: int(values[keyword]) if values[keyword] else None
    )


def _check_uids(uids: dict[str, str]) -> None:
    for keyword, value in uids.items():
        if not value:
            raise StoreRejected(status.MISSING_UID, f"{keyword} is missing")
        if not is_valid_uid(value):
            raise StoreRejected(status.MALFORMED_UID, f"{keyword} {value!r} is not a valid UID")


def _parse(path: Path) -> tuple[Any, InstanceHeader]:
    """The header of a Part 10 file, its four UIDs present and fit for a path, and what the
    index keeps of it. Raises OSError, or StoreRejected (0xC000, 0xA902, 0xA903)."""
    try:
        ds = read_stored_header(path)
        transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
        uids = {keyword: _uid(ds, keyword) for keyword in _UIDS}
    except OSError:
        raise
    except (InvalidDicomError, ValueError, KeyError, AttributeError, EOFError) as exc:
        raise StoreRejected(status.CANNOT_UNDERSTAND, f"dataset cannot be parsed: {exc}") from None
    except Exception as exc:  # pydicom raises a variety of errors on corrupt input
        raise StoreRejected(
            status.CANNOT_UNDERSTAND, f"dataset cannot be parsed: {type(exc).__name__}: {exc}"
        ) from None
    _check_uids(uids)
    values = {keyword: _text(ds, keyword) for keyword in _TAGS if keyword not in _INTEGERS}
    return ds, _header(transfer_syntax, {**values, **uids}, lambda k: _integer(ds, k))


def _header(
    syntax: str, values: dict[str, str], integer: Callable[[str], int | None]
) -> InstanceHeader:
    """The header of a transfer syntax, the text values by keyword and a way to the integers."""
    return InstanceHeader(
        sop_class_uid=values["SOPClassUID"],
        sop_instance_uid=values["SOPInstanceUID"],
        transfer_syntax_uid=syntax,
        study_uid=values["StudyInstanceUID"],
        series_uid=values["SeriesInstanceUID"],
        patient_id=values["PatientID"],
        issuer_of_patient_id=values["IssuerOfPatientID"] or None,
        patient_name=values["PatientName"],
        patient_birth_date=values["PatientBirthDate"],
        patient_sex=values["PatientSex"],
        study_date=values["StudyDate"],
        study_time=values["StudyTime"],
        accession_number=values["AccessionNumber"],
        study_id=values["StudyID"],
        study_description=values["StudyDescription"],
        referring_physician=values["ReferringPhysicianName"],
        modality=values["Modality"],
        series_number=integer("SeriesNumber"),
        series_description=values["SeriesDescription"],
        body_part=values["BodyPartExamined"],
        instance_number=integer("InstanceNumber"),
        number_of_frames=integer("NumberOfFrames"),
    )


def _uid(ds: Any, keyword: str) -> str:
    plain = _plain(ds, keyword)
    return plain if plain is not None else str(ds.get(keyword) or "").strip()


def read_stored_header(path: str | Path) -> Any:
    """The whole header of a file, without its pixel data and with large values left on disk,
    as a pydicom Dataset (also for C-FIND keys the index does not hold). Raises OSError or a
    pydicom error when unreadable."""
    return dcmread(path, stop_before_pixels=True, defer_size=DEFER_SIZE)
