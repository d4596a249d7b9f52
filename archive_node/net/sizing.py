"""How many worker processes `node.workers = 0` means: one per core the node may use."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

MAX_WORKERS = 64  # node.workers' maximum
CGROUP_ROOT = Path("/sys/fs/cgroup")  # cgroup v2; each group's cpu.max: "<quota> <period>"
PROC_CGROUP = Path("/proc/self/cgroup")  # v2's line: "0::/system.slice/archive-node.service"


def worker_count(configured: int) -> int:
    """node.workers as a number of processes: itself, or for 0 the cores this process may
    run on (usable_cores)."""
    return configured if configured > 0 else usable_cores()


def usable_cores() -> int:
    """The cores this process may compute on: its CPU affinity (taskset, systemd's
    CPUAffinity=, a container's cpuset), no more than the CPU quota of its cgroup or of one
    above it allows (systemd's CPUQuota=, docker --cpus), at least 1 and at most
    MAX_WORKERS."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    return cores_allowed(affinity, *_cpu_max_texts())


def _cpu_max_texts() -> list[str]:
    """The cpu.max of this process's cgroup and of each group above it (a quota on a slice
    holds for the services in it); none without cgroup v2."""
    try:
        lines = PROC_CGROUP.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    path = next((line[3:] for line in lines if line.startswith("0::")), "/")
    directory = (CGROUP_ROOT / path.lstrip("/")).resolve()
    texts = []
    while directory.is_relative_to(CGROUP_ROOT):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            texts.append((directory / "cpu.max").read_text(encoding="ascii"))
        if directory == CGROUP_ROOT:
            break
        directory = directory.parent
    return texts


def cores_allowed(affinity: int, *cpu_max: str | None) -> int:
    """The cores `affinity` CPUs give under the tightest of the cgroup v2 `cpu.max` texts
    (none, or None: no limit): a quota of 1.5 CPUs rounds up to 2 processes, as each waits on
    I/O part of the time."""
    cores = affinity
    for text in cpu_max:
        fields = (text or "").split()
        if len(fields) != 2 or fields[0] == "max":
            continue
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            continue
        if quota > 0 and period > 0:
            cores = min(cores, math.ceil(quota / period))
    return max(1, min(cores, MAX_WORKERS))
