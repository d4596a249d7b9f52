"""What a peer can make the node hold or wait for: every PDU's length checked before its body is
read, the ARTIM timer kept however slowly bytes trickle, a request too big or malformed answered
with a status instead of held or aborted (feature).

Replaces DULServiceProvider._read_pdu_data, DIMSEServiceProvider.receive_primitive and the
state machine's action AA-2 of pynetdicom 3.0.4, for the associations of the AEs given to
serve_limits(); any other AE's are read as pynetdicom reads them.

Why (each reproduced against 3.0.4 with a raw socket; no upstream issue names them):
- _read_pdu_data trusts the PDU length a peer declares: an A-ASSOCIATE-RQ declaring 1 GiB was
  buffered whole (2 GB peak RSS), and a P-DATA-TF larger than the maximum the node advertised
  was served. It reads the body with one blocking recv() loop, so a peer that sends half a
  PDU holds the DUL thread forever: the ARTIM timer is never looked at again and the
  association slot, thread and descriptors stay taken, also across SIGTERM.
  Here each PDU's type and length are checked against PS3.8 9.3 before its body is read
  (A-ASSOCIATE-RQ/AC at most ASSOCIATE_MAX bytes, P-DATA-TF at most the maximum length the
  node advertised (PS3.8 D.1), the fixed PDUs exactly 4), and the body is read against a
  deadline: ARTIM's (PS3.8 9.1.5: from the connection, until the A-ASSOCIATE-RQ is complete)
  or node.network_timeout for a PDU of an established association. A breach is answered
  with an A-ABORT (PS3.8 9.3.8; source service-provider, reason unrecognized PDU or invalid
  PDU parameter value) and the connection closed at once, with a log line.
- AA-2 on ARTIM expiry closes the connection in silence (PS3.8 9.2, Sta2 + Evt18): here an
  A-ABORT is sent first, so that a peer that was merely slow learns why.
- receive_primitive holds a C-FIND, C-MOVE, C-GET, N-ACTION, N-CREATE or N-SET dataset in
  memory whatever its size, and a command pynetdicom cannot turn into a primitive (a UID over
  64 characters; a bad Move Destination is service_classes.py's) aborts the association,
  leaving a C-STORE's partial file behind.
  Here such a request is read to its end and dropped, and answered with a failure status on
  the association, which goes on serving: 0xA903 for a C-STORE whose UID is malformed
  (PS3.4 B.2.3), 0xA700/0xA701 for an identifier past query.max_identifier_bytes (PS3.4
  C.4.1.1.4, C.4.2.1.5, C.4.3.1.4), 0x0213 for such an N-ACTION, N-CREATE or N-SET (an MPPS;
  PS3.7 10.1.4.1.10, 10.1.5.1.6, 10.1.3.1.9).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import struct
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any, cast

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_messages import C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import (
    C_CANCEL,
    C_FIND,
    C_GET,
    C_MOVE,
    C_STORE,
    N_ACTION,
    N_CREATE,
    N_EVENT_REPORT,
    N_SET,
)
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.utils import make_target

from ...rules.negotiation import ProposedContext, request_problem
from . import guard

log = logging.getLogger(__name__)

NAME = "limits"
_READ_PDU = "pynetdicom.dul.DULServiceProvider._read_pdu_data"
_RECEIVE_PRIMITIVE = "pynetdicom.dimse.DIMSEServiceProvider.receive_primitive"
_AA_2 = "pynetdicom.fsm.AA_2"

# A legitimate A-ASSOCIATE-RQ or -AC fits in a few tens of KB: 128 presentation contexts
# (the most PS3.8 9.3.2.2 allows) with a dozen transfer syntaxes each come to about 40 KB.
ASSOCIATE_MAX = 256 * 1024
# A-ASSOCIATE-RJ, A-RELEASE-RQ, A-RELEASE-RP and A-ABORT have a fixed length (PS3.8 9.3.4-9.3.8)
_FIXED_LENGTH = {0x03: 4, 0x05: 4, 0x06: 4, 0x07: 4}
_ASSOCIATE = (0x01, 0x02)
_P_DATA = 0x04
# The advertised maximum may be 0 ("no limit", PS3.8 D.1): the node never advertises it, but a
# requestor of the node's own (a C-MOVE sub-association) is bounded by this then.
_UNLIMITED_P_DATA = 64 * 1024 * 1024
COMMAND_MAX = 64 * 1024  # a command set is a dozen small elements (PS3.7 9.3, 10.3)
_SLICE = 0.1  # seconds between looks at the DUL's kill flag while a read waits

# A-ABORT reasons, source service-provider (PS3.8 9.3.8)
_NOT_SPECIFIED = 0x00
_UNRECOGNIZED_PDU = 0x01
_INVALID_PARAMETER = 0x06


def abort_pdu(reason: int = _NOT_SPECIFIED) -> bytes:
    """An A-ABORT PDU from the service provider (PS3.8 9.3.8)."""
    return struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0x02, reason)


@dataclass(frozen=True)
class Limits:
    """What one AE's associations may be sent. `describe` names an association's peer for
    the log (its calling AE and address)."""

    max_identifier_bytes: int
    describe: Callable[[Any], str]


_limits: weakref.WeakKeyDictionary[AE, Limits] = weakref.WeakKeyDictionary()


def serve_limits(ae: AE, limits: Limits) -> None:
    """Hold `ae`'s associations to `limits` and to the PDU bounds above."""
    _limits[ae] = limits


