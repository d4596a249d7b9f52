"""Deterministic synthetic DICOM files for the ingest and retrieve benchmarks, cached on disk."""

from __future__ import annotations

import json
import os
import random
import struct
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import itemize_fragment
from pydicom.uid import ExplicitVRLittleEndian

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
MPEG4_HP41 = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264 High Profile / Level 4.1

CACHE = Path(tempfile.gettempdir()) / "archive-node-bench-media"
FRAGMENT = 8 * 2**20  # bytes of video stream per encapsulated fragment


@dataclass(frozen=True)
class Kind:
    """One kind of object in the ingest corpus."""

    name: str
    label: str
    plural: str
    default_count: int


KINDS = {
    "sc": Kind("sc", "secondary captures ~10 KB", "secondary captures", 1000),
    "ct": Kind("ct", "CT slices ~0.5 MB, studies of 30", "CT slices", 300),
    # issue 23's one big study: 1,000 CT slices in one study and one series
    "ctstudy": Kind(
        "ctstudy", "one CT study of 1,000 slices ~0.5 MB", "CT slices of one study", 1000
    ),
    "us": Kind("us", "US multiframes ~27 MB", "US multiframes", 8),
    "video": Kind("video", "H.264 videos ~300 MB", "H.264 video", 1),
}


@dataclass(frozen=True)
class Media:
    """A cached set of files of one kind: where, how many bytes, which study."""

    kind: str
    directory: Path
    files: list[Path]
    bytes: int
    study_uid: str


def uid(seed: int, *parts: object) -> str:
    """A 2.25 UID (PS3.5 B.2) of a name-based UUID of the seed and the parts: the same
    arguments, the same UID."""
    name = "/".join(map(str, ("archive-node-bench", seed, *parts)))
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, name).int}"


def media(
    kind: str,
    count: int,
    seed: int = 1,
    *,
    video_mb: int = 300,
    us_frames: int = 30,
    cache: Path = CACHE,
) -> Media:
    """`count` files of `kind` (a key of KINDS), written once under `cache` and reused."""
    size_tag = {
        "video": f"-{video_mb}mb",
        "us": f"-{us_frames}f",
        "ct": f"-{CT_STUDY_SLICES}ps",  # studies of 30 slices (before: one study)
    }.get(kind, "")
    directory = cache / f"{kind}-n{count}-s{seed}{size_tag}"
    manifest = directory / "manifest.json"
    if not manifest.exists():
        directory.mkdir(parents=True, exist_ok=True)
        writer = {
            "sc": lambda path, n: write_sc(path, seed, n),
            "ct": lambda path, n: write_ct(path, seed, n),
            "ctstudy": lambda path, n: write_ct(path, seed, n, kind="ctstudy"),
            "us": lambda path, n: write_us(path, seed, n, us_frames),
            "video": lambda path, n: write_video(path, seed, n, video_mb * 10**6),
        }[kind]
        names = []
        for number in range(1, count + 1):
            path = directory / f"{kind}{number:05d}.dcm"
            writer(path, number)
            names.append(path.name)
        total = sum((directory / name).stat().st_size for name in names)
        first = (0,) if kind == "ct" else ()  # kind "ct": its first study
        study_uid = uid(seed, kind, "study", *first)
        text = json.dumps({"files": names, "bytes": total, "study_uid": study_uid})
        partial = manifest.with_suffix(".partial")
        partial.write_text(text)
        partial.replace(manifest)  # last: a half-written set is never taken for a whole one
    data = json.loads(manifest.read_text())
    return Media(
        kind,
        directory,
        [directory / name for name in data["files"]],
        data["bytes"],
        data["study_uid"],
    )


