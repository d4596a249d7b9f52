"""importing/media/ and dicom/part10_writer.py: JPEG, MP4 and PDF facts and refusals, video
syntaxes, Part 10 writing."""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import subprocess
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_fragments

from archive_node.dicom.part10_writer import Bulk, SourceChanged, write_part10
from archive_node.dicom.provenance import file_meta
from archive_node.dicom.values import MAX_VALUE_LENGTH
from archive_node.importing.media.jpeg import read_jpeg
from archive_node.importing.media.mp4 import VideoStream, read_mp4
from archive_node.importing.media.pdf import read_pdf
from archive_node.importing.media.probe import DOCUMENT, PHOTO, VIDEO, probe
from archive_node.importing.media.refusal import Refusal
from archive_node.importing.media.video_syntax import (
    H264_LEVEL_41,
    H264_LEVEL_41_FRAGMENTABLE,
    H264_LEVEL_42,
    H264_LEVEL_42_FRAGMENTABLE,
    HEVC_MAIN,
    HEVC_MAIN_10,
    video_encoding,
)
from tests.helpers.media_files import FFMPEG, jpeg, mp4, needs_ffmpeg, pdf

# ---------------------------------------------------------------------------------------
# JPEG


def test_jpeg_baseline_colour_420_is_ybr_full_422(tmp_path):
    photo = read_jpeg(jpeg(tmp_path / "a.jpg", size=(97, 61)))
    assert (photo.rows, photo.columns) == (61, 97)
    assert photo.samples_per_pixel == 3
    assert photo.photometric_interpretation == "YBR_FULL_422"


def test_jpeg_444_is_still_ybr_full_422(tmp_path):
    photo = read_jpeg(jpeg(tmp_path / "a.jpg", size=(40, 30), subsampling=0))
    assert (photo.rows, photo.columns) == (30, 40)
    assert photo.samples_per_pixel == 3
    assert photo.photometric_interpretation == "YBR_FULL_422"


def test_jpeg_grayscale_is_monochrome2(tmp_path):
    photo = read_jpeg(jpeg(tmp_path / "a.jpg", mode="L", size=(33, 17)))
    assert (photo.rows, photo.columns) == (17, 33)
    assert photo.samples_per_pixel == 1
    assert photo.photometric_interpretation == "MONOCHROME2"


def test_jpeg_untransformed_rgb_is_rgb(tmp_path):
    path = tmp_path / "a.jpg"
    jpeg(path, keep_rgb=True)  # Pillow >= 10.2: Adobe APP14 transform 0, components R, G, B
    with Image.open(path) as image:
        assert image.info.get("adobe_transform") == 0
    photo = read_jpeg(path)
    assert photo.samples_per_pixel == 3
    assert photo.photometric_interpretation == "RGB"


def test_jpeg_exif_is_read(tmp_path):
    path = jpeg(
        tmp_path / "a.jpg",
        taken="2023:07:14 09:30:05",
        make="Acme",
        model="Derma 3000",
        orientation=6,
    )
    photo = read_jpeg(path)
    assert photo.taken == datetime(2023, 7, 14, 9, 30, 5)
    assert photo.make == "Acme"
    assert photo.model == "Derma 3000"
    assert photo.orientation == 6


def test_jpeg_exif_subseconds_and_bad_orientation(tmp_path):
    path = tmp_path / "a.jpg"
    exif = Image.Exif()
    exif[0x0112] = 9  # not an EXIF orientation
    details = exif.get_ifd(0x8769)
    details[0x9003] = "2021:02:03 04:05:06"
    details[0x9291] = "25"  # SubSecTimeOriginal: 0.25 s
    Image.new("RGB", (16, 8), "teal").save(path, format="JPEG", exif=exif)
    photo = read_jpeg(path)
    assert photo.taken == datetime(2021, 2, 3, 4, 5, 6, 250000)
    assert photo.orientation == 1


def test_jpeg_without_exif(tmp_path):
    path = tmp_path / "a.jpg"
    Image.linear_gradient("L").resize((20, 10)).convert("RGB").save(path, format="JPEG")
    photo = read_jpeg(path)
    assert photo.taken is None
    assert photo.orientation == 1
    assert (photo.make, photo.model) == ("", "")