def _limits_of(dul: DULServiceProvider) -> Limits | None:
    return _limits.get(dul.assoc.ae)


# -- reading PDUs -----------------------------------------------------------------------------


class _Ended(Exception):
    """The read ended without a whole PDU: `reason` says why (for the log), None when the peer
    closed the connection (nothing to answer)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_pdu_data(self: DULServiceProvider) -> None:
    limits = _limits_of(self)
    if limits is None:
        return guard.original(_READ_PDU)(self)  # type: ignore[no-any-return]
    transport = self.socket
    raw = getattr(transport, "socket", None)
    if transport is None or raw is None:
        self.event_queue.put("Evt17")
        return None
    # Sta1 too: the reactor may read the request before it has taken the connection's Evt5
    awaiting_request = self.assoc.is_acceptor and self.state_machine.current_state in (
        "Sta1",
        "Sta2",
    )
    if awaiting_request:
        budget = max(self.artim_timer.remaining, 0.0)
        overdue = f"no complete A-ASSOCIATE-RQ within {self.artim_timer.timeout or 0:g} s (ARTIM)"
    else:
        budget = self.assoc.network_timeout or 60.0
        overdue = f"a PDU not complete within {budget:g} s"
    deadline = time.monotonic() + budget
    try:
        header = bytearray(6)
        _fill(self, raw, memoryview(header), deadline, overdue, awaiting_request)
        pdu_type, _, length = struct.unpack(">BBL", header)
        problem, reason = _length_problem(self, pdu_type, length)
        if problem:
            _abort(self, limits, problem, reason)
            return None
        data = bytearray(6 + length)  # the whole PDU, as pynetdicom's decoder takes it
        data[:6] = header
        _fill(self, raw, memoryview(data)[6:], deadline, overdue, awaiting_request)
    except _Ended as ended:
        if ended.reason is None:
            self.event_queue.put("Evt17")  # the peer closed the connection
        else:
            _abort(self, limits, ended.reason, _NOT_SPECIFIED)
        return None
    if pdu_type == 0x01 and awaiting_request:
        body = bytes(data[6:])
        if _rejected(self, limits, body):
            return None
        known = _without_unknown_items(self, limits, body)
        if known is not body:
            data = bytearray(struct.pack(">BBL", pdu_type, 0, len(known)) + known)
    try:
        pdu, event = self._decode_pdu(data)
    except Exception as exc:
        log.warning(
            "%s: invalid %s PDU (%s): aborted",
            limits.describe(self.assoc),
            _PDU_NAMES.get(pdu_type, f"0x{pdu_type:02X}"),
            exc,
        )
        self.event_queue.put("Evt19")  # the state machine answers with an A-ABORT
        return None
    self.event_queue.put(event)
    self._recv_pdu.put(pdu)
    return None


_PDU_NAMES = {
    0x01: "A-ASSOCIATE-RQ",
    0x02: "A-ASSOCIATE-AC",
    0x03: "A-ASSOCIATE-RJ",
    0x04: "P-DATA-TF",
    0x05: "A-RELEASE-RQ",
    0x06: "A-RELEASE-RP",
    0x07: "A-ABORT",
}


def _length_problem(dul: DULServiceProvider, pdu_type: int, length: int) -> tuple[str, int]:
    """Why a PDU of this type may not have this length (PS3.8 9.3), and the A-ABORT reason;
    ("", 0) when it may."""
    name = _PDU_NAMES.get(pdu_type)
    if name is None:
        return f"unknown PDU type 0x{pdu_type:02X}", _UNRECOGNIZED_PDU
    if pdu_type in _ASSOCIATE:
        if length > ASSOCIATE_MAX:
            return f"{name} declares {length} bytes, more than {ASSOCIATE_MAX}", _INVALID_PARAMETER
        return "", 0
    if pdu_type == _P_DATA:
        assoc = dul.assoc
        ours = assoc.acceptor if assoc.is_acceptor else assoc.requestor
        bound = ours.maximum_length or _UNLIMITED_P_DATA
        if length > bound:
            return (
                f"P-DATA-TF declares {length} bytes, more than the {bound} advertised",
                _INVALID_PARAMETER,
            )
        return "", 0
    if length != _FIXED_LENGTH[pdu_type]:
        return f"{name} declares {length} bytes, not {_FIXED_LENGTH[pdu_type]}", _INVALID_PARAMETER
    return "", 0


def _fill(
    dul: DULServiceProvider,
    raw: socket.socket,
    view: memoryview,
    deadline: float,
    overdue: str,
    awaiting_request: bool,
) -> None:
    """Fill `view` with bytes from the peer before `deadline`; raises _Ended."""
    count = len(view)
    got = 0
    while got < count:
        if dul._kill_thread:
            # an acceptor's own wait for the request (node.acse_timeout) may end a moment
            # before ARTIM's: then it is ARTIM that ended it
            timed_out = awaiting_request and time.monotonic() > deadline - 0.5
            raise _Ended(overdue if timed_out else "the association was stopped")
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Ended(overdue)
        pending = isinstance(raw, ssl.SSLSocket) and raw.pending()
        if not pending:
            try:
                ready, _, _ = select.select([raw], [], [], min(left, _SLICE))
            except (OSError, ValueError):
                raise _Ended(None) from None
            if not ready:
                continue
        try:
            n = raw.recv_into(view[got:], count - got)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, TimeoutError):
            continue
        except OSError:
            raise _Ended(None) from None
        if n == 0:
            raise _Ended(None)
        got += n


def _rejected(dul: DULServiceProvider, limits: Limits, body: bytes) -> bool:
    """Answer an A-ASSOCIATE-RQ whose structure is wrong with an A-ASSOCIATE-RJ, before
    pynetdicom decodes it (its decoder raises on these, and the peer would get an A-ABORT
    with no reason): True when it was rejected."""
    parsed = _parse_request(body)
    if parsed is None:
        return False  # pynetdicom's decoder says what is wrong (Evt19: A-ABORT)
    called, calling, application_context, contexts = parsed
    problem = request_problem(called, calling, application_context, contexts)
    if problem is None:
        return False
    log.warning(
        "association rejected: calling %s from %s called %s: %s",
        calling,
        dul.assoc.requestor.address or "?",
        called,
        problem.reason,
    )
    raw = getattr(dul.socket, "socket", None)
    if raw is not None:
        send_without_waiting(raw, struct.pack(">BBLBBBB", 0x03, 0, 4, 0, *problem.reject))
    dul.artim_timer.stop()
    transport = dul.socket
    if transport is not None:
        transport.close()
    return True


def _parse_request(
    body: bytes,
) -> tuple[str, str, str, list[ProposedContext]] | None:
    """The AE titles, application context and presentation contexts of an A-ASSOCIATE-RQ's
    body (PS3.8 9.3.2), read leniently; None when its items cannot even be walked."""
    if len(body) < 68:
        return None
    called = body[4:20].decode("latin-1").strip(" ")
    calling = body[20:36].decode("latin-1").strip(" ")
    application_context = ""
    contexts: list[ProposedContext] = []
    offset = 68
    try:
        while offset < len(body):
            item_type, _, length = struct.unpack_from(">BBH", body, offset)
            value = body[offset + 4 : offset + 4 + length]
            if len(value) != length:
                return None
            if item_type == 0x10:
                application_context = value.decode("latin-1")
            elif item_type == 0x20 and length >= 4:
                abstract, syntaxes, sub = "", [], 4
                while sub < length:
                    sub_type, _, sub_length = struct.unpack_from(">BBH", value, sub)
                    text = value[sub + 4 : sub + 4 + sub_length].decode("latin-1")
                    if sub_type == 0x30:
                        abstract = text
                    elif sub_type == 0x40:
                        syntaxes.append(text)
                    sub += 4 + sub_length
                contexts.append(ProposedContext(value[0], abstract, tuple(syntaxes)))
            offset += 4 + length
    except struct.error:
        return None
    return called, calling, application_context, contexts


# The A-ASSOCIATE-RQ items (PS3.8 9.3.2) and User Information sub-items (PS3.7 D.3.3) that
# pynetdicom decodes; its decoder raises on any other type.
_KNOWN_ITEMS = {0x10, 0x20, 0x50}
_KNOWN_USER_ITEMS = set(range(0x51, 0x59))


def _without_unknown_items(dul: DULServiceProvider, limits: Limits, body: bytes) -> bytes:
    """The A-ASSOCIATE-RQ body without items and User Information sub-items of types the
    standard does not define: they are ignored (PS3.8 9.3.1: skipped), where pynetdicom's
    decoder would have aborted the association."""
    kept, dropped, offset = [body[:68]], [], 68
    try:
        while offset < len(body):
            item_type, _, length = struct.unpack_from(">BBH", body, offset)
            item = body[offset : offset + 4 + length]
            offset += 4 + length
            if item_type not in _KNOWN_ITEMS:
                dropped.append(item_type)
                continue
            if item_type == 0x50:
                subs, sub = [], 4
                while sub < len(item):
                    sub_type, _, sub_length = struct.unpack_from(">BBH", item, sub)
                    if sub_type in _KNOWN_USER_ITEMS:
                        subs.append(item[sub : sub + 4 + sub_length])
                    else:
                        dropped.append(sub_type)
                    sub += 4 + sub_length
                value = b"".join(subs)
                item = struct.pack(">BBH", 0x50, 0, len(value)) + value
            kept.append(item)
    except struct.error:
        return body  # pynetdicom's decoder says what is wrong
    if not dropped:
        return body
    log.warning(
        "%s: ignored A-ASSOCIATE-RQ item(s) of unknown type %s",
        limits.describe(dul.assoc),
        ", ".join(f"0x{t:02X}" for t in dropped),
    )
    return b"".join(kept)


def _abort(dul: DULServiceProvider, limits: Limits, problem: str, reason: int) -> None:
    """Send an A-ABORT at once, bypassing a state machine that may be waiting for something
    else, and close the connection (the state machine then sees it closed: Evt17)."""
    log.warning("%s: %s: aborted", limits.describe(dul.assoc), problem)
    send_abort(dul, reason)
    dul.assoc.is_aborted = True
    transport = dul.socket
    if transport is not None:
        transport.close()


_LAST_WORD = 0.2  # seconds a last PDU over TLS may wait for room in the socket's buffer


def send_abort(dul: DULServiceProvider, reason: int = _NOT_SPECIFIED) -> None:
    """Write an A-ABORT PDU to the peer without waiting for room in the socket's buffer."""
    raw = getattr(dul.socket, "socket", None)
    if raw is not None:
        send_without_waiting(raw, abort_pdu(reason))


