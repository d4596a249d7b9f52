"""A peer on a raw socket, for what no well-behaved library sends: PDUs built byte by byte
(PS3.8 9.3), half requests, lies about lengths, cut-off transfers."""

from __future__ import annotations

import os
import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ImplicitVRLittleEndian

VERIFICATION = "1.2.840.10008.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
DICOM_APPLICATION_CONTEXT = "1.2.840.10008.3.1.1.1"


def _item(item_type: int, value: bytes) -> bytes:
    return struct.pack(">BBH", item_type, 0, len(value)) + value


def associate_rq(
    calling: str,
    called: str = "ARCHIVE",
    contexts=((1, VERIFICATION, (ImplicitVRLittleEndian,)),),
    *,
    application_context: str = DICOM_APPLICATION_CONTEXT,
    max_pdu: int = 16384,
    extra_user_items: bytes = b"",
    raw_calling: bytes | None = None,
) -> bytes:
    """An A-ASSOCIATE-RQ PDU (PS3.8 9.3.2): `contexts` as (id, abstract syntax, syntaxes)."""
    items = _item(0x10, application_context.encode())
    for context_id, abstract, syntaxes in contexts:
        sub = _item(0x30, abstract.encode()) + b"".join(
            _item(0x40, ts.encode()) for ts in syntaxes
        )
        items += _item(0x20, bytes([context_id, 0, 0, 0]) + sub)
    user = struct.pack(">BBHL", 0x51, 0, 4, max_pdu) + _item(0x52, b"1.2.826.0.1.3680043.9.1")
    items += _item(0x50, user + extra_user_items)
    calling_bytes = raw_calling if raw_calling is not None else calling.ljust(16).encode()
    body = (
        struct.pack(">HH", 1, 0)
        + called.ljust(16).encode()
        + calling_bytes.ljust(16, b" ")[:16]
        + bytes(32)
        + items
    )
    return struct.pack(">BBL", 0x01, 0, len(body)) + body


RELEASE_RQ = struct.pack(">BBLL", 0x05, 0, 4, 0)
ABORT = struct.pack(">BBLBBBB", 0x07, 0, 4, 0, 0, 0, 0)


@dataclass
class PDU:
    type: int
    body: bytes

    @property
    def rejection(self) -> tuple[int, int, int]:
        assert self.type == 0x03, f"expected an A-ASSOCIATE-RJ, got PDU type 0x{self.type:02X}"
        return self.body[1], self.body[2], self.body[3]

    @property
    def context_results(self) -> dict[int, int]:
        """An A-ASSOCIATE-AC's presentation context results, by context ID."""
        assert self.type == 0x02, f"expected an A-ASSOCIATE-AC, got PDU type 0x{self.type:02X}"
        results, offset = {}, 68
        while offset < len(self.body):
            item_type, _, length = struct.unpack_from(">BBH", self.body, offset)
            if item_type == 0x21:
                results[self.body[offset + 4]] = self.body[offset + 6]
            offset += 4 + length
        return results


class RawPeer:
    """One TCP connection to the node, spoken to byte by byte."""

    def __init__(
        self, host: str, port: int, timeout: float = 10.0, tls: ssl.SSLContext | None = None
    ) -> None:
        """`tls`: over TLS, with this client context (the handshake done here)."""
        self.sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> PDU | None:
        """The next PDU, or None when the node closed the connection."""
        header = self._exactly(6)
        if header is None:
            return None
        pdu_type, _, length = struct.unpack(">BBL", header)
        body = self._exactly(length)
        return None if body is None else PDU(pdu_type, body)

    def closed_by_node(self, within: float = 10.0) -> bool:
        """Whether the node closes the connection within `within` seconds (what it sent
        before is read and dropped)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True
        return False

    def _exactly(self, count: int) -> bytes | None:
        data = b""
        while len(data) < count:
            try:
                chunk = self.sock.recv(count - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def associate(self, request: bytes) -> PDU:
        self.send(request)
        answer = self.receive()
        assert answer is not None, "the node closed the connection instead of answering"
        return answer

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def p_data(context_id: int, control: int, payload: bytes, *more: tuple[int, bytes]) -> bytes:
    """A P-DATA-TF PDU (PS3.8 9.3.5, E.2) with a PDV of `payload` and one per (control,
    payload) in `more`: control 0x03 last command fragment, 0x01 command fragment, 0x02 last
    dataset fragment, 0x00 dataset fragment."""
    pdvs = b"".join(
        struct.pack(">LBB", len(data) + 2, context_id, flag) + data
        for flag, data in ((control, payload), *more)
    )
    return struct.pack(">BBL", 0x04, 0, len(pdvs)) + pdvs


def command(**elements) -> bytes:
    """A command set (implicit VR little endian, PS3.7 6.3.1) with its group length; values are
    written as given, unchecked (a UID of any length)."""
    ds = Dataset()
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    body = _implicit(ds)
    length = Dataset()
    length.CommandGroupLength = len(body)
    return _implicit(length) + body


def _implicit(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def decode_command(payload: bytes) -> Dataset:
    from pydicom.filereader import read_dataset

    buffer = DicomBytesIO(payload)
    return read_dataset(buffer, is_implicit_VR=True, is_little_endian=True)


def response_command(peer: RawPeer) -> Dataset:
    """The command set of the next DIMSE message the node sends (its first P-DATA-TF)."""
    pdu = peer.receive()
    assert pdu is not None and pdu.type == 0x04, f"expected a P-DATA-TF, got {pdu}"
    payload = b""
    offset = 0
    while offset < len(pdu.body):
        (length,) = struct.unpack_from(">L", pdu.body, offset)
        control = pdu.body[offset + 5]
        if control & 1:
            payload += pdu.body[offset + 6 : offset + 4 + length]
        offset += 4 + length
    return decode_command(payload)


def threads_and_descriptors() -> tuple[int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def settles(expected: tuple[int, int], within: float = 15.0) -> tuple[int, int]:
    """Poll until the process has no more threads and descriptors than `expected`."""
    deadline = time.monotonic() + within
    now = threads_and_descriptors()
    while time.monotonic() < deadline:
        now = threads_and_descriptors()
        if now[0] <= expected[0] and now[1] <= expected[1]:
            return now
        time.sleep(0.05)
    return now


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")