def test_jpeg_progressive_refused(tmp_path):
    with pytest.raises(Refusal, match="progressive"):
        read_jpeg(jpeg(tmp_path / "a.jpg", progressive=True))


def test_jpeg_cmyk_refused(tmp_path):
    with pytest.raises(Refusal, match="CMYK"):
        read_jpeg(jpeg(tmp_path / "a.jpg", mode="CMYK"))


def test_jpeg_truncated_refused(tmp_path):
    data = jpeg(tmp_path / "a.jpg", size=(200, 150), quality=95).read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(Refusal, match="truncated"):
        read_jpeg(cut)


def test_jpeg_soi_then_garbage_refused(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"\xff\xd8\xff" + bytes(range(7, 200)) * 3)
    with pytest.raises(Refusal, match="damaged"):
        read_jpeg(path)
    with pytest.raises(Refusal, match="^" + re.escape(f"{path}: ")):
        probe(path)


def test_jpeg_not_a_jpeg_refused(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(b"GIF89a" + bytes(50))
    with pytest.raises(Refusal, match="not a JPEG"):
        read_jpeg(path)


def _with_frame(data: bytes, marker: int, precision: int | None = None) -> bytes:
    """`data` (a baseline JPEG) with its SOF0 marker replaced, and its precision set."""
    at = data.index(b"\xff\xc0")
    out = bytearray(data)
    out[at + 1] = marker
    if precision is not None:
        out[at + 4] = precision  # after the marker (2 bytes) and the segment length (2)
    return bytes(out)


@pytest.mark.parametrize(
    ("marker", "precision", "named"),
    [
        (0xC1, None, "SOF1"),
        (0xC1, 12, "SOF1"),  # a real 12-bit JPEG is extended sequential
        (0xC3, None, "lossless"),
        (0xC9, None, "arithmetic"),
        (0xC0, 12, "12-bit"),
    ],
)
def test_jpeg_other_coding_processes_refused(tmp_path, marker, precision, named):
    data = jpeg(tmp_path / "a.jpg").read_bytes()
    path = tmp_path / "b.jpg"
    path.write_bytes(_with_frame(data, marker, precision))
    with pytest.raises(Refusal, match=re.escape(named)):
        read_jpeg(path)


# ---------------------------------------------------------------------------------------
# MP4


def _ffmpeg(*args: str) -> None:
    if FFMPEG is None:
        pytest.fail("ffmpeg is needed to make the test video")
    subprocess.run(
        [FFMPEG, "-v", "error", "-nostdin", "-y", *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


def _with_audio(path: Path, codec: str) -> Path:
    """A 1 s H.264 video with a sine tone encoded by `codec`."""
    _ffmpeg(
        *("-f", "lavfi", "-i", "testsrc=size=64x48:rate=25"),
        *("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"),
        *("-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", codec),
        str(path),
    )
    return path


H264 = ("-c:v", "libx264", "-pix_fmt", "yuv420p")
X265 = ("-c:v", "libx265", "-x265-params", "log-level=none")


@needs_ffmpeg
def test_mp4_h264_high(tmp_path):
    path = mp4(tmp_path / "a.mp4")
    stream = read_mp4(path)
    assert stream.codec == "H.264"
    assert stream.sample_entry in ("avc1", "avc3")
    assert stream.profile_idc == 100
    assert (stream.chroma_format, stream.bit_depth) == (1, 8)
    assert stream.frames == 25
    assert stream.frame_rate == pytest.approx(25.0)
    assert stream.duration_seconds == pytest.approx(1.0)
    assert (stream.rows, stream.columns) == (48, 64)
    assert stream.rotation == 0
    assert stream.pixel_aspect == (1, 1)
    assert stream.audio is None
    encoding = video_encoding(stream, path.stat().st_size)
    assert encoding.transfer_syntax_uid == H264_LEVEL_41
    assert encoding.bits_stored == 8
    assert not encoding.name.startswith("Fragmentable")


@needs_ffmpeg
def test_mp4_creation_time(tmp_path):
    path = mp4(tmp_path / "a.mp4", *H264, "-metadata", "creation_time=2024-01-02T03:04:05Z")
    assert read_mp4(path).created == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert read_mp4(mp4(tmp_path / "b.mp4")).created is None


@needs_ffmpeg
def test_mp4_ntsc_frame_rate(tmp_path):
    stream = read_mp4(mp4(tmp_path / "a.mp4", rate="30000/1001"))
    assert stream.frame_rate == pytest.approx(29.97, abs=0.01)


@needs_ffmpeg
def test_mp4_h264_constrained_baseline_accepted(tmp_path):
    path = mp4(tmp_path / "a.mp4", *H264, "-profile:v", "baseline")
    stream = read_mp4(path)
    assert stream.profile_idc == 66
    assert stream.constraint_flags & 0x40  # constraint_set1: Constrained Baseline
    assert video_encoding(stream, path.stat().st_size).transfer_syntax_uid == H264_LEVEL_41


@needs_ffmpeg
def test_mp4_hevc_main(tmp_path):
    path = mp4(tmp_path / "a.mp4", *X265, "-pix_fmt", "yuv420p")
    stream = read_mp4(path)
    assert stream.codec == "HEVC"
    assert stream.sample_entry in ("hvc1", "hev1")
    assert (stream.profile_idc, stream.tier, stream.bit_depth) == (1, 0, 8)
    assert (stream.rows, stream.columns) == (48, 64)
    encoding = video_encoding(stream, path.stat().st_size)
    assert encoding.transfer_syntax_uid == HEVC_MAIN
    assert encoding.bits_stored == 8


@needs_ffmpeg
def test_mp4_hevc_main_10(tmp_path):
    path = mp4(tmp_path / "a.mp4", *X265, "-pix_fmt", "yuv420p10le")
    stream = read_mp4(path)
    assert (stream.profile_idc, stream.bit_depth) == (2, 10)
    encoding = video_encoding(stream, path.stat().st_size)
    assert encoding.transfer_syntax_uid == HEVC_MAIN_10
    assert encoding.bits_stored == 10


@needs_ffmpeg
@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("-c:v", "libx264", "-pix_fmt", "yuv420p10le"), "High 10"),
        (("-c:v", "libx264", "-pix_fmt", "yuv422p"), "4:2:2"),
        ((*H264, "-level", "5.1"), "level 5.1"),
        ((*H264, "-vf", "setsar=4/3"), "non-square"),
    ],
    ids=["high-10", "4:2:2", "level-5.1", "non-square"],
)
def test_mp4_without_dicom_syntax_refused(tmp_path, args, named):
    path = mp4(tmp_path / "a.mp4", *args)
    stream = read_mp4(path)
    with pytest.raises(Refusal, match=re.escape(named)):
        video_encoding(stream, path.stat().st_size)


