"""Index rows of kept instances: recorded at receipt, looked up, repointed, listed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from peewee import JOIN, fn

from ..errors import NotFound
from ..rules.commitment import Acknowledged
from . import instance_insert
from .audit_rows import Tally, count_store
from .clock import utcnow
from .records import InstanceRecord, NewInstance, StudySummary, instance_record
from .session import Role
from .tables import Acknowledgement, Hospital, Instance, Patient, Series, Study

_UID_CHUNK = 500  # SQL parameters per IN (...) lookup


class InstanceRows(Role):
    """The patient-to-instance rows a received instance adds, and the reads of them."""

    def find(self, sop_uid: str) -> InstanceRecord | None:
        """The instance indexed under this SOP Instance UID, or None."""
        with self.session():
            return instance_insert.find_instance(self.db, sop_uid)

    def record(
        self,
        new: NewInstance,
        tally: Tally | None = None,
        then: Callable[[], None] | None = None,
    ) -> InstanceRecord | None:
        """Insert patient/study/series/instance rows for a kept file in one durable commit,
        with the instance counted in its association's audit `tally` in the same commit.

        Returns None when inserted, or the record already indexed under this SOP Instance UID
        (then no instance row was written). The caller has looked the instance up before keeping
        the file; a writer that indexed it since is caught by the conflict and the path check.
        Raises UIDConflict (nothing written) for a study of another patient or a series of
        another study (instance_insert.py), NotFound for an unknown hospital. `then` runs in
        the same transaction once the row is in (a rejection note's rejection): what it raises
        undoes the whole.
        """
        with self.session(write=True):
            hospital = instance_insert.hospital_row(self.db, new.hospital)
            if hospital is None:
                raise NotFound(f"no hospital {new.hospital}")
            pk, placeholders = hospital
            existing = instance_insert.insert_instance(self.db, new, pk, utcnow(), placeholders)
            if existing is None and tally is not None:
                count_store(self.db, tally)
            if existing is None and then is not None:
                then()
            return existing

    def replace(
        self, new: NewInstance, *, take_over: bool = True, expect_sha256: str | None = None
    ) -> str | None:
        """Point an existing instance row at a new file; return the path it named until now.
        With `expect_sha256`, only while the row still records that hash: None (and nothing
        changed) when another store replaced it meanwhile.

        `take_over`: the new copy's sender becomes the row's, and the displaced copy's sender
        keeps an acknowledgement of what it sent (a replacement). Otherwise (a restored file,
        the same content) the row keeps its sender, and the new copy's sender gets an
        acknowledgement of its own when it is another AE.

        The row is read and written in one transaction (locked on PostgreSQL, serialised by
        BEGIN IMMEDIATE on SQLite), so concurrent replacements each get the path they displaced.
        Raises NotFound when the row is gone.
        """
        h = new.header
        with self.session(write=True):
            row = (
                Instance.select(
                    Instance.id, Instance.path, Instance.calling_ae, Instance.sha256, Hospital.code
                )
                .join(Hospital)
                .where(Instance.sop_uid == h.sop_instance_uid)
                .for_update(self.db.for_update)
                .tuples()
                .first()
            )
            if row is None:
                raise NotFound(f"instance {h.sop_instance_uid} vanished during replacement")
            pk, path, calling_ae, sha256, hospital = row
            if expect_sha256 is not None and sha256 != expect_sha256:
                return None
            fields = Instance.file_columns(h, path=new.path, size=new.size, sha256=new.sha256)
            kept = Acknowledged(calling_ae, hospital, sha256)
            arriving = Acknowledged(new.calling_ae, new.hospital, new.sha256)
            if take_over:
                fields["calling_ae"] = new.calling_ae
                other = kept if kept != arriving else None
            else:
                same_sender = (calling_ae, hospital) == (new.calling_ae, new.hospital)
                other = None if same_sender else arriving
            Instance.update(**fields, received_at=utcnow()).where(Instance.id == pk).execute()
            if other is not None:
                self._acknowledge(h.sop_instance_uid, other)
            return path

    def acknowledge(self, sop_uid: str, acknowledged: Acknowledged) -> None:
        """Record that a C-STORE of `sop_uid` was acknowledged to another AE than the row's."""
        with self.session(write=True):
            self._acknowledge(sop_uid, acknowledged)

    @staticmethod
    def _acknowledge(sop_uid: str, acknowledged: Acknowledged) -> None:
        Acknowledgement.insert(
            sop_uid=sop_uid,
            calling_ae=acknowledged.calling_ae,
            hospital=acknowledged.hospital,
            sha256=acknowledged.sha256,
            acknowledged_at=utcnow(),
        ).on_conflict_ignore().execute()

    def acknowledgements(self, sop_uids: Iterable[str]) -> dict[str, list[Acknowledged]]:
        """What was acknowledged under each of `sop_uids` besides its row's own sender."""
        uids = list(dict.fromkeys(sop_uids))
        found: dict[str, list[Acknowledged]] = {}
        with self.session():
            for start in range(0, len(uids), _UID_CHUNK):
                chunk = uids[start : start + _UID_CHUNK]
                query = Acknowledgement.select(
                    Acknowledgement.sop_uid,
                    Acknowledgement.calling_ae,
                    Acknowledgement.hospital,
                    Acknowledgement.sha256,
                ).where(Acknowledgement.sop_uid.in_(chunk))
                for uid, *values in cast(Iterable[tuple[str, str, str, str]], query.tuples()):
                    found.setdefault(uid, []).append(Acknowledged(*values))
        return found

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
