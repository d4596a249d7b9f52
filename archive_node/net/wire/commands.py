"""DIMSE response command sets encoded by hand (PS3.7 9.3.1.2, 9.3.2.2, 9.3.3.2, 9.3.4.2,
annex E), and queued as pynetdicom queues a command.

pynetdicom builds each response as a pydicom Dataset, validates and encodes it, about 0.5 ms:
with a pending response per match or per sub-operation, that was a quarter to a half of the
node's CPU in C-FIND, C-MOVE and C-GET. A pending response is always the same few command
elements in Implicit VR Little Endian (PS3.7 6.3.1); only the Message ID, the status and the
counts change, so it is packed directly (C-STORE responses likewise). Tests compare each with
pynetdicom's encoding of the same primitive.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from functools import lru_cache

from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA

C_STORE_RSP = 0x8001
C_GET_RSP = 0x8010
C_FIND_RSP = 0x8020
C_MOVE_RSP = 0x8021
PENDING = 0xFF00
NO_DATA_SET = 0x0101  # Command Data Set Type: no data set follows (PS3.7 E.1)
DATA_SET = 0x0001  # any other value: an identifier follows (pynetdicom's choice)

_US = struct.Struct("<HHIH")  # group, element, length 2, value
_UL = struct.Struct("<HHII")


def pending_response(
    command_field: int,
    sop_class_uid: str,
    message_id: int,
    *,
    remaining: int,
    completed: int,
    failed: int,
    warning: int,
) -> bytes:
    """The command set of a pending C-GET-RSP or C-MOVE-RSP with its sub-operation counts."""
    remaining, completed, failed, warning = (
        min(count, 0xFFFF) for count in (remaining, completed, failed, warning)
    )  # US values; a count beyond 65,535 is shown as 65,535
    return _command(
        _response_head(command_field, sop_class_uid, message_id, NO_DATA_SET, PENDING),
        _US.pack(0x0000, 0x1020, 2, remaining),
        _US.pack(0x0000, 0x1021, 2, completed),
        _US.pack(0x0000, 0x1022, 2, failed),
        _US.pack(0x0000, 0x1023, 2, warning),
    )


@lru_cache(maxsize=64)  # the same for every match of a query: made once
def find_pending_response(sop_class_uid: str, message_id: int, status: int) -> bytes:
    """The command set of a pending C-FIND-RSP (0xFF00 or 0xFF01), an identifier following."""
    return _command(_response_head(C_FIND_RSP, sop_class_uid, message_id, DATA_SET, status))


def find_final_response(sop_class_uid: str, message_id: int, status: int) -> bytes:
    """The command set of a final C-FIND-RSP without identifier, comment or offending element
    (success, cancel)."""
    return _command(_response_head(C_FIND_RSP, sop_class_uid, message_id, NO_DATA_SET, status))


def store_response(
    sop_class_uid: str, message_id: int, status: int, sop_instance_uid: str
) -> bytes:
    """The command set of a C-STORE-RSP without Error Comment or Offending Element."""
    return _command(
        _response_head(C_STORE_RSP, sop_class_uid, message_id, NO_DATA_SET, status),
        _uid(0x1000, sop_instance_uid),  # Affected SOP Instance UID
    )


def _uid(element: int, uid: str) -> bytes:
    value = uid.encode("ascii")
    if len(value) % 2:
        value += b"\0"  # UI values are padded to even length with a NULL (PS3.5 6.2)
    return struct.pack("<HHI", 0x0000, element, len(value)) + value


def _response_head(
    command_field: int, sop_class_uid: str, message_id: int, data_set_type: int, status: int
) -> bytes:
    return b"".join(
        (
            _uid(0x0002, sop_class_uid),  # Affected SOP Class UID
            _US.pack(0x0000, 0x0100, 2, command_field),
            _US.pack(0x0000, 0x0120, 2, message_id),  # Message ID Being Responded To
            _US.pack(0x0000, 0x0800, 2, data_set_type),
            _US.pack(0x0000, 0x0900, 2, status),
        )
    )


def _command(*parts: bytes) -> bytes:
    elements = b"".join(parts)
    return _UL.pack(0x0000, 0x0000, 4, len(elements)) + elements  # Command Group Length


def queue(dul: DULServiceProvider, context_id: int, command: bytes, max_pdu_length: int) -> None:
    """Queue a packed command set as pynetdicom queues a message's command (PS3.8 E.2): in PDVs
    that fit the peer's maximum PDU length (0: no limit), message control header 0x01, the
    last 0x03 (command, last fragment)."""
    for control, fragment in fragments(command, max_pdu_length, more=0x01, last=0x03):
        dul.send_pdu(p_data(context_id, control, fragment))


def fragments(
    data: bytes, max_pdu_length: int, *, more: int, last: int
) -> Iterator[tuple[int, bytes]]:
    """`data` cut as pynetdicom cuts a message into PDVs (PS3.8 9.3.5.1, E.2): each at most
    the peer's maximum PDU length less the PDV item's 6 bytes (0: one PDV), with message
    control header `more`, the last with `last`; one (empty) PDV for no data."""
    room = max_pdu_length - 6 if max_pdu_length else len(data) or 1
    for start in range(0, max(len(data), 1), room):
        yield (last if start + room >= len(data) else more), data[start : start + room]


def p_data(context_id: int, control: int, fragment: bytes) -> P_DATA:
    """A P-DATA primitive carrying one PDV: its message control header, then `fragment`."""
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((context_id, bytes([control]) + fragment))
    return pdata
