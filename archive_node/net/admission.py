"""Who gets a connection and who an association slot: connections still without their
A-ASSOCIATE-RQ bounded apart from associations (PS3.8 9.1.5), and the node's, each address's
and each AE's limits on associations at once (rejected as local-limit-exceeded, PS3.8 9.3.4)."""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.transport import ThreadedAssociationServer

from ..rules.access import Peer
from .patches.limits import abort_pdu, send_without_waiting
from .tls import HandshakeFailed, TlsCredentials, handshake

log = logging.getLogger(__name__)


class PendingConnections:
    """The node's connections that have not completed an A-ASSOCIATE-RQ yet, oldest first.

    At most `limit`: a connection past it makes the oldest one go (it has had the longest to
    send its request: a legitimate requestor sends it within milliseconds of connecting), so
    that silent or trickling connections can delay, but never lock out, a registered AE.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._sockets: OrderedDict[socket.socket, float] = OrderedDict()

    def add(self, sock: socket.socket) -> None:
        """Count a new connection, closing the oldest when past the limit."""
        with self._lock:
            self._sockets[sock] = time.monotonic()
            evicted = []
            while len(self._sockets) > self.limit:
                evicted.append(self._sockets.popitem(last=False)[0])
        for old in evicted:
            log.warning(
                "more than %d connections without an A-ASSOCIATE-RQ: closed the oldest, from %s",
                self.limit,
                _peer_address(old),
            )
            close_with_abort(old)

    def end_handshakes(self) -> None:
        """End the TLS connections among them (the node stops): one still in its handshake
        has no association that stop() could end."""
        with self._lock:
            secure = [sock for sock in self._sockets if isinstance(sock, ssl.SSLSocket)]
        for sock in secure:
            close_with_abort(sock)

    def settle(self, sock: socket.socket | None) -> None:
        """The connection sent its request, or closed: it no longer counts."""
        if sock is None:
            return
        with self._lock:
            self._sockets.pop(sock, None)


def close_with_abort(sock: socket.socket) -> None:
    """Tell a peer the connection ends (A-ABORT, PS3.8 9.3.8) and end it; the association's
    own thread notices the connection closed. Over TLS the connection just ends: its TLS
    state belongs to the thread handshaking or reading on it, which must be the only one to
    use it (OpenSSL's objects are not thread-safe)."""
    if not isinstance(sock, ssl.SSLSocket):
        send_without_waiting(sock, abort_pdu())
    with contextlib.suppress(OSError, ValueError):
        # socket.socket's own shutdown: SSLSocket's would drop its TLS state under the thread
        # that is reading (or handshaking) on it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _peer_address(sock: socket.socket) -> str:
    try:
        return str(sock.getpeername()[0])
    except (OSError, ValueError, IndexError):
        return "?"


@dataclass(frozen=True)
class SlotLimits:
    """Associations at once: in all, per peer address (0: no limit of its own)."""

    total: int
    per_address: int


class AssociationSlots:
    """The associations holding a slot: those whose A-ASSOCIATE-RQ was admitted, until their
    connection ends."""

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self._lock = threading.Lock()
        self._held: dict[Association, tuple[str, str]] = {}  # -> (address, AE title)

    def take(self, assoc: Association, address: str, peer: Peer) -> str | None:
        """Give `assoc` a slot, or say why there is none."""
        with self._lock:
            for ended in [a for a in self._held if not a.is_alive() and a is not assoc]:
                del self._held[ended]
            held = list(self._held.values())
            if len(held) >= self.limits.total:
                return f"{len(held)} associations at once, node.max_associations"
            per_address = self.limits.per_address
            if per_address and sum(a == address for a, _ in held) >= per_address:
                return (
                    f"{per_address} associations at once from {address}, "
                    "node.max_associations_per_address"
                )
            per_ae = peer.max_associations
            if per_ae and sum(t == peer.ae_title for _, t in held) >= per_ae:
                return f"{per_ae} associations at once for this AE, its --max-associations"
            self._held[assoc] = (address, peer.ae_title)
            return None

    def give_back(self, assoc: Association) -> None:
        with self._lock:
            self._held.pop(assoc, None)


class Admission:
    """The node's bookkeeping of connections and slots, fed by its event handlers."""

    def __init__(self, pending_limit: int, slots: SlotLimits) -> None:
        self.pending = PendingConnections(pending_limit)
        self.slots = AssociationSlots(slots)

    def on_open(self, event: Event) -> None:
        """Remember the connection's socket: it is gone from the association once closed."""
        transport = event.assoc.dul.socket
        event.assoc._archive_socket = getattr(transport, "socket", None)  # type: ignore[attr-defined]

    def requested(self, assoc: Association) -> None:
        """The A-ASSOCIATE-RQ came: the connection is no longer pending."""
        self.pending.settle(getattr(assoc, "_archive_socket", None))

    def on_end(self, event: Event) -> None:
        """Closed, aborted or released: the connection and its slot are free."""
        self.pending.settle(getattr(event.assoc, "_archive_socket", None))
        self.slots.give_back(event.assoc)


@dataclass(frozen=True)
class TlsPort:
    """What the TLS port's server needs: the node's contexts (re-read on SIGHUP) and how long
    a handshake may take."""

    credentials: TlsCredentials
    handshake_timeout: float


GC_TURNS = 60  # turns of the accepting loop between collections, as pynetdicom's
YOUNG_GENERATIONS = 1  # gc.collect(1): generations 0 and 1
FULL_COLLECTION_EVERY = 20  # of those: the whole heap every 20th (once a minute at 0.05 s)


class NodeServer(ThreadedAssociationServer):
    """pynetdicom's association server with the node's listen backlog, a bound on connections
    still without an A-ASSOCIATE-RQ, and, for `serve --workers N`, a port other processes bind
    too: the kernel spreads new connections over them (SO_REUSEPORT, Linux 3.9+).

    On the TLS port (`tls`), the handshake runs on the connection's own thread with its own
    deadline, not in the accepting loop as pynetdicom's does: a peer that stalls it holds only
    its own socket (and a place among the pending connections)."""

    def __init__(
        self,
        *args: Any,
        backlog: int,
        reuse_port: bool,
        pending: PendingConnections,
        tls: TlsPort | None = None,
        **kwargs: Any,
    ) -> None:
        self.request_queue_size = backlog  # read by TCPServer.__init__'s listen()
        self.reuse_port = reuse_port
        self.pending = pending
        self.tls = tls
        self._gc_turns = 0
        super().__init__(*args, **kwargs)

    def service_actions(self) -> None:
        """pynetdicom's collects all garbage, every generation, every 60 turns of the accepting
        loop: every 3 s at the node's 0.05 s poll, whether or not anything ended. With an
        index's, pydicom's and prometheus' objects in the heap one full collection holds the
        GIL for 50-90 ms, a stall of every running association (8.7% of the GIL's time in a
        C-MOVE, ~3% in small C-STOREs). Here the young generations are collected at that
        pace, and the whole heap once a minute (an ended Association's cycles may have aged
        into the oldest generation: pynetdicom's comment says they were not freed otherwise).
        A counter of its own: pynetdicom's is private."""
        self._gc_turns += 1
        if self._gc_turns % GC_TURNS:
            return
        if self._gc_turns % (GC_TURNS * FULL_COLLECTION_EVERY):
            gc.collect(YOUNG_GENERATIONS)
        else:
            gc.collect()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None  # listening
        client, address = self.socket.accept()
        if self.tls is not None:  # wrapped here, the handshake comes in finish_request()
            context = self.tls.credentials.server_context
            try:
                client = context.wrap_socket(
                    client, server_side=True, do_handshake_on_connect=False
                )
            except OSError:
                client.close()
                raise
        return client, address

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None and isinstance(request, ssl.SSLSocket):
            try:
                handshake(request, self.tls.handshake_timeout)
            except HandshakeFailed as exc:
                log.warning(
                    "TLS connection from %s closed: handshake failed: %s",
                    client_address[0] if client_address else "?",
                    exc.args[0],
                )
                self.pending.settle(request)
                with contextlib.suppress(OSError):
                    request.close()
                return
        super().finish_request(request, client_address)

    def server_close(self) -> None:
        # pynetdicom's shutdown() calls this once no connection is accepted any more, and it
        # joins the connections' threads: those still in their TLS handshake end now, not
        # after tls.handshake_timeout
        if self.tls is not None:
            self.pending.end_handshakes()
        super().server_close()

    def server_bind(self) -> None:
        if self.reuse_port:
            assert self.socket is not None  # made by TCPServer.__init__, which binds it
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def process_request(self, request: Any, client_address: Any) -> None:
        if isinstance(request, socket.socket):
            self.pending.add(request)
        super().process_request(request, client_address)
