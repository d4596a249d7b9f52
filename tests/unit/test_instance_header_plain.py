"""The index's attributes read from plain raw bytes (dicom/instance_header._plain, and without
pydicom at all by dicom/header_scan.py) equal what pydicom's own conversion gives, value by
value, in every encoding and character set: the fast read is only a shortcut for values pydicom
would merely strip."""

from __future__ import annotations

import itertools
import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from archive_node.dicom import header_scan, instance_header
from archive_node.errors import StoreRejected
from tests.helpers import dicom_objects

SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian]
# raw values of every shape: padded, multi-valued, non-ASCII, NUL-padded, control characters,
# an ISO 2022 escape, empty, spaces only, numbers with signs and decimals
VALUES = [
    b"PLAIN",
    b"TRAILING ",
    b" LEADING",
    b"  BOTH  ",
    b"A\\B",
    b"A \\ B ",
    b"NUL\x00",
    b"",
    b"  ",
    b"Ha\xefvard",  # Latin-1 / UTF-8 bytes
    b"\xc3\xa6\xc3\xb8",
    b"\x1b$B\x3b\x33\x45\x44\x1b(B",  # ISO 2022 IR 87
    b"TAB\tINSIDE",
    b"Doe^John^^^",
    b"+12",
    b"-3 ",
    b" 7",
    b"1.0",
    b"12345678901",
    b"1.2.840.10008.5.1.4.1.1.7\x00",
]
VALUES = [v + b" " if len(v) % 2 else v for v in VALUES]  # PS3.5 7.1.1: even lengths
CHARSETS = [None, "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87", ["", "ISO 2022 IR 87"], "GB18030"]
KEYWORDS = [k for k in instance_header._TAGS if k not in ("SOPInstanceUID", "SOPClassUID")]


@pytest.fixture(autouse=True)
def _plain_reading(monkeypatch):
    """Whatever a node in this process was served with (node.fast_paths), read plain here."""
    monkeypatch.setattr(instance_header, "USE_PLAIN_VALUES", True)


def _write(tmp_path: Path, name: str, syntax: str, charset: str | None, raw: dict) -> Path:
    """A file whose `raw` values are exactly the bytes given: written by pydicom with a
    placeholder of the same length, which is then overwritten in place (pydicom would convert
    what it writes)."""
    ds = dicom_objects.secondary_capture(transfer_syntax=syntax, charset=charset)
    del ds.PixelData  # the header is all that is read
    little = syntax != ExplicitVRBigEndian
    for keyword, value in raw.items():
        placeholder = ("1" if _vr(keyword) == "IS" else "Z") * len(value)
        setattr(ds, keyword, placeholder)
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    data = bytearray(path.read_bytes())
    for keyword, value in raw.items():
        tag = instance_header._TAGS[keyword]
        group, element = tag >> 16, tag & 0xFFFF
        head = struct.pack("<HH" if little else ">HH", group, element)
        if syntax != ImplicitVRLittleEndian:
            head += _vr(keyword).encode()
        at = data.index(head, 132 + 12) + 8  # past the file meta; short explicit or implicit
        assert data[at : at + len(value)] == placeholder.encode(), keyword
        data[at : at + len(value)] = value
    path.write_bytes(bytes(data))
    return path


def _vr(keyword: str) -> str:
    return dictionary_VR(keyword)


_FIELDS = {
    "PatientID": "patient_id",
    "IssuerOfPatientID": "issuer_of_patient_id",
    "PatientName": "patient_name",
    "PatientBirthDate": "patient_birth_date",
    "PatientSex": "patient_sex",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "AccessionNumber": "accession_number",
    "StudyID": "study_id",
    "StudyDescription": "study_description",
    "ReferringPhysicianName": "referring_physician",
    "Modality": "modality",
    "SeriesNumber": "series_number",
    "SeriesDescription": "series_description",
    "BodyPartExamined": "body_part",
    "InstanceNumber": "instance_number",
    "NumberOfFrames": "number_of_frames",
}


def _pydicom_raises(path: Path, keyword: str) -> bool:
    try:
        instance_header.read_stored_header(path).get(keyword)
    except Exception:
        return True
    return False


