"""Check the encoding of a whole Part 10 file, streamed: file meta, elements, items, fragments."""

# What is checked, and where the standard says so:
# - PS3.10 7.1: the preamble and "DICM"; the File Meta Information in Explicit VR Little Endian,
#   its elements of group 0002 ending exactly where its Group Length says; a Transfer Syntax UID.
# - PS3.5 7.1.1-7.1.3: each element's tag, its VR (explicit syntaxes: a known VR, with a 2- or
#   4-byte length), its length (even, a multiple of the VR's size, and no longer than the bytes
#   left in its item, sequence or dataset); undefined length only for SQ, UN (its value is then
#   a sequence in Implicit VR Little Endian, PS3.5 6.2.2), and encapsulated Pixel Data.
# - PS3.5 7.5: items and their delimiters, of defined and undefined length, nested.
# - PS3.5 A.4: encapsulated Pixel Data (only under an encapsulated transfer syntax, and there
#   the top level's Pixel Data must be encapsulated) is a Basic Offset Table item (a multiple of
#   4 bytes), one or more fragment items of even length, and a Sequence Delimitation Item.
# - PS3.5 A.5: a deflated dataset inflates to a well-formed one (at most `max_inflated` bytes:
#   a deflate bomb is refused once past it, never held in memory), and the deflated stream is
#   of even length (a single trailing null byte pads an odd one); nothing follows it.
# Values are never decoded: a value is skipped by seeking (or, deflated, by inflating and
# dropping), so memory stays within a 64 KiB window whatever the size of the object.

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pydicom.datadict import DicomDictionary
from pydicom.uid import UID

# A deflated dataset inflating past this is refused (PS3.5 A.5 is meant for SR and other small
# objects; pydicom inflates a whole deflated dataset into memory to read its header, so this
# bounds what one association can make the node hold).
MAX_INFLATED = 256 << 20
MAX_DEPTH = 64  # sequences within sequences
WINDOW = 64 * 1024  # bytes read (or inflated) at a time
AFTER_SKIP = 4096  # bytes read after a skipped value

UNDEFINED = 0xFFFFFFFF
ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
GROUP_LENGTH_META = 0x00020000
TRANSFER_SYNTAX_UID = 0x00020010

IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
# PS3.5 A.5, A.6: the whole dataset deflated (Deflated Explicit VR LE, JPIP Referenced Deflate,
# JPIP HTJ2K Referenced Deflate).
DEFLATED = frozenset(
    {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.205"}
)
# Native syntaxes: Pixel Data is never encapsulated (PS3.5 A.1-A.3, A.5, JPIP referenced).
NATIVE = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        "1.2.840.10008.1.2.1",
        EXPLICIT_VR_BIG_ENDIAN,
        "1.2.840.10008.1.2.4.94",
        "1.2.840.10008.1.2.4.204",
        *DEFLATED,
    }
)

# PS3.5 Table 7.1-1: the VRs whose explicit length has 4 bytes (after 2 reserved ones).
LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())
SHORT_VRS = frozenset(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())
# PS3.5 6.2: a binary VR's length is a multiple of its value's size.
VALUE_SIZE = {
    b"AT": 4,
    b"FL": 4,
    b"FD": 8,
    b"OD": 8,
    b"OF": 4,
    b"OL": 4,
    b"OV": 8,
    b"SL": 4,
    b"SS": 2,
    b"SV": 8,
    b"UL": 4,
    b"US": 2,
    b"UV": 8,
}
# Tags the dictionary knows as sequences: in Implicit VR the only way to tell.
SEQUENCE_TAGS = frozenset(tag for tag, entry in DicomDictionary.items() if entry[0] == "SQ")