def _base(
    seed: int, kind: str, number: int, sop_class: str, modality: str, study: int | None = None
) -> Dataset:
    """The attributes every file has; `study` numbers the file's study (and its one series)
    when a kind is spread over several, else all of a kind are in one study and series."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = instance = uid(seed, kind, "instance", number)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, instance
    ds.PatientID, ds.PatientName = f"BENCH-{kind.upper()}", f"BENCH^{kind.upper()}"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    which = () if study is None else (study,)
    ds.StudyInstanceUID = uid(seed, kind, "study", *which)
    ds.SeriesInstanceUID = uid(seed, kind, "series", *which)
    ds.StudyDate, ds.StudyTime = "20240101", "120000"
    ds.AccessionNumber, ds.StudyID = f"BENCH{seed}{kind.upper()}", "1"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, number
    return ds


def _rng(seed: int, kind: str, number: int) -> random.Random:
    return random.Random(f"{seed}/{kind}/{number}")


def write_sc(path: Path, seed: int, number: int) -> None:
    """A secondary capture of 96 x 100 8-bit pixels: about 10 KB."""
    ds = _base(seed, "sc", number, SECONDARY_CAPTURE, "OT")
    ds.ConversionType = "WSD"
    ds.Rows, ds.Columns = 96, 100
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = _rng(seed, "sc", number).randbytes(96 * 100)
    ds.save_as(path, enforce_file_format=True)


CT_STUDY_SLICES = 30  # kind "ct": each study (and its one series) has 30 slices


def write_ct(path: Path, seed: int, number: int, kind: str = "ct") -> None:
    """A CT slice of 512 x 512 x 16 bits, Explicit VR Little Endian: about 0.5 MB. Kind "ct"
    puts CT_STUDY_SLICES slices in each study; kind "ctstudy" all in one study and series."""
    study = (number - 1) // CT_STUDY_SLICES if kind == "ct" else None
    ds = _base(seed, kind, number, CT_IMAGE, "CT", study)
    ds.Rows = ds.Columns = 512
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = _rng(seed, kind, number).randbytes(512 * 512 * 2)
    ds.save_as(path, enforce_file_format=True)


def write_us(path: Path, seed: int, number: int, frames: int = 30) -> None:
    """An ultrasound cine loop of 640 x 480 RGB frames (30 frames: about 27 MB)."""
    ds = _base(seed, "us", number, US_MULTIFRAME, "US")
    ds.Rows, ds.Columns, ds.NumberOfFrames = 480, 640, frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.FrameTime, ds.FrameIncrementPointer = 33.3, 0x00181063
    ds.PixelData = _rng(seed, "us", number).randbytes(480 * 640 * 3 * frames)
    ds.save_as(path, enforce_file_format=True)


def write_video(path: Path, seed: int, number: int, size: int) -> None:
    """A Video Photographic image of `size` bytes of pseudo-random "H.264" stream (it does not
    decode), encapsulated in fragments; at most one fragment is held in memory."""
    ds = _base(seed, "video", number, VIDEO_PHOTOGRAPHIC, "XC")
    ds.file_meta.TransferSyntaxUID = MPEG4_HP41
    ds.Rows, ds.Columns = 1080, 1920
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = (
        3,
        "YBR_PARTIAL_420",
        0,
    )
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.CineRate, ds.FrameTime, ds.FrameIncrementPointer = 30, 33.3, 0x00181063
    ds.NumberOfFrames = max(1, size // 35_000)  # about 8 Mbit/s at 30 frames/s
    ds.save_as(path, enforce_file_format=True)  # everything but the Pixel Data
    with open(path, "ab") as fh:
        # PS3.5 A.4: (7FE0,0010) OB of undefined length, an empty Basic Offset Table item, the
        # fragments as items, a Sequence Delimitation Item. PS3.5 8.2.8: the Basic Offset Table
        # of an MPEG-4 AVC stream is empty.
        fh.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        fh.write(itemize_fragment(b""))
        for fragment in _stream(_rng(seed, "video", number), size):
            fh.write(itemize_fragment(fragment))
        fh.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
        fh.flush()
        os.fsync(fh.fileno())


def _stream(rng: random.Random, size: int) -> Iterator[bytes]:
    """`size` bytes (rounded up to even) of pseudo-random stream in fragments, starting with
    an H.264 Annex B start code."""
    left = size + size % 2
    first = True
    while left > 0:
        length = min(FRAGMENT, left)
        chunk = rng.randbytes(length)
        if first:
            chunk = b"\x00\x00\x00\x01" + chunk[4:]
            first = False
        yield chunk
        left -= length
