"""`verify` and `reindex`: check the store against the index, and rebuild the index from the
store alone; which store an index belongs to (pairing). Uses the store and the index; no
network, no command line."""

from . import pairing
from .pairing import NotAPair
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
    "NotAPair",
    "Problem",
    "ReindexReport",
    "Scope",
    "VerifyReport",
    "pairing",
    "reindex",
    "verify",
]
