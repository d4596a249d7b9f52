"""node.workers = 0 (the default): one worker per core the node may use (net/sizing.py)."""

from __future__ import annotations

import os

import pytest

from archive_node.config import SETTINGS
from archive_node.net import sizing


@pytest.mark.parametrize(
    ("affinity", "cpu_max", "expected"),
    [
        (2, None, 2),  # no cgroup v2 file
        (8, "max 100000\n", 8),  # no quota
        (8, "200000 100000\n", 2),  # docker --cpus 2, CPUQuota=200%
        (8, "150000 100000\n", 2),  # 1.5 CPUs: rounded up
        (8, "50000 100000\n", 1),  # half a CPU: still one process
        (2, "800000 100000\n", 2),  # a quota above the affinity
        (1, "", 1),
        (4, "garbage\n", 4),  # unreadable: the affinity alone
        (4, "x 100000\n", 4),
        (4, "100000 0\n", 4),
        (500, None, sizing.MAX_WORKERS),
        (0, None, 1),
    ],
)
def test_cores_allowed(affinity, cpu_max, expected):
    assert sizing.cores_allowed(affinity, cpu_max) == expected


def test_a_configured_count_is_taken_as_it_is():
    assert sizing.worker_count(3) == 3
    assert sizing.worker_count(1) == 1


def test_the_tightest_quota_of_the_groups_above_holds():
    assert sizing.cores_allowed(8, "max 100000", "300000 100000", "100000 100000") == 1
    assert sizing.cores_allowed(8) == 8


def test_a_services_quota_is_found_in_its_own_cgroup(tmp_path, monkeypatch):
    """systemd's CPUQuota= is in the service's group, below the root the process sees."""
    root = tmp_path / "cgroup"
    service = root / "system.slice" / "archive-node.service"
    service.mkdir(parents=True)
    (root / "cpu.max").write_text("max 100000\n")
    (service / "cpu.max").write_text("100000 100000\n")  # CPUQuota=100%
    proc = tmp_path / "self-cgroup"
    proc.write_text("0::/system.slice/archive-node.service\n")
    monkeypatch.setattr(sizing, "CGROUP_ROOT", root.resolve())
    monkeypatch.setattr(sizing, "PROC_CGROUP", proc)
    assert sizing.usable_cores() == 1
    proc.write_text("12:cpu,cpuacct:/\n")  # cgroup v1 only: the affinity alone
    assert sizing.usable_cores() == sizing.cores_allowed(len(os.sched_getaffinity(0)))


def test_zero_is_the_cores_this_process_may_use():
    expected = sizing.cores_allowed(len(os.sched_getaffinity(0)), *sizing._cpu_max_texts())
    assert sizing.worker_count(0) == sizing.usable_cores() == expected


def test_the_default_is_one_worker_per_core():
    (workers,) = [s for s in SETTINGS if s.name == "node.workers"]
    assert workers.default == 0
    assert workers.maximum == sizing.MAX_WORKERS
