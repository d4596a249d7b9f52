"""Index queries for `verify` and `reindex`: instance rows in pages, rebuilt rows."""

from __future__ import annotations


class AuditQueries:
    """Mixed into Index (repository.py): reads and writes that integrity checks need."""
