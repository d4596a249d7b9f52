"""The index's repository: every read and write of registry and instance rows, as plain records."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from peewee import JOIN, Database, DatabaseError, IntegrityError, fn

from ..errors import Conflict, IndexUnavailable, NotFound
from ..rules.query import Query
from . import find_sql, instance_insert
from .clock import utcnow
from .commitment_rows import CommitmentQueries
from .database import database, open_database
from .find_sql import Match
from .import_lookups import StudyQueries
from .integrity_queries import AuditQueries
from .records import (
    AERecord,
    HospitalRecord,
    InstanceRecord,
    NewInstance,
    StudySummary,
    instance_record,
)
from .schema import check_schema, init_schema
from .tables import ApplicationEntity, Hospital, Instance, Patient, Series, Study

log = logging.getLogger(__name__)

_AE_FIELDS = ("host", "port", "allow", "scope", "description", "enabled")
_UID_CHUNK = 500  # SQL parameters per IN (...) lookup


class Index(AuditQueries, CommitmentQueries, StudyQueries):
    """The index database. One per process: the models are bound to one database proxy."""

    def __init__(self, db: Database, url: str) -> None:
        self.db = db
        self.url = url

    @classmethod
    def open(cls, url: str, *, busy_timeout: float = 10.0) -> Index:
        """Bind the models to the database at `url` (no connection is made yet)."""
        db = open_database(url, busy_timeout=busy_timeout)
        current = database.obj
        if current is not None and current is not db and not current.is_closed():
            current.close()
        if hasattr(current, "close_all"):
            current.close_all()
        database.initialize(db)
        return cls(db, url)

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()
        if hasattr(self.db, "close_all"):
            self.db.close_all()

    @contextlib.contextmanager
    def session(self, *, write: bool = False) -> Iterator[None]:
        """A connection for this thread (and a transaction when writing); errors become
        IndexUnavailable, except the domain errors raised inside."""
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
            # one line: psycopg2's messages carry hints on further lines
            raise IndexUnavailable(f"index database error: {' '.join(str(exc).split())}") from None

    # -- schema -------------------------------------------------------------------------------

    def init_schema(self) -> tuple[int | None, int]:
        with self.session():
            return init_schema(self.db)

    def check_schema(self) -> None:
        with self.session():
            check_schema(self.db)

    def add_hospital(self, code: str, name: str, issuer: str) -> HospitalRecord:
        with self.session(write=True):
            if Hospital.get_or_none(Hospital.code == code):
                raise Conflict(f"hospital {code} already exists")
            Hospital.create(code=code, name=name, issuer=issuer)
        return HospitalRecord(code, name, issuer)

    def list_hospitals(self) -> list[HospitalRecord]:
        with self.session():
            ae_counts = dict(
                ApplicationEntity.select(
                    ApplicationEntity.hospital, fn.COUNT(ApplicationEntity.id)
                )
                .group_by(ApplicationEntity.hospital)
                .tuples()
            )
            study_counts = dict(
                Study.select(Study.hospital, fn.COUNT(Study.id)).group_by(Study.hospital).tuples()
            )
            return [
                HospitalRecord(
                    h.code, h.name, h.issuer, ae_counts.get(h.id, 0), study_counts.get(h.id, 0)
                )
                for h in Hospital.select().order_by(Hospital.code)
            ]

    def remove_hospital(self, code: str) -> None:
        """Raises NotFound, or Conflict while AEs, studies or instances refer to it."""
        with self.session(write=True):
            row = Hospital.get_or_none(Hospital.code == code)
            if row is None:
                raise NotFound(f"no hospital {code}")
            aes = ApplicationEntity.select().where(ApplicationEntity.hospital == row).count()
            studies = Study.select().where(Study.hospital == row).count()
            instances = Instance.select().where(Instance.hospital == row).count()
            if aes or studies or instances:
                raise Conflict(
                    f"hospital {code} is still referred to by {aes} AE(s) and {studies} "
                    f"study(ies){f' and {instances} instance(s)' if instances else ''}"
                )
            row.delete_instance()

    # -- application entities -----------------------------------------------------------------

    def add_ae(self, ae_title: str, hospital: str, **fields: Any) -> AERecord:
        with self.session(write=True):
            owner = Hospital.get_or_none(Hospital.code == hospital)
            if owner is None:
                raise NotFound(f"no hospital {hospital}")
            if ApplicationEntity.get_or_none(ApplicationEntity.ae_title == ae_title):
                raise Conflict(f"AE {ae_title} already exists")
            ApplicationEntity.create(ae_title=ae_title, hospital=owner, **fields)
        return self.get_ae(ae_title)

    def update_ae(self, ae_title: str, hospital: str | None = None, **fields: Any) -> AERecord:
        unknown = set(fields) - set(_AE_FIELDS)
        if unknown:
            raise ValueError(f"unknown AE fields {unknown}")
        with self.session(write=True):
            row = ApplicationEntity.get_or_none(ApplicationEntity.ae_title == ae_title)
            if row is None:
                raise NotFound(f"no AE {ae_title}")
            if hospital is not None:
                owner = Hospital.get_or_none(Hospital.code == hospital)
                if owner is None:
                    raise NotFound(f"no hospital {hospital}")
                row.hospital = owner
            for name, value in fields.items():
                setattr(row, name, value)
            row.updated_at = utcnow()
            row.save()
        return self.get_ae(ae_title)

    def remove_ae(self, ae_title: str) -> None:
        with self.session(write=True):
            deleted = (
                ApplicationEntity.delete().where(ApplicationEntity.ae_title == ae_title).execute()
            )
            if not deleted:
                raise NotFound(f"no AE {ae_title}")

    def find_ae(self, ae_title: str) -> AERecord | None:
        """The registered AE with this title, or None."""
        with self.session():
            query = self._ae_query().where(ApplicationEntity.ae_title == ae_title)
            row = query.first()
            return _ae_record(row) if row else None

    def get_ae(self, ae_title: str) -> AERecord:
        record = self.find_ae(ae_title)
        if record is None:
            raise NotFound(f"no AE {ae_title}")
        return record

    def list_aes(self, hospital: str | None = None) -> list[AERecord]:
        with self.session():
            query = self._ae_query().order_by(Hospital.code, ApplicationEntity.ae_title)
            if hospital:
                query = query.where(Hospital.code == hospital)
            return [_ae_record(row) for row in query]

    @staticmethod
    def _ae_query():
        return ApplicationEntity.select(ApplicationEntity, Hospital).join(Hospital)

    # -- instances ----------------------------------------------------------------------------

    def find_instance(self, sop_uid: str) -> InstanceRecord | None:
        with self.session():
            return self._find_instance(sop_uid)

    def record_instance(self, new: NewInstance) -> InstanceRecord | None:
        """Insert patient/study/series/instance rows for a kept file in one durable commit.

        Returns None when inserted, or the record already indexed under this SOP Instance UID
        (then no instance row was written). The caller has looked the instance up before keeping
        the file; a writer that indexed it since is caught by the conflict and the path check.
        """
        with self.session(write=True):
            hospital = instance_insert.hospital_id(self.db, new.hospital)
            if hospital is None:
                raise NotFound(f"no hospital {new.hospital}")
            return instance_insert.insert_instance(self.db, new, hospital, utcnow())

    def replace_instance(self, new: NewInstance) -> str:
        """Point an existing instance row at a new file; return the path it named until now.

        The row is read and written in one transaction (locked on PostgreSQL, serialised by
        BEGIN IMMEDIATE on SQLite), so concurrent replacements each get the path they displaced.
        Raises NotFound when the row is gone.
        """
        h = new.header
        with self.session(write=True):
            row = (
                Instance.select(Instance.id, Instance.path)
                .where(Instance.sop_uid == h.sop_instance_uid)
                .for_update(self.db.for_update)
                .first()
            )
            if row is None:
                raise NotFound(f"instance {h.sop_instance_uid} vanished during replacement")
            Instance.update(
                **Instance.file_columns(h, path=new.path, size=new.size, sha256=new.sha256),
                calling_ae=new.calling_ae,
                received_at=utcnow(),
            ).where(Instance.id == row.id).execute()
            return row.path

    def instances_by_uid(self, sop_uids: Iterable[str]) -> dict[str, InstanceRecord]:
        """The indexed instances among `sop_uids`, by SOP Instance UID."""
        uids = list(dict.fromkeys(sop_uids))
        found: dict[str, InstanceRecord] = {}
        with self.session():
            for start in range(0, len(uids), _UID_CHUNK):
                chunk = uids[start : start + _UID_CHUNK]
                for row in _instances().where(Instance.sop_uid.in_(chunk)):
                    found[row.sop_uid] = instance_record(row)
        return found

    def _find_instance(self, sop_uid: str) -> InstanceRecord | None:
        return instance_insert.find_instance(self.db, sop_uid)

    # -- C-FIND -------------------------------------------------------------------------------

    def find_matches(self, query: Query, *, hospital: str | None, limit: int) -> list[Match]:
        """Entities matching a C-FIND query (at most `limit`); see find_sql.find_matches."""
        with self.session():
            return find_sql.find_matches(self.db, query, hospital, limit)

    def computed_keys(
        self, query: Query, matches: list[Match], *, hospital: str | None
    ) -> dict[int, dict[str, Any]]:
        """Counts and lists the query asked for, per match; see find_sql.computed_keys."""
        with self.session():
            return find_sql.computed_keys(query, matches, hospital)

    # -- listings -----------------------------------------------------------------------------

    def count_instances(self) -> int:
        with self.session():
            return Instance.select().count()

    def studies(
        self,
        patient_id: str | None = None,
        hospital: str | None = None,
    ) -> list[StudySummary]:
        """What is stored, a row per study, with series/instance counts and total size."""
        with self.session():
            query = (
                Study.select(
                    Study.study_uid,
                    Patient.patient_id,
                    Patient.issuer,
                    Study.study_date,
                    Study.description,
                    Hospital.code,
                    fn.COUNT(Series.id.distinct()).alias("series_count"),
                    fn.COUNT(Instance.id).alias("instance_count"),
                    fn.COALESCE(fn.SUM(Instance.size), 0).alias("total_size"),
                )
                .join(Patient)
                .switch(Study)
                .join(Hospital)
                .switch(Study)
                .join(Series, JOIN.LEFT_OUTER)
                .join(Instance, JOIN.LEFT_OUTER)
                .group_by(Study.id, Patient.id, Hospital.id)
                .order_by(Study.study_date.desc(), Study.study_uid)
            )
            if patient_id is not None:
                query = query.where(Patient.patient_id == patient_id)
            if hospital is not None:
                query = query.where(Hospital.code == hospital)
            rows = list(query.tuples())
            modalities: dict[str, set[str]] = {}
            uids = [row[0] for row in rows]
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                for study_uid, modality in (
                    Series.select(Study.study_uid, Series.modality)
                    .join(Study)
                    .where(Study.study_uid.in_(chunk))
                    .tuples()
                ):
                    if modality:
                        modalities.setdefault(study_uid, set()).add(modality)
            return [
                StudySummary(
                    uid,
                    pid,
                    issuer,
                    date,
                    desc,
                    code,
                    "\\".join(sorted(modalities.get(uid, ()))),
                    n_series,
                    n_inst,
                    int(size),
                )
                for uid, pid, issuer, date, desc, code, n_series, n_inst, size in rows
            ]


def _instances() -> Any:
    """Instance rows with what an InstanceRecord needs of their series, study and hospital."""
    return (
        Instance.select(Instance, Series.series_uid, Study.study_uid, Hospital.code)
        .join(Series)
        .join(Study)
        .switch(Instance)
        .join(Hospital)
    )


def _ae_record(row: ApplicationEntity) -> AERecord:
    return AERecord(
        ae_title=row.ae_title,
        hospital=row.hospital.code,
        issuer=row.hospital.issuer,
        host=row.host,
        port=row.port,
        allow=row.allow,
        scope=row.scope,
        description=row.description,
        enabled=row.enabled,
    )
