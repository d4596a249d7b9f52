"""Tell a photo, a video and a document apart by their first bytes, and read their facts."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ...dicom.values import MAX_VALUE_LENGTH
from .jpeg import JpegImage, read_jpeg
from .mp4 import VideoStream, read_mp4
from .pdf import PdfDocument, read_pdf
from .refusal import Refusal
from .video_syntax import VideoEncoding, video_encoding

PHOTO, VIDEO, DOCUMENT = "photo", "video", "document"
# ISO/IEC 23008-12 brands: still images in the ISO base media file format, not MP4 video
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif"}


@dataclass(frozen=True)
class Media:
    """One file to import: its kind, size, when it was last written, what its headers say,
    and for a video the transfer syntax that carries it."""

    path: Path
    kind: str
    size: int
    modified: datetime  # local time
    facts: JpegImage | VideoStream | PdfDocument
    encoding: VideoEncoding | None = None


def probe(path: str | os.PathLike[str]) -> Media:
    """What `path` is. Raises Refusal (the message names the file) when it is unreadable,
    not a regular file, empty, of another format, damaged, too large for a DICOM value, or
    not carried unchanged by any DICOM encoding."""
    path = Path(path)
    try:
        status = os.stat(path)
        if not stat.S_ISREG(status.st_mode):  # a FIFO would block the read below
            raise Refusal("not a regular file")
        with open(path, "rb") as fh:
            head = fh.read(12)
        media = _read(path, head, status)
    except Refusal as exc:
        raise Refusal(f"{path}: {exc}") from None
    except OSError as exc:
        raise Refusal(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return media


def _read(path: Path, head: bytes, status: os.stat_result) -> Media:
    size = status.st_size
    modified = datetime.fromtimestamp(status.st_mtime)
    if head.startswith(b"\xff\xd8\xff"):
        photo = read_jpeg(path)
        _fits_one_value(photo.length)
        return Media(path, PHOTO, size, modified, photo)
    if head[4:8] == b"ftyp":
        if head[8:12] in _HEIF_BRANDS:
            raise Refusal("a HEIF/HEIC/AVIF image: not supported, export the photo as JPEG")
        video = read_mp4(path)
        return Media(path, VIDEO, size, modified, video, video_encoding(video, size))
    if head.startswith(b"%PDF-"):
        document = read_pdf(path)
        _fits_one_value(size)
        return Media(path, DOCUMENT, size, modified, document)
    if not head:
        raise Refusal("an empty file")
    raise Refusal("not a JPEG, MP4 or PDF file")


def _fits_one_value(length: int) -> None:
    """A photo is one fragment, a document one value: at most 2^32 - 2 bytes (PS3.5 7.1.1)."""
    if length > MAX_VALUE_LENGTH:
        raise Refusal(f"{length} bytes: more than one DICOM value holds ({MAX_VALUE_LENGTH})")
