"""C-MOVE and C-GET for tests: a storage SCP as Move Destination, a C-GET SCU, the requests."""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    MPEG4HP41,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from archive_node.net.association import set_tcp_nodelay
from tests.helpers import dicom_objects
from tests.helpers.dimse import store
from tests.helpers.identifiers import identifier
from tests.helpers.serving import Node

STUDY_MOVE = StudyRootQueryRetrieveInformationModelMove
PATIENT_MOVE = PatientRootQueryRetrieveInformationModelMove
STUDY_GET = StudyRootQueryRetrieveInformationModelGet
PATIENT_GET = PatientRootQueryRetrieveInformationModelGet
CLASSES = [
    dicom_objects.CT_IMAGE,
    dicom_objects.US_MULTIFRAME,
    dicom_objects.VL_PHOTO,
    dicom_objects.VIDEO_PHOTO,
    dicom_objects.SECONDARY_CAPTURE,
    dicom_objects.ENCAPSULATED_PDF,
]


def four_kinds_study(node: Node) -> tuple[str, list[str]]:
    """One UNN study pushed by C-STORE: a US multi-frame, a VL photo (JPEG baseline), an H.264
    video and a CT of patient P1; the study UID and the instances' UIDs in that order."""
    study_uid = generate_uid()
    made = dicom_objects.four_kinds(study_uid, "P1")
    for ds in made:
        assert store(node, ds) == 0x0000
    return study_uid, [str(ds.SOPInstanceUID) for ds in made]


@dataclass
class Received:
    """What a storage SCP was sent: the files, and each C-STORE request's originator."""

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)
    originators: list[tuple[str, int | None]] = field(default_factory=list)
    syntaxes: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keep(self, event: Any) -> None:
        request = event.request
        uid = str(request.AffectedSOPInstanceUID)
        target = self.directory / f"{uid}.dcm"
        shutil.copyfile(event.dataset_path, target)
        with self.lock:
            self.files[uid] = target
            self.syntaxes[uid] = str(event.context.transfer_syntax)
            self.originators.append(
                (
                    str(request.MoveOriginatorApplicationEntityTitle or "").strip(),
                    request.MoveOriginatorMessageID,
                )
            )


