"""A stored Part 10 file with its patient attributes corrected, written as a new file, streamed:
what an instance of a corrected study leaves the node as (C-MOVE, C-GET).

The stored file is never changed (its SHA-256 from receipt stays true). The copy holds the
preamble and File Meta Information (PS3.10 7.1) byte for byte, then the dataset's top-level
elements up to group 0x0010 as they are (walked by their headers, PS3.5 7.1, 7.5: nested
sequences of undefined length are skipped item by item, never read into memory), then the
Patient Module's identifying attributes (PS3.3 C.7.1.1: PatientName, PatientID,
IssuerOfPatientID, PatientBirthDate, PatientSex, and OtherPatientIDsSequence with the
identifiers the study had before) encoded by pydicom in the file's own transfer syntax, the
file's other group-0x0010 elements as they are, and from the first element past group 0x0010
(pixel data included) every byte as stored, copied in 1 MiB chunks. Memory does not grow with
the object's size.

A value the file's character set cannot encode makes the copy declare ISO_IR 192 when the file
uses the default repertoire (ASCII is a subset of UTF-8: no other value changes meaning);
otherwise the file is not rewritten (Unrewritable). A deflated dataset (PS3.5 A.5) is not
rewritten either: it would have to be inflated and deflated again whole.
"""

from __future__ import annotations

import shutil
import struct
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from .provenance import meta_elements
from .structure import LONG_VRS

CHUNK = 1 << 20
MAX_PREFIX = 16 * 1024 * 1024  # bytes of elements before group 0x0011 that are walked
UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
CHARSET = 0x00080005
PATIENT_NAME, PATIENT_ID, ISSUER = 0x00100010, 0x00100020, 0x00100021
BIRTH_DATE, SEX, OTHER_IDS = 0x00100030, 0x00100040, 0x00101002
_GROUP_LENGTH = 0x00100000


@dataclass(frozen=True)
class PatientAttributes:
    """The patient attributes an instance leaves with."""

    patient_id: str
    issuer: str
    name: str
    birth_date: str
    sex: str
    other_ids: tuple[tuple[str, str], ...] = ()  # prior (PatientID, IssuerOfPatientID)


class Unrewritable(ValueError):
    """Why a file cannot be rewritten (never a patient's value)."""


@dataclass(frozen=True)
class _Element:
    tag: int
    start: int
    end: int


def rewrite_patient(source: Path, target: Path, patient: PatientAttributes) -> None:
    """Write at `target` the Part 10 file `source` with its patient attributes replaced.
    Raises Unrewritable, OSError."""
    with open(source, "rb") as src:
        start, syntax = _file_meta(src)
        if syntax == DeflatedExplicitVRLittleEndian:
            raise Unrewritable("a deflated dataset is not rewritten")
        implicit = syntax == ImplicitVRLittleEndian
        little = syntax != ExplicitVRBigEndian
        elements, tail = _walk(src, start, implicit, little)
        charset = _charset(src, elements, little)
        encodings, declared = _encodings(charset, patient)
        new = _encoded(patient, encodings, implicit, little)
        if declared:
            new[CHARSET] = _encode(DataElement(CHARSET, "CS", declared), [], implicit, little)
        with open(target, "wb") as out:
            _copy(src, out, 0, start)
            for piece in _merged(elements, new):
                if isinstance(piece, bytes):
                    out.write(piece)
                else:
                    _copy(src, out, piece.start, piece.end)
            src.seek(tail)
            shutil.copyfileobj(src, out, CHUNK)


def _file_meta(src: BinaryIO) -> tuple[int, str]:
    """Where the dataset starts, and its transfer syntax (from the File Meta Information)."""
    head = src.read(144)
    if len(head) < 144 or head[128:132] != b"DICM" or head[132:138] != b"\x02\x00\x00\x00UL":
        raise Unrewritable("not a Part 10 file")
    length = struct.unpack("<I", head[140:144])[0]
    if length > MAX_PREFIX:
        raise Unrewritable(f"a File Meta Information of more than {MAX_PREFIX} bytes")
    meta = src.read(length)
    try:
        elements = dict(meta_elements(meta))
    except (ValueError, struct.error):
        raise Unrewritable("malformed or truncated File Meta Information") from None
    syntax = elements.get(0x00020010)
    if syntax is None:
        raise Unrewritable("no Transfer Syntax UID in the File Meta Information")
    return 144 + length, syntax[8:].decode("ascii", "replace").strip("\x00 ")


def _walk(src: BinaryIO, start: int, implicit: bool, little: bool) -> tuple[list[_Element], int]:
    """The top-level elements before the first one of a group past 0x0010, and where that one
    starts (the end of the file when there is none)."""
    elements: list[_Element] = []
    src.seek(start)
    position = start
    reader = _Reader(src, implicit, little)
    while True:
        if position - start > MAX_PREFIX:
            raise Unrewritable(f"more than {MAX_PREFIX} bytes before group 0x0011")
        header = src.read(4)
        if not header:
            return elements, position
        if len(header) < 4:
            raise Unrewritable("truncated dataset")
        tag = reader.tag(header)
        if tag >> 16 > 0x0010:
            return elements, position
        reader.skip_element(tag)
        end = src.tell()
        elements.append(_Element(tag, position, end))
        position = end