@dataclass(frozen=True)
class Problem:
    """What is wrong with a file's encoding, and where: a byte offset in the file or, for a
    deflated dataset, in the inflated dataset; `start` is where the dataset begins (-1 for a
    problem of the file meta, before it)."""

    message: str
    offset: int
    inflated: bool = False
    start: int = 0

    def __str__(self) -> str:
        # Short: an Error Comment (LO) holds 64 characters.
        return f"{self.message} at {'inflated ' if self.inflated else ''}byte {self.offset}"

    def in_dataset(self) -> str:
        """The problem with its offset counted from the dataset's first byte (what a sender
        sent: a receiver's file meta is its own), or as str() when it is in the file meta."""
        if self.inflated or self.start < 0:
            return str(self)
        return f"{self.message} at dataset byte {self.offset - self.start}"


class _Malformed(Exception):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


class _Short(Exception):
    """Fewer bytes are left than asked for: `available` of them."""

    def __init__(self, available: int) -> None:
        super().__init__(available)
        self.available = available


@dataclass(frozen=True)
class _Encoding:
    explicit: bool
    tag_length: struct.Struct  # group, element, 4-byte length (items; Implicit VR elements)
    tag_vr_length: struct.Struct  # group, element, VR, 2-byte length (Explicit VR)
    length: struct.Struct  # the 4-byte length after an explicit long VR's reserved bytes


_IMPLICIT_LE = _Encoding(
    False, struct.Struct("<HHI"), struct.Struct("<HH2sH"), struct.Struct("<I")
)
_EXPLICIT_LE = _Encoding(True, struct.Struct("<HHI"), struct.Struct("<HH2sH"), struct.Struct("<I"))
_EXPLICIT_BE = _Encoding(True, struct.Struct(">HHI"), struct.Struct(">HH2sH"), struct.Struct(">I"))


class _FileWindow:
    """A file's bytes from `pos` to `end`, read forward through a bounded window; a value
    beyond the window is skipped by moving `pos`, so the next read seeks past it."""

    def __init__(self, fh: BinaryIO, start: int, end: int) -> None:
        self.fh = fh
        self.end = end
        self.pos = start
        self._base = start
        self._buf = b""

    def take(self, n: int) -> bytes:
        i = self.pos - self._base
        if i < 0 or i + n > len(self._buf):
            if self.pos + n > self.end:
                raise _Short(self.end - self.pos)
            # After a value skipped past the window (a fragment of a video), a little: the
            # next header; reading on from the window, a window's worth.
            ahead = WINDOW if 0 <= i <= len(self._buf) else AFTER_SKIP
            self.fh.seek(self.pos)
            self._buf = self.fh.read(min(max(n, ahead), self.end - self.pos))
            self._base, i = self.pos, 0
            if len(self._buf) < n:  # the file shrank under us
                raise _Short(len(self._buf))
        self.pos += n
        return self._buf[i : i + n]

    def skip(self, n: int) -> None:
        if self.pos + n > self.end:
            raise _Short(self.end - self.pos)
        self.pos += n

    def at_end(self) -> bool:
        return self.pos >= self.end


