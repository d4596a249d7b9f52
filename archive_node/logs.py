"""The node's log: one line per record, whatever a peer put in the values it logs; as text, or
as one JSON object per line for journald and log shippers (log.format).

AE titles, UIDs, Error Comments and addresses come from peers; a newline in one would start a
line of the peer's own making in the log (a forged timestamp and level). Every control
character of a record's message is written as an escape instead (`\\n` as `\\x0a`), so a line
of the log is always one record of the node's. Tracebacks, which the node makes itself, keep
their lines in the text format, and are one JSON string in the JSON format.

In JSON, a record made on an association's thread carries the association's calling AE,
hospital and peer address (from the context source the server registers), and a record that
reports a request's end carries its status and duration (its `extra`).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def escape_controls(text: str) -> str:
    """`text` with every control character written as \\xNN (\\uNNNN above 0xFF)."""
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


class EscapeControls(logging.Filter):
    """Puts each record's message on one line: its control characters escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True


# Fields a record may carry beyond its message, in the order JSON shows them: the association's
# (from the context source) and the request's (a log call's `extra`).
CONTEXT_FIELDS = ("ae", "hospital", "peer")
REQUEST_FIELDS = ("status", "duration")
# What the server says of the thread a record is made on: {"ae": ..., "hospital": ...,
# "peer": ...}, or None for a thread that is not one of its associations.
ContextSource = Callable[[threading.Thread], dict[str, str] | None]
_sources: list[ContextSource] = []


def add_context_source(source: ContextSource) -> None:
    """Let `source` name the association of the threads it knows (a running server)."""
    _sources.append(source)


def remove_context_source(source: ContextSource) -> None:
    if source in _sources:
        _sources.remove(source)


def _context() -> dict[str, str]:
    thread = threading.current_thread()
    for source in list(_sources):
        found = source(thread)
        if found:
            return found
    return {}


def request_fields(code: int, started: float) -> dict[str, Any]:
    """The `extra` of a record that ends a request: its status, and its duration in seconds
    since `started` (time.monotonic())."""
    return {"status": f"0x{code:04X}", "duration": round(time.monotonic() - started, 4)}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601), level, logger, event (the
    message), the association's and the request's fields when known, and the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.getMessage(),
            "pid": record.process,  # which worker, under serve --workers N
        }
        entry.update(_context())
        for field in (*CONTEXT_FIELDS, *REQUEST_FIELDS):
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        # ensure_ascii: every control character and every non-ASCII one is a \u escape
        return json.dumps(entry, ensure_ascii=True, default=str)


def setup_logging(level: str, pynetdicom_level: str, style: str = "text") -> None:
    """Log to stderr (the journal under systemd), each record on one line: text, or JSON."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, EscapeControls) for f in handler.filters):
            handler.addFilter(EscapeControls())
        if style == "json":
            handler.setFormatter(JsonFormatter())
    logging.getLogger("archive_node").setLevel(level)
    logging.getLogger("pynetdicom").setLevel(pynetdicom_level)
