"""A stored file sent as a C-STORE dataset: its P-DATA-TF PDUs written to the socket in one go.

pynetdicom sends a dataset read from a file (STORE_SEND_CHUNKED_DATASET) as one P_DATA
primitive per PDU: each is queued to the DUL thread, put through the state machine, turned into
a P_DATA_TF object, encoded and sent, ~150 us of Python apiece. A peer taking DCMTK's default
16 KiB PDUs needs 32 of them for a 0.5 MB CT slice, and that cost bounded C-MOVE and C-GET.

install() makes every file-backed dataset (the node's C-MOVE and C-GET sub-operations, the
bundled client) one queued primitive, FileDataset, that the DUL thread sends in its data
transfer action (DT-1, PS3.8 9.2) by reading the file into one reused buffer and writing each
PDU straight to the socket: the same PDUs pynetdicom would send (PS3.8 9.3.5: one PDV per PDU,
message control header 0x00, the last one 0x02, sized to the peer's maximum PDU length), in
the same place in the stream (after the command's fragments, before anything queued later).
Memory stays one PDU whatever the object's size, and the file is read as it is sent.
"""

from __future__ import annotations

import logging
import struct
import threading
from pathlib import Path
from typing import Any

from pynetdicom import fsm
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.pdu_primitives import P_DATA

log = logging.getLogger(__name__)

UNLIMITED_PDU_DATA = 1 << 20  # bytes per PDU when the peer sets no maximum (0)
_HEADER = struct.Struct(">BBIIBB")  # PDU type, reserved, PDU length, PDV length, context, control
_LAST = 0x02  # message control header: dataset, last fragment (PS3.8 E.2)
_MORE = 0x00

_install_lock = threading.Lock()
_original_encode_msg: Any = None
_original_dt_1: Any = None


class FileDataset(P_DATA):
    """The dataset part of a DIMSE message, still in its file: `path` from `offset`."""

    def __init__(self, path: Path, offset: int, context_id: int, max_pdu_length: int) -> None:
        super().__init__()
        self.path = Path(path)
        self.offset = offset
        self.context_id = context_id
        self.max_pdu_length = max_pdu_length


def install() -> None:
    """Send every file-backed dataset of this process as a FileDataset (idempotent)."""
    global _original_encode_msg, _original_dt_1
    with _install_lock:
        if _original_encode_msg is not None:
            return
        _original_encode_msg = DIMSEMessage.encode_msg
        description, _original_dt_1, next_state = fsm.ACTIONS["DT-1"]
        DIMSEMessage.encode_msg = _encode_msg  # type: ignore[method-assign]
        fsm.ACTIONS["DT-1"] = (description, _dt_1, next_state)


def _encode_msg(self: Any, context_id: int, max_pdu_length: int) -> Any:
    """DIMSEMessage.encode_msg: the command's fragments as pynetdicom makes them, then the
    dataset of a file as one FileDataset."""
    source = self._data_set_path
    if source is None:
        yield from _original_encode_msg(self, context_id, max_pdu_length)
        return
    self._data_set_path = None
    try:
        yield from _original_encode_msg(self, context_id, max_pdu_length)
    finally:
        self._data_set_path = source
    path, offset = source if isinstance(source, tuple) else (source, 0)
    yield FileDataset(path, offset, context_id, max_pdu_length)


def _dt_1(dul: Any) -> str:
    """Data transfer action DT-1 (PS3.8 table 9-7): send the P-DATA-TF PDU(s) of the next
    primitive; a FileDataset's straight from its file."""
    primitive = dul.to_provider_queue.queue[0]
    if not isinstance(primitive, FileDataset):
        return _original_dt_1(dul)
    dul.to_provider_queue.get(False)
    try:
        send_file_dataset(dul.socket.socket, primitive)
    except OSError as exc:  # as pynetdicom's own send: the transport connection is gone
        log.warning("sending %s failed: %s", primitive.path.name, exc)
        dul.event_queue.put("Evt17")
    return "Sta6"


def send_file_dataset(sock: Any, dataset: FileDataset) -> int:
    """Write the dataset's PDUs to `sock`; return the dataset bytes sent. Raises OSError."""
    room = (
        dataset.max_pdu_length - 6 if dataset.max_pdu_length else UNLIMITED_PDU_DATA
    )  # PDV data per PDU: the PDU's length less the PDV's length, context and control bytes
    buffer = bytearray(_HEADER.size + room)
    view = memoryview(buffer)
    data = view[_HEADER.size :]
    sent = 0
    with open(dataset.path, "rb", buffering=0) as fh:
        remaining = fh.seek(0, 2) - fh.seek(dataset.offset)
        while True:
            size = min(room, remaining)
            got = fh.readinto(data[:size]) if size else 0
            if got != size:
                raise OSError(f"{dataset.path.name} shrank while being sent")
            remaining -= size
            control = _LAST if remaining == 0 else _MORE
            context = dataset.context_id
            _HEADER.pack_into(buffer, 0, 0x04, 0x00, size + 6, size + 2, context, control)
            sock.sendall(view[: _HEADER.size + size])
            sent += size
            if remaining == 0:
                return sent
