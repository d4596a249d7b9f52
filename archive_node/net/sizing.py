"""How many worker processes `node.workers = 0` means: one per core the node may use."""

from __future__ import annotations

import math
import os
from pathlib import Path

MAX_WORKERS = 64  # node.workers' maximum
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max <period>"


def worker_count(configured: int) -> int:
    """node.workers as a number of processes: itself, or for 0 the cores this process may
    run on (usable_cores)."""
    return configured if configured > 0 else usable_cores()


def usable_cores() -> int:
    """The cores this process may compute on: its CPU affinity (taskset, systemd's
    CPUAffinity=, a container's cpuset), no more than its cgroup's CPU quota allows (systemd's
    CPUQuota=, docker --cpus), at least 1 and at most MAX_WORKERS."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        affinity = os.cpu_count() or 1
    try:
        cpu_max = CGROUP_CPU_MAX.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        cpu_max = None
    return cores_allowed(affinity, cpu_max)


def cores_allowed(affinity: int, cpu_max: str | None) -> int:
    """The cores `affinity` CPUs give under the cgroup v2 `cpu.max` text (None: no cgroup
    limit): a quota of 1.5 CPUs rounds up to 2 processes, as each waits on I/O part of the
    time."""
    cores = affinity
    fields = (cpu_max or "").split()
    if len(fields) == 2 and fields[0] != "max":
        try:
            quota, period = int(fields[0]), int(fields[1])
        except ValueError:
            quota = period = 0
        if quota > 0 and period > 0:
            cores = min(cores, math.ceil(quota / period))
    return max(1, min(cores, MAX_WORKERS))
