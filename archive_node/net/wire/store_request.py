"""A C-STORE sub-operation's bytes by hand (PS3.7 9.3.1, annex E; PS3.8 9.3.5; PS3.10 7.1):
the C-STORE-RQ command set, the P-DATA-TF PDU that carries it, the simple C-STORE-RSP read
back, and where a stored Part 10 file's dataset starts.

pynetdicom builds each C-STORE-RQ as a pydicom Dataset, validates and encodes it, decodes each
C-STORE-RSP through pydicom into a primitive, and reads a file's meta with pydicom to find its
dataset: ~1 ms of Python per sub-operation of a C-MOVE or C-GET, a third of the node's CPU for
a CT slice. A C-STORE-RQ is always the same few elements in Implicit VR Little Endian (PS3.7
6.3.1); a C-STORE-RSP nearly always too. Tests compare every packed command with pynetdicom's
encoding of the same primitive, every parsed response with pydicom's decoding of the same
bytes, and every file offset with pynetdicom's split_dataset; whatever these functions do not
recognise (an Error Comment, an unusual file meta) returns None and is left to pynetdicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
DATA_SET = 0x0001  # Command Data Set Type of a C-STORE-RQ as pynetdicom sets it
NO_DATA_SET = 0x0101

_ELEMENT = struct.Struct("<HHI")  # implicit VR: group, element, length
_US = struct.Struct("<HHIH")
_PDU = struct.Struct(">BBIIBB")  # P-DATA-TF: type, reserved, length; PDV: length, context, control


def _uid(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"  # UI values are padded to even length with a NULL (PS3.5 6.2)
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def store_request(
    message_id: int,
    sop_class_uid: str,
    sop_instance_uid: str,
    *,
    priority: int = 2,
    originator_aet: str | None = None,
    originator_id: int | None = None,
) -> bytes:
    """The command set of a C-STORE-RQ, as pynetdicom 3.0.4 encodes one for these values
    (`originator_aet` as pynetdicom's C_STORE primitive keeps it: see originator_title)."""
    parts = [
        _uid(0x0002, sop_class_uid),  # Affected SOP Class UID
        _US.pack(0x0000, 0x0100, 2, C_STORE_RQ),  # Command Field
        _US.pack(0x0000, 0x0110, 2, message_id),  # Message ID
        _US.pack(0x0000, 0x0700, 2, priority),  # Priority
        _US.pack(0x0000, 0x0800, 2, DATA_SET),  # Command Data Set Type
        _uid(0x1000, sop_instance_uid),  # Affected SOP Instance UID
    ]
    if originator_aet is not None:
        value = originator_aet.encode("ascii")
        if len(value) % 2:
            value += b" "  # AE values are padded with a space (PS3.5 6.2)
        parts.append(_ELEMENT.pack(0x0000, 0x1030, len(value)) + value)
    if originator_id is not None:
        parts.append(_US.pack(0x0000, 0x1031, 2, originator_id))
    elements = b"".join(parts)
    return struct.pack("<HHII", 0x0000, 0x0000, 4, len(elements)) + elements


def command_pdus(command: bytes, context_id: int, max_pdu_length: int) -> bytes:
    """The P-DATA-TF PDU(s) carrying a command set, as pynetdicom sends a message's command:
    one PDV per PDU, each at most the peer's maximum PDU length (0: no limit), message control
    header 0x01, the last 0x03 (PS3.8 9.3.5, E.2)."""
    room = max_pdu_length - 6 if max_pdu_length else len(command)
    room = max(room, 1)
    out = []
    for start in range(0, len(command), room):
        fragment = command[start : start + room]
        control = 0x03 if start + room >= len(command) else 0x01
        size = len(fragment)
        out.append(_PDU.pack(0x04, 0x00, size + 6, size + 2, context_id, control) + fragment)
    return b"".join(out)


@dataclass(frozen=True)
class StoreResponse:
    """A C-STORE-RSP with nothing but what every response carries (no Error Comment, no
    Offending Element): what a sender needs of it."""

    message_id_being_responded_to: int
    affected_sop_class_uid: str
    affected_sop_instance_uid: str | None
    status: int

    # as pynetdicom's primitives: a response that reaches the association's reactor (a peer's
    # second answer to one C-STORE) is "unexpected" there and ignored, never served
    msg_type = "C_STORE"
    is_valid_request = False
    is_valid_response = True

    @property
    def Status(self) -> int:  # as pynetdicom's primitive names it
        return self.status


# The elements a plain C-STORE-RSP may hold, in order, and whether each must be there.
_RSP_ELEMENTS = (0x0000, 0x0002, 0x0100, 0x0120, 0x0800, 0x0900, 0x1000)
_REQUIRED = frozenset({0x0000, 0x0100, 0x0120, 0x0800, 0x0900})


def parse_store_response(command: bytes) -> StoreResponse | None:
    """A whole command set in Implicit VR Little Endian read as a plain C-STORE-RSP; None for
    anything else (another command, an Error Comment or any other element, odd lengths, a
    group length that does not match), which is left to pynetdicom's decoding."""
    values: dict[int, bytes] = {}
    position, end, order = 0, len(command), 0
    try:
        while position < end:
            group, element, length = _ELEMENT.unpack_from(command, position)
            position += 8
            if group != 0x0000 or position + length > end:
                return None
            while order < len(_RSP_ELEMENTS) and _RSP_ELEMENTS[order] != element:
                order += 1
            if order == len(_RSP_ELEMENTS):
                return None  # an element a plain response has not, or out of order
            values[element] = command[position : position + length]
            position += length
            order += 1
    except struct.error:
        return None
    if not values.keys() >= _REQUIRED:
        return None
    us = {k: values[k] for k in (0x0100, 0x0120, 0x0800, 0x0900)}
    if any(len(v) != 2 for v in us.values()) or len(values[0x0000]) != 4:
        return None
    (group_length,) = struct.unpack("<I", values[0x0000])
    if group_length != end - 12:
        return None
    field, answered, data_set_type, status = (struct.unpack("<H", us[k])[0] for k in us)
    if field != C_STORE_RSP or data_set_type != NO_DATA_SET:
        return None
    if 0x0002 not in values:
        return None  # pynetdicom's decoding has the last word on a response without it
    sop_class = _ui(values[0x0002])
    sop_instance = _ui(values[0x1000]) if 0x1000 in values else None
    if sop_class is None or (0x1000 in values and sop_instance is None):
        return None
    return StoreResponse(answered, sop_class, sop_instance, status)


def _ui(value: bytes) -> str | None:
    """A UI value as pydicom gives it: trailing NULL and space padding gone; None for one
    pydicom would read otherwise (empty, multi-valued, not ASCII)."""
    try:
        text = value.decode("ascii").rstrip("\0 ")
    except UnicodeDecodeError:
        return None
    if not text or "\\" in text or any(c not in "0123456789." for c in text):
        return None
    return text


# -- a stored Part 10 file --------------------------------------------------------------------

_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN"})
_LONG_VRS |= frozenset({b"UR", b"UT", b"UV"})
_META_MAX = 1 << 16  # a file meta longer than this is left to pydicom


@dataclass(frozen=True)
class FileMeta:
    """What pynetdicom's send_c_store takes from a file's meta, and where its dataset starts."""

    offset: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


def read_file_meta(fh: BinaryIO) -> FileMeta | None:
    """The Media Storage SOP Class and Instance UIDs, the Transfer Syntax UID and the offset of
    the dataset of a Part 10 file open at its start, as pynetdicom's split_dataset finds them;
    None for a file it reads differently (no preamble, no or a wrong group length, a meta
    without one of the three), which is left to pynetdicom. The file is left at the offset."""
    head = fh.read(144)
    if len(head) != 144 or head[128:132] != b"DICM":
        return None
    group, element, vr, length = struct.unpack_from("<HH2sH", head, 132)
    if (group, element, vr, length) != (0x0002, 0x0000, b"UL", 4):
        return None
    (meta_length,) = struct.unpack_from("<I", head, 140)
    if meta_length > _META_MAX:
        return None
    meta = fh.read(meta_length + 2)  # and the next group number, to see the meta has ended
    if len(meta) < meta_length or meta[meta_length:] == b"\x02\x00":
        return None
    values: dict[int, bytes] = {}
    position = 0
    try:
        while position < meta_length:
            group, element, vr = struct.unpack_from("<HH2s", meta, position)
            if group != 0x0002:
                return None
            if vr in _LONG_VRS:
                (length,) = struct.unpack_from("<I", meta, position + 8)
                position += 12
            else:
                (length,) = struct.unpack_from("<H", meta, position + 6)
                position += 8
            if length == 0xFFFFFFFF:
                return None
            values[element] = meta[position : position + length]
            position += length
    except struct.error:
        return None
    if position != meta_length:
        return None
    found = [_ui(values.get(e, b"")) for e in (0x0002, 0x0003, 0x0010)]
    if None in found:
        return None
    offset = 144 + meta_length
    fh.seek(offset)
    sop_class, sop_instance, syntax = (str(v) for v in found)
    return FileMeta(offset, sop_class, sop_instance, syntax)
