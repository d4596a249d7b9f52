"""The node's HTTP endpoint for operations: /metrics for Prometheus, /healthz (the process
answers) and /readyz (it can take work: index reachable, store writable, free space above the
reserve; 503 with the reason otherwise) for a load balancer in front of several nodes.

It serves GET only, a few connections at once (more are answered 503 at once), each closed
after REQUEST_DEADLINE seconds whatever it sends (a client that trickles its request cannot
hold a slot), and never says anything of the archive's content: it has no authentication, and
metrics.bind keeps it on the loopback by default. Readiness is checked by one request at a
time and kept for READY_MAX_AGE seconds, so probes cannot pile up on a slow index.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..errors import ConfigError
from ..metrics import CONTENT_TYPE, Exposition

log = logging.getLogger(__name__)

MAX_REQUESTS = 16  # connections served at once; a scraper and a few load balancer probes
REQUEST_TIMEOUT = 5.0  # seconds any one read of the request may take
REQUEST_DEADLINE = 10.0  # seconds a connection may last in all
READY_MAX_AGE = 1.0  # seconds a readiness answer is given again without asking anew


def readiness_problem(
    index_check: Callable[[], None], store_root: str, room_problem: Callable[[], str | None]
) -> str | None:
    """Why the node cannot take work now, or None: the index does not answer, the store cannot
    be written, or its free space is below the reserve."""
    try:
        index_check()
    except Exception as exc:  # any failure of the index is a reason not to send work here
        return f"index: {' '.join(str(exc).split())[:200]}"
    try:
        with tempfile.NamedTemporaryFile(dir=store_root, prefix=".ready-", delete=True) as probe:
            probe.write(b"ready")
            probe.flush()
    except OSError as exc:
        return f"store: cannot write in {store_root}: {exc.strerror}"
    problem = room_problem()
    if problem:
        return f"store: {problem}"
    return None


class _Handler(BaseHTTPRequestHandler):
    server: HealthServer
    protocol_version = "HTTP/1.0"
    timeout = REQUEST_TIMEOUT

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, self.server.exposition.render(), CONTENT_TYPE)
        elif path == "/healthz":
            self._answer(200, b"ok\n")
        elif path == "/readyz":
            problem = self.server.ready()
            if problem is None:
                self._answer(200, b"ready\n")
            else:
                self._answer(503, f"not ready: {problem}\n".encode())
        else:
            self._answer(404, b"not found: /metrics, /healthz or /readyz\n")

    def do_HEAD(self) -> None:
        self._answer(405, b"")

    do_POST = do_PUT = do_DELETE = do_HEAD

    def _answer(
        self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("metrics endpoint: " + format, *args)


class HealthServer(ThreadingHTTPServer):
    """The endpoint: a thread per request, at most MAX_REQUESTS at once."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        exposition: Exposition,
        ready: Callable[[], str | None],
    ) -> None:
        self.address_family = _family(address[0])
        self.exposition = exposition
        self.ready = ready
        self._slots = threading.BoundedSemaphore(MAX_REQUESTS)
        super().__init__(address, _Handler)

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        """A request that failed (most often a client gone or cut at its deadline): one log
        line, not socketserver's traceback on stderr, which a client could cause at will."""
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            log.debug("metrics endpoint: request from %s ended: %s", client_address[0], error)
        else:
            log.warning(
                "metrics endpoint: request from %s failed: %s: %s",
                client_address[0],
                type(error).__name__,
                error,
            )

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        deadline = threading.Timer(REQUEST_DEADLINE, _cut, (request,))
        deadline.daemon = True
        deadline.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            deadline.cancel()
            self._slots.release()


class HealthEndpoint:
    """Runs a HealthServer on its own thread: start() binds (ConfigError naming the keys when
    it cannot), stop() closes."""

    def __init__(
        self, bind: str, port: int, exposition: Exposition, ready: Callable[[], str | None]
    ) -> None:
        self.bind, self.port = bind, port
        self.exposition, self.ready = exposition, Readiness(ready)
        self._server: HealthServer | None = None

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None  # started
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        try:
            self._server = HealthServer((self.bind, self.port), self.exposition, self.ready)
        except OSError as exc:
            raise ConfigError(
                f"metrics.bind/metrics.port: cannot listen on {self.bind}:{self.port}: "
                f"{exc.strerror}"
            ) from None
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="archive-node-metrics",
            daemon=True,
        ).start()
        log.info("metrics and health checks on http://%s:%d/", *self.address)

    def forget(self) -> None:
        """In a process forked from the one serving: close this copy of the listening socket
        (the serving thread was not copied; the parent's socket serves on)."""
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.socket.close()
            self._server = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _cut(sock: socket.socket) -> None:
    """End a connection past its deadline: its thread's next read or write fails."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Readiness:
    """`check` asked by one caller at a time, its answer kept for READY_MAX_AGE seconds: probes
    that come while it runs wait for it and take its answer."""

    def __init__(self, check: Callable[[], str | None]) -> None:
        self.check = check
        self._lock = threading.Lock()
        self._answer: str | None = None
        self._asked = float("-inf")

    def __call__(self) -> str | None:
        with self._lock:
            if time.monotonic() - self._asked >= READY_MAX_AGE:
                self._answer = self.check()
                self._asked = time.monotonic()
            return self._answer


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def multiprocess_directory() -> str:
    """A new, private directory for the workers' metric files (removed by the caller)."""
    return tempfile.mkdtemp(prefix="archive-node-metrics-")
