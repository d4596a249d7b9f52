"""The audit export: a thread that sends the node's audit records, in order, to the Audit Record
Repository and moves the node's export cursor past each one that reached the socket.

The outbox is the trail itself (index.audit.unsent / mark_sent): a record is written once, in
the same commit that makes it part of the chain, and stays unsent until the repository has it,
across restarts and outages. A failed send is retried with exponential backoff; delivery is
at least once (a record whose send failed part way may arrive twice, never not at all).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..errors import IndexUnavailable
from ..rules.audit import AuditRecord
from ..rules.audit_message import audit_message
from .syslog import (
    SendFailed,
    SyslogSender,
    SyslogTarget,
    describe,
    severity_for,
    syslog_message,
)

log = logging.getLogger(__name__)

BATCH = 100
RETRY_INTERVAL = 1.0
MAX_BACKOFF = 30.0  # a repository back up gets the backlog within half a minute
POLL_INTERVAL = 1.0  # records of another process of the node are seen this late at most


def syslog_audit_message(
    *,
    source_id: str,
    node_address: str,
    node_ae_title: str,
    hostname: str | None = None,
) -> Callable[[AuditRecord], bytes]:
    """What the exporter sends for a record: its PS3.15 A.5.1 message in an RFC 5424 syslog
    message (notice for a success, warning for a failure), stamped with the record's time."""
    host = hostname if hostname is not None else socket.gethostname()
    procid = str(os.getpid())

    def message_for(record: AuditRecord) -> bytes:
        payload = audit_message(
            record, source_id=source_id, node_address=node_address, node_ae_title=node_ae_title
        )
        return syslog_message(
            payload,
            severity=severity_for(record.outcome),
            timestamp=record.time,
            hostname=host,
            procid=procid,
            sequence_id=record.seq,
        )

    return message_for


class AuditExporter:
    """Exports one node's chain in a daemon thread: start(), wake() after appending records
    (or wait for the poll), stop(). Never blocks its caller on the repository."""

    def __init__(
        self,
        index: Any,
        *,
        node: str,
        sender: Any,
        message_for: Callable[[AuditRecord], bytes],
        batch: int = BATCH,
        retry_interval: float = RETRY_INTERVAL,
        max_backoff: float = MAX_BACKOFF,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.index = index
        self.node = node
        self.sender = sender
        self.message_for = message_for
        self.batch = batch
        self.retry_interval = retry_interval
        self.max_backoff = max(max_backoff, retry_interval)
        self.poll_interval = poll_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._replacement: Any = None  # a sender to take before the next batch
        self.failures = 0  # consecutive failed attempts (0 while the repository takes them)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the audit exporter is already started")
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="audit-export", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """New records are in the trail: send them now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 5.0, *, flush: bool = True) -> None:
        """Stop after the send under way (bounded by the sender's timeout) and close the
        connection. With `flush`, and the repository taking records, what was recorded until
        now (an Application Stop) is sent first; what is unsent stays in the trail for the
        next start. Call it before the index is closed."""
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                flush = False  # still in a send: leave the rest to the next start
        self._take_replacement()
        try:
            if flush and self.failures == 0:
                while self.export_once() >= self.batch:
                    pass
        except (OSError, IndexUnavailable) as exc:
            log.warning(
                "audit export to %s: records left unsent at stop (%s)",
                self._where,
                describe(exc) if isinstance(exc, OSError) else exc,
            )
        finally:
            self.sender.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def export_once(self) -> int:
        """Send one batch of unsent records, moving the cursor past those that reached the
        socket; how many were sent. Raises OSError (after moving the cursor past what got
        through) and IndexUnavailable."""
        records = self.index.audit.unsent(self.node, limit=self.batch)
        if not records:
            return 0
        messages: list[bytes] = []
        seqs: list[int] = []
        for record in records:
            try:
                messages.append(self.message_for(record))
            except Exception:  # a bug, not an outage: the record stays in the trail
                log.exception(
                    "audit export: record %s of %s cannot be written as an audit message; "
                    "skipped (it stays in the trail)",
                    record.seq,
                    self.node,
                )
                if messages:
                    self._send(messages, seqs)
                    messages, seqs = [], []
                self.index.audit.mark_sent(self.node, record.seq)
                continue
            seqs.append(record.seq)
        if messages:
            self._send(messages, seqs)
        return len(records)

    def _send(self, messages: list[bytes], seqs: list[int]) -> None:
        try:
            self.sender.send(messages)
        except SendFailed as exc:
            if exc.sent:
                self.index.audit.mark_sent(self.node, seqs[exc.sent - 1])
            raise
        self.index.audit.mark_sent(self.node, seqs[-1])

    def replace_sender(self, sender: Any) -> None:
        """Send with `sender` from the next batch on (SIGHUP: the repository's TLS files read
        again); the one in use is closed between two sends, never during one."""
        self._replacement = sender
        self._wake.set()

    def _take_replacement(self) -> None:
        replacement, self._replacement = self._replacement, None
        if replacement is not None:
            previous, self.sender = self.sender, replacement
            previous.close()

    def _run(self) -> None:
        delay = self.retry_interval
        while not self._stopping.is_set():
            self._wake.clear()
            self._take_replacement()
            try:
                sent = self.export_once()
            except (OSError, IndexUnavailable) as exc:
                self.failures += 1
                log.warning(
                    "audit export to %s failed (%s); retrying in %g s",
                    self._where,
                    describe(exc) if isinstance(exc, OSError) else exc,
                    delay,
                )
                self.sender.close()
                self._stopping.wait(delay)
                delay = min(delay * 2, self.max_backoff)
                continue
            except Exception:
                # Not an outage (a bug): keep the thread alive and slow, the records kept.
                log.exception("audit export: unexpected error; retrying in %g s", self.max_backoff)
                self.failures += 1
                self.sender.close()
                self._stopping.wait(self.max_backoff)
                continue
            if self.failures:
                log.info("audit export to %s: the repository takes records again", self._where)
            self.failures = 0
            delay = self.retry_interval
            if sent < self.batch:  # caught up: wait for new records
                self._wake.wait(self.poll_interval)

    @property
    def _where(self) -> str:
        return str(getattr(self.sender, "target", "the repository"))


def sender_for(audit: Any) -> SyslogSender:
    """The sender to audit.repository, its TLS files read now. Raises ConfigError."""
    return SyslogSender(
        SyslogTarget.parse(audit.repository),
        ca_certificates=audit.ca_certificates,
        certificate=audit.certificate,
        private_key=audit.private_key,
    )


def exporter_for(service: Any) -> AuditExporter | None:
    """The exporter of an ArchiveService's trail to audit.repository, or None without one.
    Raises ConfigError for an unusable repository URL or TLS file (at start, not later)."""
    config = service.config
    audit = config.audit
    if not audit.repository or not audit.enabled:
        return None
    sender = sender_for(audit)
    bind = config.node.bind
    address = bind if bind not in ("", "0.0.0.0", "::") else socket.getfqdn()
    return AuditExporter(
        service.index,
        node=service.audit.node,
        sender=sender,
        message_for=syslog_audit_message(
            source_id=service.audit.node,
            node_address=address,
            node_ae_title=config.node.ae_title,
        ),
    )
