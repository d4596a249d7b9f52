"""A received file's index attributes read straight from its first bytes, without pydicom
(speed): the common case of instance_header.read_header.

read_header parsed every received file's header with pydicom's dcmread (its File Meta
Information as a Dataset, then every top-level element up to Pixel Data as raw elements) to
take ~20 attributes from it: about half the node's CPU for a 10 KB C-STORE. Here the file's
first 64 KiB are walked as PS3.10 7.1 and PS3.5 7.1 lay them out (the File Meta Information in
Explicit VR Little Endian; the dataset in Implicit or Explicit VR Little Endian, sequences of
undefined length skipped item by item, PS3.5 7.5) up to the last attribute the index keeps,
and each of those is taken only when it is one value of printable ASCII, which pydicom would
only strip (instance_header._PLAIN). Anything else — another byte order, a deflated dataset,
tags out of order, a value that needs pydicom's conversion, a header longer than the window —
is None, and read_header asks pydicom as before. The file has passed dicom/structure.py's
check of its whole encoding before it is read here.

A test (tests/unit/test_instance_header_plain.py) compares what read_header gives this way
with what pydicom gives for every attribute, value shape, encoding and character set.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.uid import UID, AllTransferSyntaxes

WINDOW = 64 * 1024  # bytes of the file read: a header longer than this is left to pydicom
MAX_DEPTH = 16  # sequences within sequences before the index's attributes
UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
# PS3.5 7.1.2: these VRs have a 2-byte reserved field and a 4-byte length in Explicit VR
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
# PS3.5 6.2: every VR (a dataset that says Explicit VR and has something else there is one pydicom
# reads by guessing its encoding: left to it)
KNOWN_VRS = LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN"}
    | {b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)
# every syntax pydicom knows as Explicit VR Little Endian, not deflated (native or encapsulated)
EXPLICIT_LITTLE_ENDIAN = frozenset(
    str(uid)
    for uid in map(UID, AllTransferSyntaxes)
    if uid.is_little_endian and not uid.is_implicit_VR and not uid.is_deflated
)
_META_GROUP_LENGTH = b"\x02\x00\x00\x00UL\x04\x00"  # (0002,0000) UL, 4 bytes
_TRANSFER_SYNTAX_UID = 0x00020010
_TAG = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


class _Unusual(Exception):
    """The file is not the common case: pydicom reads it."""


Scanned = tuple[str, dict[int, tuple[bytes | None, bytes]]]


def scan(path: Path, wanted: frozenset[int]) -> Scanned | None:
    """The transfer syntax and the raw (VR, value) of each top-level tag in `wanted` the file
    has (the VR None in Implicit VR); None when the file is not the common case (see the
    module's opening). Raises OSError."""
    try:
        return _scan(path, wanted)
    except _Unusual:
        return None


def _scan(path: Path, wanted: frozenset[int]) -> Scanned:
    with open(path, "rb") as fh:
        buf = fh.read(WINDOW)
    whole = len(buf) < WINDOW
    if len(buf) < 144 or buf[128:132] != b"DICM" or buf[132:140] != _META_GROUP_LENGTH:
        raise _Unusual
    end = 144 + _U32.unpack_from(buf, 140)[0]
    pos, syntax = 144, None
    while pos < end:
        tag, vr, length, pos = _element(buf, pos, implicit=False)
        if tag == _TRANSFER_SYNTAX_UID:
            syntax = buf[pos : pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos += length
    if pos != end or syntax is None:
        raise _Unusual
    if syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        implicit = True
    elif syntax in EXPLICIT_LITTLE_ENDIAN:
        implicit = False
    else:
        raise _Unusual
    if implicit and buf[pos + 4 : pos + 6] in KNOWN_VRS:
        raise _Unusual  # Implicit VR said, Explicit VR written: pydicom guesses
    last = max(wanted)
    values: dict[int, tuple[bytes | None, bytes]] = {}
    previous = -1
    while True:
        if pos + 8 > len(buf):
            if whole and pos == len(buf):
                break  # the file ends before Pixel Data (no image, or a small one)
            raise _Unusual
        tag = _tag(buf, pos)
        if tag > last:
            break
        if tag <= previous:
            raise _Unusual  # out of order (PS3.5 7.1: ascending): pydicom sorts
        previous = tag
        tag, vr, length, pos = _element(buf, pos, implicit=implicit)
        if length == UNDEFINED:
            if tag in wanted:
                raise _Unusual
            pos = _skip_sequence(buf, pos, implicit=implicit or vr == b"UN", depth=1)
            continue
        if pos + length > len(buf):
            raise _Unusual
        if tag in wanted:
            values[tag] = (vr, buf[pos : pos + length])
        pos += length
    return syntax, values


def _tag(buf: bytes, pos: int) -> int:
    group, element = _TAG.unpack_from(buf, pos)
    return group << 16 | element


def _element(buf: bytes, pos: int, *, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR, length, where the value starts) of the element header at `pos`."""
    if pos + 8 > len(buf):
        raise _Unusual
    tag = _tag(buf, pos)
    if implicit or tag >> 16 == 0xFFFE:  # items and delimiters have no VR (PS3.5 7.5)
        return tag, None, _U32.unpack_from(buf, pos + 4)[0], pos + 8
    vr = buf[pos + 4 : pos + 6]
    if vr not in KNOWN_VRS:
        raise _Unusual
    if vr in LONG_VRS:
        if pos + 12 > len(buf):
            raise _Unusual
        return tag, vr, _U32.unpack_from(buf, pos + 8)[0], pos + 12
    return tag, vr, _U16.unpack_from(buf, pos + 6)[0], pos + 8


def _skip_sequence(buf: bytes, pos: int, *, implicit: bool, depth: int) -> int:
    """Past a sequence of undefined length whose items begin at `pos` (PS3.5 7.5.2)."""
    if depth > MAX_DEPTH:
        raise _Unusual
    while True:
        tag, _, length, pos = _element(buf, pos, implicit=True)
        if tag == SEQUENCE_DELIMITATION:
            return pos
        if tag != ITEM:
            raise _Unusual
        if length != UNDEFINED:
            pos += length
            continue
        while True:  # an item of undefined length: its elements, up to its delimitation
            tag, vr, length, pos = _element(buf, pos, implicit=implicit)
            if tag == ITEM_DELIMITATION:
                break
            if length == UNDEFINED:
                pos = _skip_sequence(buf, pos, implicit=implicit or vr == b"UN", depth=depth + 1)
            else:
                pos += length
