"""What `verify` and `reindex` report: the kinds of problem, one Problem each, as one line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..storage import FilesystemStorage

# Problem kinds. verify: MISSING, CORRUPT, UNREADABLE, OUTSIDE, ORPHAN, and with --deep
# MALFORMED. reindex: UNREADABLE, UNATTRIBUTED, DUPLICATE, and REPOINTED (a repair made, not a
# failure).
MISSING = "missing"
CORRUPT = "corrupt"
UNREADABLE = "unreadable"
OUTSIDE = "outside"
ORPHAN = "orphan"
MALFORMED = "malformed"
UNATTRIBUTED = "unattributed"
DUPLICATE = "duplicate"
REPOINTED = "repointed"


@dataclass(frozen=True)
class Problem:
    """One thing found wrong (or repaired), by path and UIDs; never a patient's name or ID."""

    kind: str
    path: str
    sop_instance_uid: str | None = None
    study_uid: str | None = None
    detail: str = ""


def reason(exc: Exception) -> str:
    """An error as one short line: an OSError's strerror, else its message."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


def top_directories(storage: FilesystemStorage) -> list[str]:
    """storage.top_directories(); ConfigError when the store's root cannot be listed."""
    try:
        return storage.top_directories()
    except OSError as exc:
        raise ConfigError(f"storage.path: cannot list {storage.root}: {reason(exc)}") from None
