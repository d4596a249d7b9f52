"""The node's log: one line per record, whatever a peer put in the values it logs.

AE titles, UIDs, Error Comments and addresses come from peers; a newline in one would start a
line of the peer's own making in the log (a forged timestamp and level). Every control
character of a record's message is written as an escape instead (`\\n` as `\\x0a`), so a line
of the log is always one record of the node's. Tracebacks, which the node makes itself, keep
their lines.
"""

from __future__ import annotations

import logging
import re
import sys

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


def setup_logging(level: str, pynetdicom_level: str) -> None:
    """Log to stderr (the journal under systemd), each record on one line."""
    logging.basicConfig(level=level, format=FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, EscapeControls) for f in handler.filters):
            handler.addFilter(EscapeControls())
    logging.getLogger("archive_node").setLevel(level)
    logging.getLogger("pynetdicom").setLevel(pynetdicom_level)