def send_without_waiting(sock: socket.socket, data: bytes) -> None:
    """Write a last PDU (an A-ABORT, an A-ASSOCIATE-RJ) before the connection is closed,
    without waiting on a peer that reads nothing: the peer's buffer full, or the peer gone,
    closing says enough. Over TLS (whose send takes no flags) it waits at most a moment."""
    with contextlib.suppress(OSError, ValueError):
        if isinstance(sock, ssl.SSLSocket):
            previous = sock.gettimeout()
            sock.settimeout(_LAST_WORD)
            try:
                sock.send(data)
            finally:
                sock.settimeout(previous)
        else:
            sock.send(data, socket.MSG_DONTWAIT)


def _aa_2(dul: DULServiceProvider) -> str:
    """AA-2, but on ARTIM expiry in Sta2 (no A-ASSOCIATE-RQ in time) the peer is sent an
    A-ABORT before the connection closes."""
    limits = _limits_of(dul)
    if (
        limits is not None
        and dul.state_machine.current_state == "Sta2"
        and dul.artim_timer.expired
    ):
        log.warning(
            "%s: no A-ASSOCIATE-RQ within %g s (ARTIM): aborted",
            limits.describe(dul.assoc),
            dul.artim_timer.timeout,
        )
        send_abort(dul)
    return cast(str, guard.original(_AA_2)(dul))