@needs_ffmpeg
def test_mp4_h264_level_42(tmp_path):
    path = mp4(tmp_path / "a.mp4", *H264, "-level", "4.2")
    stream = read_mp4(path)
    assert stream.level_idc == 42
    encoding = video_encoding(stream, path.stat().st_size)
    assert encoding.transfer_syntax_uid == H264_LEVEL_42
    assert "4.2" in encoding.name


@needs_ffmpeg
def test_mp4_mpeg4_part2_refused(tmp_path):
    path = mp4(tmp_path / "a.mp4", "-c:v", "mpeg4")
    with pytest.raises(Refusal, match="MPEG-4 Part 2"):
        read_mp4(path)


@needs_ffmpeg
def test_mp4_fragmented_refused(tmp_path):
    path = mp4(tmp_path / "a.mp4", *H264, "-movflags", "frag_keyframe+empty_moov")
    with pytest.raises(Refusal, match="fragmented"):
        read_mp4(path)


@needs_ffmpeg
def test_mp4_truncated_refused(tmp_path):
    data = mp4(tmp_path / "a.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(Refusal, match="truncated"):
        read_mp4(cut)
    with pytest.raises(Refusal, match="^" + re.escape(f"{cut}: ")):
        probe(cut)


@needs_ffmpeg
def test_mp4_moov_cut_off_refused(tmp_path):
    data = mp4(tmp_path / "a.mp4").read_bytes()
    assert data.rfind(b"moov") > data.find(b"mdat")  # ffmpeg writes the moov at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:-200])
    with pytest.raises(Refusal, match="moov"):
        read_mp4(cut)


@needs_ffmpeg
def test_mp4_aac_audio_accepted(tmp_path):
    path = _with_audio(tmp_path / "a.mp4", "aac")
    stream = read_mp4(path)
    assert stream.audio == "mp4a"
    assert stream.codec == "H.264"
    assert video_encoding(stream, path.stat().st_size).transfer_syntax_uid == H264_LEVEL_41


@needs_ffmpeg
def test_mp4_ac3_audio_refused(tmp_path):
    path = _with_audio(tmp_path / "a.mp4", "ac3")
    stream = read_mp4(path)
    assert stream.audio == "ac-3"
    with pytest.raises(Refusal, match="audio 'ac-3'"):
        video_encoding(stream, path.stat().st_size)


@needs_ffmpeg
def test_mp4_rotation_from_ffmpeg(tmp_path):
    plain = mp4(tmp_path / "a.mp4")
    turned = tmp_path / "b.mp4"
    _ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(turned))
    assert read_mp4(plain).rotation == 0
    # ffmpeg versions disagree on the direction of the "rotate" tag: the turn is a quarter
    assert read_mp4(turned).rotation in (90, 270)


