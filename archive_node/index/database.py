"""Open the index database from a URL: SQLite (WAL, durable commits) or pooled PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from peewee import Database, DatabaseProxy
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from ..errors import ConfigError

database = DatabaseProxy()


def open_database(url: str, *, busy_timeout: float = 10.0) -> Database:
    """Create (not connect) the Database for `url`.

    sqlite:///relative/path, sqlite:////absolute/path, postgresql://user:pass@host:port/db.
    Raises ConfigError for an unknown scheme or an unusable path.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        return _open_sqlite(url, busy_timeout)
    if parsed.scheme in ("postgresql", "postgres"):
        return _open_postgresql(parsed, busy_timeout)
    raise ConfigError(f"index.url: unsupported scheme {parsed.scheme!r} (sqlite or postgresql)")


def _open_sqlite(url: str, busy_timeout: float) -> Database:
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        raise ConfigError("index.url: SQLite needs a file path, e.g. sqlite:///var/index.sqlite3")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"index.url: cannot create {Path(path).parent}: {exc.strerror}"
        ) from None
    # Pooled: a connection (and its pragmas) is reused across requests and threads instead of
    # being opened for every query of every association.
    return PooledSqliteDatabase(
        path,
        max_connections=64,
        stale_timeout=300,
        timeout=busy_timeout,
        # BEGIN IMMEDIATE: a transaction that reads before it writes must take the write lock
        # first, or it fails at once with "database is locked" under concurrency.
        lock_type="IMMEDIATE",
        pragmas={
            "journal_mode": "wal",
            # FULL: a commit that has been acknowledged survives power loss.
            "synchronous": "full",
            "foreign_keys": 1,
            "busy_timeout": int(busy_timeout * 1000),
        },
        check_same_thread=False,
    )


def _open_postgresql(parsed, busy_timeout: float) -> Database:
    if not parsed.path.strip("/"):
        raise ConfigError("index.url: PostgreSQL URL needs a database name")
    params: dict[str, object] = dict(parse_qsl(parsed.query))
    lock_ms = int(busy_timeout * 1000)
    params["options"] = f"{params.get('options', '')} -c lock_timeout={lock_ms}".strip()
    return PooledPostgresqlDatabase(
        unquote(parsed.path.lstrip("/")),
        user=unquote(parsed.username) if parsed.username else None,
        password=unquote(parsed.password) if parsed.password else None,
        host=parsed.hostname or None,
        port=parsed.port or None,
        max_connections=64,
        stale_timeout=300,
        timeout=busy_timeout,
        **params,
    )