# -- DIMSE messages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Refusal:
    """A request read to its end and dropped, to be answered with `status`."""

    status: int
    comment: str


# The failure each request type gets for an identifier that is too big, and for a command
# pynetdicom cannot decode.
_TOO_BIG = {
    0x0020: 0xA700,  # C-FIND: Refused, out of resources (PS3.4 C.4.1.1.4)
    0x0010: 0xA701,  # C-GET: Refused, unable to calculate number of matches (C.4.3.1.4)
    0x0021: 0xA701,  # C-MOVE (C.4.2.1.5)
    0x0130: 0x0213,  # N-ACTION: resource limitation (PS3.7 10.1.4.1.10)
    0x0140: 0x0213,  # N-CREATE: resource limitation (PS3.7 10.1.5.1.6), an MPPS
    0x0120: 0x0213,  # N-SET: resource limitation (PS3.7 10.1.3.1.9)
}
_MALFORMED = {
    0x0001: 0xA903,  # C-STORE: malformed UID (the node's 0xA9xx, PS3.4 B.2.3)
    0x0020: 0xC000,  # C-FIND: unable to process
    0x0010: 0xC000,
    0x0021: 0xC000,
    0x0130: 0x0110,  # N-ACTION: processing failure
    0x0140: 0x0110,  # N-CREATE
    0x0120: 0x0110,  # N-SET
}
_RESPONSE_TYPES: dict[int, type[Any]] = {
    0x0001: C_STORE,
    0x0020: C_FIND,
    0x0010: C_GET,
    0x0021: C_MOVE,
    0x0130: N_ACTION,
    0x0140: N_CREATE,
    0x0120: N_SET,
}
_UID_ELEMENTS = (
    "AffectedSOPClassUID",
    "RequestedSOPClassUID",
    "AffectedSOPInstanceUID",
    "RequestedSOPInstanceUID",
)