class _Inflating:
    """The inflated bytes of a raw deflate stream (PS3.5 A.5), produced a window at a time and
    counted against `limit`; `pos` is the offset in the inflated dataset."""

    def __init__(self, fh: BinaryIO, start: int, end: int, limit: int) -> None:
        self.fh = fh
        self.start = start
        self.end = end
        self.limit = limit
        self.pos = 0
        self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self._buf = b""
        self._i = 0
        self._produced = 0
        fh.seek(start)
        self._read = start

    def _more(self) -> bool:
        """Inflate another window into the buffer; False at the end of the stream."""
        inflater = self._inflater
        while not inflater.eof:
            data = inflater.unconsumed_tail
            if not data:
                data = self.fh.read(min(WINDOW, max(self.end - self._read, 0)))
                self._read += len(data)
            try:
                out = inflater.decompress(data, WINDOW)
            except zlib.error as exc:
                raise _Malformed(f"corrupt deflate stream ({exc})", self._produced) from None
            if out:
                self._produced += len(out)
                if self._produced > self.limit:
                    raise _Malformed(
                        f"deflate bomb: over {self.limit >> 20} MiB inflated", self.limit
                    )
                self._buf = self._buf[self._i :] + out
                self._i = 0
                return True
            if not data and not inflater.eof:  # no input left, and no end of stream
                raise _Malformed("deflate stream truncated", self._produced)
        return False

    def take(self, n: int) -> bytes:
        while len(self._buf) - self._i < n:
            if not self._more():
                raise _Short(len(self._buf) - self._i)
        i = self._i
        self._i += n
        self.pos += n
        return self._buf[i : i + n]

    def skip(self, n: int) -> None:
        skipped = 0
        while True:
            here = min(n - skipped, len(self._buf) - self._i)
            self._i += here
            self.pos += here
            skipped += here
            if skipped == n:
                return
            self._buf, self._i = b"", 0
            if not self._more():
                raise _Short(skipped)

    def at_end(self) -> bool:
        return self._i >= len(self._buf) and not self._more()

    def trailer_problem(self) -> Problem | None:
        """After the dataset: the stream's length is even, an odd one padded by a single null
        byte (PS3.5 A.5), and nothing else follows it."""
        unused = self._inflater.unused_data
        trailing = len(unused) + max(self.end - self._read, 0)
        stream = self.end - self.start - trailing
        if trailing == 0:
            if stream % 2 == 0:
                return None
            return Problem(
                f"odd deflate stream length {stream}, no pad", self.end, start=self.start
            )
        if trailing == 1 and stream % 2 and (unused or self.fh.read(1)) == b"\0":
            return None
        return Problem(
            f"{trailing} byte(s) after the deflate stream", self.start + stream, start=self.start
        )


def check_path(path: str | Path, *, max_inflated: int = MAX_INFLATED) -> Problem | None:
    """check_file() of the file at `path`. Raises OSError when it cannot be read."""
    with open(path, "rb", buffering=0) as fh:
        return check_file(fh, max_inflated=max_inflated)


def check_file(fh: BinaryIO, *, max_inflated: int = MAX_INFLATED) -> Problem | None:
    """The first thing wrong with the encoding of the Part 10 file `fh` (PS3.10 7.1), or None.

    Reads from the start of `fh` to its end (its size when called); raises OSError when the
    file cannot be read.
    """
    size = fh.seek(0, 2)
    window = _FileWindow(fh, 0, size)
    try:
        transfer_syntax = _file_meta(window)
    except _Malformed as exc:
        return Problem(exc.message, exc.offset, start=-1)
    return _check(fh, window, transfer_syntax, window.pos, size, max_inflated)


def check_dataset(
    fh: BinaryIO,
    transfer_syntax: str,
    *,
    start: int = 0,
    end: int | None = None,
    max_inflated: int = MAX_INFLATED,
) -> Problem | None:
    """The first thing wrong with the dataset encoded in `transfer_syntax` from `start` to `end`
    (the file's end by default) of `fh`, or None. Raises OSError when it cannot be read."""
    if end is None:
        end = fh.seek(0, 2)
    return _check(fh, _FileWindow(fh, start, end), transfer_syntax, start, end, max_inflated)


def _check(
    fh: BinaryIO,
    window: _FileWindow,
    transfer_syntax: str,
    start: int,
    end: int,
    max_inflated: int,
) -> Problem | None:
    encoding = _EXPLICIT_LE
    if transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN:
        encoding = _IMPLICIT_LE
    elif transfer_syntax == EXPLICIT_VR_BIG_ENDIAN:
        encoding = _EXPLICIT_BE
    # Known encapsulated syntaxes must encapsulate, native ones must not; a syntax unknown to
    # the dictionary (a private one) is held to neither.
    encapsulated: bool | None = False
    if transfer_syntax not in NATIVE:
        uid = UID(transfer_syntax)
        encapsulated = uid.is_encapsulated if uid.is_transfer_syntax else None
    if transfer_syntax in DEFLATED:
        inflating = _Inflating(fh, start, end, max_inflated)
        walker = _Walker(inflating, encapsulated)
        try:
            walker.dataset(encoding, None, delimited=False, depth=0)
        except _Malformed as exc:
            return Problem(exc.message, exc.offset, inflated=True, start=start)
        return inflating.trailer_problem()
    try:
        _Walker(window, encapsulated).dataset(encoding, end, delimited=False, depth=0)
    except _Malformed as exc:
        return Problem(exc.message, exc.offset, start=start)
    return None


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _vr(vr: bytes) -> str:
    text = vr.decode("latin-1")
    return text if text.isalnum() and text.isascii() else f"bytes {vr.hex(' ').upper()}"


