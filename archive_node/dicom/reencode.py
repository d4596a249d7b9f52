"""Re-encode a stored uncompressed object in Explicit or Implicit VR Little Endian for a peer
that takes only the other, copying its pixel data from disk in chunks: both syntaxes carry the
same pixel bytes, only the element headers differ (PS3.5 A.1, A.2)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import IO, cast

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import DeflatedExplicitVRLittleEndian, ImplicitVRLittleEndian

PIXEL_DATA = Tag(0x7FE0, 0x0010)
# Values longer than this stay on disk while the header is read (the pixel data among them).
_DEFER_BYTES = 64 * 1024
_CHUNK = 1 << 20


def recode(source: Path, target: Path, transfer_syntax: str) -> None:
    """Write the Part 10 file `source` to `target` encoded in `transfer_syntax` (Explicit or
    Implicit VR Little Endian). Native pixel data at the end of the dataset is copied in
    chunks; anything else (a deflated source, elements after the pixel data) is re-encoded in
    memory. Raises OSError, or pydicom's errors for a file it cannot read."""
    dataset = dcmread(source, defer_size=_DEFER_BYTES)
    stored_syntax = str(dataset.file_meta.TransferSyntaxUID)
    # the raw element while its value is deferred (still on disk): pydicom's overload of
    # get_item says DataElement
    pixel = (
        cast(RawDataElement, dataset.get_item(PIXEL_DATA, keep_deferred=True))
        if PIXEL_DATA in dataset
        else None
    )
    streamable = (
        pixel is not None
        and stored_syntax != DeflatedExplicitVRLittleEndian
        and getattr(pixel, "value", b"") is None  # still on disk: a deferred raw element
        and pixel.length != 0xFFFFFFFF  # native pixel data has a defined length
        and max(dataset.keys()) == PIXEL_DATA  # nothing follows it
    )
    dataset.file_meta.TransferSyntaxUID = transfer_syntax  # type: ignore[assignment]  # made a UID
    if not streamable:
        dataset.save_as(target, enforce_file_format=True)
        return
    assert pixel is not None
    vr = pixel.VR or ("OW" if int(dataset.get("BitsAllocated", 16)) > 8 else "OB")
    del dataset[PIXEL_DATA]
    dataset.save_as(target, enforce_file_format=True)
    if transfer_syntax == ImplicitVRLittleEndian:
        header = struct.pack("<HHI", 0x7FE0, 0x0010, pixel.length)
    else:
        header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, vr.encode("ascii"), 0, pixel.length)
    with open(source, "rb") as src, open(target, "ab") as out:
        out.write(header)
        src.seek(pixel.value_tell)
        _copy(src, out, pixel.length)


def _copy(src: IO[bytes], out: IO[bytes], length: int) -> None:
    left = length
    while left:
        chunk = src.read(min(_CHUNK, left))
        if not chunk:
            raise OSError(f"{src.name} ends {left} bytes before its pixel data does")
        out.write(chunk)
        left -= len(chunk)
