"""A stored file sent as a C-STORE dataset: its P-DATA-TF PDUs written to the socket in one go
(speed).

Replaces the data transfer actions DT-1 and AR-7 of pynetdicom 3.0.4's state machine (fsm.py)
for one primitive of its own, FileDataset, which only the node's associations queue (the
messages patch hands them a file's dataset that way, so this patch works with it; everyone
else's P-DATA goes through pynetdicom's actions unchanged), and DT-2 (a P-DATA-TF received)
for a plain C-STORE-RSP while store_sending.py waits for one (everything else goes to
pynetdicom's DT-2). store_sending.py, the node's C-STORE sub-operation without pynetdicom's
send_c_store, belongs to this patch: node.fast_paths without file_sending leaves both out.

Why: pynetdicom sends a dataset read from a file (STORE_SEND_CHUNKED_DATASET) as one P_DATA
primitive per PDU: each is queued to the DUL thread, put through the state machine, turned
into a P_DATA_TF object, encoded and sent, ~150 us of Python apiece. A peer taking DCMTK's
default 16 KiB PDUs needs 32 of them for a 0.5 MB CT slice, and that cost bounded C-MOVE and
C-GET (measured, docs/benchmarks.md: without this patch C-MOVE of CT slices runs at 185
instead of 383 a second, of a 300 MB video at 150 instead of 462 MB/s). Its send queue is also
unbounded: the fragments of a 512 MiB file are queued faster than the socket drains them
(~413 MB peak; pynetdicom-facts, no upstream issue found).

Here a file-backed dataset (the node's C-MOVE and C-GET sub-operations, the bundled client) is
one queued primitive that the DUL thread sends in its data transfer action (DT-1, PS3.8 9.2)
by reading the file into one reused buffer and writing each PDU straight to the socket: the
same PDUs pynetdicom would send (PS3.8 9.3.5: one PDV per PDU, message control header 0x00, the
last one 0x02, sized to the peer's maximum PDU length), in the same place in the stream (after
the command's fragments, before anything queued later). Memory stays one PDU (at most 1 MiB,
whatever the peer announces), and the file is read as it is sent. The sender waits until the
last PDU is written, as pynetdicom's send returns once all are queued, so the DIMSE timeout
that follows is the peer's time to answer. Writing stops part way for an abort queued behind
the file, a DUL being killed, or a peer that read nothing for PATIENCE seconds (the sender
then gets TimeoutError and the association is cut); a DUL that ends with the file still queued
tells the sender at once (reactor.py).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from io import BufferedIOBase, RawIOBase
from typing import Any, cast

from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu_primitives import A_ABORT, A_P_ABORT, P_DATA

from ..wire.store_request import parse_store_response
from . import guard

log = logging.getLogger(__name__)

MAX_PDU_DATA = 1 << 20  # bytes per PDU at most (also when the peer sets no maximum, 0)
CHUNK = 1 << 20  # bytes of the file read and written at once, in whole PDUs (one at least)
_IOV_MAX = 1024  # buffers one sendmsg() takes (Linux's IOV_MAX)
PATIENCE = 60.0  # seconds without progress before a send is given up
_HEADER = struct.Struct(">BBIIBB")  # PDU type, reserved, PDU length, PDV length, context, control
_LAST = 0x02  # message control header: dataset, last fragment (PS3.8 E.2)
_MORE = 0x00

NAME = "file_sending"
_DT_1 = "pynetdicom.fsm.DT_1"
_AR_7 = "pynetdicom.fsm.AR_7"
_DT_2 = "pynetdicom.fsm.DT_2"


class FileDataset(P_DATA):
    """The dataset part of a DIMSE message, still in its file (opened by the sender): `size`
    bytes from the file's current position. The DUL thread reports progress in `sent` and
    sets `done` when it has written the last PDU or given up."""

    def __init__(
        self, file: RawIOBase | BufferedIOBase, size: int, context_id: int, max_pdu_length: int
    ) -> None:
        super().__init__()
        self.file = file
        self.size = size
        self.context_id = context_id
        self.max_pdu_length = max_pdu_length
        self.sent = 0
        self.progress = 0  # bytes written to the socket so far, headers included (watchdogs)
        self.done = threading.Event()
        self.socket: socket.socket | None = None  # set by the DUL thread when it starts writing
        self.abandoned = False  # the sender stopped waiting: write nothing more
        # P-DATA-TF PDUs written just before the dataset's (a C-STORE-RQ's command, packed by
        # store_sending.py), in the same write as the first of them
        self.prefix = b""


def encode_msg(message: DIMSEMessage, context_id: int, max_pdu_length: int) -> Iterator[P_DATA]:
    """DIMSEMessage.encode_msg(context_id, max_pdu_length) of `message`: the command's
    fragments as pynetdicom makes them, then the dataset of a file as one FileDataset; returns
    once it is written, as pynetdicom's own send returns once every fragment is queued (so that
    the DIMSE timeout, which starts next, is the peer's time to answer, not the transfer's)."""
    source = message._data_set_path
    if source is None:
        yield from message.encode_msg(context_id, max_pdu_length)
        return
    path, offset = source if isinstance(source, tuple) else (source, 0)
    with open(path, "rb", buffering=0) as fh:  # a missing file fails here, in the sender
        size = fh.seek(0, 2) - fh.seek(offset)
        message._data_set_path = None
        try:
            yield from message.encode_msg(context_id, max_pdu_length)
        finally:
            message._data_set_path = source
        dataset = FileDataset(fh, size, context_id, max_pdu_length)
        yield dataset
        _wait_until_written(dataset)


def _wait_until_written(dataset: FileDataset, gone: Callable[[], bool] | None = None) -> None:
    """Wait while the DUL thread writes; raise TimeoutError when it makes no progress for
    PATIENCE seconds (the peer stopped reading): then its socket is shut, which ends the
    association, as a C-STORE cut off part way cannot be resumed. With `gone`, stop waiting
    (the dataset abandoned) once it says the DUL thread has ended without taking it."""
    progress, since = -1, time.monotonic()
    while not dataset.done.wait(1.0):
        if gone is not None and gone() and not dataset.done.is_set():
            dataset.abandoned = True
            return
        if dataset.progress != progress:
            progress, since = dataset.progress, time.monotonic()
        elif time.monotonic() - since > PATIENCE:
            abandon(dataset)


def abandon(dataset: FileDataset) -> None:
    """Give up a send whose peer read nothing for PATIENCE seconds: raise TimeoutError, having
    shut its socket, which ends the association (the DUL thread stops writing)."""
    dataset.abandoned = True
    if dataset.socket is not None:
        with contextlib.suppress(OSError):
            # socket.socket's: an SSLSocket's own would drop its TLS state under the DUL
            # thread writing on it
            socket.socket.shutdown(dataset.socket, socket.SHUT_RDWR)
    raise TimeoutError(f"the peer read nothing for {PATIENCE:.0f} s")


def _dt_1(dul: DULServiceProvider) -> str:
    """Data transfer action DT-1 (PS3.8 table 9-7): send the P-DATA-TF PDU(s) of the next
    primitive; a FileDataset's straight from its file."""
    if not isinstance(dul.to_provider_queue.queue[0], FileDataset):
        return cast(str, guard.original(_DT_1)(dul))
    _write(dul)
    return "Sta6"