@needs_ffmpeg
@pytest.mark.parametrize(
    ("a", "b", "degrees"),
    [(1, 0, 0), (0, 1, 90), (-1, 0, 180), (0, -1, 270)],
)
def test_mp4_rotation_from_matrix(tmp_path, a, b, degrees):
    """The track header matrix {a b u, c d v, x y w} (ISO/IEC 14496-12 6.2.2): (x, y) ->
    (a x + c y, b x + d y); (0, 1, -1, 0) turns the picture 90 degrees clockwise."""
    data = bytearray(mp4(tmp_path / "a.mp4").read_bytes())
    tkhd = data.index(b"tkhd") + 4
    assert data[tkhd] == 0  # version 0: the matrix is 40 bytes into the payload
    c, d = -b, a
    data[tkhd + 40 : tkhd + 56] = struct.pack(">iiii", a << 16, b << 16, 0, c << 16)
    data[tkhd + 56 : tkhd + 60] = struct.pack(">i", d << 16)
    path = tmp_path / "b.mp4"
    path.write_bytes(bytes(data))
    assert read_mp4(path).rotation == degrees


# video_encoding on constructed streams (no ffmpeg)

BASE = VideoStream(
    codec="H.264",
    sample_entry="avc1",
    profile_idc=100,
    constraint_flags=0,
    level_idc=41,
    bit_depth=8,
    chroma_format=1,
    tier=0,
    columns=1920,
    rows=1080,
    frames=250,
    duration_seconds=10.0,
    frame_rate=25.0,
    created=None,
    rotation=0,
    pixel_aspect=(1, 1),
    audio=None,
)
HEVC = dataclasses.replace(BASE, codec="HEVC", sample_entry="hvc1", profile_idc=1, level_idc=153)


@pytest.mark.parametrize(
    ("level_idc", "single", "uid"),
    [
        (41, H264_LEVEL_41, H264_LEVEL_41_FRAGMENTABLE),
        (42, H264_LEVEL_42, H264_LEVEL_42_FRAGMENTABLE),
    ],
)
def test_video_encoding_long_h264_is_fragmentable(level_idc, single, uid):
    stream = dataclasses.replace(BASE, level_idc=level_idc)
    short = video_encoding(stream, MAX_VALUE_LENGTH)
    assert short.transfer_syntax_uid == single
    assert not short.name.startswith("Fragmentable")
    long = video_encoding(stream, MAX_VALUE_LENGTH + 1)
    assert long.transfer_syntax_uid == uid
    assert long.name.startswith("Fragmentable")