class Destination:
    """A Move Destination: a pynetdicom storage SCP on a free loopback port that keeps the
    files it receives. `syntaxes` limits what it accepts; `on_store` may delay or refuse."""

    def __init__(
        self,
        directory: Path,
        *,
        classes: list[str] = CLASSES,
        syntaxes: list[str] | None = None,
        on_store: Callable[[Any], int] | None = None,
        ae_title: str = "DEST",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """`ssl_context`: a TLS destination (the caller's certificates are in
        `peer_certificates`)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.received = Received(directory)
        self.on_store = on_store
        self.associations = 0
        self.peer_certificates: list[bytes | None] = []  # the caller's, per TLS association
        ae = AE(ae_title=ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        for sop_class in classes:
            ae.add_supported_context(sop_class, syntaxes or ALL_TRANSFER_SYNTAXES)
        self.ae = ae
        self.server = ae.make_server(
            ("127.0.0.1", 0),
            ssl_context=ssl_context,
            evt_handlers=[
                (evt.EVT_C_STORE, self._store),
                (evt.EVT_ACCEPTED, self._accepted),
                (evt.EVT_CONN_OPEN, set_tcp_nodelay),
            ],
        )
        # as start_server(block=False), but polling for shutdown every 20 ms, not 500 ms
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()
        ae._servers.append(self.server)
        self.port = self.server.server_address[1]

    def _accepted(self, event: Any) -> None:
        self.associations += 1
        sock = event.assoc.dul.socket.socket
        if isinstance(sock, ssl.SSLSocket):
            self.peer_certificates.append(sock.getpeercert(binary_form=True))

    def _store(self, event: Any) -> int:
        code = self.on_store(event) if self.on_store else 0x0000
        if code in (0x0000, 0xB000, 0xB007):
            self.received.keep(event)
        return code

    def stop(self) -> None:
        self.ae.shutdown()


def move(
    assoc: Any, query: Dataset, destination: str = "DEST", model: Any = STUDY_MOVE
) -> tuple[Dataset, list[Dataset], Dataset | None]:
    """(final status, pending statuses, final identifier) of one C-MOVE."""
    return _collect(assoc.send_c_move(query, destination, model))


def _collect(responses: Any) -> tuple[Dataset, list[Dataset], Dataset | None]:
    pending, final, answer = [], None, None
    for rsp, ident in responses:
        assert rsp, "no response from the node"
        if rsp.Status == 0xFF00:
            pending.append(rsp)
        else:
            final, answer = rsp, ident
    return final, pending, answer


# The syntaxes the test objects are stored in, each proposed in a context of its own so that
# every one can be accepted (one context carries one accepted syntax).
STORED_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEGBaseline8Bit, MPEG4HP41]


def get_contexts(
    syntaxes: list[str] | dict[str, list[str]] | None = None, classes: list[str] = CLASSES
):
    """The contexts and SCP/SCU role items of a C-GET SCU that stores `classes`: with
    `syntaxes` (one list, or a list per class), one context per class proposing them in that
    order of preference; without, a context per class and stored syntax."""
    contexts: list[Any] = [STUDY_GET, PATIENT_GET]
    if isinstance(syntaxes, dict):
        contexts += list(syntaxes.items())
        classes = list(syntaxes)
    elif syntaxes:
        contexts += [(sop_class, syntaxes) for sop_class in classes]
    else:
        contexts += [(c, [ts]) for c in classes for ts in STORED_SYNTAXES]
    roles = [build_role(sop_class, scp_role=True) for sop_class in classes]
    return contexts, roles


def get_association(
    node: Node,
    calling: str,
    received: Received,
    *,
    syntaxes: list[str] | dict[str, list[str]] | None = None,
    classes: list[str] = CLASSES,
    on_store: Callable[[Any], int] | None = None,
):
    """A C-GET SCU association whose C-STORE handler keeps the files in `received`."""

    def store(event: Any) -> int:
        code = on_store(event) if on_store else 0x0000
        if code == 0x0000:
            received.keep(event)
        return code

    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    contexts, roles = get_contexts(syntaxes, classes)
    for cx in contexts:
        ae.add_requested_context(*cx) if isinstance(cx, tuple) else ae.add_requested_context(cx)
    return ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        ext_neg=roles,
        evt_handlers=[(evt.EVT_C_STORE, store), (evt.EVT_CONN_OPEN, set_tcp_nodelay)],
    )


def get(
    assoc: Any, query: Dataset, model: Any = STUDY_GET
) -> tuple[Dataset, list[Dataset], Dataset | None]:
    """(final status, pending statuses, final identifier) of one C-GET."""
    return _collect(assoc.send_c_get(query, model))


def get_study(
    node: Any, calling: str, directory: Path, study_uid: str
) -> tuple[Dataset, Received]:
    """The final status of a Study Root STUDY level C-GET on an association of its own, and
    what arrived (kept in `directory`, made here)."""
    directory.mkdir(parents=True)
    received = Received(directory)
    assoc = get_association(node, calling, received)
    assert assoc.is_established
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    return final, received


def failed_uids(answer: Dataset | None) -> list[str]:
    """The Failed SOP Instance UID List of a final response (one value reads as a str)."""
    if answer is None or "FailedSOPInstanceUIDList" not in answer:
        return []
    value = answer.FailedSOPInstanceUIDList
    return [value] if isinstance(value, str) else list(value)


def cutting_proxy(target_port: int, cut_after: int) -> int:
    """A one-connection TCP proxy on loopback to `target_port` that resets both sides once
    `cut_after` bytes have gone towards the target: a link lost part way through a file.
    Returns the port it listens on."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)

    def pump(source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                sent += len(data)
                if limit is not None and sent > limit:
                    for end in (source, sink):  # RST, not FIN: the link is gone
                        end.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        end.close()
                    return
        except OSError:
            pass

    def serve() -> None:
        client, _ = listener.accept()
        listener.close()
        upstream = socket.create_connection(("127.0.0.1", target_port))
        threading.Thread(target=pump, args=(upstream, client, None), daemon=True).start()
        pump(client, upstream, cut_after)

    threading.Thread(target=serve, daemon=True).start()
    return listener.getsockname()[1]
