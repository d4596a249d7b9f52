"""DICOM bytes encoded by hand for structure tests: elements, items, fragments, deflate, files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"

UNDEFINED = 0xFFFFFFFF
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
ITEM_DELIMITATION = struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
SEQUENCE_DELIMITATION = struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
PREAMBLE = b"\0" * 128 + b"DICM"


def element(
    tag: int, vr: str, value: bytes = b"", *, length: int | None = None, big: bool = False
) -> bytes:
    """An Explicit VR element (PS3.5 7.1.2); `length` overrides the value's."""
    order = ">" if big else "<"
    length = len(value) if length is None else length
    group, elem = tag >> 16, tag & 0xFFFF
    if vr in LONG_VRS:
        return struct.pack(f"{order}HH2sHI", group, elem, vr.encode(), 0, length) + value
    return struct.pack(f"{order}HH2sH", group, elem, vr.encode(), length) + value


def implicit(tag: int, value: bytes = b"", *, length: int | None = None) -> bytes:
    """An Implicit VR Little Endian element (PS3.5 7.1.3)."""
    length = len(value) if length is None else length
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length) + value


def item(content: bytes = b"", *, undefined: bool = False, big: bool = False) -> bytes:
    """An Item (PS3.5 7.5): of defined length, or undefined and closed by its delimiter."""
    order = ">" if big else "<"
    if undefined:
        return (
            struct.pack(f"{order}HHI", 0xFFFE, 0xE000, UNDEFINED)
            + content
            + (struct.pack(f"{order}HHI", 0xFFFE, 0xE00D, 0))
        )
    return struct.pack(f"{order}HHI", 0xFFFE, 0xE000, len(content)) + content


def sequence(tag: int, *items: bytes, undefined: bool = False, vr: str | None = "SQ") -> bytes:
    """A sequence of `items` (explicit VR `vr`, or implicit when vr is None)."""
    body = b"".join(items)
    if undefined:
        body += SEQUENCE_DELIMITATION
    length = UNDEFINED if undefined else len(body)
    if vr is None:
        return implicit(tag, body, length=length)
    return element(tag, vr, body, length=length)


def fragments(*values: bytes, offsets: bytes = b"") -> bytes:
    """Encapsulated Pixel Data (PS3.5 A.4): OB of undefined length, a Basic Offset Table item
    holding `offsets`, one item per value, and the Sequence Delimitation Item."""
    body = struct.pack("<HHI", 0xFFFE, 0xE000, len(offsets)) + offsets
    for value in values:
        body += struct.pack("<HHI", 0xFFFE, 0xE000, len(value)) + value
    return element(0x7FE00010, "OB", body + SEQUENCE_DELIMITATION, length=UNDEFINED)


def file_meta(transfer_syntax: str, sop_class: str, sop_uid: str) -> bytes:
    """Preamble, DICM and a File Meta Information group with its Group Length (PS3.10 7.1)."""

    def ui(value: str) -> bytes:
        raw = value.encode()
        return raw + b"\0" * (len(raw) % 2)

    group = (
        element(0x00020001, "OB", b"\0\1")
        + element(0x00020002, "UI", ui(sop_class))
        + element(0x00020003, "UI", ui(sop_uid))
        + element(0x00020010, "UI", ui(transfer_syntax))
        + element(0x00020012, "UI", ui("1.2.826.0.1.3680043.8.498.1"))
    )
    return PREAMBLE + element(0x00020000, "UL", struct.pack("<I", len(group))) + group


def encode(ds: Dataset, transfer_syntax: str = EXPLICIT_LE) -> bytes:
    """The dataset `ds` (no file meta) encoded by pydicom: implicit, explicit LE or BE."""
    fp = DicomBytesIO()
    fp.is_little_endian = transfer_syntax != EXPLICIT_BE
    fp.is_implicit_VR = transfer_syntax == IMPLICIT_LE
    write_dataset(fp, ds)
    return fp.getvalue()


def part10(
    dataset: bytes,
    transfer_syntax: str = EXPLICIT_LE,
    *,
    sop_class: str = SECONDARY_CAPTURE,
    sop_uid: str = "1.2.826.0.1.3680043.8.498.2",
) -> bytes:
    return file_meta(transfer_syntax, sop_class, sop_uid) + dataset


def deflate(data: bytes, *, pad: bool = True) -> bytes:
    """A raw deflate stream of `data` (PS3.5 A.5), padded to even length unless `pad` is False."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = compressor.compress(data) + compressor.flush()
    return stream + b"\0" if pad and len(stream) % 2 else stream


def write_deflate_bomb(path: Path, head: bytes, size: int, *, chunk: int = 64 << 20) -> Path:
    """A Deflated Explicit VR Little Endian file: `head` (its identifying elements), then
    Pixel Data declaring 0xFFFFFFFE bytes, then `size` zeros, deflated (a few MB on disk for
    4 GiB). Each chunk of zeros after a full flush compresses to the same bytes, so one is
    compressed and written size/chunk times."""
    assert size % chunk == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    start = compressor.compress(head + element(0x7FE00010, "OB", length=0xFFFFFFFE))
    start += compressor.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(chunk)
    piece = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == piece, "a full flush no longer makes chunks independent"
    end = compressor.flush()
    with open(path, "xb") as fh:
        fh.write(part10(b"", DEFLATED, sop_uid=_uid_of(head)))
        fh.write(start)
        for _ in range(size // chunk - 2):
            fh.write(piece)
        fh.write(piece + again + end)
        if (len(start) + (size // chunk) * len(piece) + len(end)) % 2:
            fh.write(b"\0")
    return path


def _uid_of(head: bytes) -> str:
    """The SOP Instance UID (0008,0018) among Explicit VR LE elements `head`."""
    at = 0
    while at < len(head):
        group, elem, _vr, length = struct.unpack_from("<HH2sH", head, at)
        if (group, elem) == (0x0008, 0x0018):
            return head[at + 8 : at + 8 + length].rstrip(b"\0").decode()
        at += 8 + length
    raise ValueError("no SOP Instance UID")
