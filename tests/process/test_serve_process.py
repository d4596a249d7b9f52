"""`archive-node serve` as a real process: start-up, C-ECHO/C-STORE, SIGTERM, memory.

Each test writes a TOML config in tmp_path (SQLite index), runs `archive-node init` and
registers a hospital and an AE through the CLI, then starts `python -m archive_node serve`
with its log on a file. Readiness is a C-ECHO that answers, polled against a deadline
(the helpers are in tests/helpers/serving_process.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pynetdicom import AE

from archive_node.errors import AssociationFailed
from archive_node.net.client import SendResult, echo
from bench.retrieve import vm_hwm
from tests.helpers import dicom_objects
from tests.helpers.identifiers import identifier
from tests.helpers.raw_peer import RawPeer, associate_rq
from tests.helpers.retrieving import STUDY_MOVE, Destination, move
from tests.helpers.serving_process import (
    CALLED,
    CALLING,
    HOST,
    STOP_DEADLINE,
    Archive,
    child_env,
    dataset_digest,
    send,
)

SECRET_NAME = "SECRETNAME^X"
SECRET_PID = "SECRETPID123"


@pytest.fixture
def archive(tmp_path):
    node = Archive(tmp_path)
    node.init()
    try:
        yield node
    finally:
        node.close()


def test_serve_smoke_echo_store_sigterm(archive, tmp_path):
    archive.start()
    assert echo(HOST, archive.port, calling=CALLING, called=CALLED) == 0

    ds = dicom_objects.ct(patient_name=SECRET_NAME, patient_id=SECRET_PID)
    source = dicom_objects.write(ds, tmp_path / "send" / "ct.dcm")
    sent = archive.cli("send", str(source), "--calling-aet", CALLING)
    assert "1 of 1 stored" in sent.stdout, sent.stdout + sent.stderr
    assert "0x0000" in sent.stdout

    kept = archive.stored(ds.SOPInstanceUID)
    assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(source)

    archive.cli("ae", "add", "UNN_WS", "--hospital", "UNN", "--host", HOST, "--allow", "find,move")
    found = archive.cli(
        "find",
        "--calling-aet",
        "UNN_WS",
        "-k",
        f"PatientID={SECRET_PID}",
        "-k",
        "PatientName",
        "-k",
        "NumberOfStudyRelatedInstances",
        "--json",
    )
    (match,) = json.loads(found.stdout)
    assert match["StudyInstanceUID"] == ds.StudyInstanceUID
    assert (match["PatientName"], match["NumberOfStudyRelatedInstances"]) == (SECRET_NAME, 1)
    assert "1 match(es), status 0x0000" in found.stderr
    refused = subprocess.run(
        [
            sys.executable,
            "-m",
            "archive_node",
            "--config",
            str(archive.config),
            "find",
            "--calling-aet",
            CALLING,
            "-k",
            "PatientID=x",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert refused.returncode == 1 and "status 0x0124" in refused.stderr

    dest = Destination(tmp_path / "dest")
    try:
        archive.cli(
            "ae", "add", "DEST", "--hospital", "UNN", "--host", HOST, "--port", str(dest.port)
        )
        moved = archive.cli(
            "move",
            "--calling-aet",
            "UNN_WS",
            "--destination",
            "DEST",
            "-k",
            f"StudyInstanceUID={ds.StudyInstanceUID}",
            "--json",
        )
    finally:
        dest.stop()
    assert json.loads(moved.stdout)["completed"] == 1
    assert dicom_objects.dataset_bytes(dest.received.files[ds.SOPInstanceUID]) == (
        dicom_objects.dataset_bytes(source)
    )

    started = time.monotonic()
    assert archive.terminate() == 0, archive.log()
    assert time.monotonic() - started < 5.0

    log = archive.log()
    assert len(re.findall(r"association accepted: calling UNN_US", log)) >= 3, log
    assert f"stored instance {ds.SOPInstanceUID}" in log
    assert "signal received" in log and "stopped" in log
    assert SECRET_NAME not in log and "SECRETNAME" not in log
    assert SECRET_PID not in log
    assert "Traceback" not in log

    studies = archive.cli("studies", "--json").stdout
    assert ds.StudyInstanceUID in studies and SECRET_PID in studies


def test_serve_removes_leftover_partial_files(archive):
    archive.incoming.mkdir(parents=True, exist_ok=True)
    leftovers = [archive.incoming / f"tmp{i}partial" for i in range(3)]
    for i, path in enumerate(leftovers):
        path.write_bytes(os.urandom(1000 * (i + 1)))
    assert all(p.exists() for p in leftovers)

    archive.start()

    assert not any(p.exists() for p in leftovers)
    assert list(archive.incoming.iterdir()) == []
    assert "removed 3 partial file(s)" in archive.log()
    assert archive.terminate() == 0


def test_sigterm_lets_running_transfer_finish(archive, tmp_path):
    source = dicom_objects.write_large_video(
        tmp_path / "send" / "large.dcm", 64 << 20, patient_name=SECRET_NAME, patient_id=SECRET_PID
    )
    sop_uid = str(dcmread(source, stop_before_pixels=True).SOPInstanceUID)
    archive.start()
    offset = len(archive.log())

    results: list[SendResult] = []
    errors: list[BaseException] = []
    finished: list[float] = []

    def push() -> None:
        try:
            results.append(send(archive, source))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            finished.append(time.monotonic())

    sender = threading.Thread(target=push, daemon=True)
    sender.start()
    try:
        archive.wait_for_log(r"association accepted: calling UNN_US", after=offset)
        deadline = time.monotonic() + 30
        while not any(p.stat().st_size > 0 for p in archive.incoming.iterdir()):
            assert time.monotonic() < deadline, "no data arrived in .incoming"
            assert sender.is_alive() or results or errors
            time.sleep(0.005)
        archive.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
    finally:
        sender.join(timeout=120)
    assert not sender.is_alive()
    assert not errors, errors
    assert [r.status for r in results] == [0x0000], results

    code = archive.proc.wait(timeout=STOP_DEADLINE)
    log = archive.log()
    assert code == 0, log
    # SIGTERM was sent while the C-STORE was outstanding; it completed and was kept.
    assert finished and finished[0] > signalled
    assert "signal received" in log and f"stored instance {sop_uid}" in log
    assert "aborting" not in log
    assert dataset_digest(archive.stored(sop_uid)) == dataset_digest(source)
    assert list(archive.incoming.iterdir()) == []
    assert SECRET_NAME not in log and SECRET_PID not in log


@pytest.mark.slow
def test_large_video_store_has_bounded_memory(archive, tmp_path):
    small = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "send" / "small.dcm")
    large = dicom_objects.write_large_video(tmp_path / "send" / "large.dcm", 256 << 20)
    sop_uid = str(dcmread(large, stop_before_pixels=True).SOPInstanceUID)

    proc = archive.start()
    assert send(archive, small).status == 0x0000
    before = vm_hwm(proc.pid)

    started = time.monotonic()
    result = send(archive, large)
    elapsed = time.monotonic() - started
    after = vm_hwm(proc.pid)

    assert result.status == 0x0000, result
    assert dataset_digest(archive.stored(sop_uid)) == dataset_digest(large)
    growth = after - before
    print(
        f"serve VmHWM before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB, "
        f"growth {growth / 2**20:.1f} MiB; 256 MiB sent in {elapsed:.1f} s"
    )
    assert growth < 100 << 20, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert archive.terminate() == 0


@pytest.mark.slow
def test_large_video_move_has_bounded_memory(archive, tmp_path):
    """C-MOVE streams the stored file: the sending node's peak RSS does not grow with it."""
    small = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "send" / "small.dcm")
    large = dicom_objects.write_large_video(tmp_path / "send" / "large.dcm", 256 << 20)
    header = dcmread(large, stop_before_pixels=True)
    dest = Destination(tmp_path / "dest")
    archive.cli("ae", "add", "DEST", "--hospital", "UNN", "--host", HOST, "--port", str(dest.port))
    archive.cli("ae", "add", "UNN_WS", "--hospital", "UNN", "--host", HOST, "--allow", "move")
    proc = archive.start()
    try:
        assert send(archive, small).status == 0x0000
        assert send(archive, large).status == 0x0000
        client = AE(ae_title="UNN_WS")
        client.add_requested_context(STUDY_MOVE)
        assoc = client.associate(HOST, archive.port, ae_title=CALLED)
        assert assoc.is_established
        try:
            first = dcmread(small, stop_before_pixels=True).StudyInstanceUID
            warm_up = move(assoc, identifier("STUDY", StudyInstanceUID=first))
            assert warm_up[0].Status == 0x0000  # the small object: imports and threads
            before = vm_hwm(proc.pid)
            started = time.monotonic()
            final, _, _ = move(
                assoc, identifier("STUDY", StudyInstanceUID=header.StudyInstanceUID)
            )
            elapsed = time.monotonic() - started
            after = vm_hwm(proc.pid)
        finally:
            assoc.release()
    finally:
        dest.stop()
    assert final.Status == 0x0000 and final.NumberOfCompletedSuboperations == 1
    arrived = dest.received.files[str(header.SOPInstanceUID)]
    assert dataset_digest(arrived) == dataset_digest(large)
    growth = after - before
    print(
        f"serve VmHWM before {before / 2**20:.1f} MiB, after {after / 2**20:.1f} MiB, "
        f"growth {growth / 2**20:.1f} MiB; 256 MiB moved in {elapsed:.1f} s"
    )
    assert growth < 100 << 20, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert archive.terminate() == 0