def _receive_primitive(self: DIMSEServiceProvider, primitive: P_DATA) -> None:
    limits = _limits_of(self.dul)
    if limits is None:
        return guard.original(_RECEIVE_PRIMITIVE)(self, primitive)  # type: ignore[no-any-return]
    if self.message is None:
        self.message = DIMSEMessage()
    message = self.message
    refusal: _Refusal | None = message.__dict__.get("_archive_refusal")
    try:
        if refusal is None:
            refusal = _too_big(message, primitive, limits)
    except _CommandTooBig:
        self.message = None
        _abort(self.dul, limits, f"a command set of more than {COMMAND_MAX} bytes", 0x06)
        return None
    if refusal is None:
        done = message.decode_msg(primitive, self.assoc)
        refusal = _too_big(message, None, limits) or _malformed(message)
        if refusal is None and not done:
            return None
    else:
        done = _ends_message(primitive)
    if refusal is not None:
        if message.__dict__.get("_archive_refusal") is None:
            message._archive_refusal = refusal  # type: ignore[attr-defined]  # the node's own
            _drop_dataset(message)
        if done:
            self.message = None
            _answer(self, message, refusal, limits)
        return None
    _dispatch(self, message, limits)
    return None


def _too_big(message: DIMSEMessage, primitive: P_DATA | None, limits: Limits) -> _Refusal | None:
    """A refusal when the message's command, or the identifier of a request that is not a
    C-STORE, is (or with `primitive` would become) larger than its bound."""
    command_adding = data_adding = 0
    if primitive is not None:
        for _, fragment in primitive.presentation_data_value_list:
            if fragment and fragment[0] & 1:
                command_adding += len(fragment) - 1
            else:
                data_adding += len(fragment) - 1
    command = message.__dict__.get("command_set")
    if command is None:
        if message.encoded_command_set.tell() + command_adding > COMMAND_MAX:
            # no Message ID to answer to yet: the peer is not speaking DIMSE
            raise _CommandTooBig()
        return None
    if isinstance(message, C_STORE_RQ):
        return None
    data = message.data_set
    held = data.tell() if isinstance(data, BytesIO) else 0
    if held + data_adding <= limits.max_identifier_bytes:
        return None
    field = int(getattr(command, "CommandField", 0))
    return _Refusal(
        _TOO_BIG.get(field, 0x0110),
        f"identifier larger than {limits.max_identifier_bytes} bytes",
    )


