"""`serve` without node.workers (its default, 0) runs one worker per core it may use: one core
is one process, two are a supervisor and two workers (real serve, CPU affinity set as taskset
or systemd's CPUAffinity= would)."""

from __future__ import annotations

import contextlib
import os
import signal

import pytest

from tests.helpers.serving_process import Archive
from tests.process.test_workers import children, wait_for_workers


@contextlib.contextmanager
def affinity(cpus: set[int]):
    """Run the block on `cpus` only: a process started in it inherits them."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@pytest.fixture
def default_node(tmp_path):
    archive = Archive(tmp_path)
    archive.init()
    text = archive.config.read_text()
    assert "workers = 1\n" in text
    archive.config.write_text(text.replace("workers = 1\n", ""))  # the default
    yield archive
    if archive.proc is not None and archive.proc.poll() is None:
        for pid in children(archive.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    archive.close()


def test_on_one_core_the_node_is_one_process(default_node):
    with affinity({min(os.sched_getaffinity(0))}):
        default_node.start()
    assert children(default_node.proc.pid) == set()  # it serves itself: no workers forked
    assert "workers serving" not in default_node.log()
    assert default_node.terminate() == 0


def test_on_two_cores_the_node_runs_two_workers(default_node):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("this machine lets the tests use one core")
    with affinity(set(cpus[:2])):
        default_node.start()
    wait_for_workers(default_node, 2)
    default_node.wait_for_log("2 workers serving")
    assert default_node.terminate() == 0


def test_workers_zero_on_the_command_line_is_the_default(default_node):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("this machine lets the tests use one core")
    text = default_node.config.read_text()
    default_node.config.write_text(text.replace("[node]\n", "[node]\nworkers = 1\n"))
    with affinity(set(cpus[:2])):
        default_node.start("--workers", "0")
    wait_for_workers(default_node, 2)
    assert default_node.terminate() == 0


def test_several_workers_say_that_a_peers_limit_holds_per_worker(default_node):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("this machine lets the tests use one core")
    default_node.cli("ae", "add", "LIMITED", "--hospital", "UNN", "--max-associations", "2")
    with affinity(set(cpus[:2])):
        default_node.start()
    wait_for_workers(default_node, 2)
    default_node.wait_for_log(r"2 workers: each counts associations apart.*\(1 AE\(s\) have one\)")
    assert default_node.terminate() == 0
