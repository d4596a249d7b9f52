"""`archive-node serve` as a real process, for tests: config, CLI registration, start/stop.

An Archive is one node's TOML config, store and index under a directory (SQLite by default,
or any index URL), its CLI run as subprocesses, and its `serve` process once started, with
the log on a file. Readiness is a C-ECHO that answers, polled against a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from archive_node.errors import AssociationFailed
from archive_node.net.client import SendResult, echo, send_files
from tests.helpers.environment import FAST_PATHS
from tests.helpers.ports import LOOPBACK, free_port

HOST = LOOPBACK
CALLING = "UNN_US"
CALLED = "ARCHIVE"
START_DEADLINE = 30.0
STOP_DEADLINE = 15.0


def child_env() -> dict[str, str]:
    """The environment without settings that would point the child at another node."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_NODE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def file_sha256(path: Path) -> str:
    """SHA-256 of a whole file, read in chunks (what the index records for a kept file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def incoming_files(store: Path) -> list[Path]:
    """Files anywhere under a store's incoming area (every node writes in its own directory)."""
    area = store / ".incoming"
    return sorted(p for p in area.rglob("*") if p.is_file()) if area.exists() else []


def dataset_digest(path: Path) -> str:
    """SHA-256 of a Part 10 file's bytes after its File Meta Information, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        head = fh.read(144)
        assert head[128:132] == b"DICM"
        group_length = struct.unpack("<I", head[140:144])[0]
        fh.seek(144 + group_length)
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class Archive:
    """One node's config, store and index in `root`, and its `serve` process once started.

    `index_url` defaults to a SQLite file in `root`; `min_free_mb` and `fsync`
    are storage.min_free_mb and storage.fsync; `tls`, `audit`, `hl7`, `metrics` and `log_settings`
    ([log]) are those sections, if any (metrics: off unless given).
    The log of every start is appended to one file.
    """

    root: Path
    port: int = field(default_factory=free_port)
    index_url: str = ""
    min_free_mb: int = 0
    fsync: bool = True
    tls: dict[str, object] | None = None
    audit: dict[str, object] | None = None
    hl7: dict[str, object] | None = None
    metrics: dict[str, object] | None = None
    log_settings: dict[str, object] | None = None  # [log]
    proc: subprocess.Popen | None = None
    _log_fh: IO[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "archive-node.toml"

    @property
    def storage(self) -> Path:
        return self.root / "storage"

    @property
    def incoming(self) -> Path:
        """Where this node writes partial transfers: its own directory (host-port) below
        the store's .incoming."""
        return self.storage / ".incoming" / f"{socket.gethostname()}-{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / "serve.log"

    @property
    def url(self) -> str:
        return self.index_url or f"sqlite:///{self.root}/index.sqlite3"

    def write_config(self) -> None:
        self.config.write_text(
            "[node]\n"
            f'bind = "{HOST}"\n'
            f"port = {self.port}\n"
            "shutdown_grace = 30.0\n"
            "workers = 1\n"  # one process unless a test starts more (--workers)
            f"fast_paths = {'true' if FAST_PATHS else 'false'}\n"
            "[storage]\n"
            f'path = "{self.storage}"\n'
            f"min_free_mb = {self.min_free_mb}\n"
            f"fsync = {'true' if self.fsync else 'false'}\n"
            "[index]\n"
            f'url = "{self.url}"\n'
            + (
                "[tls]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.tls.items())
                if self.tls
                else ""
            )
            + (
                "[audit]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.audit.items())
                if self.audit
                else ""
            )
            + (
                "[hl7]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.hl7.items())
                if self.hl7
                else ""
            )
            + (
                "[log]\n"
                + "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.log_settings.items())
                if self.log_settings
                else ""
            )
            + "[metrics]\n"
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in (self.metrics or {"port": 0}).items())
        )

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "archive_node", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
            env=child_env(),
            check=False,
        )
        assert proc.returncode == 0, f"archive-node {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc

    def init(self) -> None:
        """Write the config, create the index schema, register UNN and CALLING (echo, store)."""
        self.write_config()
        assert "created index schema" in self.cli("init").stdout
        self.cli("hospital", "add", "UNN", "--name", "University Hospital of North Norway")
        self.cli(
            "ae", "add", CALLING, "--hospital", "UNN", "--host", HOST, "--allow", "echo,store"
        )

    def start(self, *serve_args: str) -> subprocess.Popen:
        """Start `serve` (with `serve_args`, e.g. --workers 2) and return once a C-ECHO
        answers Success."""
        if self._log_fh is not None:
            self._log_fh.close()
        self._log_fh = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "archive_node",
                "--config",
                str(self.config),
                "serve",
                *serve_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log_fh,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=child_env(),
        )
        deadline = time.monotonic() + START_DEADLINE
        last_error = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if echo(HOST, self.port, calling=CALLING, called=CALLED, timeout=5) == 0:
                    return self.proc
            except AssociationFailed as exc:
                last_error = str(exc)
            time.sleep(0.05)
        pytest.fail(
            f"serve did not answer C-ECHO in {START_DEADLINE} s ({last_error}):\n{self.log()}"
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, *, after: int = 0, deadline: float = 30.0) -> None:
        """Poll the log until `pattern` occurs at or after character offset `after`."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if re.search(pattern, self.log()[after:]):
                return
            assert self.proc is not None and self.proc.poll() is None, self.log()
            time.sleep(0.01)
        pytest.fail(f"{pattern!r} not logged within {deadline} s:\n{self.log()}")

    def terminate(self) -> int:
        """SIGTERM and wait for the exit code (fails the test if it does not exit in time)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve still running {STOP_DEADLINE} s after SIGTERM:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL, as a power cut would end it, and reap the process."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=STOP_DEADLINE)
        assert self.proc.returncode == -signal.SIGKILL

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def stored(self, sop_uid: str) -> Path:
        found = [p for p in self.storage.rglob(f"{sop_uid}*.dcm") if ".incoming" not in p.parts]
        assert len(found) == 1, found
        return found[0]


def send(node: Archive, path: Path) -> SendResult:
    """C-STORE one file with the bundled client, as CALLING."""
    results = send_files([path], HOST, node.port, calling=CALLING, called=CALLED, timeout=120)
    assert len(results) == 1, results
    return results[0]
