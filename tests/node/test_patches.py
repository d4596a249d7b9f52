"""net/patches: each replacement does what pynetdicom does, byte for byte; the guard refuses a
library the copies were not taken from; and only the node's AEs take the patches."""

from __future__ import annotations

import io
import threading
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pynetdicom
import pytest
from click.testing import CliRunner
from pydicom.dataset import Dataset
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_MOVE, C_STORE
from pynetdicom.dsutils import create_file_meta
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

from archive_node.cli import cli
from archive_node.config import SPEED_PATCHES
from archive_node.net import patches
from archive_node.net.patches import file_meta, guard, scope
from archive_node.net.patches.file_sending import FileDataset, send_file_dataset
from archive_node.net.wire import commands
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.cli import write_config
from tests.helpers.dimse import associate, find, store
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import get_study
from tests.helpers.serving import make_config, node_with, serving

STUDY_FIND = str(StudyRootQueryRetrieveInformationModelFind)
STUDY_MOVE = str(StudyRootQueryRetrieveInformationModelMove)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def fast_ae() -> AE:
    ae = AE(ae_title="FAST")
    patches.install_for(ae, fast_paths=True)
    return ae


def plain_ae() -> AE:
    ae = AE(ae_title="PLAIN")
    patches.install_for(ae, fast_paths=False)
    return ae


class _Wire:
    """Stands in for an association's DUL: keeps the PDUs queued to it, as bytes; writes a
    queued FileDataset as the DUL thread would (file_sending's DT-1)."""

    def __init__(self) -> None:
        self.pdus: list[bytes] = []

    def send_pdu(self, primitive) -> None:
        if isinstance(primitive, FileDataset):
            sink = _Socket()
            send_file_dataset(sink, primitive)
            primitive.done.set()
            self.pdus.extend(sink.pdus())
            return
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        self.pdus.append(pdu.encode())


class _Socket:
    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, data) -> None:
        self.data += bytes(data)

    def pdus(self) -> list[bytes]:
        out, view = [], bytes(self.data)
        while view:
            length = int.from_bytes(view[2:6], "big")
            out.append(view[: 6 + length])
            view = view[6 + length :]
        return out


def sent(ae: AE, primitive, max_pdu: int = 16384) -> list[bytes]:
    """The P-DATA-TF PDUs an acceptor association of `ae` queues to send `primitive`."""
    assoc = Association(ae, "acceptor")
    assoc.requestor.maximum_length = max_pdu
    wire = _Wire()
    assoc.dul.send_pdu = wire.send_pdu  # the instance's, in front of the class's
    assoc.dimse.send_msg(primitive, 1)
    return wire.pdus


def find_response(status: int, identifier: Dataset | None = None, comment: str | None = None):
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = STUDY_FIND
    rsp.Status = status
    if comment:
        rsp.ErrorComment = comment
    if identifier is not None:
        rsp.Identifier = BytesIO(_encoded(identifier))
    return rsp


def _encoded(ds: Dataset) -> bytes:
    from pynetdicom.dsutils import encode

    return encode(ds, True, True)


def _answer(size: int = 1) -> Dataset:
    return identifier(
        "STUDY",
        PatientName="SYNTHETIC^PATIENT",
        StudyInstanceUID="1.2.826.0.1.3680043.8.498.1",
        StudyDescription="X" * min(size, 64),
        RetrieveAETitle="ARCHIVE",
    )


# -- messages: responses packed by hand, a file's dataset as one primitive ------------------


@pytest.mark.parametrize(
    "primitive",
    [
        pytest.param(lambda: find_response(0xFF00, _answer()), id="find-pending"),
        pytest.param(lambda: find_response(0xFF01, _answer()), id="find-pending-optional-keys"),
        pytest.param(lambda: find_response(0x0000), id="find-success"),
        pytest.param(lambda: find_response(0xFE00), id="find-cancel"),
        pytest.param(lambda: find_response(0xC000, comment="bad key"), id="find-failure"),
    ],
)
@pytest.mark.parametrize("max_pdu", [16384, 70, 0])
def test_find_responses_are_the_pdus_pynetdicom_sends(primitive, max_pdu):
    assert sent(fast_ae(), primitive(), max_pdu) == sent(plain_ae(), primitive(), max_pdu)