def test_sigkill_mid_transfer_loses_nothing_acknowledged(archive, tmp_path):
    """Keep order under a crash: what was acknowledged is whole; the partial file goes away."""
    acknowledged = [
        dicom_objects.write(dicom_objects.ct(), tmp_path / "send" / f"ct{i}.dcm") for i in range(3)
    ]
    large = dicom_objects.write_large_video(tmp_path / "send" / "large.dcm", 64 << 20)
    large_uid = str(dcmread(large, stop_before_pixels=True).SOPInstanceUID)
    archive.start()
    assert [send(archive, path).status for path in acknowledged] == [0, 0, 0]

    results: list[object] = []
    sender = threading.Thread(target=lambda: results.append(_try_send(archive, large)))
    sender.start()
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 0 for p in archive.incoming.iterdir()):
        assert time.monotonic() < deadline, "no data arrived in .incoming"
        time.sleep(0.005)
    archive.proc.kill()
    archive.proc.wait(timeout=STOP_DEADLINE)
    sender.join(timeout=60)
    assert results and getattr(results[0], "status", None) != 0x0000  # never acknowledged
    assert any(p.stat().st_size > 0 for p in archive.incoming.iterdir())  # the partial file

    archive._log_fh.close()
    archive.start()  # restart on the same store and index
    assert list(archive.incoming.iterdir()) == []
    assert "removed 1 partial file(s)" in archive.log()
    studies = json.loads(archive.cli("studies", "--json").stdout)
    assert sum(s["instance_count"] for s in studies) == 3
    for path in acknowledged:
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        kept = archive.stored(uid)
        assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(path)
    assert not [p for p in archive.storage.rglob(f"{large_uid}*") if ".incoming" not in p.parts]
    # and it takes new stores at once
    assert (
        send(archive, dicom_objects.write(dicom_objects.ct(), tmp_path / "after.dcm")).status == 0
    )
    assert archive.terminate() == 0


def _try_send(node: Archive, path: Path):
    try:
        return send(node, path)
    except AssociationFailed as exc:
        return exc


def test_sigterm_ends_serve_in_time_whatever_peers_hold(archive):
    """Half requests and silent connections: SIGTERM still ends serve at once, although
    ARTIM (node.acse_timeout) would give them 30 s (pynetdicom's reads held it until the
    peers let go)."""
    archive.start()
    holders = []
    try:
        for _ in range(6):
            peer = RawPeer(HOST, archive.port)
            peer.send(associate_rq(CALLING, called=CALLED)[:40])
            holders.append(peer)
        for _ in range(6):
            holders.append(RawPeer(HOST, archive.port))
        assert echo(HOST, archive.port, calling=CALLING, called=CALLED, timeout=5) == 0
        signalled = time.monotonic()
        assert archive.terminate() == 0
        assert time.monotonic() - signalled < 10
    finally:
        for peer in holders:
            peer.close()
    assert "Traceback" not in archive.log()
