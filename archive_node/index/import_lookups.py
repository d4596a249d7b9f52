"""Index queries that place imported media: an existing study's patient and attributes, the
studies of an accession number, instance numbers."""

from __future__ import annotations

from dataclasses import dataclass

from peewee import fn

from .find_sql import study_or_patient
from .session import Role
from .tables import Hospital, Instance, Patient, Series, Study


@dataclass(frozen=True)
class StudyRecord:
    """A study as indexed, with its patient: what an instance added to it must agree with."""

    study_uid: str
    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    description: str
    referring_physician: str
    hospital: str


class ImportLookups(Role):
    """What `archive-node import` asks before it places media in a study."""

    def study(self, study_uid: str) -> StudyRecord | None:
        """The indexed study with this Study Instance UID, or None."""
        with self.session():
            rows = _studies().where(Study.study_uid == study_uid).tuples()
            return next((StudyRecord(*row) for row in rows), None)

    def studies_with_accession(
        self, accession_number: str, patient_id: str, issuer: str
    ) -> list[StudyRecord]:
        """The studies of this patient (in this issuer) that carry this Accession Number."""
        with self.session():
            rows = _studies().where(
                (Study.accession_number == accession_number)
                & (Patient.patient_id == patient_id)
                & (Patient.issuer == issuer)
            )
            return [StudyRecord(*row) for row in rows.tuples()]

    def instance_number(self, sop_uid: str) -> int | None:
        """The Instance Number indexed for this SOP Instance UID (None: none, or no row)."""
        with self.session():
            return (
                Instance.select(Instance.instance_number)
                .where(Instance.sop_uid == sop_uid)
                .scalar()
            )

    def last_instance_number(self, series_uid: str) -> int:
        """The highest Instance Number in the series (0 when it has none or does not exist)."""
        with self.session():
            value = (
                Instance.select(fn.MAX(Instance.instance_number))
                .join(Series)
                .where(Series.series_uid == series_uid)
                .scalar()
            )
            return int(value or 0)


def _studies():
    return (
        Study.select(
            Study.study_uid,
            Patient.patient_id,
            Patient.issuer,
            # the study's own patient attributes (as C-FIND answers it), else the patient's
            study_or_patient(Study.patient_name, Patient.patient_name),
            study_or_patient(Study.birth_date, Patient.birth_date),
            study_or_patient(Study.sex, Patient.sex),
            Study.study_date,
            Study.study_time,
            Study.accession_number,
            Study.study_id,
            Study.description,
            Study.referring_physician,
            Hospital.code,
        )
        .join(Patient)
        .switch(Study)
        .join(Hospital)
    )