@pytest.mark.parametrize("comment", [None, "duplicate, original kept"])
@pytest.mark.parametrize("status", [0x0000, 0xB007, 0xA700])
def test_store_responses_are_the_pdus_pynetdicom_sends(status, comment):
    def response():
        rsp = C_STORE()
        rsp.MessageIDBeingRespondedTo = 3
        rsp.AffectedSOPClassUID = SECONDARY_CAPTURE
        rsp.AffectedSOPInstanceUID = "1.2.3.4.5"  # odd length: padded
        rsp.Status = status
        if comment:
            rsp.ErrorComment = comment
        return rsp

    assert sent(fast_ae(), response()) == sent(plain_ae(), response())


@pytest.mark.parametrize("max_pdu", [16384, 4096, 0])
def test_a_stored_files_dataset_is_the_pdus_pynetdicom_sends(tmp_path, max_pdu):
    """The same PDUs (below file_sending.MAX_PDU_DATA: a larger file is cut into PDUs of at
    most 1 MiB even when the peer sets no maximum, where pynetdicom sends one PDU)."""
    path = dicom_objects.write(dicom_objects.video_h264(payload=200_000), tmp_path / "video.dcm")
    offset = _dataset_offset(path)

    def request():
        req = C_STORE()
        req.MessageID = 5
        req.AffectedSOPClassUID = SECONDARY_CAPTURE
        req.AffectedSOPInstanceUID = "1.2.3.4.5"
        req.Priority = 0
        req._dataset_path = (path, offset)
        return req

    fast, stock = sent(fast_ae(), request(), max_pdu), sent(plain_ae(), request(), max_pdu)
    assert (len(stock) == 2) == (max_pdu == 0)  # the command, then one PDU or many
    assert fast == stock


