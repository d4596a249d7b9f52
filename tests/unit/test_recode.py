"""dicom/reencode.py: a stored uncompressed object re-encoded in Explicit or Implicit VR Little
Endian, its pixel data copied from disk in chunks (memory does not grow with the object)."""

from __future__ import annotations

import tracemalloc
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.filereader import read_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian as DEFLATED
from pydicom.uid import ExplicitVRLittleEndian as EXPLICIT
from pydicom.uid import ImplicitVRLittleEndian as IMPLICIT

from archive_node.dicom.reencode import recode
from tests.helpers import dicom_objects


def strictly_read(path, syntax):
    """The dataset as encoded, read without pydicom's guessing: an explicit VR body read as
    implicit (or the reverse) does not come out equal."""
    raw = dicom_objects.dataset_bytes(path)
    return read_dataset(BytesIO(raw), is_implicit_VR=syntax == IMPLICIT, is_little_endian=True)


@pytest.mark.parametrize(
    "stored, wanted", [(EXPLICIT, IMPLICIT), (IMPLICIT, EXPLICIT), (DEFLATED, IMPLICIT)]
)
@pytest.mark.parametrize("frames", [1, 60])  # 3 KiB of pixels (re-encoded), 180 KiB (copied)
def test_recoded_object_has_the_same_elements_and_pixels(tmp_path, stored, wanted, frames):
    ds = dicom_objects.us_multiframe(frames=frames, transfer_syntax=stored)
    source = dicom_objects.write(ds, tmp_path / "stored.dcm")
    target = tmp_path / "out.dcm"
    recode(source, target, wanted)
    assert dcmread(target).file_meta.TransferSyntaxUID == wanted
    out = strictly_read(target, wanted)
    original = dcmread(source)
    assert out.PixelData == original.PixelData
    assert [e.tag for e in out] == [e.tag for e in original]
    assert out.SOPInstanceUID == original.SOPInstanceUID and out.PatientID == original.PatientID


def test_large_pixel_data_is_copied_in_chunks(tmp_path):
    ds = dicom_objects.us_multiframe(frames=4000)  # 32 x 32 x 3 x 4000 = 12 MB of pixels
    source = dicom_objects.write(ds, tmp_path / "stored.dcm")
    target = tmp_path / "out.dcm"
    tracemalloc.start()
    try:
        recode(source, target, IMPLICIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak / 2**20:.1f} MiB allocated to re-encode 12 MB of pixels"
    assert strictly_read(target, IMPLICIT).PixelData == ds.PixelData


def test_elements_after_the_pixel_data_are_kept(tmp_path):
    ds = dicom_objects.us_multiframe(frames=60)
    ds.add_new(0xFFFCFFFC, "OB", b"\0" * 8)  # Data Set Trailing Padding
    source = dicom_objects.write(ds, tmp_path / "stored.dcm")
    recode(source, tmp_path / "out.dcm", IMPLICIT)
    out = strictly_read(tmp_path / "out.dcm", IMPLICIT)
    assert out.PixelData == ds.PixelData and 0xFFFCFFFC in out


def test_a_truncated_file_is_an_error(tmp_path):
    ds = dicom_objects.us_multiframe(frames=60)
    source = dicom_objects.write(ds, tmp_path / "stored.dcm")
    data = source.read_bytes()
    source.write_bytes(data[: len(data) - 1000])
    with pytest.raises(OSError, match="ends"):
        recode(source, tmp_path / "out.dcm", IMPLICIT)


# -- Explicit VR Big Endian (issue 17) -----------------------------------------------------------

# pydicom's bundled big endian files, and the little endian file of the same pixels where there
# is one
BIG_ENDIAN_FILES = {
    "MR_small_bigendian.dcm": "MR_small.dcm",  # 16-bit OW
    "MR_small_expb.dcm": "MR_small.dcm",
    "SC_rgb_small_odd_big_endian.dcm": "SC_rgb_small_odd.dcm",  # 8-bit samples in an OW
    "rtdose_expb.dcm": "rtdose.dcm",  # 32-bit, multi-frame
    "liver_expb_1frame.dcm": "liver_1frame.dcm",
    "ExplVR_BigEnd.dcm": None,
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # an invalid UI value in ExplVR_BigEnd.dcm
@pytest.mark.parametrize("wanted", [EXPLICIT, IMPLICIT])
@pytest.mark.parametrize("name", sorted(BIG_ENDIAN_FILES))
def test_big_endian_is_byte_swapped_into_little_endian(tmp_path, name, wanted):
    source = Path(get_testdata_file(name, download=False))
    before = source.read_bytes()
    target = tmp_path / "out.dcm"
    recode(source, target, wanted)
    assert source.read_bytes() == before  # the stored file is only read
    out, original = dcmread(target), dcmread(source)
    assert out.file_meta.TransferSyntaxUID == wanted
    strictly_read(target, wanted)  # the body is what its syntax says
    assert np.array_equal(out.pixel_array, original.pixel_array)
    little = BIG_ENDIAN_FILES[name]
    if little is not None:
        assert out.PixelData == dcmread(get_testdata_file(little, download=False)).PixelData
    for elem in original:  # every value the same once decoded (byte order is pydicom's affair)
        if elem.tag.element and elem.VR not in ("SQ", "OW", "OB", "OF", "OD", "OL", "UN"):
            assert out[elem.tag].value == elem.value, elem


def test_big_endian_pixel_data_is_swapped_in_chunks(tmp_path):
    ds = dicom_objects.ct()  # 64 x 64
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    frames = 1500  # 12 MB of pixels
    pixels = np.arange(ds.Rows * ds.Columns * frames, dtype="<u2")
    ds.NumberOfFrames = frames
    ds.PixelData = pixels.astype(">u2").tobytes()
    ds["PixelData"].VR = "OW"
    source = tmp_path / "big.dcm"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    ds.save_as(source, implicit_vr=False, little_endian=False, enforce_file_format=True)
    target = tmp_path / "out.dcm"
    tracemalloc.start()
    try:
        recode(source, target, EXPLICIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert strictly_read(target, EXPLICIT).PixelData == pixels.tobytes()
    assert peak < 4 << 20, f"{peak / 2**20:.1f} MiB"
