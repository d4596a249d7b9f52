"""`serve --workers N`: several processes on one port and one index, as one node (real serve)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from archive_node.errors import AssociationFailed
from archive_node.net.client import echo, send_files
from tests.helpers import dicom_objects
from tests.helpers.serving_process import CALLED, CALLING, HOST, Archive, child_env

WORKERS = 2
CLI = [sys.executable, "-m", "archive_node"]


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text()
        found.update(int(child) for child in text.split())
    return found


def wait_for_workers(node: Archive, count: int, *, other_than: set[int] = frozenset()) -> set[int]:
    """Poll until the supervisor has `count` children that answer, none of them in
    `other_than`; return their pids."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pids = children(node.proc.pid)
        if len(pids) == count and not pids & other_than:
            return pids
        time.sleep(0.05)
    pytest.fail(f"the supervisor has workers {children(node.proc.pid)}:\n{node.log()}")


@pytest.fixture
def node(tmp_path):
    archive = Archive(tmp_path)
    archive.init()
    config = archive.config.read_text().replace("workers = 1\n", f"workers = {WORKERS}\n")
    archive.config.write_text(config)
    archive.start()
    workers = wait_for_workers(archive, WORKERS)
    yield archive
    # never leave a worker behind, whatever the test did to the supervisor
    for pid in workers | (children(archive.proc.pid) if archive.proc.poll() is None else set()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    archive.close()


def instances(archive: Archive) -> list[tuple[str, str]]:
    with sqlite3.connect(archive.root / "index.sqlite3") as db:
        return db.execute("SELECT sop_uid, path FROM instance ORDER BY sop_uid").fetchall()


def push(node: Archive, files: list[Path], associations: int) -> None:
    """Send `files` over `associations` parallel associations; every one must succeed."""
    failures: list[str] = []

    def sender(part: list[Path]) -> None:
        try:
            for result in send_files(part, HOST, node.port, calling=CALLING, called=CALLED):
                if result.status != 0:
                    failures.append(f"{result.path}: 0x{result.status:04X}")
        except AssociationFailed as exc:
            failures.append(str(exc))

    threads = [
        threading.Thread(target=sender, args=(files[k::associations],))
        for k in range(associations)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures


def study_files(tmp_path: Path, count: int) -> list[Path]:
    study = dicom_objects.secondary_capture().StudyInstanceUID
    return [
        dicom_objects.write(
            dicom_objects.secondary_capture(study_uid=study), tmp_path / "send" / f"{n}.dcm"
        )
        for n in range(count)
    ]


def test_workers_store_in_parallel_into_one_index(node, tmp_path):
    files = study_files(tmp_path, 40)
    push(node, files, associations=4)
    rows = instances(node)
    assert len(rows) == 40
    for _sop_uid, path in rows:
        assert (node.storage / path).is_file()
    assert node.log().count("listening on") == WORKERS
    assert f"{WORKERS} workers serving {HOST}:{node.port}" in node.log()


def test_each_worker_answers_and_honours_a_new_ae_at_once(node):
    node.cli("ae", "add", "NEW_AE", "--hospital", "UNN", "--host", HOST, "--allow", "echo")
    # SO_REUSEPORT spreads connections by their source port: enough of them reach every worker
    for _ in range(12):
        assert echo(HOST, node.port, calling="NEW_AE", called=CALLED, timeout=10) == 0
    node.cli("ae", "remove", "NEW_AE")
    for _ in range(12):
        with pytest.raises(AssociationFailed):
            echo(HOST, node.port, calling="NEW_AE", called=CALLED, timeout=10)


def test_a_worker_that_dies_is_started_again(node, tmp_path):
    before = children(node.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_for_workers(node, WORKERS, other_than={victim})
    assert after - before, "no new worker"
    node.wait_for_log(rf"worker \d \(pid {victim}\) ended \(signal SIGKILL\)")
    push(node, study_files(tmp_path, 8), associations=4)
    assert len(instances(node)) == 8


def test_sigterm_stops_every_worker(node):
    workers = children(node.proc.pid)
    assert node.terminate() == 0
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"worker {pid} still runs"
    assert "stopping 2 workers" in node.log()


def test_a_worker_ends_when_its_supervisor_is_killed(node):
    workers = children(node.proc.pid)
    node.kill()
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and not _is_zombie(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived their supervisor"
        time.sleep(0.05)


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        archive = Archive(tmp_path, port=busy.getsockname()[1])
        archive.init()
        assert_cannot_listen(archive)


def assert_cannot_listen(archive: Archive) -> None:
    """`serve --workers 2` on `archive`'s config fails at once, saying why."""
    proc = subprocess.run(
        [*CLI, "--config", str(archive.config), "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert proc.returncode != 0
    assert "cannot listen on" in proc.stderr


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_port_another_node_shares_is_a_clear_error(node, tmp_path):
    """A second `serve --workers` on the port of a running one (same user, SO_REUSEPORT on
    both) must not split the first node's associations with it."""
    other = Archive(tmp_path / "other", port=node.port)
    other.root.mkdir()
    other.init()
    assert_cannot_listen(other)
