"""Syslog to an Audit Record Repository: RFC 5424 messages over TLS (RFC 5425), TCP (RFC 6587
octet counting) or UDP (RFC 5426), as IHE ATNA and PS3.15 A.6 send audit messages.

The framing is written here rather than taken from a logging handler (the standard library's
SysLogHandler, or the RFC 5424 handlers on PyPI): a handler reports a failed send to
handleError() and carries on, while the audit export keeps its outbox in the index and must
know whether each message reached the socket before it moves its cursor past the record.
What is left to write is a header, a length and a socket; TLS itself is the ssl module's.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError
from .tls import load_cas

DEFAULT_PORTS = {"tls": 6514, "tcp": 514, "udp": 514}

# RFC 5424 6.2.1: facility 10 is security/authorization (authpriv); IHE ITI TF-2 3.20.4.1.2
AUTHPRIV = 10
NOTICE, WARNING = 5, 4
APP_NAME = "archive-node"
MSGID = "IHE+RFC-3881"  # IHE ITI TF-2 3.20.4.1.2: the payload is an audit message
BOM = b"\xef\xbb\xbf"  # RFC 5424 6.4: MSG-UTF8 starts with the BOM
NILVALUE = "-"


@dataclass(frozen=True)
class SyslogTarget:
    """Where the audit messages go: tls://host:port, tcp://host:port or udp://host:port."""

    transport: str  # "tls", "tcp" or "udp"
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> SyslogTarget:
        """The target a URL names; the port defaults to 6514 for tls, 514 for tcp and udp
        (RFC 5425, RFC 6587, RFC 5426). Raises ValueError with a one-line reason."""
        scheme, sep, _ = url.partition("://")
        if not sep or scheme.lower() not in DEFAULT_PORTS:
            raise ValueError(f"{url!r}: not tls://host:port, tcp://host:port or udp://host:port")
        parts = urlsplit(url)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{url!r}: a syslog URL has no path, query or fragment")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"{url!r}: a syslog URL has no user or password")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"{url!r}: the port is not a number from 1 to 65535") from None
        host = parts.hostname
        if not host:
            raise ValueError(f"{url!r}: no host")
        if port == 0:
            raise ValueError(f"{url!r}: the port is not a number from 1 to 65535")
        transport = scheme.lower()
        return cls(transport, host, port if port is not None else DEFAULT_PORTS[transport])

    @property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def severity_for(outcome: int) -> int:
    """Notice for a success (EventOutcomeIndicator 0), warning for any failure."""
    return NOTICE if outcome == 0 else WARNING


def syslog_message(
    payload: bytes,
    *,
    severity: int,
    timestamp: str,
    hostname: str,
    app_name: str = APP_NAME,
    procid: str = "",
    msgid: str = MSGID,
    sequence_id: int | None = None,
) -> bytes:
    """The RFC 5424 SYSLOG-MSG of a UTF-8 payload: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID
    MSGID SD ` then the BOM and the payload. SD is `[meta sequenceId="N"]` (RFC 5424 7.3.1:
    the record's number in its chain, so a record sent twice is known as one) or the NILVALUE.
    Header fields that are empty or not printable US-ASCII without spaces become the
    NILVALUE."""
    pri = AUTHPRIV * 8 + severity
    fields = [
        _header_field(timestamp, 64),
        _header_field(hostname, 255),
        _header_field(app_name, 48),
        _header_field(procid, 128),
        _header_field(msgid, 32),
    ]
    data = f'[meta sequenceId="{sequence_id}"]' if sequence_id and sequence_id > 0 else NILVALUE
    return f"<{pri}>1 {' '.join(fields)} {data} ".encode("ascii") + BOM + payload


