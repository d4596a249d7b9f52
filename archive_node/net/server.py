"""Build the node's pynetdicom AE (contexts, timeouts, handlers) and run it until SIGTERM."""

from __future__ import annotations

import functools
import logging
import shutil
import signal
import socket
import tempfile
import threading
import time
from typing import Any

from pydicom import uid as uids
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]  # set in globals() at import
    _STORAGE_CLASSES,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from .. import logs
from ..auditing import DailyPrune
from ..config import Config
from ..correcting import Lifecycle
from ..dicom import instance_header
from ..dicom.association_rejection import REASONS
from ..errors import ConfigError
from ..metrics import Exposition, Metrics, NodeState
from ..rules.access import Peer
from ..rules.commitment import STORAGE_COMMITMENT_CLASS
from ..rules.query import FIND_SOP_CLASSES, GET_SOP_CLASSES, MOVE_SOP_CLASSES
from ..rules.worklist import WORKLIST_FIND
from ..service import ArchiveService
from . import patches
from .admission import NodeServer, TlsPort
from .association import peer_label, release_waiting_acceptor
from .audit_export import exporter_for, sender_for
from .commitment_scp import CommitmentSCP
from .health import HealthEndpoint, readiness_problem
from .hl7_listener import Hl7Listener
from .observed import observed
from .patches.limits import Limits, serve_limits
from .patches.receiving import serve_receiving
from .patches.service_classes import serve_commitment, serve_retrieve
from .retrieve_scp import RetrieveSCP
from .scp_handlers import Handlers
from .tls import TlsCredentials
from .worklist_scp import MPPS_CLASS

log = logging.getLogger(__name__)

# pynetdicom accepts the first of *our* syntaxes that the requestor proposes in a context.
# Native first, then lossless compression, then lossy: an SCU that offers both a lossy and an
# uncompressed syntax for one image must not be asked to compress it lossily for us.
_PREFERRED = [
    uids.ExplicitVRLittleEndian,
    uids.ImplicitVRLittleEndian,
    uids.DeflatedExplicitVRLittleEndian,
    uids.ExplicitVRBigEndian,
    uids.JPEGLossless,
    uids.JPEGLosslessSV1,
    uids.JPEGLSLossless,
    uids.JPEG2000Lossless,
    uids.HTJ2KLossless,
    uids.HTJ2KLosslessRPCL,
    uids.RLELossless,
]
# Not taken: the JPIP Referenced syntaxes (the pixel data is only a URL to another server,
# PS3.5 8.4) and SMPTE ST 2110 (real-time streams, PS3.5 A.4.x): no object an archive can keep.
_REFUSED = {
    "1.2.840.10008.1.2.4.94",  # JPIP Referenced
    "1.2.840.10008.1.2.4.95",  # JPIP Referenced Deflate
    uids.JPIPHTJ2KReferenced,
    uids.JPIPHTJ2KReferencedDeflate,
    uids.SMPTEST211020UncompressedProgressiveActiveVideo,
    uids.SMPTEST211020UncompressedInterlacedActiveVideo,
    uids.SMPTEST211030PCMDigitalAudio,
}
ACCEPTED_TRANSFER_SYNTAXES = _PREFERRED + [
    ts for ts in ALL_TRANSFER_SYNTAXES if ts not in _PREFERRED and ts not in _REFUSED
]
QUERY_TRANSFER_SYNTAXES = [
    uids.ExplicitVRLittleEndian,
    uids.ImplicitVRLittleEndian,
    uids.DeflatedExplicitVRLittleEndian,
    uids.ExplicitVRBigEndian,
]
# Implicit VR first for C-MOVE and C-GET: a Failed SOP Instance UID List of more than ~1,000
# UIDs exceeds what an explicit VR UI element can hold (64 KiB, PS3.5 7.1.2).
RETRIEVE_TRANSFER_SYNTAXES = [
    uids.ImplicitVRLittleEndian,
    uids.ExplicitVRLittleEndian,
    uids.DeflatedExplicitVRLittleEndian,
    uids.ExplicitVRBigEndian,
]
STORAGE_SOP_CLASSES = sorted(set(_STORAGE_CLASSES.values()))


