"""Open the index database from a URL: SQLite (WAL, durable commits) or pooled PostgreSQL."""

from __future__ import annotations

import contextlib
import importlib
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from peewee import Database, DatabaseProxy
from playhouse.pool import PooledPostgresqlDatabase, PooledSqliteDatabase

from ..config import masked_url
from ..errors import ConfigError, SchemaError

database = DatabaseProxy()

# The fix for a PostgreSQL index.url without its driver (setup.cfg's extra of that name).
POSTGRESQL_DRIVER_FIX = "pip install 'archive-node[postgresql]'"


def shown_url(url: str) -> str:
    """`url` fit for a message: the password hidden; a SQLite path also shown absolute (a
    relative one is relative to the directory the command ran in)."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = sqlite_path(url)
        if path and not Path(path).is_absolute():
            return f"{url} ({Path(path).absolute()})"
        return url
    return masked_url(url)  # in the authority, or a password= parameter


def sqlite_path(url: str) -> str:
    """The file path of a sqlite:/// URL ('' when there is none)."""
    return url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""


def open_database(url: str, *, busy_timeout: float = 10.0, create: bool = True) -> Database:
    """Create (not connect) the Database for `url`.

    sqlite:///relative/path, sqlite:////absolute/path, postgresql://user:pass@host:port/db.
    `create`: a SQLite file that does not exist is made, with its directory, readable by its
    owner only (`init`, `reindex`); without it, a missing file is an error and nothing is
    made (every other command). Raises ConfigError for an unknown scheme, an unusable path or
    a missing PostgreSQL driver; SchemaError for a missing SQLite file when not `create`.
    """
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        return _open_sqlite(url, busy_timeout, create)
    if parsed.scheme in ("postgresql", "postgres"):
        _require_postgresql_driver()
        return _open_postgresql(parsed, busy_timeout)
    raise ConfigError(f"index.url: unsupported scheme {parsed.scheme!r} (sqlite or postgresql)")


def _require_postgresql_driver() -> None:
    """peewee talks to PostgreSQL through psycopg2 (or psycopg 3); without either it fails at
    the first query with a traceback. Raises ConfigError naming the fix instead."""
    for driver in ("psycopg2", "psycopg"):
        try:
            importlib.import_module(driver)
            return
        except ImportError:
            continue
    raise ConfigError(
        f"index.url is a PostgreSQL database, but its driver psycopg2 is not installed: "
        f"{POSTGRESQL_DRIVER_FIX}"
    )


def _open_sqlite(url: str, busy_timeout: float, create: bool) -> Database:
    path = sqlite_path(url)
    if not path or path == ":memory:":
        raise ConfigError("index.url: SQLite needs a file path, e.g. sqlite:///var/index.sqlite3")
    if create:
        _create_owner_only(Path(path))
    elif not Path(path).is_file():
        raise SchemaError(
            f"index {shown_url(url)} does not exist: run `archive-node init` first "
            "(or check index.url and the directory the command runs in)"
        )
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


def _create_owner_only(path: Path) -> None:
    """Make the SQLite file (empty: a valid database) and the directories it needs, mode 0600
    and 0700 whatever the umask: the index names patients. SQLite makes the -wal and -shm
    files with the database file's mode, so they are owner-only too. An existing file or
    directory is left as it is. Raises ConfigError naming what could not be made."""
    missing = []
    probe = path.absolute().parent
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):  # another process made it just now
                directory.mkdir(mode=0o700)
                os.chmod(directory, 0o700)
    except OSError as exc:
        raise ConfigError(f"index.url: cannot create {directory}: {exc.strerror}") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    except OSError as exc:
        raise ConfigError(f"index.url: cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _open_postgresql(parsed, busy_timeout: float) -> Database:
    if not parsed.path.strip("/"):
        raise ConfigError("index.url: PostgreSQL URL needs a database name")
    params: dict[str, object] = dict(parse_qsl(parsed.query))
    lock_ms = int(busy_timeout * 1000)
    params["options"] = f"{params.get('options', '')} -c lock_timeout={lock_ms}".strip()
    # a server that does not answer (packets dropped, not refused) fails a connection in this
    # time, not in the kernel's two minutes: /readyz and every request answer soon
    params.setdefault("connect_timeout", max(1, int(busy_timeout)))
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
