"""Write a DICOM Part 10 file (PS3.10 7) whose one large value is copied from another file.

The dataset's small elements are encoded by pydicom; the large one (a video's or a photo's
Pixel Data, a PDF's Encapsulated Document) is copied from its source file in chunks, so memory
does not grow with its size, and its bytes are never altered: only the item headers of PS3.5
A.4 and a trailing pad byte (PS3.5 7.1.1: values have an even length) are put around it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from .values import MAX_VALUE_LENGTH

CHUNK = 1024 * 1024
PREAMBLE = b"\0" * 128 + b"DICM"  # PS3.10 7.1
_ITEM = 0xFFFEE000
_SEQUENCE_DELIMITER = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF

Progress = Callable[[int], None]


class SourceChanged(Exception):
    """The source file ended before the bytes it was to give (it shrank while copied)."""


@dataclass(frozen=True)
class Bulk:
    """The large value: the first `length` bytes of `source`, as the element `tag`.

    Encapsulated (PS3.5 A.4): an empty Basic Offset Table item, then the bytes in fragments
    of at most `fragment_size` (None: one fragment), then a Sequence Delimitation Item.
    Otherwise an OB value of defined length.
    """

    tag: int
    source: Path
    length: int
    encapsulated: bool
    fragment_size: int | None = None

    def __post_init__(self) -> None:
        if self.fragment_size is not None and self.fragment_size < 2:
            raise ValueError("a fragment holds at least 2 bytes (PS3.5 A.4)")


def write_part10(
    target: BinaryIO,
    file_meta: bytes,
    dataset: Dataset,
    bulk: Bulk,
    progress: Progress | None = None,
) -> None:
    """Write the preamble, `file_meta` (the encoded group 0002 from its Group Length on),
    `dataset` in Explicit VR Little Endian with `bulk` in its place by tag order.

    Raises SourceChanged when the source holds fewer than `bulk.length` bytes, OSError.
    """
    if bulk.tag in dataset:
        raise ValueError(f"the dataset already holds the bulk element {bulk.tag:08X}")
    before, after = Dataset(), Dataset()
    for element in dataset:
        (before if element.tag < bulk.tag else after).add(element)
    encoding = dataset._character_set  # the text of both parts, in the dataset's charset
    target.write(PREAMBLE)
    target.write(file_meta)
    target.write(_encoded(before, encoding))
    with open(bulk.source, "rb") as source:
        if bulk.encapsulated:
            _write_fragments(target, source, bulk, progress)
        else:
            _write_value(target, source, bulk, progress)
    target.write(_encoded(after, encoding))


def _encoded(dataset: Dataset, encoding: str | list[str]) -> bytes:
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, dataset, parent_encoding=encoding)
    return fp.getvalue()


def _write_fragments(
    target: BinaryIO, source: BinaryIO, bulk: Bulk, progress: Progress | None
) -> None:
    """PS3.5 A.4: encapsulated pixel data, an undefined-length OB of items."""
    target.write(_tag(bulk.tag) + b"OB\0\0" + struct.pack("<I", _UNDEFINED))
    target.write(_tag(_ITEM) + struct.pack("<I", 0))  # Basic Offset Table, empty
    size = (
        min(bulk.fragment_size or MAX_VALUE_LENGTH, MAX_VALUE_LENGTH) // 2 * 2
    )  # only the last is odd
    remaining = bulk.length
    while remaining:
        fragment = min(size, remaining)
        target.write(_tag(_ITEM) + struct.pack("<I", fragment + fragment % 2))
        _copy(source, target, fragment, progress)
        remaining -= fragment
    target.write(_tag(_SEQUENCE_DELIMITER) + struct.pack("<I", 0))


def _write_value(
    target: BinaryIO, source: BinaryIO, bulk: Bulk, progress: Progress | None
) -> None:
    if bulk.length > MAX_VALUE_LENGTH:
        raise ValueError(f"{bulk.source}: {bulk.length} bytes do not fit one DICOM value")
    padded = bulk.length + bulk.length % 2
    target.write(_tag(bulk.tag) + b"OB\0\0" + struct.pack("<I", padded))
    _copy(source, target, bulk.length, progress)


def _copy(source: BinaryIO, target: BinaryIO, length: int, progress: Progress | None) -> None:
    """Copy `length` bytes, then the pad byte an odd length needs (PS3.5 7.1.1, A.4)."""
    left = length
    while left:
        chunk = source.read(min(CHUNK, left))
        if not chunk:
            raise SourceChanged("the file shrank while it was copied")
        target.write(chunk)
        left -= len(chunk)
        if progress is not None:
            progress(len(chunk))
    if length % 2:
        target.write(b"\0")


def _tag(tag: int) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF)