def _ar_7(dul: DULServiceProvider) -> str:
    """AR-7 (Sta8, the peer asked for release first): P-DATA may still be sent."""
    if not isinstance(dul.to_provider_queue.queue[0], FileDataset):
        return cast(str, guard.original(_AR_7)(dul))
    _write(dul)
    return "Sta8"


def _write(dul: DULServiceProvider) -> None:
    dataset = cast(FileDataset, dul.to_provider_queue.get(False))  # _dt_1(), _ar_7() looked
    try:
        transport = dul.socket
        assert transport is not None and transport.socket is not None  # connected: Sta6, Sta8
        dataset.socket = transport.socket
        send_file_dataset(dataset.socket, dataset, stop=lambda: _stopping(dul, dataset))
    except OSError as exc:  # as pynetdicom's own send: the transport connection is gone
        log.warning("sending a stored file failed: %s", exc)
        dul.event_queue.put("Evt17")
    finally:
        dataset.done.set()


def _stopping(dul: DULServiceProvider, dataset: FileDataset) -> bool:
    """Whether to stop part way: the sender gave up, the DUL is being killed, or an abort
    was queued behind the file (it must not wait for the rest)."""
    if dataset.abandoned or dul._kill_thread:
        return True
    queued = dul.to_provider_queue.queue
    return bool(queued) and any(isinstance(p, (A_ABORT, A_P_ABORT)) for p in list(queued))


def send_file_dataset(
    sock: socket.socket, dataset: FileDataset, stop: Callable[[], bool] = lambda: False
) -> int:
    """Write the dataset's PDUs to `sock`; return the dataset bytes sent. Raises OSError,
    also when `stop()` says so between PDUs (the association is then cut)."""
    peer_room = dataset.max_pdu_length - 6 if dataset.max_pdu_length else MAX_PDU_DATA
    if peer_room < 1:
        raise OSError(f"the peer's maximum PDU length {dataset.max_pdu_length} holds no data")
    # PDV data per PDU: what the peer takes, bounded by the file and by MAX_PDU_DATA
    room = max(1, min(peer_room, MAX_PDU_DATA, dataset.size))
    if dataset.size and hasattr(sock, "sendmsg") and not isinstance(sock, ssl.SSLSocket):
        return _send_gathered(sock, dataset, stop, room)
    buffer = bytearray(_HEADER.size + room)
    view = memoryview(buffer)
    data = view[_HEADER.size :]
    remaining = dataset.size
    prefix = dataset.prefix
    while True:
        size = min(room, remaining)
        got = dataset.file.readinto(data[:size]) if size else 0
        if got != size:
            raise OSError("the stored file shrank while being sent")
        remaining -= size
        control = _LAST if remaining == 0 else _MORE
        context = dataset.context_id
        _HEADER.pack_into(buffer, 0, 0x04, 0x00, size + 6, size + 2, context, control)
        if prefix:
            sock.sendall(prefix + view[: _HEADER.size + size])
            prefix = b""
        else:
            sock.sendall(view[: _HEADER.size + size])
        dataset.sent += size
        dataset.progress += size
        if remaining == 0:
            return dataset.sent
        if stop():
            raise OSError("sending stopped part way (abort, shutdown or timeout)")


