"""net/patches/file_sending.send_file_dataset: the PDUs pynetdicom would send (PS3.8 9.3.5,
E.2), bounded."""

from __future__ import annotations

import io
import os
import queue
import struct
from types import SimpleNamespace

import pytest
from pynetdicom import AE
from pynetdicom.dul import DULServiceProvider

from archive_node.net import patches
from archive_node.net.patches.file_sending import MAX_PDU_DATA, FileDataset, send_file_dataset
from archive_node.net.patches.reactor import _release_waiting_senders


class Collecting:
    """A socket that keeps what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data) -> None:
        self.writes.append(bytes(data))


def pdus(writes: list[bytes]) -> list[tuple[int, int, bytes]]:
    """(context, control, data) of each P-DATA-TF PDU, checking its framing."""
    found = []
    for pdu in writes:
        kind, _, length, item, context, control = struct.unpack(">BBIIBB", pdu[:12])
        assert kind == 0x04 and length == len(pdu) - 6 and item == length - 4
        found.append((context, control, pdu[12:]))
    return found


@pytest.mark.parametrize(
    ("max_pdu", "size", "per_pdu"),
    [
        (16384, 100_000, 16378),  # DCMTK's default: 16,384 less the 6 bytes of PDV header
        (0, 3 * MAX_PDU_DATA + 5, MAX_PDU_DATA),  # no maximum: bounded all the same
        (0xFFFFFFFF, 1000, 1000),  # a huge maximum: the buffer follows the file, not the peer
        (16384, 0, 0),  # an empty dataset is one empty last fragment
    ],
)
def test_fragments_carry_the_file_whole(max_pdu, size, per_pdu):
    payload = os.urandom(size)
    sock = Collecting()
    dataset = FileDataset(io.BytesIO(payload), size, 3, max_pdu)
    assert send_file_dataset(sock, dataset) == size
    found = pdus(sock.writes)
    assert b"".join(data for _, _, data in found) == payload
    assert all(context == 3 for context, _, _ in found)
    assert [control for _, control, _ in found] == [0x00] * (len(found) - 1) + [0x02]
    assert max(len(data) for _, _, data in found) == per_pdu


def test_stops_part_way_when_asked():
    sock = Collecting()
    dataset = FileDataset(io.BytesIO(bytes(100_000)), 100_000, 1, 16384)
    with pytest.raises(OSError, match="stopped part way"):
        send_file_dataset(sock, dataset, stop=lambda: len(sock.writes) >= 2)
    assert len(sock.writes) == 2


def test_a_file_that_shrank_is_not_sent_as_if_whole():
    dataset = FileDataset(io.BytesIO(bytes(10)), 100, 1, 16384)
    with pytest.raises(OSError, match="shrank"):
        send_file_dataset(Collecting(), dataset)


def test_a_peer_maximum_that_holds_no_data_is_refused():
    dataset = FileDataset(io.BytesIO(bytes(10)), 10, 1, 6)
    with pytest.raises(OSError, match="holds no data"):
        send_file_dataset(Collecting(), dataset)


def test_a_dul_that_ends_releases_the_sender_of_a_queued_file():
    """The DUL's end (net/patches/reactor.py) tells a sender whose file was still queued,
    instead of leaving it to wait out its patience."""
    dataset = FileDataset(io.BytesIO(bytes(10)), 10, 1, 16384)
    dul = SimpleNamespace(to_provider_queue=queue.Queue())
    dul.to_provider_queue.put(dataset)
    _release_waiting_senders(dul)
    assert dataset.done.is_set() and dataset.sent == 0


def test_a_file_queued_after_the_dul_ended_releases_its_sender():
    """A sender that queues its file just after the DUL's last look at its queue (the peer
    gone a moment before) is released when it queues, not after PATIENCE (seen once in
    test_crash, as a sender thread still alive a minute after the node was killed)."""
    ae = AE()
    patches.install_for(ae, fast_paths=True)
    dataset = FileDataset(io.BytesIO(bytes(10)), 10, 1, 16384)
    dul = DULServiceProvider(SimpleNamespace(network_timeout=None, ae=ae))
    dul._archive_ended = True  # as _dul_reactor's end leaves it
    dul.send_pdu(dataset)
    assert dataset.done.is_set() and dataset.sent == 0