class _CommandTooBig(Exception):
    """A command set past COMMAND_MAX: the association is aborted (raised into the DUL)."""


def _malformed(message: DIMSEMessage) -> _Refusal | None:
    """A refusal when the command holds a value pynetdicom cannot put in a primitive."""
    command = message.__dict__.get("command_set")
    if command is None or message.__dict__.get("_archive_checked"):
        return None
    message._archive_checked = True  # type: ignore[attr-defined]  # the node's own
    field = int(getattr(command, "CommandField", 0))
    for keyword in _UID_ELEMENTS:
        value = str(command.get(keyword, "") or "").rstrip("\0 ")
        if len(value) > 64:
            return _Refusal(_MALFORMED.get(field, 0x0110), f"{keyword} longer than 64 characters")
    return None


def _ends_message(primitive: P_DATA) -> bool:
    """Whether `primitive` holds the last dataset fragment of the message being dropped (a
    refused message's command is complete: what follows is its dataset, PS3.8 E.2)."""
    return any(data[0] & 3 == 2 for _, data in primitive.presentation_data_value_list if data)


def _drop_dataset(message: DIMSEMessage) -> None:
    """Free what the message holds of its dataset: the memory, or the partial file."""
    message.data_set = BytesIO()
    discard_partial_file(message)


def discard_partial_file(message: DIMSEMessage | None) -> bool:
    """Close and remove the file a C-STORE's dataset is being received into, if any; True
    when there was one."""
    if message is None:
        return False
    stream = message.__dict__.get("_data_set_file")
    path = message.__dict__.get("_data_set_path")
    message._data_set_file = None
    message._data_set_path = None
    if stream is None:
        return False
    refuse = getattr(stream, "refuse", None)
    if refuse is not None:  # receiving.py's guarded file: drops whatever is still written
        refuse("transfer ended without success")
    with contextlib.suppress(OSError, ValueError):
        stream.close()
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return True


def _answer(
    dimse: DIMSEServiceProvider, message: DIMSEMessage, refusal: _Refusal, limits: Limits
) -> None:
    """Send the failure response to a dropped request; abort when it cannot be answered."""
    command: Dataset = message.__dict__.get("command_set") or Dataset()
    field = int(getattr(command, "CommandField", 0))
    response_type = _RESPONSE_TYPES.get(field)
    message_id = command.get("MessageID")
    context_id = message.context_id
    log.warning(
        "%s: request 0x%04X refused with 0x%04X: %s",
        limits.describe(dimse.assoc),
        field,
        refusal.status,
        refusal.comment,
    )
    if response_type is None or message_id is None or context_id is None:
        dimse.dul.event_queue.put("Evt19")
        return
    response = response_type()
    response.MessageIDBeingRespondedTo = message_id
    for keyword in ("AffectedSOPClassUID", "AffectedSOPInstanceUID"):
        source = keyword
        if field in (0x0130, 0x0120):  # N-ACTION, N-SET name it as Requested (PS3.7 10.1)
            source = keyword.replace("Affected", "Requested")
        value = str(command.get(source, "") or "").rstrip("\0 ")
        if value and len(value) <= 64 and hasattr(response, keyword):
            setattr(response, keyword, value)
    if field == 0x0130 and "ActionTypeID" in command:
        response.ActionTypeID = command.ActionTypeID
    response.Status = refusal.status
    if hasattr(response, "ErrorComment"):
        response.ErrorComment = refusal.comment[:64]
    dimse.send_msg(response, context_id)