def _send_gathered(
    sock: socket.socket, dataset: FileDataset, stop: Callable[[], bool], room: int
) -> int:
    """send_file_dataset on a plain socket: the file read a CHUNK at a time into one buffer and
    each chunk's PDUs (headers between slices of the buffer) written by one sendmsg(), not one
    sendall() per PDU: a 0.5 MB CT slice in 16 KiB PDUs is 2 system calls instead of 64, ~0.2
    ms less per instance. The same bytes; stop() is asked between chunks."""
    # whole PDUs, but the file's last; no more of them than one sendmsg() takes (a peer's tiny
    # maximum PDU must not make a chunk a million buffers)
    chunk = room * max(1, min(CHUNK // room, _IOV_MAX // 2))
    buffer = bytearray(min(chunk, dataset.size))
    view = memoryview(buffer)
    remaining = dataset.size
    prefix = dataset.prefix
    context = dataset.context_id
    while True:
        size = min(chunk, remaining)
        if dataset.file.readinto(view[:size]) != size:
            raise OSError("the stored file shrank while being sent")
        remaining -= size
        parts: list[bytes | memoryview] = [prefix] if prefix else []
        prefix = b""
        for start in range(0, size, room):
            piece = view[start : min(start + room, size)]
            length = len(piece)
            control = _LAST if remaining == 0 and start + room >= size else _MORE
            parts.append(_HEADER.pack(0x04, 0x00, length + 6, length + 2, context, control))
            parts.append(piece)
        _sendmsg_all(sock, parts, dataset)
        dataset.sent += size
        if remaining == 0:
            return dataset.sent
        if stop():
            raise OSError("sending stopped part way (abort, shutdown or timeout)")


def _sendmsg_all(
    sock: socket.socket, parts: list[bytes | memoryview], dataset: FileDataset | None = None
) -> None:
    """sendall() of the parts' bytes in order, gathered (sendmsg may write fewer bytes); each
    write counted in `dataset.progress`, so a slow reader is not taken for a stopped one."""
    first = 0
    while first < len(parts):
        sent = sock.sendmsg(parts[first : first + _IOV_MAX])
        if dataset is not None:
            dataset.progress += sent
        while sent and sent >= len(parts[first]):
            sent -= len(parts[first])
            first += 1
        if sent:
            parts[first] = memoryview(parts[first])[sent:]


def _dt_2(dul: DULServiceProvider) -> str:
    """Data transfer action DT-2 (PS3.8 table 9-7): a P-DATA-TF PDU received. While one of
    the node's senders waits for a C-STORE-RSP on this association (store_sending.py sets
    `_archive_store_waiting` on its DIMSE provider), a PDU that is a whole plain C-STORE-RSP
    (one PDV, the command's last fragment, no message being put together) goes to the DIMSE
    queue as a StoreResponse read by wire/store_request.py; anything else, and every PDU of
    any other association, as pynetdicom's DT-2 hands it to DIMSE."""
    dimse = dul.assoc.dimse
    if dimse.__dict__.get("_archive_store_waiting") and dimse.message is None:
        pdu = dul._recv_pdu.queue[0]
        items: list[Any] = getattr(pdu, "presentation_data_value_items", [])
        if len(items) == 1:
            item = items[0]
            data = item.presentation_data_value or b""
            context_id = item.presentation_context_id
            if data[:1] == b"\x03" and context_id in dul.assoc._accepted_cx:
                response = parse_store_response(data[1:])
                if response is not None:
                    dul._recv_pdu.get(False)
                    dimse.msg_queue.put((context_id, response))  # type: ignore[arg-type]
                    return "Sta6"
    return cast(str, guard.original(_DT_2)(dul))


PATCH = guard.Patch(
    NAME,
    speed=True,
    replacements=(
        guard.replace_action(_DT_1, _dt_1),
        guard.replace_action(_AR_7, _ar_7),
        guard.replace_action(_DT_2, _dt_2),
    ),
    relies_on=(
        "pynetdicom.dimse_messages.DIMSEMessage.encode_msg",
        # store_sending.py: what it does in place of send_c_store
        "pynetdicom.association.Association.send_c_store",
        "pynetdicom.association.Association._get_valid_context",
        "pynetdicom.association.Association._handle_no_response",
        "pynetdicom.dsutils.split_dataset",
    ),
)