def _file_meta(window: _FileWindow) -> str:
    """Check the preamble and File Meta Information (PS3.10 7.1); its Transfer Syntax UID.
    Leaves `window` at the dataset's first byte."""
    try:
        prefix = window.take(132)
    except _Short:
        raise _Malformed("no Part 10 preamble (file too short)", 0) from None
    if prefix[128:] != b"DICM":
        raise _Malformed("no DICM prefix (not a Part 10 file)", 128)
    meta_end: int | None = None
    transfer_syntax: str | None = None
    while True:
        at = window.pos
        if meta_end is not None and at == meta_end:
            break
        try:
            header = window.take(8)
        except _Short:
            if meta_end is None and window.at_end():
                break
            raise _Malformed("file meta ends inside an element", at) from None
        group, element, vr, length = _EXPLICIT_LE.tag_vr_length.unpack(header)
        tag = group << 16 | element
        if group != 0x0002:
            if meta_end is None and at > 132:  # no Group Length: the meta ends here
                window.pos = at
                break
            raise _Malformed(f"{_tag(tag)} in the file meta (group 0002 only)", at)
        if vr in LONG_VRS:
            try:
                (length,) = _EXPLICIT_LE.length.unpack(window.take(4))
            except _Short:
                raise _Malformed("file meta ends inside an element", at) from None
        elif vr not in SHORT_VRS:
            raise _Malformed(f"{_tag(tag)} invalid VR {_vr(vr)}", at)
        limit = meta_end if meta_end is not None else window.end
        if length == UNDEFINED:
            raise _Malformed(f"{_tag(tag)} undefined length in file meta", at)
        if length % 2:
            raise _Malformed(f"{_tag(tag)} odd length {length}", at)
        if length > limit - window.pos:
            raise _Malformed(f"{_tag(tag)} length {length} > {limit - window.pos} bytes left", at)
        if tag == GROUP_LENGTH_META:
            if at != 132 or vr != b"UL" or length != 4:
                raise _Malformed("bad file meta group length element", at)
            (group_length,) = struct.unpack("<I", window.take(4))
            meta_end = window.pos + group_length
            if meta_end > window.end:
                raise _Malformed(f"file meta group length {group_length} > file", at)
        elif tag == TRANSFER_SYNTAX_UID and length <= 128:
            transfer_syntax = window.take(length).decode("ascii", "replace").rstrip("\0 ")
        else:
            window.skip(length)
    if not transfer_syntax:
        raise _Malformed("no Transfer Syntax UID in the file meta", 132)
    return transfer_syntax


