"""`verify` and `reindex`: check the store against the index, and rebuild the index from the
store alone. Uses the store and the index; no network, no command line."""

from .problems import (
    CORRUPT,
    DUPLICATE,
    MALFORMED,
    MISSING,
    ORPHAN,
    OUTSIDE,
    REPOINTED,
    UNATTRIBUTED,
    UNREADABLE,
    Problem,
)
from .reindexing import ReindexReport, reindex
from .verifying import Scope, VerifyReport, verify

__all__ = [
    "CORRUPT",
    "DUPLICATE",
    "MALFORMED",
    "MISSING",
    "ORPHAN",
    "OUTSIDE",
    "REPOINTED",
    "UNATTRIBUTED",
    "UNREADABLE",
    "Problem",
    "ReindexReport",
    "Scope",
    "VerifyReport",
    "reindex",
    "verify",
]
