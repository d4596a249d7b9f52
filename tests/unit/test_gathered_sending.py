"""net/patches/file_sending: a stored file written by sendmsg() a chunk at a time (plain
sockets) is the same bytes as written PDU by PDU (TLS sockets, pynetdicom's framing)."""

from __future__ import annotations

import io
import os
import socket
import threading

import pytest

from archive_node.net.patches.file_sending import CHUNK, FileDataset, send_file_dataset


class _PerPdu:
    """A socket with sendall() alone: send_file_dataset writes it PDU by PDU."""

    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data) -> None:
        self.data += bytes(data)


def _gathered(payload: bytes, max_pdu: int, prefix: bytes = b"", stop=lambda: False) -> bytes:
    """What the peer of a socket pair reads when send_file_dataset writes `payload`."""
    ours, peer = socket.socketpair()
    received = bytearray()

    def drain() -> None:
        while chunk := peer.recv(1 << 20):
            received.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        dataset = FileDataset(io.BytesIO(payload), len(payload), 5, max_pdu)
        dataset.prefix = prefix
        assert send_file_dataset(ours, dataset, stop) == len(payload)
    finally:
        ours.close()
        reader.join(10)
        peer.close()
    return bytes(received)


def _per_pdu(payload: bytes, max_pdu: int, prefix: bytes = b"") -> bytes:
    sock = _PerPdu()
    dataset = FileDataset(io.BytesIO(payload), len(payload), 5, max_pdu)
    dataset.prefix = prefix
    send_file_dataset(sock, dataset)
    return bytes(sock.data)


@pytest.mark.parametrize(
    ("size", "max_pdu"),
    [
        (525_000, 16384),  # a CT slice in DCMTK's default PDUs
        (3 * CHUNK + 17, 16384),  # several chunks, a short last PDU
        (CHUNK, 16384),
        (16378, 16384),  # exactly one PDU
        (1, 16384),
        (100_000, 7),  # one byte per PDU: more PDUs than one sendmsg() takes
        (3 * CHUNK + 5, 0),  # no maximum: PDUs of at most 1 MiB
        (2 * CHUNK, 0xFFFFFFFF),
    ],
)
@pytest.mark.parametrize("prefix", [b"", b"\x04\x00command-pdu"])
def test_gathered_writes_are_the_bytes_written_pdu_by_pdu(size, max_pdu, prefix):
    payload = os.urandom(size)
    assert _gathered(payload, max_pdu, prefix) == _per_pdu(payload, max_pdu, prefix)


def test_gathered_writes_stop_between_chunks_when_asked():
    asked = []
    with pytest.raises(OSError, match="stopped part way"):
        _gathered(bytes(3 * CHUNK), 16384, stop=lambda: asked.append(1) or len(asked) >= 2)
    assert len(asked) == 2


def test_a_file_that_shrank_is_not_sent_as_if_whole():
    ours, peer = socket.socketpair()
    try:
        dataset = FileDataset(io.BytesIO(bytes(10)), 100_000, 1, 16384)
        with pytest.raises(OSError, match="shrank"):
            send_file_dataset(ours, dataset)
    finally:
        ours.close()
        peer.close()
