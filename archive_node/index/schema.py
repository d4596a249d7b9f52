"""Versioned schema: create a new index or upgrade an older one in place, never losing rows."""

from __future__ import annotations

from collections.abc import Callable

from peewee import Database

from ..errors import SchemaError
from .models import MODELS, SchemaInfo

SCHEMA_VERSION = 1

# MIGRATIONS[n] upgrades a version n-1 index to version n with playhouse.migrate operations,
# inside one transaction. Prefer additive changes (nullable columns, new tables, indexes): on
# SQLite anything else rebuilds the table, which foreign keys forbid inside a transaction.
MIGRATIONS: dict[int, Callable[[Database], None]] = {}


def current_version(db: Database) -> int | None:
    """The index's schema version, or None when the index is empty."""
    if not db.table_exists(SchemaInfo._meta.table_name):
        return None
    row = SchemaInfo.get_or_none(SchemaInfo.key == "version")
    return int(row.value) if row else None


def init_schema(db: Database) -> tuple[int | None, int]:
    """Create the schema, or upgrade it to SCHEMA_VERSION; return (before, after).

    Raises SchemaError when the index was made by a newer release.
    """
    with db.atomic():
        before = current_version(db)
        if before is not None and before > SCHEMA_VERSION:
            raise SchemaError(
                f"the index has schema version {before}, newer than this release's "
                f"{SCHEMA_VERSION}: upgrade archive-node"
            )
        if before is None:
            db.create_tables(MODELS, safe=True)
        else:
            for version in range(before + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](db)
        SchemaInfo.insert(key="version", value=str(SCHEMA_VERSION)).on_conflict(
            conflict_target=[SchemaInfo.key], update={SchemaInfo.value: str(SCHEMA_VERSION)}
        ).execute()
    return before, SCHEMA_VERSION


def check_schema(db: Database) -> None:
    """Raise SchemaError unless the index has exactly this release's schema."""
    version = current_version(db)
    if version is None:
        raise SchemaError("the index has no schema: run `archive-node init` first")
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"the index has schema version {version}, this release needs {SCHEMA_VERSION}: "
            "run `archive-node init` to upgrade"
        )
