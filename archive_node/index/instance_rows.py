"""Index rows of kept instances: recorded at receipt, looked up, repointed, listed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from peewee import JOIN, fn

from ..errors import NotFound
from . import instance_insert
from .clock import utcnow
from .records import InstanceRecord, NewInstance, StudySummary, instance_record
from .session import Role
from .tables import Hospital, Instance, Patient, Series, Study

_UID_CHUNK = 500  # SQL parameters per IN (...) lookup


class InstanceRows(Role):
    """The patient-to-instance rows a received instance adds, and the reads of them."""

    def find(self, sop_uid: str) -> InstanceRecord | None:
        """The instance indexed under this SOP Instance UID, or None."""
        with self.session():
            return instance_insert.find_instance(self.db, sop_uid)

    def record(self, new: NewInstance) -> InstanceRecord | None:
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

    def replace(self, new: NewInstance) -> str:
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

    def by_uid(self, sop_uids: Iterable[str]) -> dict[str, InstanceRecord]:
        """The indexed instances among `sop_uids`, by SOP Instance UID."""
        uids = list(dict.fromkeys(sop_uids))
        found: dict[str, InstanceRecord] = {}
        with self.session():
            for start in range(0, len(uids), _UID_CHUNK):
                chunk = uids[start : start + _UID_CHUNK]
                for row in _instances().where(Instance.sop_uid.in_(chunk)):
                    found[row.sop_uid] = instance_record(row)
        return found

    def count(self) -> int:
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
            # study UID, patient ID, issuer, date, description, hospital, series, instances, size
            # (SUM: an int, or a Decimal on PostgreSQL)
            rows = list(
                cast(Iterable[tuple[str, str, str, str, str, str, int, int, Any]], query.tuples())
            )
            modalities: dict[str, set[str]] = {}
            uids = [row[0] for row in rows]
            for start in range(0, len(uids), 500):
                chunk = uids[start : start + 500]
                for study_uid, modality in cast(
                    Iterable[tuple[str, str]],
                    Series.select(Study.study_uid, Series.modality)
                    .join(Study)
                    .where(Study.study_uid.in_(chunk))
                    .tuples(),
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