def _header_field(value: str, limit: int) -> str:
    """RFC 5424 6.2: 1*N PRINTUSASCII (33-126), else '-'."""
    if not value or len(value) > limit or not all(33 <= ord(c) <= 126 for c in value):
        return NILVALUE
    return value


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 4.3 / RFC 6587 3.4.1: MSG-LEN SP SYSLOG-MSG."""
    return str(len(message)).encode("ascii") + b" " + message


class SendFailed(OSError):
    """A send that stopped part way: `sent` of its messages were written to the socket."""

    def __init__(self, sent: int, cause: OSError) -> None:
        super().__init__(cause.errno, describe(cause))
        self.sent = sent
        self.cause = cause


def describe(exc: BaseException) -> str:
    """One line for the log of why a send failed."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the repository's certificate was refused: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class SyslogSender:
    """Sends syslog messages to one target over one connection, made on demand and made again
    after any failure. Not thread-safe: one exporter thread uses it."""

    def __init__(
        self,
        target: SyslogTarget,
        *,
        ca_certificates: str = "",
        certificate: str = "",
        private_key: str = "",
        timeout: float = 10.0,
    ) -> None:
        """Raises ConfigError (naming the audit.* key) when a TLS file cannot be used."""
        self.target = target
        self.timeout = timeout
        self._context = (
            _tls_context(target, ca_certificates, certificate, private_key)
            if target.transport == "tls"
            else None
        )
        self._sock: socket.socket | None = None

    def send(self, messages: Sequence[bytes]) -> None:
        """Write each SYSLOG-MSG in order: octet-counted over a stream, one datagram each
        over UDP. Raises SendFailed (an OSError saying how many were written before it) and
        closes the connection, so the next send connects again."""
        sent = 0
        try:
            sock = self._connected()
            for message in messages:
                if self.target.transport == "udp":
                    sock.send(message)
                else:
                    sock.sendall(octet_counted(message))
                sent += 1
        except OSError as exc:
            self.close()
            raise SendFailed(sent, exc) from exc

    def close(self) -> None:
        """Close the connection (a TLS one with its close_notify, waited for briefly)."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(min(self.timeout, 1.0))
                sock = sock.unwrap()
        with contextlib.suppress(OSError):
            sock.close()

    def _connected(self) -> socket.socket:
        if self._sock is not None and not self._peer_closed(self._sock):
            return self._sock
        self.close()
        target = self.target
        if target.transport == "udp":
            family, kind, proto, _, address = socket.getaddrinfo(
                target.host, target.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(self.timeout)
                sock.connect(address)  # a refused port shows as ECONNREFUSED on a later send
            except OSError:
                sock.close()
                raise
            self._sock = sock
            return sock
        sock = socket.create_connection((target.host, target.port), timeout=self.timeout)
        if self._context is not None:
            try:
                server_hostname = None if target.host_is_ip else target.host
                sock = self._context.wrap_socket(sock, server_hostname=server_hostname)
            except OSError:
                sock.close()
                raise
        self._sock = sock
        return sock

    def _peer_closed(self, sock: socket.socket) -> bool:
        """Whether the repository has closed or reset the connection while it was idle. A
        syslog receiver never writes, so anything to read is its end (or TLS records after
        the handshake, such as TLS 1.3 session tickets, which the read consumes)."""
        if self.target.transport == "udp":
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            return False
        sock.setblocking(False)
        try:
            data = sock.recv(4096)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.timeout)
        return data == b""


def _tls_context(
    target: SyslogTarget, ca_certificates: str, certificate: str, private_key: str
) -> ssl.SSLContext:
    """TLS 1.2 or later (RFC 5425 as updated by BCP 195), the repository's certificate
    verified against `ca_certificates`, and its name checked unless it is called by an IP
    address; the node's certificate presented when one is given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = not target.host_is_ip
    if not ca_certificates:
        raise ConfigError("audit.ca_certificates: must be set for a tls:// repository")
    load_cas(context, ca_certificates, "audit.ca_certificates")
    if bool(certificate) != bool(private_key):
        raise ConfigError("audit.certificate and audit.private_key: set both or neither")
    if certificate:
        try:
            context.load_cert_chain(certificate, private_key, password=_no_password)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"audit.certificate/audit.private_key: {certificate}, {private_key}: not a PEM "
                f"certificate and its matching unencrypted key ({describe(exc)})"
            ) from None
    return context


def _no_password() -> bytes:
    raise ConfigError("audit.private_key: the key is encrypted; give the node an unencrypted key")