class _Walker:
    """One pass over a dataset's elements, items and fragments (PS3.5 7.1, 7.5, A.4)."""

    def __init__(self, source: _FileWindow | _Inflating, encapsulated: bool | None) -> None:
        self.source = source
        self.encapsulated = encapsulated

    def _short_header(self, at: int, left: int, delimited: bool, depth: int) -> _Malformed:
        """What it means that fewer than a header's bytes are `left` where one was due."""
        if delimited:
            return _Malformed("item without Item Delimitation", at)
        if depth:
            return _Malformed(f"{left} stray byte(s) at the end of an item", at)
        if left % 2:
            return _Malformed(f"odd dataset length: {left} stray byte(s)", at)
        return _Malformed(f"{left} stray bytes at the end of the dataset", at)

    def dataset(self, enc: _Encoding, end: int | None, *, delimited: bool, depth: int) -> None:
        """Walk elements up to `end` (None: the end of the inflated stream), or, `delimited`,
        to an Item Delimitation Item before `end`."""
        source = self.source
        take, skip = source.take, source.skip
        tag_length, tag_vr_length = enc.tag_length, enc.tag_vr_length
        explicit = enc.explicit
        while True:
            at = source.pos
            if end is None:
                if source.at_end():
                    if delimited:
                        raise self._short_header(at, 0, delimited, depth)
                    return
            elif at >= end:
                if delimited:
                    raise self._short_header(at, 0, delimited, depth)
                return
            elif end - at < 8:
                raise self._short_header(at, end - at, delimited, depth)
            try:
                header = take(8)
            except _Short as short:
                raise self._short_header(at, short.available, delimited, depth) from None
            group, element, length = tag_length.unpack(header)
            tag = group << 16 | element
            if group == 0xFFFE:
                if tag == ITEM_DELIMITATION and delimited:
                    if length:
                        raise _Malformed(f"Item Delimitation length {length}", at)
                    return
                raise _Malformed(f"{_tag(tag)} where an element was due", at)
            vr = b""
            if explicit:
                _g, _e, vr, length = tag_vr_length.unpack(header)
                if vr in LONG_VRS:
                    try:
                        if end is not None and end - source.pos < 4:
                            raise _Short(end - at)
                        (length,) = enc.length.unpack(take(4))
                    except _Short as short:
                        raise self._short_header(at, short.available, delimited, depth) from None
                elif vr not in SHORT_VRS:
                    raise _Malformed(f"{_tag(tag)} invalid VR {_vr(vr)}", at)
            if length == UNDEFINED:
                self._undefined(enc, tag, vr, at, end, depth)
                continue
            left = None if end is None else end - source.pos
            if length & 1:
                raise _Malformed(f"{_tag(tag)} odd length {length}", at)
            if left is not None and length > left:
                raise self._overrun(tag, length, left, at)
            if vr in VALUE_SIZE and length % VALUE_SIZE[vr]:
                raise _Malformed(
                    f"{_tag(tag)} {vr.decode()} length {length} not a multiple of "
                    f"{VALUE_SIZE[vr]}",
                    at,
                )
            if vr == b"SQ" or (not explicit and tag in SEQUENCE_TAGS):
                self.sequence(enc, tag, source.pos + length, delimited=False, depth=depth + 1)
                continue
            if tag == PIXEL_DATA and depth == 0 and self.encapsulated:
                raise _Malformed("Pixel Data not encapsulated (PS3.5 A.4)", at)
            try:
                skip(length)
            except _Short as short:
                raise self._overrun(tag, length, short.available, at) from None

    def _overrun(self, tag: int, length: int, left: int, at: int) -> _Malformed:
        return _Malformed(f"{_tag(tag)} length {length} > {left} bytes left", at)

    def _undefined(
        self, enc: _Encoding, tag: int, vr: bytes, at: int, end: int | None, depth: int
    ) -> None:
        """An element of undefined length: a sequence, an UN holding one, or encapsulated
        Pixel Data (PS3.5 7.1.2, 6.2.2, A.4)."""
        if enc.explicit:
            if vr == b"SQ":
                return self.sequence(enc, tag, end, delimited=True, depth=depth + 1)
            if tag == PIXEL_DATA and vr in (b"OB", b"OW", b"UN"):
                return self._fragments(at, end)
            if vr == b"UN":  # PS3.5 6.2.2: a sequence in Implicit VR Little Endian
                return self.sequence(_IMPLICIT_LE, tag, end, delimited=True, depth=depth + 1)
            raise _Malformed(f"{_tag(tag)} {_vr(vr)} of undefined length", at)
        if tag == PIXEL_DATA:
            return self._fragments(at, end)
        if tag in SEQUENCE_TAGS or tag not in DicomDictionary:  # an unknown one is UN
            return self.sequence(enc, tag, end, delimited=True, depth=depth + 1)
        raise _Malformed(f"{_tag(tag)} of undefined length, not a sequence", at)

    def sequence(
        self, enc: _Encoding, tag: int, end: int | None, *, delimited: bool, depth: int
    ) -> None:
        """Items up to `end` or, `delimited`, to a Sequence Delimitation Item (PS3.5 7.5)."""
        source = self.source
        if depth > MAX_DEPTH:
            raise _Malformed(f"sequences nested more than {MAX_DEPTH} deep", source.pos)
        while True:
            at = source.pos
            if (end is None and source.at_end()) or (end is not None and at >= end):
                if delimited:
                    raise _Malformed(f"{_tag(tag)} without Sequence Delimitation", at)
                return
            if end is not None and end - at < 8:
                raise _Malformed(f"{_tag(tag)} ends inside an item header", at)
            try:
                header = source.take(8)
            except _Short:
                raise _Malformed(f"{_tag(tag)} ends inside an item header", at) from None
            group, element, length = enc.tag_length.unpack(header)
            item = group << 16 | element
            if item == ITEM:
                if length == UNDEFINED:
                    self.dataset(enc, end, delimited=True, depth=depth)
                    continue
                if length & 1:
                    raise _Malformed(f"item of {_tag(tag)} odd length {length}", at)
                if end is not None and length > end - source.pos:
                    raise _Malformed(
                        f"item of {_tag(tag)} length {length} > {end - source.pos} left", at
                    )
                self.dataset(enc, source.pos + length, delimited=False, depth=depth)
                continue
            if item == SEQUENCE_DELIMITATION:
                if not delimited:
                    raise _Malformed(f"delimiter in {_tag(tag)} of defined length", at)
                if length:
                    raise _Malformed(f"Sequence Delimitation length {length}", at)
                return
            raise _Malformed(f"{_tag(item)} in {_tag(tag)} where an item was due", at)

    def _fragments(self, at: int, end: int | None) -> None:
        """Encapsulated Pixel Data (PS3.5 A.4): a Basic Offset Table item, fragment items of
        even length, a Sequence Delimitation Item; always little endian."""
        if self.encapsulated is False:
            raise _Malformed("encapsulated Pixel Data, native syntax", at)
        source = self.source
        fragments = -1  # the Basic Offset Table comes first
        while True:
            here = source.pos
            try:
                if end is not None and end - here < 8:
                    raise _Short(end - here)
                header = source.take(8)
            except _Short:
                raise _Malformed("Pixel Data without Sequence Delimitation", here) from None
            group, element, length = _EXPLICIT_LE.tag_length.unpack(header)
            tag = group << 16 | element
            if tag == SEQUENCE_DELIMITATION:
                if fragments < 0:
                    raise _Malformed("Pixel Data without Basic Offset Table", here)
                if length:
                    raise _Malformed(f"Sequence Delimitation length {length}", here)
                if fragments == 0:
                    raise _Malformed("Pixel Data without fragments", here)
                return
            if tag != ITEM:
                raise _Malformed(f"{_tag(tag)} in Pixel Data where an item was due", here)
            what = "Basic Offset Table" if fragments < 0 else "fragment"
            if length == UNDEFINED:
                raise _Malformed(f"{what} item of undefined length", here)
            if fragments < 0 and length % 4:
                raise _Malformed(f"Basic Offset Table length {length} not a multiple of 4", here)
            if length & 1:
                raise _Malformed(f"fragment of odd length {length}", here)
            left = None if end is None else end - source.pos
            if left is not None and length > left:
                raise _Malformed(f"{what} length {length} > {left} bytes left", here)
            try:
                source.skip(length)
            except _Short as short:
                raise _Malformed(
                    f"{what} length {length} > {short.available} bytes left", here
                ) from None
            fragments += 1
