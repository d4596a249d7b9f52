"""The node's DICOM Conformance Statement (PS3.2), written from the AE that `serve` builds and
the node's own tables, for one configuration."""

from __future__ import annotations

from .statement import conformance_statement
from .tables import (
    Context,
    Service,
    StatementError,
    accepted_contexts,
    by_service,
    statement_ae,
    uid_name,
)

__all__ = [
    "Context",
    "Service",
    "StatementError",
    "accepted_contexts",
    "by_service",
    "conformance_statement",
    "statement_ae",
    "uid_name",
]
