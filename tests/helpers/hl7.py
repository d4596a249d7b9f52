"""HL7 v2 test messages (synthetic patients only) and an MLLP client that reads whole ACKs."""

from __future__ import annotations

import socket
from datetime import date

import hl7

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
TODAY = date.today().strftime("%Y%m%d")


def msh(
    kind: str,
    control_id: str,
    *,
    facility: str = "UNN_RIS",
    charset: str = "UNICODE UTF-8",
    version: str = "2.5.1",
) -> str:
    return (
        f"MSH|^~\\&|RIS|{facility}|ARCHIVE|REGION|{TODAY}120000||{kind}|{control_id}|P|"
        f"{version}||||||{charset}"
    )


def pid(
    patient_id: str = "PAT-1",
    *,
    authority: str = "UNN",
    name: str = "ØDEGÅRD^ÅSE^M",
    birth: str = "19800102",
    sex: str = "F",
) -> str:
    ident = f"{patient_id}^^^{authority}^MR" if authority else patient_id
    return f"PID|1||{ident}||{name}||{birth}|{sex}"


def orm(
    control_id: str = "MSG-1",
    *,
    control: str = "NW",
    placer: str = "ORD-1",
    accession: str = "ACC-1",
    modality: str = "US",
    station: str = "UNN_US",
    start: str | None = None,
    study_uid: str = "",
    patient: str | None = None,
    facility: str = "UNN_RIS",
    charset: str = "UNICODE UTF-8",
    procedure: str = "US-ABD^Ultrasound abdomen^L",
) -> str:
    """An ORM^O01 (IHE RAD-4/RAD-13) with one ORC, OBR and, given a UID, ZDS."""
    start = f"{TODAY}1030" if start is None else start
    filler = f"F-{placer}" if placer else ""
    segments = [
        msh("ORM^O01", control_id, facility=facility, charset=charset),
        patient if patient is not None else pid(),
        "PV1|1|O",
        f"ORC|{control}|{placer}|{filler}||SC||^^^{start}|||||||||||{station}",
        f"OBR|1|{placer}|{filler}|{procedure}||||||||||||||{accession}|RP-{accession}|"
        f"SPS-{accession}||||{modality}",
    ]
    if study_uid:
        segments.append(f"ZDS|{study_uid}^RIS^Application^DICOM")
    return "\r".join(segments) + "\r"


def omi(
    control_id: str = "OMI-1",
    *,
    control: str = "NW",
    placer: str = "ORD-9",
    steps: tuple[tuple[str, str, str], ...] = (("ACC-9", "US", "UNN_US"),),
    study_uid: str = "",
    start: str | None = None,
) -> str:
    """An OMI^O23: one ORC, TQ1 and OBR, an IPC per (accession, modality, station)."""
    start = f"{TODAY}0900" if start is None else start
    segments = [
        msh("OMI^O23", control_id),
        pid(),
        f"ORC|{control}|{placer}",
        f"TQ1|1||||||{start}",
        f"OBR|1|{placer}||DERM^Skin photo^L",
    ]
    for n, (accession, modality, station) in enumerate(steps, 1):
        segments.append(f"IPC|{accession}|RP-{n}|{study_uid}|SPS-{n}|{modality}||||{station}")
    return "\r".join(segments) + "\r"


def adt(
    event: str,
    control_id: str,
    *,
    patient: str | None = None,
    merge_from: str = "",
) -> str:
    segments = [msh(f"ADT^{event}", control_id), patient if patient is not None else pid()]
    if merge_from:
        segments.append(f"MRG|{merge_from}^^^UNN^MR")
    return "\r".join(segments) + "\r"


class Mllp:
    """An MLLP connection that sends blocks and reads whole ACK blocks (recv until FS CR)."""

    def __init__(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buffer = b""

    def __enter__(self) -> Mllp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: str | bytes, encoding: str = "utf-8") -> hl7.Message:
        raw = message.encode(encoding) if isinstance(message, str) else message
        self.send_raw(VT + raw + FS + CR)
        return self.ack(encoding)

    def ack(self, encoding: str = "utf-8") -> hl7.Message:
        while FS + CR not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed; had {self.buffer!r}")
            self.buffer += chunk
        block, self.buffer = self.buffer.split(FS + CR, 1)
        assert block.startswith(VT)
        return hl7.parse(block[1:].decode(encoding))

    def closed(self) -> bool:
        """Whether the node closed the connection (EOF)."""
        try:
            return self.sock.recv(1) == b""
        except TimeoutError:
            return False


def ack_code(ack: hl7.Message) -> str:
    return str(ack["MSA.F1"])


def err_location(ack: hl7.Message) -> str:
    """ERR-2 as written (e.g. 'PID^1^3')."""
    return str(ack.segment("ERR")[2])
