"""`serve --workers N`: N node processes sharing one port (SO_REUSEPORT), one store, one index.

One Python process computes on one core at a time, so a node that should use a machine's cores
runs several. The supervisor checks the index and sweeps the node's partial transfers once,
then forks the workers, and forks a worker again when one dies. Its one thread of its own is
the metrics endpoint (/metrics over every worker's files, /healthz, /readyz): a fork copies
only the calling thread, so the endpoint holds no index connection across a fork (each of its
checks closes what it opened, under the lock a fork takes). Each worker is a whole node
(server.py) on its own socket bound to the same address; the kernel spreads new connections
over them. SIGTERM or SIGINT is passed on to every worker, which drains as a single node
does; SIGHUP too, and each worker re-reads its TLS certificate, key and CAs.

What the workers share lives in the index (SQLite in WAL with IMMEDIATE transactions, or
PostgreSQL) and the store; node.max_associations counts per worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..errors import ConfigError
from ..metrics import Exposition, use_multiprocess
from ..service import ArchiveService
from . import patches
from .health import HealthEndpoint, multiprocess_directory, readiness_problem
from .server import ArchiveServer, cannot_listen, node_name, node_state

log = logging.getLogger(__name__)
T = TypeVar("T")

RESTART_DELAY = 1.0  # seconds before a dead worker is forked again, doubling while it keeps dying
RESTART_DELAY_MAX = 30.0
QUICK_DEATH = 10.0  # a worker that dies sooner than this after its start did not start
QUICK_DEATHS_ALLOWED = 3  # in a row, for one worker: then the node gives up
STOP_MARGIN = 15.0  # seconds beyond node.shutdown_grace before a worker is killed


@dataclass
class _Worker:
    number: int
    pid: int = 0
    started: float = 0.0
    quick_deaths: int = 0
    due: float = 0.0  # when a dead worker is forked again


class Supervisor:
    """Runs `count` workers of one node until SIGTERM or SIGINT; run() returns the exit code."""

    def __init__(self, service: ArchiveService, count: int) -> None:
        self.service = service
        self.workers = [_Worker(number) for number in range(1, count + 1)]
        self._stopping = threading.Event()  # set from signal handlers
        # held while forking, and by the endpoint while it uses the index: no connection of
        # the supervisor's is open when a worker is forked
        self._quiet = threading.Lock()
        self._health: HealthEndpoint | None = None  # the metrics endpoint, once started

    def run(
        self, bind: str | None = None, port: int | None = None, tls_port: int | None = None
    ) -> int:
        config = self.service.config
        node = config.node
        # a pynetdicom the patches were not taken from: one line, before any worker is forked
        patches.check(fast_paths=node.fast_paths, untested_pynetdicom=node.untested_pynetdicom)
        host = bind if bind is not None else node.bind
        plain = port if port is not None else (node.port or None)
        secure = tls_port if tls_port is not None else (config.tls.port or None)
        if plain is None and secure is None:
            raise ConfigError("node.port and tls.port are both 0: the node has no port to serve")
        # Held (bound, never listening) for the node's lifetime: the ports are resolved once,
        # workers forked again later bind the same ones, and a port in use fails here.
        holders: list[socket.socket] = []
        try:
            if plain is not None:
                holders.append(_bind_shared((host, plain)))
                plain = holders[-1].getsockname()[1]
            if secure is not None:
                holders.append(_bind_shared((host, secure), tls=True))
                secure = holders[-1].getsockname()[1]
            ports = Ports(host, plain, secure)
            self.service.index.check_schema()
            storage = self.service.storage
            storage.use_node_directory(node_name(ports.first))
            removed = storage.sweep_incoming()
            if removed:
                log.warning("removed %d partial file(s) of interrupted transfers", removed)
            self.service.audit.application(True, {"ports": [p for p in (plain, secure) if p]})
            self.service.index.close()  # no connection may be shared across the fork
            directory = multiprocess_directory()
            try:
                use_multiprocess(directory)  # before any worker makes a metric
                self._health = self._endpoint(directory)
                previous = {
                    sig: signal.signal(sig, lambda *_: self._stopping.set())
                    for sig in (signal.SIGTERM, signal.SIGINT)
                }
                previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, self._pass_on)
                log.info(
                    "%d workers serving %s (supervisor pid %d)",
                    len(self.workers),
                    ports.describe(),
                    os.getpid(),
                )
                try:
                    return self._supervise(ports)
                finally:
                    for sig, handler in previous.items():
                        signal.signal(sig, handler)
            finally:
                if self._health is not None:
                    self._health.stop()
                shutil.rmtree(directory, ignore_errors=True)
        finally:
            for holder in holders:
                holder.close()

    def _endpoint(self, directory: str) -> HealthEndpoint | None:
        """The metrics endpoint over every worker's files, started (None: metrics.port 0)."""
        config = self.service.config.metrics
        if not config.port:
            return None
        state = node_state(self.service)
        endpoint = HealthEndpoint(
            config.bind,
            config.port,
            Exposition(
                dataclasses.replace(
                    state, commitments_pending=self._quietly(state.commitments_pending)
                ),
                None,
                directory,
            ),
            self._quietly(self.ready),
        )
        endpoint.start()
        return endpoint

    def _quietly(self, ask: Callable[[], T]) -> Callable[[], T]:
        """`ask` run under the fork lock, its index connections closed before it returns."""

        def quietly() -> T:
            with self._quiet:
                try:
                    return ask()
                finally:
                    self.service.index.release()

        return quietly

    def ready(self) -> str | None:
        """Why the node should not be sent work now (/readyz), or None."""
        if self._stopping.is_set():
            return "stopping: no new associations"
        if not any(w.pid for w in self.workers):
            return "no worker is running"
        return readiness_problem(
            self.service.index.check_schema,
            str(self.service.storage.incoming),
            self.service.ready_problem,
        )

    def _pass_on(self, signum: int, _frame: object) -> None:
        """SIGHUP: each worker re-reads the TLS files (server.py)."""
        for worker in self.workers:
            if worker.pid:
                _signal(worker.pid, signum)

    def _supervise(self, ports: Ports) -> int:
        for worker in self.workers:
            self._fork(worker, ports)
        code = 0
        while not self._stopping.is_set():
            self._reap()
            if any(w.quick_deaths >= QUICK_DEATHS_ALLOWED for w in self.workers):
                log.error("a worker keeps failing at start-up: stopping the node")
                code = 1
                break
            now = time.monotonic()
            for worker in self.workers:
                if not worker.pid and now >= worker.due:
                    self._fork(worker, ports)
            self._stopping.wait(0.2)
        log.info("stopping %d workers", sum(1 for w in self.workers if w.pid))
        self._stop_all()
        self.service.audit.application(False, {"workers": len(self.workers)})
        self.service.index.close()
        return code

    def _fork(self, worker: _Worker, ports: Ports) -> None:
        # Signals wait until the worker has dropped the supervisor's handlers (which would only
        # set the worker's copy of _stopping): then SIGTERM ends it at once until it serves,
        # and SIGHUP stays blocked until it serves (its default would end the worker): one
        # sent meanwhile is delivered then, and re-reads files it may have read before they
        # were renewed (server.py unblocks it).
        stop_signals = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        supervisor = os.getpid()
        with self._quiet:
            pid = os.fork()
        if pid:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals)
        else:  # the worker: a whole node on the shared port, until SIGTERM
            code = 1
            try:
                if self._health is not None:  # the supervisor's: never this worker's
                    self._health.forget()
                for sig in stop_signals:  # until the server installs its own
                    signal.signal(sig, signal.SIG_IGN if sig == signal.SIGHUP else signal.SIG_DFL)
                _end_with(supervisor)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, stop_signals - {signal.SIGHUP})
                server = ArchiveServer(self.service, worker=worker.number)
                server.serve_forever(
                    ports.host,
                    ports.plain,
                    tls_port=ports.secure,
                    reuse_port=True,
                    sweep=False,
                )
                code = 0
            except ConfigError as exc:
                log.error("worker %d: %s", worker.number, exc)
            except BaseException:
                log.exception("worker %d failed", worker.number)
            finally:
                logging.shutdown()
                os._exit(code)
        worker.pid, worker.started = pid, time.monotonic()

    def _reap(self) -> None:
        """Notice workers that ended; schedule their restart."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self.workers if w.pid == pid), None)
            if worker is None:
                continue
            lived = time.monotonic() - worker.started
            worker.pid = 0
            worker.quick_deaths = worker.quick_deaths + 1 if lived < QUICK_DEATH else 0
            delay = min(RESTART_DELAY * 2 ** max(worker.quick_deaths - 1, 0), RESTART_DELAY_MAX)
            worker.due = time.monotonic() + delay
            log.error(
                "worker %d (pid %d) ended (%s) after %.0f s: starting it again in %.0f s",
                worker.number,
                pid,
                _describe(status),
                lived,
                delay,
            )

    def _stop_all(self) -> None:
        running = [w for w in self.workers if w.pid]
        for worker in running:
            _signal(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.service.config.node.shutdown_grace + STOP_MARGIN
        while running and time.monotonic() < deadline:
            for worker in list(running):
                pid, _status = os.waitpid(worker.pid, os.WNOHANG)
                if pid:
                    running.remove(worker)
                    worker.pid = 0
            time.sleep(0.05)
        for worker in running:
            log.error("worker %d (pid %d) did not stop: killed", worker.number, worker.pid)
            _signal(worker.pid, signal.SIGKILL)
            os.waitpid(worker.pid, 0)
            worker.pid = 0


@dataclass(frozen=True)
class Ports:
    """The ports the workers serve: plain DICOM, TLS, or both (None: off)."""

    host: str
    plain: int | None
    secure: int | None

    @property
    def first(self) -> int:
        port = self.plain if self.plain is not None else self.secure
        assert port is not None  # run() refuses a node without a port
        return port

    def describe(self) -> str:
        ports = [f"{self.host}:{self.plain}"] if self.plain is not None else []
        if self.secure is not None:
            ports.append(f"{self.host}:{self.secure} (TLS)")
        return " and ".join(ports)


def _bind_shared(address: tuple[str, int], *, tls: bool = False) -> socket.socket:
    """A socket bound to `address` with SO_REUSEPORT, after a bind without it has shown that
    no other process holds the port (one that shares it, another `serve --workers` of the
    same user, would otherwise get half of this node's associations)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as pynetdicom binds
        probe.bind(address)
        address = (address[0], probe.getsockname()[1])
        probe.close()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise cannot_listen(address, exc, tls=tls) from None
    finally:
        probe.close()
    return sock


def _end_with(supervisor: int) -> None:
    """SIGTERM this process when the supervisor dies (Linux prctl PR_SET_PDEATHSIG): a worker
    left behind by a killed supervisor drains and ends, it does not hold the port."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != supervisor:  # it died before the prctl
            os.kill(os.getpid(), signal.SIGTERM)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