def _dataset_offset(path: Path) -> int:
    """Where a Part 10 file's dataset begins, as pynetdicom's send_c_store finds it."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return 132 + 12 + ds.file_meta.FileMetaInformationGroupLength


@pytest.mark.parametrize("max_pdu", [16384, 40, 0])
def test_pending_retrieve_responses_are_the_pdus_pynetdicom_sends(max_pdu):
    """retrieve_scp queues its pending C-MOVE/C-GET responses packed (wire/commands.py)."""
    rsp = C_MOVE()
    rsp.MessageIDBeingRespondedTo = 9
    rsp.AffectedSOPClassUID = STUDY_MOVE
    rsp.Status = 0xFF00
    rsp.NumberOfRemainingSuboperations = 997
    rsp.NumberOfCompletedSuboperations = 2
    rsp.NumberOfFailedSuboperations = 1
    rsp.NumberOfWarningSuboperations = 0
    packed = commands.pending_response(
        commands.C_MOVE_RSP, STUDY_MOVE, 9, remaining=997, completed=2, failed=1, warning=0
    )
    wire = _Wire()
    commands.queue(wire, 1, packed, max_pdu)
    assert wire.pdus == sent(plain_ae(), rsp, max_pdu)


# -- identifiers encoded without pydicom's writer ----------------------------------------------


def _in_thread_of(ae: AE, work):
    """Run `work` in a thread that serves an association of `ae` (as a DUL thread does)."""
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("value", work()))
    thread.assoc = SimpleNamespace(ae=ae)  # type: ignore[attr-defined]
    thread.start()
    thread.join()
    return out["value"]


@pytest.mark.parametrize("implicit", [True, False])
def test_identifiers_are_the_bytes_pydicom_writes(implicit):
    from pynetdicom import service_class

    answer = _answer(40)
    stock = guard.original("pynetdicom.service_class.encode")(answer, implicit, True, False)
    fast = _in_thread_of(fast_ae(), lambda: service_class.encode(answer, implicit, True, False))
    assert fast == stock


# -- a received file's first file meta ---------------------------------------------------------


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_a_received_files_first_meta_is_what_pynetdicom_writes(syntax):
    from pynetdicom import dimse_messages

    values = {"sop_class_uid": SECONDARY_CAPTURE, "sop_instance_uid": generate_uid()}
    values["transfer_syntax"] = syntax

    def write():
        out = io.BytesIO()
        dimse_messages.write_file_meta_info(out, dimse_messages.create_file_meta(**values))
        return out.getvalue()

    stock = io.BytesIO()
    write_file_meta_info(stock, create_file_meta(**values))
    made = _in_thread_of(fast_ae(), lambda: dimse_messages.create_file_meta(**values))
    assert isinstance(made, file_meta.FileMeta)
    assert _in_thread_of(fast_ae(), write) == stock.getvalue()
    assert _in_thread_of(plain_ae(), write) == stock.getvalue()


# -- the guard ---------------------------------------------------------------------------------


def test_every_fingerprint_is_the_installed_librarys():
    """Fails by name when an upgrade changed a function a patch replaces or relies on: take
    the patch again from the new release, then its fingerprint."""
    found = {path: guard.fingerprint(path) for path in guard.FINGERPRINTS}
    assert found == guard.FINGERPRINTS
    assert pynetdicom.__version__ in guard.TAKEN_FROM


def test_the_config_knows_every_speed_patch_by_name():
    assert tuple(patch.name for patch in patches.SPEED) == SPEED_PATCHES


def test_every_replaced_function_has_a_fingerprint_and_every_fingerprint_a_patch():
    paths = {p for patch in patches.FEATURES + patches.SPEED for p in patch.paths}
    assert paths == set(guard.FINGERPRINTS)


def test_each_patch_module_says_what_it_replaces_and_why():
    for patch in patches.FEATURES + patches.SPEED:
        module = __import__(f"archive_node.net.patches.{patch.name}", fromlist=["_"])
        doc = module.__doc__ or ""
        assert ("(speed)" in doc) == patch.speed, patch.name
        assert "Replaces" in doc or "Wraps" in doc, patch.name
        assert "Why" in doc, patch.name


def _serve(tmp_path: Path, sqlite_url: str, **node) -> object:
    config = write_config(tmp_path, sqlite_url, node={"port": 0, **node})
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "init"]).exit_code == 0
    return runner.invoke(cli, ["--config", str(config), "serve"])


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_refuses_a_pynetdicom_whose_replaced_function_differs(
    tmp_path, sqlite_url, monkeypatch, workers
):
    changed = "pynetdicom.dimse_messages.DIMSEMessage.decode_msg"
    monkeypatch.setitem(guard.FINGERPRINTS, changed, "0" * 16)
    result = _serve(tmp_path, sqlite_url, workers=workers)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert changed in lines[0] and "receiving" in lines[0]
    assert "fast_paths" not in lines[0]  # a feature: no way around it


def test_a_changed_speed_function_can_be_left_out(monkeypatch):
    changed = "pynetdicom.dul.DULServiceProvider.run_reactor"
    monkeypatch.setitem(guard.FINGERPRINTS, changed, "0" * 16)
    with pytest.raises(patches.PatchError, match=r"node\.fast_paths = false") as refused:
        patches.check(fast_paths=True)
    assert changed in str(refused.value)
    patches.check(fast_paths=False)  # runs without the reactor patch


def test_a_library_without_its_sources_is_refused_by_name(monkeypatch):
    changed = "pynetdicom.dimse_messages.DIMSEMessage.decode_msg"

    def unreadable(function):
        raise OSError("could not get source code")

    monkeypatch.setattr(guard.inspect, "getsource", unreadable)
    with pytest.raises(patches.PatchError, match="cannot be read") as refused:
        patches.check(fast_paths=False)
    assert changed in str(refused.value)


def test_another_release_starts_only_when_allowed(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.setattr(pynetdicom, "__version__", "3.0.99")
    result = _serve(tmp_path, sqlite_url)
    assert result.exit_code == 1
    assert "pynetdicom 3.0.99 is not a release" in result.output
    assert "node.untested_pynetdicom" in result.output
    patches.check(fast_paths=True, untested_pynetdicom=True)  # every function still the same


# -- scope: the node's AEs only ----------------------------------------------------------------


def test_a_client_in_the_same_process_keeps_pynetdicoms_loops(tmp_path, index_url, registry):
    """Once a node runs in this process, another AE's associations still run pynetdicom's
    own reactor and checkpoint (the node's are its patched ones)."""
    with node_with(tmp_path, index_url, node={"fast_paths": True}) as node:
        assoc = associate(node, "UNN_US")
        _client_keeps_stock_loops(node, assoc)


def _client_keeps_stock_loops(node, assoc) -> None:
    assert assoc.is_established
    try:
        assert type(assoc._reactor_checkpoint) is threading.Event
        assert "_archive_wakeup" not in assoc.dul.__dict__
        assert not any(scope.takes(assoc.ae, p) for p in SPEED_PATCHES)
        served = next(a for a in node.server.ae.active_associations if a.is_acceptor)
        assert type(served._reactor_checkpoint) is not threading.Event
        assert all(scope.takes(served.ae, p) for p in SPEED_PATCHES)
        assert assoc.send_c_echo().Status == 0
    finally:
        assoc.release()


def test_an_ae_takes_only_the_speed_patches_named():
    ae = AE()
    patches.install_for(ae, fast_paths=("reactor", "file_meta"))
    assert [p for p in SPEED_PATCHES if scope.takes(ae, p)] == ["reactor", "file_meta"]
    assert not patches.packs_responses(ae) and not patches.sends_files_whole(ae)
    with pytest.raises(patches.PatchError, match="no speed patch turbo"):
        patches.install_for(AE(), fast_paths=("reactor", "turbo"))


@pytest.mark.parametrize("left_out", SPEED_PATCHES)
def test_a_node_without_one_speed_patch_stores_finds_and_moves(tmp_path, sqlite_url, left_out):
    """Each speed patch can be left out alone (what the benchmark's -without-X columns
    measure): the node still stores, answers C-FIND and sends a stored file by C-GET."""
    taken = [p for p in SPEED_PATCHES if p != left_out]
    service = ArchiveService.from_config(
        make_config(tmp_path, sqlite_url, node={"fast_paths": taken})
    )
    service.index.init_schema()
    service.storage.create()
    service.registry.add_hospital("UNN", "University Hospital of North Norway", issuer="UNN")
    service.registry.add_ae("UNN_WS", "UNN", host="127.0.0.1", allow="echo,store,find,get")
    ds = dicom_objects.ct(patient_id="PX")
    try:
        with serving(service) as node:
            assert not scope.takes(node.server.ae, left_out)
            assert store(node, ds, calling="UNN_WS") == 0
            query = identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID, PatientID="")
            final, matches = find(node, query)
            assert final.Status == 0x0000 and [m.PatientID for m in matches] == ["PX"]
            final, received = get_study(node, "UNN_WS", tmp_path / "got", ds.StudyInstanceUID)
            assert final.Status == 0x0000 and list(received.files) == [ds.SOPInstanceUID]
    finally:
        service.index.close()


def test_settings_are_made_at_install_not_at_import():
    import subprocess
    import sys

    code = (
        "import pydicom.config as c\n"
        "import archive_node.net.server, archive_node.net.client\n"
        "from pynetdicom import _config\n"
        "assert _config.LOG_REQUEST_IDENTIFIERS, 'changed at import'\n"
        "assert c.settings.reading_validation_mode != c.IGNORE, 'changed at import'\n"
        "from pynetdicom import AE\n"
        "from archive_node.net import patches\n"
        "patches.install_for(AE(), fast_paths=False)\n"
        "assert not _config.LOG_REQUEST_IDENTIFIERS\n"
        "assert _config.STORE_RECV_CHUNKED_DATASET and _config.STORE_SEND_CHUNKED_DATASET\n"
        "assert c.settings.reading_validation_mode == c.IGNORE\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