def _both(path: Path):
    """_parse with the plain read and without it: (header or the refusal) each."""
    results = []
    for plain in (True, False):
        instance_header.USE_PLAIN_VALUES = plain
        try:  # as read_header reads a received file
            results.append(instance_header._scanned(path) or instance_header._parse(path)[1])
        except StoreRejected as exc:
            results.append((exc.status, str(exc)))
        finally:
            instance_header.USE_PLAIN_VALUES = True
    return results


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("charset", CHARSETS)
def test_every_value_as_pydicom_gives_it(tmp_path, syntax, charset):
    for number, (keyword, value) in enumerate(itertools.product(KEYWORDS, VALUES)):
        path = _write(tmp_path, f"{number}.dcm", syntax, charset, {keyword: value})
        fast, slow = _both(path)
        if fast != slow:
            # only where pydicom cannot convert the value at all (_text then records ''):
            # "Doe^John^^^" under a lone ISO 2022 IR 87 raises IndexError in pydicom 3.0
            assert _pydicom_raises(path, keyword), (keyword, value, fast, slow)
            assert getattr(slow, _FIELDS[keyword]) in ("", None), (keyword, value)
            assert getattr(fast, _FIELDS[keyword]) == value.decode("ascii").strip()


def test_values_are_read_plain_where_they_can_be(tmp_path, monkeypatch):
    """The shortcut is taken (a value pydicom would convert is not asked of pydicom)."""
    path = _write(tmp_path, "a.dcm", ExplicitVRLittleEndian, None, {"PatientID": b" P1 "})
    ds = instance_header.read_stored_header(path)
    assert instance_header._plain(ds, "PatientID") == "P1"
    assert instance_header._plain(ds, "IssuerOfPatientID") == ""  # absent
    assert str(ds.PatientName) == "TEST^PATIENT"  # converted by pydicom: no longer raw
    assert instance_header._plain(ds, "PatientName") is None


BUNDLED = Path(pydicom.__file__).parent / "data" / "test_files"  # on disk, never downloaded


@pytest.mark.parametrize(
    "name", sorted(p.name for p in BUNDLED.glob("*.dcm") if "deflate" not in p.name.lower())
)
def test_pydicoms_own_test_files(name):
    fast, slow = _both(BUNDLED / name)
    assert fast == slow


def _sequence_first(syntax: str, *, undefined: bool) -> Path:
    """A file with nested sequences of undefined (or defined) length before the index's
    attributes, in `syntax` as pydicom writes it."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = dicom_objects.secondary_capture(transfer_syntax=syntax)
    inner = Dataset()
    inner.CodeValue, inner.CodingSchemeDesignator = "121322", "DCM"
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = "1.2.3", "1.2.3.4"
    item.PurposeOfReferenceCodeSequence = Sequence([inner])
    ds.ReferencedImageSequence = Sequence([item, item])  # (0008,1140), before (0008,1030)
    ds.AnatomicRegionSequence = Sequence([inner])  # (0008,2218)
    for sequence in (ds.ReferencedImageSequence, ds.AnatomicRegionSequence):
        sequence.is_undefined_length = undefined
        for each in sequence:
            each.is_undefined_length_sequence_item = undefined
    item.PurposeOfReferenceCodeSequence.is_undefined_length = undefined
    return ds


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
@pytest.mark.parametrize("undefined", [True, False])
def test_sequences_before_the_attributes_are_skipped(tmp_path, syntax, undefined):
    path = tmp_path / "seq.dcm"
    _sequence_first(syntax, undefined=undefined).save_as(path, enforce_file_format=True)
    assert (b"\xff\xff\xff\xff" in path.read_bytes()) is undefined
    fast, slow = _both(path)
    assert fast == slow
    assert instance_header._scanned(path) == slow  # read without pydicom


def test_what_the_scan_leaves_to_pydicom(tmp_path):
    big = tmp_path / "big.dcm"
    dicom_objects.secondary_capture(transfer_syntax=ExplicitVRBigEndian).save_as(
        big, enforce_file_format=True
    )
    long = tmp_path / "long.dcm"
    ds = dicom_objects.secondary_capture()
    ds.add_new(0x00091010, "LO", "private")  # a private creator
    ds.add_new(0x00091011, "UT", "x" * 70_000)  # before (0010,0010): past the window
    ds.save_as(long, enforce_file_format=True)
    for path in (big, long):
        assert header_scan.scan(path, instance_header._WANTED) is None
        fast, slow = _both(path)
        assert fast == slow
    plain = tmp_path / "plain.dcm"
    dicom_objects.secondary_capture().save_as(plain, enforce_file_format=True)
    assert header_scan.scan(plain, instance_header._WANTED) is not None


@pytest.mark.parametrize("fast_paths", [True, False, ["reactor"]])
def test_node_fast_paths_false_reads_every_header_through_pydicom(tmp_path, fast_paths):
    from archive_node.net.server import ArchiveServer
    from archive_node.service import ArchiveService
    from tests.helpers.serving import make_config

    config = make_config(
        tmp_path, f"sqlite:///{tmp_path}/i.sqlite3", node={"fast_paths": fast_paths}
    )
    service = ArchiveService.from_config(config)
    try:
        ArchiveServer(service)
        assert instance_header.USE_PLAIN_VALUES is (fast_paths is not False)
    finally:
        instance_header.USE_PLAIN_VALUES = True
        service.index.close()