def test_video_encoding_long_hevc_keeps_its_syntax():
    assert video_encoding(HEVC, MAX_VALUE_LENGTH * 3).transfer_syntax_uid == HEVC_MAIN


@pytest.mark.parametrize(
    ("profile_idc", "constraint_flags", "level_idc"),
    [(100, 0, 9), (77, 0x10, 11), (66, 0x50, 11)],
    ids=["high-level_idc-9", "main-set3", "constrained-baseline-set3"],
)
def test_video_encoding_level_1b_accepted(profile_idc, constraint_flags, level_idc):
    stream = dataclasses.replace(
        BASE, profile_idc=profile_idc, constraint_flags=constraint_flags, level_idc=level_idc
    )
    assert video_encoding(stream, 1000).transfer_syntax_uid == H264_LEVEL_41


def test_video_encoding_names_level_1b():
    stream = dataclasses.replace(BASE, profile_idc=66, constraint_flags=0x10, level_idc=11)
    with pytest.raises(Refusal, match=r"H\.264 Baseline profile level 1b"):
        video_encoding(stream, 1000)


def test_video_encoding_names_level_1b_of_extended_profile():
    # H.264 7.4.2.1.1: with profile_idc 66, 77 or 88 and level_idc 11, constraint_set3_flag
    # means level 1b
    stream = dataclasses.replace(BASE, profile_idc=88, constraint_flags=0x10, level_idc=11)
    with pytest.raises(Refusal, match="level 1b"):
        video_encoding(stream, 1000)


def test_video_encoding_level_11_of_high_is_not_1b():
    stream = dataclasses.replace(BASE, constraint_flags=0x10, level_idc=11)
    assert video_encoding(stream, 1000).transfer_syntax_uid == H264_LEVEL_41


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"profile_idc": 66, "constraint_flags": 0}, "Baseline profile"),
        ({"profile_idc": 88}, "Extended"),
        ({"level_idc": 50}, "level 5.0"),
        ({"chroma_format": 0}, "4:0:0"),
        ({"pixel_aspect": (10, 11)}, "non-square"),
        ({"audio": "Opus"}, "Opus"),
    ],
)
def test_video_encoding_h264_refusals(changes, named):
    with pytest.raises(Refusal, match=re.escape(named)):
        video_encoding(dataclasses.replace(BASE, **changes), 1000)


def test_video_encoding_mp3_audio_accepted():
    stream = dataclasses.replace(BASE, audio=".mp3")
    assert video_encoding(stream, 1000).transfer_syntax_uid == H264_LEVEL_41


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"tier": 1}, "High tier"),
        ({"level_idc": 156}, "above level 5.1"),
        ({"profile_idc": 4}, "Range Extensions"),
        ({"chroma_format": 2}, "4:2:2"),
    ],
)
def test_video_encoding_hevc_refusals(changes, named):
    with pytest.raises(Refusal, match=re.escape(named)):
        video_encoding(dataclasses.replace(HEVC, **changes), 1000)


def test_video_encoding_hevc_level_51_accepted():
    encoding = video_encoding(HEVC, 1000)
    assert encoding.transfer_syntax_uid == HEVC_MAIN
    main_10 = dataclasses.replace(HEVC, profile_idc=2, bit_depth=10)
    assert video_encoding(main_10, 1000).transfer_syntax_uid == HEVC_MAIN_10


# ---------------------------------------------------------------------------------------
# PDF


def test_pdf_accepted(tmp_path):
    assert read_pdf(pdf(tmp_path / "a.pdf")).version == "1.4"


def test_pdf_truncated_refused(tmp_path):
    data = pdf(tmp_path / "a.pdf").read_bytes()
    assert data.endswith(b"%%EOF\n")
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: -len(b"%%EOF\n")])
    with pytest.raises(Refusal, match="truncated"):
        read_pdf(cut)


