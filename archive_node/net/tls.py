"""DICOM TLS (PS3.15 B.9, the BCP 195 profile): the node's server and client contexts made from
tls.*, re-read on SIGHUP; the handshake of an accepted connection, bounded by its own deadline;
the fingerprint of the certificate a peer presented; and the check of a called peer's
certificate against the AE the node meant to call."""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import cast

from ..config import TlsConfig
from ..errors import ConfigError
from ..rules.access import Peer
from ..rules.tls import destination_refusal, fingerprint_of

log = logging.getLogger(__name__)

# PS3.15 B.9 (BCP 195, RFC 9325): TLS 1.2 with these AEAD suites, or TLS 1.3 (whose suites,
# all AEAD, are OpenSSL's defaults). The ECDSA suites are those of the Extended BCP 195 profile
# (B.11), for peers whose certificates have EC keys; DHE is offered only if DH parameters are
# loaded, which the node does not do (ECDHE is preferred by BCP 195 anyway).
BCP195_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
    )
)


def peer_fingerprint(sock: object) -> str | None:
    """The fingerprint of the certificate the peer of a TLS socket presented (verified in the
    handshake), or None when it presented none or the socket is not TLS."""
    if not isinstance(sock, ssl.SSLSocket):
        return None
    try:
        der = sock.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    return fingerprint_of(der) if der else None


def _no_password() -> bytes:
    raise ConfigError("tls.private_key: the key is encrypted; give the node an unencrypted key")


def make_context(tls: TlsConfig, *, server: bool) -> ssl.SSLContext:
    """The BCP 195 context of the node's TLS port (`server`) or of the associations it opens.

    The server asks for a client certificate and checks any it is given against
    tls.ca_certificates in the handshake; whether one was needed is decided per AE when the
    association is requested (rules/tls.py). Raises ConfigError naming the key at fault."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(BCP195_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if server:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
        context.verify_mode = ssl.CERT_OPTIONAL
    else:
        # A registered destination is called by its registered address and known by its
        # certificate (CA-signed, and the one bound to it): host names in certificates are
        # rarely right for modalities and workstations.
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
    for key in ("certificate", "private_key", "ca_certificates"):
        path = getattr(tls, key)
        if not path:
            raise ConfigError(f"tls.{key}: not set")
        if not os.path.exists(path):
            raise ConfigError(f"tls.{key}: {path}: no such file")
        if not os.access(path, os.R_OK):
            raise ConfigError(f"tls.{key}: {path}: permission denied")
    try:
        context.load_cert_chain(tls.certificate, tls.private_key, password=_no_password)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls.certificate/tls.private_key: {tls.certificate}, {tls.private_key}: not a PEM "
            f"certificate and its matching key ({exc.reason or exc})"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"tls.certificate/tls.private_key: cannot read {tls.certificate}, "
            f"{tls.private_key}: {exc.strerror or exc}"
        ) from None
    load_cas(context, tls.ca_certificates, "tls.ca_certificates")
    return context


def load_cas(context: ssl.SSLContext, path: str, key: str) -> None:
    """The CAs that verify peers, from a PEM file or an `openssl rehash` directory. Raises
    ConfigError naming the setting `key`: no such file, not PEM, or no CA in it."""
    try:
        if os.path.isdir(path):
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise ConfigError(f"{key}: {path}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{key}: {path}: not PEM CA certificates ({exc})") from None
    if not os.path.isdir(path) and not context.get_ca_certs():
        raise ConfigError(f"{key}: {path}: no CA certificate in it")


class TlsCredentials:
    """The node's TLS contexts, made from tls.* at start and again on reload() (SIGHUP): new
    connections get the new ones, open associations keep what they were set up with."""

    def __init__(self, tls: TlsConfig) -> None:
        self.config = tls
        self._lock = threading.Lock()
        self._server: ssl.SSLContext | None = None
        self._client: ssl.SSLContext | None = None
        if tls.configured:
            self.reload()

    def reload(self) -> None:
        """Read the certificate, key and CAs again. Raises ConfigError, keeping the contexts
        it had."""
        server = make_context(self.config, server=True)
        client = make_context(self.config, server=False)
        with self._lock:
            self._server, self._client = server, client

    @property
    def server_context(self) -> ssl.SSLContext:
        with self._lock:
            if self._server is None:
                raise ConfigError("tls.certificate, tls.private_key, tls.ca_certificates: not set")
            return self._server

    def client_context(self, check: Callable[[str | None], str | None]) -> OutgoingTls:
        """A context for one association the node opens: the node's certificate, the peer's
        checked against tls.ca_certificates, then by `check` (its fingerprint -> why it is
        not the AE meant, or None) before any DICOM byte is sent."""
        with self._lock:
            if self._client is None:
                raise ConfigError(
                    "the AE needs TLS (--tls required), and tls.certificate, tls.private_key "
                    "and tls.ca_certificates are not set"
                )
            base = self._client
        return OutgoingTls(base, check)


class CalledPeerRefused(ConnectionRefusedError):
    """The peer called over TLS presented a certificate that is not the AE's."""