def build_ae(config: Config) -> AE:
    """An AE that accepts Verification, every storage SOP class pynetdicom knows (in either
    role: a C-GET SCU proposes the SCP role for itself), the Patient Root and Study Root
    FIND, MOVE and GET models, Storage Commitment Push Model, the Modality Worklist and MPPS;
    with the node's patches (patches/). Raises PatchError when the installed pynetdicom is
    not what they were taken from."""
    node = config.node
    ae = AE(ae_title=node.ae_title)
    patches.install_for(
        ae, fast_paths=node.fast_paths, untested_pynetdicom=node.untested_pynetdicom
    )
    # The node counts its associations itself (admission.py), without the connections that
    # have not sent an A-ASSOCIATE-RQ yet: pynetdicom's own count, which includes them, must
    # never be the one that rejects.
    ae.maximum_associations = node.max_associations + node.max_pending_connections + 1
    ae.maximum_pdu_size = node.max_pdu
    ae.acse_timeout = node.acse_timeout
    ae.connection_timeout = node.connect_timeout  # outgoing: C-MOVE sub-associations
    ae.dimse_timeout = node.dimse_timeout
    ae.network_timeout = node.network_timeout
    ae.add_supported_context(
        Verification, [uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian]
    )
    for sop_class in STORAGE_SOP_CLASSES:
        ae.add_supported_context(
            sop_class, ACCEPTED_TRANSFER_SYNTAXES, scu_role=True, scp_role=True
        )
    for sop_class in FIND_SOP_CLASSES:
        ae.add_supported_context(sop_class, QUERY_TRANSFER_SYNTAXES)
    for sop_class in (*MOVE_SOP_CLASSES, *GET_SOP_CLASSES):
        ae.add_supported_context(sop_class, RETRIEVE_TRANSFER_SYNTAXES)
    ae.add_supported_context(STORAGE_COMMITMENT_CLASS, QUERY_TRANSFER_SYNTAXES)
    ae.add_supported_context(WORKLIST_FIND, QUERY_TRANSFER_SYNTAXES)
    ae.add_supported_context(MPPS_CLASS, QUERY_TRANSFER_SYNTAXES)
    return ae