def test_pdf_text_file_refused(tmp_path):
    path = tmp_path / "a.pdf"
    path.write_text("Dear colleague,\nplease find attached...\n")
    with pytest.raises(Refusal, match="not a PDF"):
        read_pdf(path)
    with pytest.raises(Refusal, match="not a JPEG, MP4 or PDF"):
        probe(path)


# ---------------------------------------------------------------------------------------
# probe


def test_probe_kinds(tmp_path):
    photo = probe(jpeg(tmp_path / "a.jpg"))
    assert photo.kind == PHOTO
    assert photo.size == (tmp_path / "a.jpg").stat().st_size
    assert photo.facts.photometric_interpretation == "YBR_FULL_422"
    document = probe(pdf(tmp_path / "a.pdf"))
    assert document.kind == DOCUMENT
    assert document.facts.version == "1.4"


@needs_ffmpeg
def test_probe_video(tmp_path):
    media = probe(mp4(tmp_path / "a.mp4"))
    assert media.kind == VIDEO
    assert media.facts.codec == "H.264"


def test_probe_by_content_not_name(tmp_path):
    media = probe(jpeg(tmp_path / "photo.pdf"))
    assert media.kind == PHOTO
    assert media.path == tmp_path / "photo.pdf"
    assert probe(pdf(tmp_path / "report.jpg")).kind == DOCUMENT