class _Reader:
    """Element headers of one transfer syntax, and skipping values (PS3.5 7.1, 7.5)."""

    def __init__(self, src: BinaryIO, implicit: bool, little: bool) -> None:
        self.src = src
        self.implicit = implicit
        self.order = "<" if little else ">"

    def tag(self, raw: bytes) -> int:
        group, element = struct.unpack(self.order + "HH", raw)
        return (group << 16) | element

    def _read(self, size: int) -> bytes:
        data = self.src.read(size)
        if len(data) != size:
            raise Unrewritable("truncated dataset")
        return data

    def skip_element(self, tag: int) -> None:
        """Past the value of the element whose tag was just read."""
        if self.implicit or tag >> 16 == 0xFFFE:
            length = struct.unpack(self.order + "I", self._read(4))[0]
            is_sequence = length == UNDEFINED
        else:
            vr = self._read(2)
            if vr in LONG_VRS:
                self._read(2)
                length = struct.unpack(self.order + "I", self._read(4))[0]
            else:
                length = struct.unpack(self.order + "H", self._read(2))[0]
            is_sequence = length == UNDEFINED and vr in (b"SQ", b"UN")
            if length == UNDEFINED and not is_sequence:
                raise Unrewritable("an undefined length outside a sequence")
        if is_sequence:
            self._skip_items()
        else:
            self.src.seek(length, 1)

    def _skip_items(self) -> None:
        """Past a sequence of undefined length, to its delimitation item."""
        while True:
            tag = self.tag(self._read(4))
            length = struct.unpack(self.order + "I", self._read(4))[0]
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM:
                raise Unrewritable("a sequence holds something other than items")
            if length != UNDEFINED:
                self.src.seek(length, 1)
                continue
            while True:  # an item of undefined length: its elements, to its delimiter
                inner = self.tag(self._read(4))
                if inner == _ITEM_END:
                    self._read(4)
                    break
                self.skip_element(inner)


def _charset(src: BinaryIO, elements: list[_Element], little: bool) -> list[str]:
    """The dataset's Specific Character Set values ([] when absent)."""
    for element in elements:
        if element.tag == CHARSET:
            src.seek(element.start)
            raw = src.read(element.end - element.start)
            # after the header: the tag and VR with a 2-byte length, or the tag and a length
            value = raw[8:].decode("ascii", "replace").strip("\x00 ")
            return [v.strip() for v in value.split("\\")]
    return []


def _encodings(charset: list[str], patient: PatientAttributes) -> tuple[list[str], str]:
    """The Python encodings the new values are written in, and a Specific Character Set the
    copy must declare ('' when the file's own serves). Raises Unrewritable."""
    values = [patient.name, patient.patient_id, patient.issuer]
    values += [v for pair in patient.other_ids for v in pair]
    default = not [c for c in charset if c not in ("", "ISO_IR 6")]
    if default:
        if all(v.isascii() for v in values):
            return convert_encodings(["ISO_IR 6"]), ""
        return convert_encodings(["ISO_IR 192"]), "ISO_IR 192"
    encodings = convert_encodings(charset)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pydicom warns, and replaces, what it cannot encode
        try:
            for value in values:
                encode_string(value, encodings)
        except (UserWarning, LookupError, UnicodeError):
            raise Unrewritable(
                f"the corrected values cannot be written in its character set {'/'.join(charset)}"
            ) from None
    return encodings, ""


def _encoded(
    patient: PatientAttributes, encodings: list[str], implicit: bool, little: bool
) -> dict[int, bytes | None]:
    """The new elements' bytes by tag; None drops the file's own (its group length)."""
    elements = [
        DataElement(PATIENT_NAME, "PN", patient.name),
        DataElement(PATIENT_ID, "LO", patient.patient_id),
        DataElement(ISSUER, "LO", patient.issuer),
        DataElement(BIRTH_DATE, "DA", patient.birth_date),
        DataElement(SEX, "CS", patient.sex),
    ]
    if patient.other_ids:
        items = []
        for other_id, other_issuer in patient.other_ids:
            item = Dataset()
            item.PatientID = other_id
            item.IssuerOfPatientID = other_issuer
            item.TypeOfPatientID = "TEXT"
            items.append(item)
        elements.append(DataElement(OTHER_IDS, "SQ", Sequence(items)))
    new: dict[int, bytes | None] = {
        int(e.tag): _encode(e, encodings, implicit, little) for e in elements
    }
    new[_GROUP_LENGTH] = None
    return new


def _encode(element: DataElement, encodings: list[str], implicit: bool, little: bool) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_data_element(fp, element, encodings)
    return fp.getvalue()


def _merged(elements: list[_Element], new: dict[int, bytes | None]) -> Iterator[_Element | bytes]:
    """The file's elements and the new ones in ascending tag order, the new replacing the
    file's own of the same tag."""
    pending = sorted((tag, value) for tag, value in new.items() if value is not None)
    assert all(value is not None for _, value in pending)
    for element in elements:
        while pending and pending[0][0] < element.tag:
            yield pending.pop(0)[1]
        if element.tag in new:
            continue
        yield element
    for _, value in pending:
        yield value


def _copy(src: BinaryIO, out: BinaryIO, start: int, end: int) -> None:
    src.seek(start)
    left = end - start
    while left > 0:
        chunk = src.read(min(CHUNK, left))
        if not chunk:
            raise Unrewritable("truncated dataset")
        out.write(chunk)
        left -= len(chunk)
