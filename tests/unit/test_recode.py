"""dicom/reencode.py: a stored uncompressed object re-encoded in Explicit or Implicit VR Little
Endian, its pixel data copied from disk in chunks (memory does not grow with the object), Big
Endian byte-swapped; dicom/decompress.py: a compressed one decompressed frame by frame."""

from __future__ import annotations

import tracemalloc
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.filereader import read_dataset
from pydicom.pixels import pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian as DEFLATED
from pydicom.uid import ExplicitVRLittleEndian as EXPLICIT
from pydicom.uid import ImplicitVRLittleEndian as IMPLICIT
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from archive_node.dicom.decompress import Undecodable, decompress
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


# -- decompression (issue 17) ------------------------------------------------------------------

LOSSLESS = [
    "MR_small_RLE.dcm",  # RLE, 16-bit
    "SC_rgb_rle_2frame.dcm",  # RLE, RGB, two frames
    "SC_rgb_rle_32bit.dcm",
    "rtdose_rle.dcm",  # RLE, 32-bit, 15 frames
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1, RGB
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "GDCMJ2K_TextGBR.dcm",  # JPEG 2000 lossless, YBR_RCT
    "J2K_pixelrep_mismatch.dcm",
]
LOSSY = [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL_422
    "SC_rgb_dcmtk_+eb+cr.dcm",  # JPEG baseline, RGB components
    "examples_ybr_color.dcm",  # JPEG baseline, YBR_FULL_422, multi-frame
    "SC_rgb_small_odd_jpeg.dcm",  # odd size
    "JPGExtended.dcm",  # JPEG extended 12-bit
    "JPEGLSNearLossless_16.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "JPEG2000.dcm",  # JPEG 2000, lossy
]


def decompressed(tmp_path, name, wanted=EXPLICIT, plugin=""):
    source = Path(get_testdata_file(name, download=False))
    before = source.read_bytes()
    target = tmp_path / "out.dcm"
    decompress(source, target, wanted, plugin)
    assert source.read_bytes() == before  # the stored file is only read
    return dcmread(source), dcmread(target)


@pytest.mark.parametrize("wanted", [EXPLICIT, IMPLICIT])
@pytest.mark.parametrize("name", LOSSLESS + LOSSY)
def test_decompressed_pixels_are_pydicoms(tmp_path, name, wanted):
    original, out = decompressed(tmp_path, name, wanted)
    assert out.file_meta.TransferSyntaxUID == wanted
    strictly_read(tmp_path / "out.dcm", wanted)
    # pydicom decoding the whole object with the same plugin gives the same values
    plugin = "pillow" if original.file_meta.TransferSyntaxUID == JPEGBaseline8Bit else ""
    expected = (
        original.pixel_array if not plugin else pixel_array(original, decoding_plugin=plugin)
    )
    assert np.array_equal(out.pixel_array, expected)
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == original.SOPInstanceUID
    assert out.get("NumberOfFrames") == original.get("NumberOfFrames")
    assert len(out.PixelData) % 2 == 0
    if out.SamplesPerPixel > 1:  # PS3.5 8.2.1: YBR decoded to RGB, colour-by-pixel
        assert out.PhotometricInterpretation == "RGB"
        assert out.PlanarConfiguration == 0
    else:
        assert out.PhotometricInterpretation == original.PhotometricInterpretation
    assert 0x7FE00001 not in out and 0x7FE00002 not in out


@pytest.mark.parametrize("name", LOSSLESS)
def test_a_lossless_source_is_not_called_lossy(tmp_path, name):
    original, out = decompressed(tmp_path, name)
    assert out.get("LossyImageCompression") == original.get("LossyImageCompression")
    assert out.get("LossyImageCompression") != "01"
    assert "LossyImageCompressionMethod" not in out or "LossyImageCompressionMethod" in original


@pytest.mark.parametrize("name", LOSSY)
def test_a_lossy_source_keeps_its_history(tmp_path, name):
    original, out = decompressed(tmp_path, name)
    assert out.LossyImageCompression == "01"  # PS3.3 C.7.6.1.1.5: never changed back
    for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
        if keyword in original:
            assert out[keyword].value == original[keyword].value


def test_jpeg_baseline_without_lossy_attributes_gets_them(tmp_path):
    ds = dcmread(get_testdata_file("SC_rgb_jpeg_dcmtk.dcm", download=False))
    for keyword in ("LossyImageCompression", "LossyImageCompressionRatio"):
        ds.pop(keyword, None)
    ds.pop("LossyImageCompressionMethod", None)
    source = tmp_path / "stored.dcm"
    ds.save_as(source, enforce_file_format=True)
    target = tmp_path / "out.dcm"
    decompress(source, target, EXPLICIT)
    out = dcmread(target)
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_10918_1"
    assert float(out.LossyImageCompressionRatio) > 1


def test_a_multi_frame_is_decompressed_frame_by_frame(tmp_path):
    """Memory holds a frame, not the 12 MB of decoded pixels (nor all compressed frames)."""
    ds = dicom_objects.us_multiframe(frames=8)
    ds.Rows, ds.Columns = 256, 256
    ds.NumberOfFrames = 60  # 256 x 256 x 3 x 60 = 11.8 MB decoded
    frames = np.random.default_rng(17).integers(0, 8, (60, 256, 256, 3), dtype=np.uint8)
    ds.PixelData = frames.tobytes()
    ds.compress(RLELossless, encoding_plugin="pylibjpeg")
    source = tmp_path / "stored.dcm"
    ds.save_as(source, enforce_file_format=True)
    target = tmp_path / "out.dcm"
    tracemalloc.start()
    try:
        decompress(source, target, IMPLICIT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak / 2**20:.1f} MiB allocated to decompress 11.8 MB"
    assert strictly_read(target, IMPLICIT).PixelData == frames.tobytes()


def test_an_undecodable_object_is_an_error_the_caller_can_report(tmp_path):
    ds = dcmread(get_testdata_file("MR_small_RLE.dcm", download=False))
    ds.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\0" * 60 + b"garbage"])
    source = tmp_path / "broken.dcm"
    ds.save_as(source, enforce_file_format=True)
    with pytest.raises(Undecodable):
        decompress(source, tmp_path / "out.dcm", EXPLICIT)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.110"  # JPEG XL: no decoder
    ds.save_as(source, enforce_file_format=True)
    with pytest.raises(Undecodable, match="no decoder"):
        decompress(source, tmp_path / "out.dcm", EXPLICIT)