class OutgoingTls:
    """The context of one outgoing TLS association (pynetdicom's tls_args), remembering why
    the called peer's certificate was refused, if it was."""

    def __init__(self, base: ssl.SSLContext, check: Callable[[str | None], str | None]) -> None:
        self.base = base
        self.check = check
        self.problem: str | None = None

    def wrap_socket(
        self, sock: socket.socket, server_side: bool = False, server_hostname: str | None = None
    ) -> ssl.SSLSocket:
        """What pynetdicom's AssociationSocket.connect() calls; the handshake then runs in its
        connect(), under node.connect_timeout, and the check right after it."""
        wrapped = _CheckedSocket._create(  # type: ignore[attr-defined]
            sock=sock,
            server_side=server_side,
            do_handshake_on_connect=True,
            suppress_ragged_eofs=True,
            server_hostname=server_hostname,
            context=self.base,
            session=None,
        )
        wrapped._archive_outgoing = self
        return cast(ssl.SSLSocket, wrapped)

    def verify(self, sock: ssl.SSLSocket) -> None:
        problem = self.check(peer_fingerprint(sock))
        if problem:
            self.problem = problem
            raise CalledPeerRefused(problem)


class _CheckedSocket(ssl.SSLSocket):
    """An outgoing TLS socket whose handshake ends with the check of the peer's certificate."""

    _archive_outgoing: OutgoingTls | None = None

    def do_handshake(self, block: bool = False) -> None:
        super().do_handshake(block)
        if self._archive_outgoing is not None:
            self._archive_outgoing.verify(self)


class HandshakeFailed(Exception):
    """The TLS handshake of an accepted connection failed; args[0] says why."""


def handshake(sock: ssl.SSLSocket, timeout: float) -> None:
    """Complete the server side of a TLS handshake within `timeout` seconds in all (a peer
    trickling its messages gets no fresh timeout per read). Raises HandshakeFailed."""
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    wanted: tuple[list[ssl.SSLSocket], list[ssl.SSLSocket]]
    try:
        while True:
            try:
                sock.do_handshake()
                return
            except ssl.SSLWantReadError:
                wanted = ([sock], [])
            except ssl.SSLWantWriteError:
                wanted = ([], [sock])
            except ssl.SSLCertVerificationError as exc:
                raise HandshakeFailed(
                    f"client certificate refused: {exc.verify_message}"
                ) from None
            except ssl.SSLError as exc:
                raise HandshakeFailed(str(exc.reason or exc)) from None
            except OSError as exc:
                raise HandshakeFailed(exc.strerror or type(exc).__name__) from None
            left = deadline - time.monotonic()
            if left <= 0:
                raise HandshakeFailed(f"not completed in {timeout:g} s (tls.handshake_timeout)")
            try:
                select.select(*wanted, [], left)
            except (OSError, ValueError):
                raise HandshakeFailed("connection closed") from None
    finally:
        with contextlib.suppress(OSError):
            sock.setblocking(True)


def tls_args_for(
    credentials: TlsCredentials, destination: Peer, owner_of: Callable[[str], str | None]
) -> tuple[OutgoingTls, str] | None:
    """pynetdicom's tls_args for an association the node opens to `destination`: TLS to an
    AE with --tls required (its registered port is its TLS port), checked to be that AE by
    its certificate; None for plain DICOM. Raises ConfigError when the node has no TLS
    credentials."""
    if destination.tls != "required":
        return None

    def check(presented: str | None) -> str | None:
        if presented is None:  # CERT_REQUIRED: not reached
            return "it presented no certificate"
        return destination_refusal(
            destination.ae_title, destination.certificates, presented, owner_of(presented)
        )

    return credentials.client_context(check), destination.host