class ArchiveServer:
    """The running node: start() listens without blocking, stop() drains and closes."""

    def __init__(self, service: ArchiveService, *, worker: int | None = None) -> None:
        self.service = service
        self.worker = worker  # its number under `serve --workers N`, else None
        self.ae = build_ae(service.config)
        # the received header read without pydicom is a speed path too: false reads it all
        # through pydicom (instance_header.USE_PLAIN_VALUES, a test compares the two)
        instance_header.USE_PLAIN_VALUES = service.config.node.fast_paths is not False
        self.handlers = Handlers(service)
        # a worker's metrics go to the supervisor's files (supervisor.py), which it serves
        self.metrics = Metrics(registered=worker is None)
        service.index.session.on_error = self.metrics.index_error
        self.handlers.on_decided = self._count_association
        self.health: HealthEndpoint | None = None
        # the node's certificate, key and CAs: read now (a bad file stops the start with one
        # line), again on SIGHUP
        self.tls = TlsCredentials(service.config.tls)
        retrieve = RetrieveSCP(service, self.handlers.peer_of, self.tls, self.handlers.actor_of)
        retrieve.on_done = self._count_retrieve
        serve_retrieve(self.ae, retrieve)
        serve_receiving(
            self.ae, provenance_of=self.handlers.provenance_of, room_problem=service.room_problem
        )
        serve_limits(
            self.ae,
            Limits(
                max_identifier_bytes=service.config.query.max_identifier_bytes,
                describe=peer_label,
            ),
        )
        self.commitment = CommitmentSCP(
            service, self.ae, self.handlers.peer_of, self.tls, self.handlers.actor_of
        )
        serve_commitment(self.ae, self.commitment)
        self.upkeep = DailyPrune(service.audit, service.config.audit.retain_days)
        self.lifecycle = Lifecycle(service.corrections)
        # one process of the node takes HL7 messages
        self.hl7 = Hl7Listener(service.orders, service.config.hl7) if worker in (None, 1) else None
        # to audit.repository, if any: one process of the node sends the node's chain
        self.exporter = exporter_for(service) if worker in (None, 1) else None
        self._plain: ThreadedAssociationServer | None = None
        self._secure: ThreadedAssociationServer | None = None
        self._stopping = threading.Event()
        self._reload = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """The plain DICOM port's (host, port)."""
        assert self._plain is not None  # listening (start()), with a plain port
        host, port = self._plain.server_address[:2]
        return host, port

    @property
    def tls_address(self) -> tuple[str, int]:
        """The TLS port's (host, port)."""
        assert self._secure is not None  # listening (start()), with a TLS port
        host, port = self._secure.server_address[:2]
        return host, port

    def _listeners(self) -> list[ThreadedAssociationServer]:
        return [s for s in (self._plain, self._secure) if s is not None]

    def start(
        self,
        bind: str | None = None,
        port: int | None = None,
        *,
        tls_port: int | None = None,
        reuse_port: bool = False,
        sweep: bool = True,
        hl7_port: int | None = None,
        metrics_port: int | None = None,
    ) -> tuple[str, int]:
        """Prepare the store and index, then listen; returns the first bound (host, port): the
        plain port's, else the TLS port's. `port`, `tls_port`, `hl7_port` and `metrics_port`
        override node.port, tls.port, hl7.port and metrics.port (0: any free port); left None,
        a setting of 0 turns that port off (a worker never serves metrics: its supervisor
        does).
        `reuse_port`: share the ports with other processes (supervisor.py), which swept the
        node's partial transfers before they started (`sweep` False). Raises ConfigError."""
        node = self.service.config.node
        self.service.index.check_schema()
        host = bind if bind is not None else node.bind
        plain = port if port is not None else (node.port or None)
        secure = tls_port if tls_port is not None else (self.service.config.tls.port or None)
        if plain is None and secure is None:
            raise ConfigError("node.port and tls.port are both 0: the node has no port to serve")
        if secure is not None:
            self.tls.server_context  # noqa: B018  # raises ConfigError when there is none
        handlers = observed(
            [*self.handlers.bindings(), (evt.EVT_N_ACTION, self.commitment.on_n_action)],
            self.metrics,
        )
        hl7 = hl7_port if hl7_port is not None else (self.service.config.hl7.port or None)
        metrics = (
            metrics_port
            if metrics_port is not None
            else (self.service.config.metrics.port or None)
        )
        if metrics is not None and self.worker is None:
            self.health = HealthEndpoint(
                self.service.config.metrics.bind,
                metrics,
                Exposition(node_state(self.service), self.metrics, None),
                self.ready,
            )
        try:
            if plain is not None:
                self._plain = self._listen((host, plain), handlers, reuse_port, None)
            if secure is not None:
                tls = TlsPort(self.tls, self.service.config.tls.handshake_timeout)
                self._secure = self._listen((host, secure), handlers, reuse_port, tls)
            if hl7 is not None and self.hl7 is not None:
                self.hl7.start(port=hl7)
            if self.health is not None:
                self.health.start()
        except ConfigError:
            for server in self._listeners():
                server.server_close()
            self._plain = self._secure = None
            if self.hl7 is not None:
                self.hl7.stop()
            raise
        first = self._listeners()[0].server_address[:2]
        logs.add_context_source(self._log_context)
        storage = self.service.storage
        storage.use_node_directory(node_name(first[1]))
        if sweep:
            removed = storage.sweep_incoming()
            if removed:
                log.warning("removed %d partial file(s) of interrupted transfers", removed)
            self.service.audit.application(True, {"ports": [p for p in (plain, secure) if p]})
        else:
            storage.create()
            self.service.audit.seal_orphans()  # what a worker that died before this one counted
        # pynetdicom writes each incoming dataset to a NamedTemporaryFile: put it in the store's
        # filesystem so keeping it is a link, not a copy.
        tempfile.tempdir = str(storage.incoming)
        # Storage Commitment reports this node (host:port, and worker) was delivering when it
        # stopped are due again before the first association comes in.
        claimant = f"{socket.gethostname()}:{first[1]}"
        if self.worker is not None:
            claimant += f"/{self.worker}"
        self.commitment.start(claimant)
        if self.worker in (None, 1):  # one process of the node keeps the trail's upkeep
            self.upkeep.start()
            self.lifecycle.start()  # deletes what is due, and journals what the index holds
            if self.exporter is not None:
                self.exporter.start()
                self.service.audit.on_recorded = self.exporter.wake
        for listener, name in ((self._plain, "acceptor"), (self._secure, "tls-acceptor")):
            if listener is None:
                continue
            # As AE.start_server(block=False), but polling for shutdown every 50 ms, not 500.
            threading.Thread(
                target=listener.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"archive-node-{name}",
                daemon=True,
            ).start()
            self.ae._servers.append(listener)  # so AE.shutdown() stops it too
        ports = []
        if self._plain is not None:
            ports.append(f"{host}:{self.address[1]}")
        if self._secure is not None:
            ports.append(f"{host}:{self.tls_address[1]} (TLS)")
        log.info(
            "%s listening on %s%s, index %s, store %s",
            node.ae_title,
            " and ".join(ports),
            f" (worker {self.worker})" if self.worker is not None else "",
            _safe_url(self.service.index.url),
            self.service.storage.root,
        )
        host, bound = first
        return host, bound

    def _count_association(
        self, accepted: bool, peer: Peer | None, reject: tuple[int, int, int] | None
    ) -> None:
        reason = ""
        if reject is not None:  # e.g. permanent-calling-AE-title-not-recognized (PS3.8 9-21)
            result, source, code = reject
            words = REASONS.get(source, {}).get(code, f"reason {code}").replace(" ", "-")
            reason = f"{'permanent' if result == 1 else 'transient'}-{words}"
        self.metrics.association(
            accepted, peer.ae_title if peer else "", peer.hospital if peer else "", reason
        )

    def _count_retrieve(
        self, service: str, code: int, counts: tuple[int, int, int], seconds: float
    ) -> None:
        self.metrics.answered(service, code, seconds)
        self.metrics.suboperations_done(service, *counts)

    def _log_context(self, thread: threading.Thread) -> dict[str, str] | None:
        """The calling AE, hospital and address of this node's association running `thread`
        (logs.py's JSON records carry them)."""
        if not isinstance(thread, Association) or thread.ae is not self.ae:
            return None
        peer = self.handlers.peer_of(thread)
        found = {"ae": peer.ae_title, "hospital": peer.hospital} if peer is not None else {}
        found["peer"] = str(thread.requestor.address or "")
        return found

    def ready(self) -> str | None:
        """Why this node should not be sent work now (/readyz), or None."""
        if not self._listeners():
            return "stopping: no new associations"
        return readiness_problem(
            self.service.index.check_schema,
            str(self.service.storage.incoming),
            self.service.ready_problem,
        )

    def _listen(
        self,
        address: tuple[str, int],
        handlers: list[Any],
        reuse_port: bool,
        tls: TlsPort | None,
    ) -> ThreadedAssociationServer:
        server_class = functools.partial(
            NodeServer,
            backlog=self.service.config.node.listen_backlog,
            reuse_port=reuse_port,
            pending=self.handlers.admission.pending,
            tls=tls,
        )
        try:
            return self.ae.make_server(
                address,
                evt_handlers=handlers,
                server_class=server_class,  # type: ignore[arg-type]  # makes a NodeServer
            )
        except OSError as exc:
            raise cannot_listen(address, exc, tls=tls is not None) from None

    def reload_tls(self) -> bool:
        """Read the TLS certificate, key and CAs again (SIGHUP): new associations use them,
        open ones go on; the audit export's too, from its next send. A file that cannot be
        used is logged and the old ones kept."""
        if self.exporter is not None:
            try:
                self.exporter.replace_sender(sender_for(self.service.config.audit))
                log.info("SIGHUP: the audit repository's TLS files re-read")
            except ConfigError as exc:
                log.error("SIGHUP: audit export's TLS files not re-read, the old kept: %s", exc)
        if not self.service.config.tls.configured:
            log.info("SIGHUP: no TLS configured, nothing to re-read")
            return False
        try:
            self.tls.reload()
        except ConfigError as exc:
            log.error("SIGHUP: TLS not re-read, the certificate in use is kept: %s", exc)
            return False
        log.info("SIGHUP: TLS certificate, key and CAs re-read: new associations use them")
        return True

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, give running associations `grace` seconds, then abort the rest."""
        if not self._listeners():
            return
        grace = self.service.config.node.shutdown_grace if grace is None else grace
        for server in self._listeners():
            server.shutdown()
        self._plain = self._secure = None
        # Connections that have not asked for an association yet hold nothing worth waiting
        # for: their DUL ends now, and with it their wait for an A-ASSOCIATE-RQ.
        for assoc in self._active():
            if not assoc.is_established and assoc.requestor.primitive is None:
                assoc.dul.kill_dul()
                release_waiting_acceptor(assoc)
        deadline = time.monotonic() + grace
        while self._active() and time.monotonic() < deadline:
            time.sleep(0.05)
        left = self._active()
        if left:
            log.warning("aborting %d association(s) still running after %.0f s", len(left), grace)
        if self.hl7 is not None:
            self.hl7.stop()
        self.commitment.stop()
        self.upkeep.stop()
        self.lifecycle.stop()
        self.ae.shutdown()
        if self.worker is None:  # a supervisor's workers: it records the node's stop
            self.service.audit.application(False, {})
        if self.exporter is not None:
            self.exporter.stop()  # sends what is recorded until now, if it can
        if self.health is not None:
            self.health.stop()
        self.service.index.close()
        log.info("stopped")
        logs.remove_context_source(self._log_context)

    def _active(self) -> list[Association]:
        return [a for a in self.ae.active_associations if a.is_alive()]

    def serve_forever(
        self,
        bind: str | None = None,
        port: int | None = None,
        *,
        tls_port: int | None = None,
        reuse_port: bool = False,
        sweep: bool = True,
    ) -> None:
        """Run until SIGTERM or SIGINT, then stop cleanly; SIGHUP re-reads the TLS files."""
        self.start(bind, port, tls_port=tls_port, reuse_port=reuse_port, sweep=sweep)
        previous = {
            sig: signal.signal(sig, lambda *_: self._stopping.set())
            for sig in (signal.SIGTERM, signal.SIGINT)
        }
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        # a worker's SIGHUP waited, blocked, for this handler (supervisor.py)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})
        try:
            while not self._stopping.wait(0.2):
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload_tls()
            log.info("signal received: no new associations, draining")
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def node_state(service: ArchiveService) -> NodeState:
    """What /metrics asks of the node at each scrape."""
    storage = service.storage
    return NodeState(
        store_free_bytes=lambda: shutil.disk_usage(storage.root).free,
        store_reserve_bytes=service.config.storage.min_free_mb * 1024 * 1024,
        commitments_pending=service.index.commitments.pending_count,
    )


def cannot_listen(address: tuple[str, int], exc: OSError, *, tls: bool = False) -> ConfigError:
    """The error of a node that cannot bind its address (in use, not ours, not allowed)."""
    keys = "node.bind/tls.port" if tls else "node.bind/node.port"
    return ConfigError(f"{keys}: cannot listen on {address[0]}:{address[1]}: {exc.strerror}")


def node_name(port: int) -> str:
    """This node among others sharing a store: its host name and port."""
    return f"{socket.gethostname()}-{port}"


def _safe_url(url: str) -> str:
    """The index URL without its password, for the log."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}@{host}"
    return url
