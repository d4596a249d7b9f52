"""One index database in use: a connection per thread for each use, a transaction when writing,
and database errors as the archive's own (what every role of the index works through)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from peewee import Database, DatabaseError, IntegrityError

from ..errors import Conflict, IndexUnavailable, NotFound


class Session:
    """Call it for a connection: `with session():`, or `with session(write=True):` for a
    transaction. pynetdicom runs each association in its own thread; peewee keeps one
    connection per thread, opened and closed around each use."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # told of each database error (the metrics count them); never of a domain error
        self.on_error: Callable[[], None] | None = None

    @contextlib.contextmanager
    def __call__(self, *, write: bool = False) -> Iterator[None]:
        """Raises IndexUnavailable for a database error, Conflict for a violated constraint;
        the domain errors raised inside pass through."""
        try:
            with self.db.connection_context():
                if write:
                    with self.db.atomic():
                        yield
                else:
                    yield
        except (Conflict, NotFound):
            raise
        except IntegrityError as exc:
            raise Conflict(f"index constraint: {exc}") from None
        except DatabaseError as exc:
            if self.on_error is not None:
                self.on_error()
            # one line: psycopg2's messages carry hints on further lines
            raise IndexUnavailable(f"index database error: {' '.join(str(exc).split())}") from None


class Role:
    """A part of the index with one reason to change, over the index's one session."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.db = session.db
