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


class _Counting:
    """A socket that takes every sendmsg() whole, counting its buffers and bytes."""

    def __init__(self) -> None:
        self.buffers: list[int] = []
        self.data = bytearray()

    def sendmsg(self, parts) -> int:
        self.buffers.append(len(parts))
        size = 0
        for part in parts:
            self.data += bytes(part)
            size += len(part)
        return size


def test_a_tiny_maximum_pdu_keeps_each_write_small():
    """A peer's maximum PDU of 7 bytes (one data byte a PDU) must not make one write of a
    million buffers (hundreds of MB held): each chunk is at most IOV_MAX/2 PDUs."""
    import tracemalloc

    from archive_node.net.patches import file_sending

    payload = os.urandom(200_000)
    sock = _Counting()
    dataset = FileDataset(io.BytesIO(payload), len(payload), 5, 7)
    tracemalloc.start()
    try:
        file_sending._send_gathered(sock, dataset, lambda: False, 1)  # type: ignore[arg-type]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert max(sock.buffers) <= file_sending._IOV_MAX
    assert peak - len(sock.data) < 2 << 20  # not 400,000 buffers at once (~50 MB)
    assert bytes(sock.data) == _per_pdu(payload, 7)


def test_every_write_counts_as_progress():
    """The watchdog sees progress per write, not per 1 MiB chunk: a slow reader is not taken
    for one that stopped."""
    from archive_node.net.patches import file_sending

    class _Slow(_Counting):
        def sendmsg(self, parts) -> int:  # takes at most 1,000 bytes a call
            first = bytes(parts[0])[:1000]
            self.buffers.append(1)
            self.data += first
            seen.append(dataset.progress)
            return len(first)

    seen: list[int] = []
    payload = os.urandom(CHUNK)
    sock = _Slow()
    dataset = FileDataset(io.BytesIO(payload), len(payload), 5, 16384)
    file_sending._send_gathered(sock, dataset, lambda: False, 16378)  # type: ignore[arg-type]
    assert seen[0] == 0 and 0 < seen[1] < seen[2] < 3000  # moving within the first chunk
    assert dataset.progress == len(sock.data) == len(_per_pdu(payload, 16384))


def test_a_wait_ends_when_the_dul_is_gone():
    from archive_node.net.patches import file_sending

    dataset = FileDataset(io.BytesIO(b""), 0, 5, 16384)  # never taken by a DUL thread
    file_sending._wait_until_written(dataset, gone=lambda: True)
    assert dataset.abandoned


def test_a_stray_store_response_is_an_unexpected_message_to_pynetdicom():
    """A peer's second answer to one C-STORE reaches the association's reactor: pynetdicom
    must log it as unexpected and go on, not fail on it."""
    from pynetdicom import AE
    from pynetdicom.association import Association

    from archive_node.net.wire.store_request import StoreResponse

    response = StoreResponse(1, "1.2.840.10008.5.1.4.1.1.7", "1.2.3", 0)
    assert not response.is_valid_request and response.is_valid_response
    assoc = Association(AE(), "requestor")  # never started: only its request dispatch is used
    assoc._serve_request(response, 1)  # type: ignore[arg-type]  # returns, logs a warning
