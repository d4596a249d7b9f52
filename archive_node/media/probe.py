"""Tell a photo, a video and a document apart by their first bytes, and read their facts."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .jpeg import JpegImage, read_jpeg
from .mp4 import VideoStream, read_mp4
from .pdf import PdfDocument, read_pdf
from .refusal import Refusal

PHOTO, VIDEO, DOCUMENT = "photo", "video", "document"


@dataclass(frozen=True)
class Media:
    """One file to import: its kind, size, and what its headers say."""

    path: Path
    kind: str
    size: int
    facts: JpegImage | VideoStream | PdfDocument


def probe(path: str | os.PathLike[str]) -> Media:
    """What `path` is. Raises Refusal (the message names the file) when it is unreadable,
    empty, of another format, damaged, or not carried unchanged by any DICOM encoding."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            size = os.fstat(fh.fileno()).st_size
        if head.startswith(b"\xff\xd8\xff"):
            kind, facts = PHOTO, read_jpeg(path)
        elif head[4:8] == b"ftyp":
            kind, facts = VIDEO, read_mp4(path)
        elif head.startswith(b"%PDF-"):
            kind, facts = DOCUMENT, read_pdf(path)
        elif not head:
            raise Refusal("an empty file")
        else:
            raise Refusal("not a JPEG, MP4 or PDF file")
    except Refusal as exc:
        raise Refusal(f"{path}: {exc}") from None
    except OSError as exc:
        raise Refusal(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return Media(path=path, kind=kind, size=size, facts=facts)
