"""Re-encode a stored uncompressed object in Explicit or Implicit VR Little Endian for a peer
that takes only the other, copying its pixel data from disk in chunks: both syntaxes carry the
same pixel bytes, only the element headers differ (PS3.5 A.1, A.2). An Explicit VR Big Endian
object (PS3.5 A.3, retired) has its multi-byte values byte-swapped on the way."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import IO, cast

from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

PIXEL_DATA = Tag(0x7FE0, 0x0010)
# Values longer than this stay on disk while the header is read (the pixel data among them).
_DEFER_BYTES = 64 * 1024
_CHUNK = 1 << 20
# PS3.5 6.2: the bytes of one value of these VRs, which are kept as bytes by pydicom and so are
# not swapped by it when a big endian dataset is written in little endian
_WORD_SIZES = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def recode(source: Path, target: Path, transfer_syntax: str) -> None:
    """Write the Part 10 file `source` to `target` encoded in `transfer_syntax` (Explicit or
    Implicit VR Little Endian). Native pixel data at the end of the dataset is copied in
    chunks; anything else (a deflated source, elements after the pixel data) is re-encoded in
    memory. A big endian source has its OW, OF, OL, OD and OV values byte-swapped (pydicom
    swaps the numbers it decodes itself); its pixel data by the size of a pixel sample
    (Bits Allocated). Raises OSError, ValueError (an UN value in a big endian source, whose
    bytes cannot be swapped without knowing its VR), or pydicom's errors for a file it cannot
    read."""
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
    swap = 0  # the size of the pixel data's words to swap as it is copied (0: none)
    if stored_syntax == ExplicitVRBigEndian:
        # every value read before pydicom is told the byte order has changed
        _swap_values(dataset, skip=PIXEL_DATA if streamable else None)
        swap = _pixel_word_size(dataset, str(pixel.VR)) if pixel and streamable else 0
        # pydicom refuses to change byte order unless told the values now read little endian
        dataset.set_original_encoding(False, True, dataset.original_character_set)
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
        _copy(src, out, pixel.length, swap)


def _copy(src: IO[bytes], out: IO[bytes], length: int, swap: int = 0) -> None:
    """Copy `length` bytes in chunks, each word of `swap` bytes (2, 4, 8) reversed."""
    left = length
    while left:
        chunk = src.read(min(_CHUNK, left))  # _CHUNK is a multiple of every word size
        if not chunk:
            raise OSError(f"{src.name} ends {left} bytes before its pixel data does")
        out.write(_swapped(chunk, swap) if swap else chunk)
        left -= len(chunk)


def _swapped(data: bytes, size: int) -> bytes:
    """`data` with each `size`-byte word reversed (a trailing odd byte kept as it is)."""
    whole = len(data) - len(data) % size
    out = bytearray(data)
    for offset in range(size):
        out[offset:whole:size] = data[size - 1 - offset : whole : size]
    return bytes(out)


def _pixel_word_size(dataset: Dataset, vr: str) -> int:
    """The bytes to reverse together in big endian native pixel data (PS3.5 A.3, 8.1.1): none
    in OB; in OW 16-bit words, or whole samples of 32 or 64 bits (as pydicom and DCMTK read
    them: an OW of 8-bit samples has each pair of samples swapped)."""
    if vr != "OW":
        return 0
    bits = int(dataset.get("BitsAllocated", 16))
    return bits // 8 if bits in (32, 64) else 2


def _swap_values(dataset: Dataset, skip: BaseTag | None = None) -> None:
    """Byte-swap, in place, the values pydicom keeps as bytes (OW, OF, OL, OD, OV) in
    `dataset` and its sequences, but not `skip` (left on disk, to be swapped as it is copied).
    Raises ValueError for an UN value: its byte order cannot be known."""
    for tag in list(dataset.keys()):
        if tag == skip:
            continue
        elem = dataset[tag]  # decoded from the raw element, in the source's byte order
        if elem.VR == "SQ":
            for item in elem.value:
                _swap_values(item)
        elif elem.tag == PIXEL_DATA and "BitsAllocated" in dataset:
            size = _pixel_word_size(dataset, elem.VR)
            if elem.value and size:
                elem.value = _swapped(elem.value, size)
        elif elem.VR in _WORD_SIZES and elem.value:
            elem.value = _swapped(elem.value, _WORD_SIZES[elem.VR])
        elif elem.VR == "UN" and elem.value:
            raise ValueError(f"{elem.tag} is UN in a big endian object: it cannot be swapped")
