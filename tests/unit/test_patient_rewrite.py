"""A corrected copy of a stored file (dicom/patient_rewrite.py), checked against pydicom making
the same change: the patient attributes replaced, every other element and byte as stored, in
each transfer syntax; character sets; memory that does not grow with the object; bad files."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from archive_node.dicom.patient_rewrite import PatientAttributes, Unrewritable, rewrite_patient
from tests.helpers import dicom_objects

NEW = PatientAttributes(
    patient_id="RIGHT-1",
    issuer="UNN",
    name="Nordmann^Kari",
    birth_date="19750505",
    sex="F",
    other_ids=(("WRONG-1", "UNN"),),
)
OWNED = {0x00100010, 0x00100020, 0x00100021, 0x00100030, 0x00100040, 0x00101002, 0x00100000}


def assert_rewritten(source: Path, target: Path, patient: PatientAttributes) -> None:
    before, after = dcmread(source), dcmread(target)
    assert after.file_meta == before.file_meta
    raw_before, raw_after = source.read_bytes(), target.read_bytes()
    meta_end = 144 + int.from_bytes(raw_before[140:144], "little")
    assert raw_after[:meta_end] == raw_before[:meta_end]
    assert (after.PatientID, after.IssuerOfPatientID, str(after.PatientName)) == (
        patient.patient_id,
        patient.issuer,
        patient.name,
    )
    assert (after.PatientBirthDate, after.PatientSex) == (patient.birth_date, patient.sex)
    if patient.other_ids:
        assert [(i.PatientID, i.IssuerOfPatientID) for i in after.OtherPatientIDsSequence] == list(
            patient.other_ids
        )
    for elem in before:
        if int(elem.tag) in OWNED or elem.tag == 0x00080005:
            continue
        assert after[elem.tag].value == elem.value, elem.tag
    assert {int(e.tag) for e in after} - OWNED - {0x00080005} == {
        int(e.tag) for e in before
    } - OWNED - {0x00080005}
    if "PixelData" in before:  # the stored bytes, to the last
        assert raw_after.endswith(raw_before[-len(before.PixelData) :])


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",  # Explicit VR Little Endian, ISO_IR 100
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "JPEG2000.dcm",  # encapsulated
        "SC_rgb_jpeg_dcmtk.dcm",
        "rtplan.dcm",  # sequences before group 0x0010
    ],
)
def test_each_syntax_is_rewritten_as_pydicom_would_read_it(name, tmp_path):
    source = Path(dicom_objects.testdata(name))
    target = tmp_path / "out.dcm"
    rewrite_patient(source, target, NEW)
    assert_rewritten(source, target, NEW)


def test_other_group_0010_elements_stay_and_missing_ones_are_inserted(tmp_path):
    ds = dicom_objects.secondary_capture()
    del ds.PatientSex
    del ds.PatientBirthDate
    ds.PatientAge = "042Y"
    ds.PatientWeight = "70"
    item = Dataset()
    item.PatientID, item.IssuerOfPatientID = "KEPT", "X"
    ds.OtherPatientIDsSequence = Sequence([item])
    source = dicom_objects.write(ds, tmp_path / "in.dcm")
    target = tmp_path / "out.dcm"
    plain = PatientAttributes("RIGHT-1", "UNN", "A^B", "", "")
    rewrite_patient(source, target, plain)
    after = dcmread(target)
    assert (after.PatientAge, after.PatientWeight) == ("042Y", "70")
    assert after.OtherPatientIDsSequence[0].PatientID == "KEPT"  # no prior IDs: kept as is
    assert "PatientSex" in after and after.PatientSex == ""
    tags = [int(e.tag) for e in after]
    assert tags == sorted(tags)


def test_a_group_length_of_the_patient_group_is_dropped(tmp_path):
    ds = dicom_objects.secondary_capture()
    ds.add_new(0x00100000, "UL", 1234)
    source = dicom_objects.write(ds, tmp_path / "in.dcm")
    rewrite_patient(source, tmp_path / "out.dcm", NEW)
    assert 0x00100000 not in dcmread(tmp_path / "out.dcm")


def test_an_undefined_length_sequence_before_the_patient_is_copied(tmp_path):
    ds = dicom_objects.secondary_capture()
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.3", generate_uid()
    ds.ReferencedStudySequence = Sequence([ref])
    ds["ReferencedStudySequence"].is_undefined_length = True
    source = dicom_objects.write(ds, tmp_path / "in.dcm")
    assert b"\xff\xff\xff\xff" in source.read_bytes()
    rewrite_patient(source, tmp_path / "out.dcm", NEW)
    assert_rewritten(source, tmp_path / "out.dcm", NEW)


def test_character_sets(tmp_path):
    norwegian = PatientAttributes("P", "UNN", "Ødegård^Bjørn", "", "")
    latin = dicom_objects.write(
        dicom_objects.secondary_capture(charset="ISO_IR 100"), tmp_path / "latin.dcm"
    )
    rewrite_patient(latin, tmp_path / "latin-out.dcm", norwegian)
    after = dcmread(tmp_path / "latin-out.dcm")
    assert (after.SpecificCharacterSet, str(after.PatientName)) == ("ISO_IR 100", "Ødegård^Bjørn")
    ascii_file = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "ascii.dcm")
    rewrite_patient(ascii_file, tmp_path / "ascii-out.dcm", norwegian)
    after = dcmread(tmp_path / "ascii-out.dcm")
    assert (after.SpecificCharacterSet, str(after.PatientName)) == ("ISO_IR 192", "Ødegård^Bjørn")
    cyrillic = PatientAttributes("P", "UNN", "Иванов^Иван", "", "")
    with pytest.raises(Unrewritable) as refused:
        rewrite_patient(latin, tmp_path / "never.dcm", cyrillic)
    assert "Иван" not in str(refused.value) and "ISO_IR 100" in str(refused.value)


def test_memory_does_not_grow_with_the_object(tmp_path):
    source = dicom_objects.write_large_video(tmp_path / "big.dcm", 64 * 1024 * 1024)
    tracemalloc.start()
    try:
        rewrite_patient(source, tmp_path / "out.dcm", NEW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak
    assert os.path.getsize(tmp_path / "out.dcm") > 64 * 1024 * 1024


@pytest.mark.parametrize("cut", [150, 200, 260])
def test_bad_files_are_refused(tmp_path, cut):
    (tmp_path / "not.dcm").write_bytes(b"\x00" * 300)
    with pytest.raises(Unrewritable, match="Part 10"):
        rewrite_patient(tmp_path / "not.dcm", tmp_path / "out.dcm", NEW)
    whole = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "whole.dcm")
    raw = whole.read_bytes()
    meta_end = 144 + int.from_bytes(raw[140:144], "little")
    (tmp_path / "cut.dcm").write_bytes(raw[: meta_end + cut - 140])
    with pytest.raises(Unrewritable):
        rewrite_patient(tmp_path / "cut.dcm", tmp_path / "out.dcm", NEW)