def test_probe_refusal_starts_with_path(tmp_path):
    path = jpeg(tmp_path / "a.jpg", progressive=True)
    with pytest.raises(Refusal) as caught:
        probe(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "progressive" in str(caught.value)


def test_probe_empty_file_refused(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(Refusal, match="^" + re.escape(f"{path}: ") + "an empty file"):
        probe(path)


def test_probe_missing_file_refused(tmp_path):
    path = tmp_path / "missing.pdf"
    with pytest.raises(Refusal, match="^" + re.escape(f"{path}: ") + "cannot read"):
        probe(path)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_probe_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = tmp_path / kind
    path.mkdir() if kind == "folder" else os.mkfifo(path)  # a FIFO's read would block
    with pytest.raises(Refusal, match="^" + re.escape(f"{path}: ") + "not a regular file"):
        probe(path)


# ---------------------------------------------------------------------------------------
# part10.write_part10

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
ENCAPSULATED_PDF = "1.2.840.10008.5.1.4.1.1.104.1"
PHOTOGRAPHY = "1.2.840.10008.5.1.4.1.1.77.1.4"
NAME = "Müller^Zoë=ミュラー"


def _meta(sop_class: str, transfer_syntax: str) -> bytes:
    return file_meta(
        sop_class_uid=sop_class,
        sop_instance_uid="1.2.3.4.5",
        transfer_syntax=transfer_syntax,
        implementation_uid="1.2.3.999",
        implementation_version="TEST_1",
    )


def _dataset(sop_class: str) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = "1.2.3.4.5"
    ds.PatientName = NAME
    return ds


def _write(ds: Dataset, meta: bytes, bulk: Bulk) -> bytes:
    out = BytesIO()
    write_part10(out, meta, ds, bulk)
    return out.getvalue()


def test_part10_encapsulated_fragments(tmp_path):
    source = tmp_path / "src.bin"
    data = bytes(range(1, 12))  # 11 bytes, odd
    source.write_bytes(data)
    ds = _dataset(PHOTOGRAPHY)
    ds.Rows, ds.Columns = 1, 1
    seen: list[int] = []
    out = BytesIO()
    write_part10(
        out,
        _meta(PHOTOGRAPHY, JPEG_BASELINE),
        ds,
        Bulk(0x7FE00010, source, len(data), encapsulated=True, fragment_size=4),
        seen.append,
    )
    assert sum(seen) == len(data)
    read = dcmread(BytesIO(out.getvalue()))
    assert read.file_meta.TransferSyntaxUID == JPEG_BASELINE
    assert read.SOPInstanceUID == "1.2.3.4.5"
    assert str(read.PatientName) == NAME
    assert read.Rows == 1
    offsets, *fragments = generate_fragments(read.PixelData)  # items, the offset table first
    assert offsets == b""
    assert read.PixelData[:8] == b"\xfe\xff\x00\xe0\x00\x00\x00\x00"
    assert [len(fragment) for fragment in fragments] == [4, 4, 4]
    assert b"".join(fragments) == data + b"\x00"


def test_part10_one_fragment_by_default(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 10)
    out = _write(
        _dataset(PHOTOGRAPHY),
        _meta(PHOTOGRAPHY, JPEG_BASELINE),
        Bulk(0x7FE00010, source, 10, encapsulated=True),
    )
    assert list(generate_fragments(dcmread(BytesIO(out)).PixelData)) == [b"", b"x" * 10]


def test_part10_document_value_and_elements_after_it(tmp_path):
    source = pdf(tmp_path / "a.pdf")
    data = source.read_bytes()
    if len(data) % 2 == 0:
        data += b"\n"
        source.write_bytes(data)
    assert len(data) % 2 == 1
    ds = _dataset(ENCAPSULATED_PDF)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.ListOfMIMETypes = "text/ä"  # after the bulk value, in the dataset's character set
    ds.EncapsulatedDocumentLength = len(data)
    out = _write(
        ds,
        _meta(ENCAPSULATED_PDF, EXPLICIT_LE),
        Bulk(0x00420011, source, len(data), encapsulated=False),
    )
    assert out[:132] == b"\0" * 128 + b"DICM"
    read = dcmread(BytesIO(out))
    assert read.file_meta.MediaStorageSOPClassUID == ENCAPSULATED_PDF
    assert read.SOPClassUID == ENCAPSULATED_PDF
    assert str(read.PatientName) == NAME
    element = read["EncapsulatedDocument"]
    assert element.VR == "OB"
    assert len(element.value) == len(data) + 1
    assert element.value == data + b"\x00"
    assert read.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert read.ListOfMIMETypes == "text/ä"
    assert read.EncapsulatedDocumentLength == len(data)


def test_part10_refuses_a_dataset_holding_the_bulk(tmp_path):
    source = tmp_path / "src.bin"
    source.write_bytes(b"ab")
    ds = _dataset(ENCAPSULATED_PDF)
    ds.EncapsulatedDocument = b"ab"
    with pytest.raises(ValueError, match="00420011"):
        _write(ds, _meta(ENCAPSULATED_PDF, EXPLICIT_LE), Bulk(0x00420011, source, 2, False))


@pytest.mark.parametrize("encapsulated", [False, True])
def test_part10_source_shorter_than_its_length_is_refused(tmp_path, encapsulated):
    source = tmp_path / "src.bin"
    source.write_bytes(b"0123456789")  # 10 bytes
    bulk = Bulk(0x00420011, source, 12, encapsulated=encapsulated, fragment_size=4)
    with pytest.raises(SourceChanged):
        _write(_dataset(ENCAPSULATED_PDF), _meta(ENCAPSULATED_PDF, EXPLICIT_LE), bulk)


@pytest.mark.parametrize("encapsulated", [False, True])
def test_part10_copies_only_the_first_length_bytes(tmp_path, encapsulated):
    # a JPEG's bitstream ends at its EOI: what follows in the file is not copied
    source = tmp_path / "src.bin"
    source.write_bytes(b"0123456789")
    bulk = Bulk(0x7FE00010, source, 6, encapsulated=encapsulated, fragment_size=4)
    syntax = JPEG_BASELINE if encapsulated else EXPLICIT_LE
    ds = dcmread(BytesIO(_write(_dataset(PHOTOGRAPHY), _meta(PHOTOGRAPHY, syntax), bulk)))
    value = ds.PixelData
    if encapsulated:
        _, *fragments = generate_fragments(value)
        value = b"".join(fragments)
    assert value == b"012345"


def test_part10_refuses_fragments_of_one_byte(tmp_path):
    # rounded down to an even size, 1 would be 0: endless empty items
    source = tmp_path / "src.bin"
    source.write_bytes(b"abc")
    with pytest.raises(ValueError, match="at least 2 bytes"):
        Bulk(0x7FE00010, source, 3, encapsulated=True, fragment_size=1)
