"""The index's clock: every time it keeps is UTC, without tzinfo."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now in UTC, without tzinfo: how the index keeps times."""
    return datetime.now(UTC).replace(tzinfo=None)
