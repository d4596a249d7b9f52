"""The index: one database, opened from a URL, and its roles over one session (registry,
instances, find, integrity, commitments, imports, audit, corrections, orders), each handing
plain records to the layers above."""

from __future__ import annotations

import contextlib
import os

from peewee import Database, SqliteDatabase

from .audit_rows import AuditRows
from .commitment_rows import CommitmentRows
from .corrections import CorrectionRows
from .database import database, open_database, shown_url
from .find_sql import FindQueries
from .import_lookups import ImportLookups
from .instance_rows import InstanceRows
from .integrity_queries import IntegrityQueries
from .order_rows import OrderRows
from .registry_rows import RegistryRows
from .schema import (
    check_schema,
    current_version,
    holds_instances,
    init_schema,
    record_store_identity,
    store_identity,
)
from .session import Session


class Index:
    """The index database, and the roles that read and write it over one session. One per
    process: the tables are bound to one database proxy."""

    def __init__(self, db: Database, url: str) -> None:
        self.db = db
        self.url = url
        self.name = shown_url(url)  # for messages: the password hidden
        self.session = Session(db)
        self.registry = RegistryRows(self.session)
        self.instances = InstanceRows(self.session)
        self.find = FindQueries(self.session)
        self.integrity = IntegrityQueries(self.session)
        self.commitments = CommitmentRows(self.session)
        self.imports = ImportLookups(self.session)
        self.audit = AuditRows(self.session)
        self.corrections = CorrectionRows(self.session, self.audit)
        self.orders = OrderRows(self.session)

    @classmethod
    def open(cls, url: str, *, busy_timeout: float = 10.0, create: bool = True) -> Index:
        """Bind the tables to the database at `url` (no connection is made yet). Without
        `create`, a SQLite index that does not exist is an error (SchemaError), not made."""
        db = open_database(url, busy_timeout=busy_timeout, create=create)
        current = database.obj
        if current is not None and current is not db and not current.is_closed():
            current.close()
        # Only the idle connections of a database bound before: another thread may be in a
        # transaction on one (closing it under that thread crashes SQLite); its own Index
        # closes the rest.
        if hasattr(current, "close_idle"):
            current.close_idle()
        database.initialize(db)
        return cls(db, url)

    def close(self) -> None:
        """Close every connection, those other threads are using included: for a process whose
        threads are done with the index (a stopped server)."""
        if not self.db.is_closed():
            self.db.close()
        if hasattr(self.db, "close_all"):
            self.db.close_all()

    def release(self) -> None:
        """Close this thread's connection and the idle ones, and leave a connection another
        thread is using to it (closing it under that thread crashes SQLite): for a command, or
        a check, while other threads may still be at work."""
        if not self.db.is_closed():
            self.db.close()
        if hasattr(self.db, "close_idle"):
            self.db.close_idle()

    def init_schema(self) -> tuple[int | None, int]:
        """Create the schema, or upgrade an older one; (version before, version now). A SQLite
        index file is made readable by its owner only: its audit trail names patients."""
        with self.session():
            versions = init_schema(self.db, self.name)
        if isinstance(self.db, SqliteDatabase):
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(f"{self.db.database}{suffix}", 0o600)
        return versions

    def check_schema(self) -> None:
        """Raises SchemaError, naming the index, unless the schema is this release's."""
        with self.session():
            check_schema(self.db, self.name)

    def store_identity(self) -> str | None:
        """The identity of the store this index belongs to (integrity/pairing.py), or None."""
        with self.session():
            return store_identity(self.db)

    def record_store_identity(self, identity: str) -> str:
        """Record the identity of the index's store unless one is recorded; return the one
        recorded afterwards (another node may have been first)."""
        with self.session(write=True):
            return record_store_identity(self.db, identity)

    def holds_instances(self) -> bool:
        with self.session():
            return holds_instances(self.db)

    def has_schema(self) -> bool:
        """Whether the index has a schema of any version (reindex makes one when not)."""
        with self.session():
            return current_version(self.db) is not None
