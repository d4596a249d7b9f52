"""Index queries for `verify` and `reindex`: instance rows in pages, rebuilt and repointed rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from peewee import fn

from ..errors import NotFound
from . import instance_insert
from .session import Role
from .tables import Hospital, Instance, Series, Study

if TYPE_CHECKING:
    from ..dicom.instance_header import InstanceHeader
    from .records import InstanceRecord, NewInstance


@dataclass(frozen=True)
class InstanceScope:
    """Which instance rows a check covers; None is no restriction. `received_from` and
    `received_before` bound received_at (UTC), the first inclusive, the second exclusive."""

    hospital: str | None = None
    study_uid: str | None = None
    received_from: datetime | None = None
    received_before: datetime | None = None

    @property
    def everything(self) -> bool:
        return self == InstanceScope()


@dataclass(frozen=True)
class KeptRow:
    """What verify compares a file with: an instance row's path, size and SHA-256."""

    pk: int
    sop_uid: str
    study_uid: str
    path: str
    size: int
    sha256: str


class IntegrityQueries(Role):
    """The reads and writes `verify` and `reindex` need.

    Reads come in pages by primary key (keyset, a short query each), so no cursor stays open on
    tables a serving node is writing while files are being read.
    """

    def kept_rows_total(self, scope: InstanceScope) -> tuple[int, int]:
        """How many instance rows are in scope, and the sum of their sizes."""
        with self.session():
            query = _scoped(
                Instance.select(fn.COUNT(Instance.id), fn.COALESCE(fn.SUM(Instance.size), 0)),
                scope,
            )
            count, total = query.tuples().get()
            return int(count), int(total)

    def kept_rows(self, scope: InstanceScope, *, after: int, limit: int) -> list[KeptRow]:
        """The next `limit` instance rows in scope whose primary key is above `after`."""
        with self.session():
            query = _scoped(
                Instance.select(
                    Instance.id,
                    Instance.sop_uid,
                    Study.study_uid,
                    Instance.path,
                    Instance.size,
                    Instance.sha256,
                ),
                scope,
                with_study=True,
            )
            rows = query.where(Instance.id > after).order_by(Instance.id).limit(limit).tuples()
            return [KeptRow(*row) for row in rows]

    def kept_path(self, pk: int) -> str | None:
        """The path instance row `pk` names now (None once the row is gone)."""
        with self.session():
            return Instance.select(Instance.path).where(Instance.id == pk).scalar()

    def studies_in_scope_total(self, scope: InstanceScope) -> int:
        with self.session():
            return _studies_in_scope(scope).count()

    def studies_in_scope(
        self, scope: InstanceScope, *, after: int, limit: int
    ) -> list[tuple[int, str]]:
        """(primary key, Study UID) of the next `limit` studies holding an instance in scope
        (with a Study UID in scope: that study, even without instances), keys above `after`."""
        with self.session():
            query = _studies_in_scope(scope).where(Study.id > after)
            return list(query.order_by(Study.id).limit(limit).tuples())

    def indexed_paths(self, study_uid: str) -> set[str]:
        """The paths the index holds for a study's instances."""
        with self.session():
            query = (
                Instance.select(Instance.path)
                .join(Series)
                .join(Study)
                .where(Study.study_uid == study_uid)
            )
            return {path for (path,) in cast(Iterable[tuple[str]], query.tuples())}

    def rebuild_instance(
        self, new: NewInstance, *, received_at: datetime, hospital_issuer: str
    ) -> tuple[InstanceRecord | None, bool]:
        """Record a file found in the store as InstanceRows.record records a received one,
        with the time it was received, in one transaction. A hospital the index lacks is
        created (its name is its code, its issuer `hospital_issuer`).

        Returns (None, created) when inserted, or (the record already indexed under this SOP
        Instance UID, created) when another row won (no instance row was written); `created`
        says whether the hospital was created. Raises UIDConflict (nothing written, not even
        the hospital) as a C-STORE of the file would be refused.
        """
        with self.session(write=True):
            hospital = Hospital.get_or_none(Hospital.code == new.hospital)
            created = hospital is None
            if created:
                hospital = Hospital.create(
                    code=new.hospital, name=new.hospital, issuer=hospital_issuer
                )
            assert hospital is not None  # found, or created just now
            # as a C-STORE records it: the same patient (latest non-empty demographics win; an
            # anonymous one per study, by the hospital's placeholder IDs now), study (its first
            # instance's hospital), series and instance rows
            placeholders = instance_insert.placeholder_set(hospital.placeholder_ids)
            inserted = instance_insert.insert_instance(
                self.db, new, hospital.id, received_at, placeholders
            )
            return inserted, created

    def repoint_instance(
        self, header: InstanceHeader, *, path: str, size: int, sha256: str, displaced: str
    ) -> None:
        """Point the row of `header`'s SOP Instance at the file `path` (its size, SHA-256 and
        header values), provided it still names `displaced`. Its sender, hospital and
        received_at stay. Raises NotFound when the row is gone or names another path since."""
        with self.session(write=True):
            changed = (
                Instance.update(
                    **Instance.file_columns(header, path=path, size=size, sha256=sha256)
                )
                .where(
                    (Instance.sop_uid == header.sop_instance_uid) & (Instance.path == displaced)
                )
                .execute()
            )
            if not changed:
                raise NotFound(f"instance {header.sop_instance_uid} no longer names {displaced}")


def _scoped(query: Any, scope: InstanceScope, *, with_study: bool = False) -> Any:
    """`query` on Instance, restricted to `scope`: the rows that name a kept file (not those
    of rejected instances whose file the lifecycle deleted)."""
    query = query.where(Instance.deleted == False)  # noqa: E712  (SQL)
    if with_study or scope.study_uid is not None:
        query = query.join(Series).join(Study).switch(Instance)
    if scope.hospital is not None:
        query = query.join(Hospital).where(Hospital.code == scope.hospital).switch(Instance)
    if scope.study_uid is not None:
        query = query.where(Study.study_uid == scope.study_uid)
    if scope.received_from is not None:
        query = query.where(Instance.received_at >= scope.received_from)
    if scope.received_before is not None:
        query = query.where(Instance.received_at < scope.received_before)
    return query


def _studies_in_scope(scope: InstanceScope) -> Any:
    query = Study.select(Study.id, Study.study_uid)
    if scope.study_uid is not None:
        query = query.where(Study.study_uid == scope.study_uid)
    restricted = InstanceScope(scope.hospital, None, scope.received_from, scope.received_before)
    if not restricted.everything:
        held = _scoped(
            Instance.select(Instance.id)
            .join(Series)
            .where(Series.study == Study.id)
            .switch(Instance),
            restricted,
        )
        query = query.where(fn.EXISTS(held))
    return query