def _class_mismatch(
    dimse: DIMSEServiceProvider, primitive: Any, context_id: int
) -> _Refusal | None:
    """A refusal for a request whose Affected (or Requested) SOP Class UID is not the abstract
    syntax of the presentation context it came on (PS3.7 9.1, 10.1: the request names the
    context's SOP Class). pynetdicom would hand it to another service class, or abort the
    association when it knows none (a batch of DCMTK dcmsend lost the rest); DCMTK's storescp
    and Orthanc answer a failure and go on."""
    if not getattr(primitive, "is_valid_request", False):
        return None
    context = dimse.assoc._accepted_cx.get(context_id)
    if context is None:
        return None  # a context never accepted: pynetdicom aborts, as PS3.8 wants
    named = getattr(primitive, "AffectedSOPClassUID", None) or getattr(
        primitive, "RequestedSOPClassUID", None
    )
    if named is None or str(named) == str(context.abstract_syntax):
        return None
    status = 0xA900 if isinstance(primitive, C_STORE) else 0x0122  # PS3.4 B.2.3; PS3.7 C.5.12
    return _Refusal(status, "SOP Class UID is not the presentation context's abstract syntax")


def _dispatch(dimse: DIMSEServiceProvider, message: DIMSEMessage, limits: Limits) -> None:
    """What pynetdicom 3.0.4's receive_primitive does with a complete message; and a request
    whose SOP Class is not its presentation context's is answered with a failure."""
    evt.trigger(dimse.assoc, evt.EVT_DIMSE_RECV, {"message": message})
    context_id = cast(int, message.context_id)
    try:
        d_primitive = message.message_to_primitive()
    except Exception as exc:
        log.warning("received an invalid DIMSE message (%s): aborted", exc)
        discard_partial_file(message)
        dimse.dul.event_queue.put("Evt19")
        return
    mismatch = _class_mismatch(dimse, d_primitive, context_id)
    if mismatch is not None:
        discard_partial_file(message)
        dimse.message = None
        _answer(dimse, message, mismatch, limits)
        return
    if isinstance(d_primitive, C_CANCEL) and len(dimse.cancel_req) < 10:
        msg_id = cast(int, d_primitive.MessageIDBeingRespondedTo)
        dimse.cancel_req[msg_id] = d_primitive
    elif (
        isinstance(d_primitive, N_EVENT_REPORT)
        and d_primitive.is_valid_request
        and not dimse.assoc.is_acceptor
    ):
        # pynetdicom serves a report on a thread of its own, so that a requestor waiting in a
        # send_*() call is not blocked; a peer of the node's own server could start a thread
        # per message that way: there it waits its turn like any request
        threading.Thread(
            target=make_target(dimse.assoc._serve_request), args=(d_primitive, context_id)
        ).start()
    else:
        dimse.msg_queue.put((context_id, d_primitive))  # type: ignore[arg-type]
    message.encoded_command_set = BytesIO()
    message.data_set = BytesIO()
    message._data_set_file = None
    message._data_set_path = None
    dimse.message = None


PATCH = guard.Patch(
    NAME,
    speed=False,
    replacements=(
        guard.replace(_READ_PDU, _read_pdu_data),
        guard.replace(_RECEIVE_PRIMITIVE, _receive_primitive),
        guard.replace_action(_AA_2, _aa_2),
    ),
)
