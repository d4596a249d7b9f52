"""The rows one kept instance adds to the index, in hand-written SQL: the C-STORE hot path.

Peewee builds each statement anew from its query objects, 100-200 us apiece; the eleven it took
per received instance were a third of the node's CPU with small objects. These statements are
written once, in SQL that SQLite (3.24+) and PostgreSQL both run, on the models' own tables
and columns, and take only the statements the common case needs: a study (with its patient) and
a series already indexed cost one SELECT each.

An instance is filed only where its UIDs say it belongs (PS3.3 C.7.2.1, C.7.3.1: a study is
one patient's, a series one study's): a Study Instance UID recorded for another patient, or a
Series Instance UID recorded for another study, raises UIDConflict and nothing is written.

A patient is (PatientID, IssuerOfPatientID), but an empty PatientID, or one of the sending
hospital's placeholder IDs ('UNKNOWN'), identifies nobody: such a new study gets an anonymous
patient of its own (tables.Patient.anonymous_study), which only its own instances join. Each
study also keeps the patient's name, birth date and sex its instances gave (C-FIND answers a
study with them), so a later study of the same patient never renames an earlier one.

Corrections (schema 8, index/corrections.py) are kept on the way in: an instance under an
identifier its study was filed under before a move or merge still joins it, one under a merged
or relabelled identifier joins the patient it became (patient_alias), corrected demographics
are not overwritten, and an instance stored into what rejections had hidden shows it again.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from peewee import Database

from ..dicom import status
from ..errors import UIDConflict
from ..rules.corrections import prior_ids, with_prior
from ..rules.matching import date_key, name_key
from .clock import utcnow
from .records import InstanceRecord, NewInstance
from .schema import study_spans
from .tables import Instance, Study

log = logging.getLogger(__name__)

_INSTANCE_RECORD = """
SELECT i.sop_uid, i.sop_class_uid, i.transfer_syntax_uid, st.study_uid, se.series_uid,
       i.path, i.size, i.sha256, i.calling_ae, h.code, i.received_at, i.rejection, i.deleted
FROM instance i
JOIN series se ON se.id = i.series_id
JOIN study st ON st.id = se.study_id
JOIN hospital h ON h.id = i.hospital_id
WHERE i.sop_uid = ?"""
_HOSPITAL = "SELECT id, placeholder_ids FROM hospital WHERE code = ?"
# anonymous_study is '' for every patient identified by (PatientID, issuer), else the study's UID
_PATIENT = """
SELECT id, patient_name, birth_date, sex, corrected FROM patient
WHERE patient_id = ? AND issuer = ? AND anonymous_study = ?"""
_NEW_PATIENT = """
INSERT INTO patient (patient_id, issuer, anonymous_study, patient_name, name_key, birth_date,
                     birth_key, sex)
VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""
_DROP_UNUSED_PATIENT = """
DELETE FROM patient WHERE id = ? AND NOT EXISTS (SELECT 1 FROM study WHERE patient_id = ?)"""
# The study with its patient's identity and demographics, and its own: the one SELECT an
# instance of an indexed study needs before its series (the patient is looked up only for a
# new study).
_STUDY = """
SELECT st.id, p.id, p.patient_id, p.issuer, p.patient_name, p.birth_date, p.sex,
       st.patient_name, st.birth_date, st.sex, st.corrected, st.prior_ids, p.corrected,
       st.hidden OR p.hidden
FROM study st
JOIN patient p ON p.id = st.patient_id
WHERE st.study_uid = ?"""
_NEW_STUDY = """
INSERT INTO study (study_uid, patient_id, hospital_id, study_date, study_time, accession_number,
                   study_id, description, referring_physician, created_at, time_key,
                   time_end_key, datetime_key, datetime_end_key, referring_key, patient_name,
                   name_key, birth_date, birth_key, sex, corrected, prior_ids)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""
# A patient merged away, or relabelled by an issuer change: the patient it became (schema 8).
_ALIAS = "SELECT target_id FROM patient_alias WHERE patient_id = ? AND issuer = ?"
_SERIES = "SELECT id, study_id, hidden FROM series WHERE series_uid = ?"
# An instance stored into what rejections had hidden shows it again (rules/corrections.py).
_SHOW_SERIES = "UPDATE series SET hidden = ? WHERE id = ?"
_SHOW_STUDY = "UPDATE study SET hidden = ? WHERE id = ?"
_SHOW_PATIENT = (
    "UPDATE patient SET hidden = ? WHERE id = (SELECT patient_id FROM study WHERE id = ?)"
)
_NEW_SERIES = """
INSERT INTO series (series_uid, study_id, modality, series_number, description, body_part)
VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""
# the columns of Instance.file_columns, in the order _NEW_INSTANCE names them
_FILE_COLUMNS = (
    "transfer_syntax_uid",
    "instance_number",
    "number_of_frames",
    "path",
    "size",
    "sha256",
)
_NEW_INSTANCE = f"""
INSERT INTO instance (sop_uid, series_id, sop_class_uid, {", ".join(_FILE_COLUMNS)},
                      received_at, calling_ae, hospital_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"""

_statements: dict[tuple[str, str], str] = {}


def _run(db: Database, template: str, params: tuple[Any, ...]) -> Any:
    """Execute `template` (written with ? placeholders) in the backend's parameter style."""
    key = (db.param, template)
    sql = _statements.get(key)
    if sql is None:
        sql = _statements[key] = template.replace("?", db.param)
    return db.execute_sql(sql, params)


def find_instance(db: Database, sop_uid: str) -> InstanceRecord | None:
    """The indexed instance with this SOP Instance UID, with its study, series and hospital."""
    row = _run(db, _INSTANCE_RECORD, (sop_uid,)).fetchone()
    if row is None:
        return None
    *values, received_at, rejection, deleted = row
    return InstanceRecord(  # type: ignore[misc]  # `values` holds the fields before received_at
        *values,
        received_at=Instance.received_at.python_value(received_at),
        rejection=rejection,
        deleted=bool(deleted),
    )


def hospital_row(db: Database, code: str) -> tuple[int, frozenset[str]] | None:
    """The row id of hospital `code` and its placeholder IDs, or None."""
    row = _run(db, _HOSPITAL, (code,)).fetchone()
    return (row[0], placeholder_set(row[1])) if row else None


def placeholder_set(stored: str) -> frozenset[str]:
    """A hospital's placeholder_ids column as a set."""
    return frozenset(v for v in stored.split("\\") if v)


def is_anonymous(patient_id: str, placeholders: frozenset[str]) -> bool:
    """True when a PatientID identifies nobody: empty (PS3.3 C.7.1.1: Type 2, may be empty), or
    one the sending hospital gives patients it cannot identify."""
    return not patient_id.strip() or patient_id.strip() in placeholders


def insert_instance(
    db: Database,
    new: NewInstance,
    hospital: int,
    received_at: datetime,
    placeholders: frozenset[str] = frozenset(),
) -> InstanceRecord | None:
    """Add the patient, study, series and instance rows of `new`, in the caller's transaction.

    Returns None when the instance row was inserted (or another writer's row names the very
    file `new` names), or the record of the instance another writer indexed first under this
    SOP Instance UID (then nothing of `new` was written but patient, study or series rows it
    lacked).

    `placeholders` are the sending hospital's placeholder IDs: with one of them, or none, a new
    study's patient is anonymous (a patient of its own).

    Raises UIDConflict when the study is recorded for another patient or the series for
    another study (the caller's transaction must then be rolled back: a new patient row may
    have been written).
    """
    h = new.header
    study, study_hidden = _study(db, h, new.issuer, hospital, placeholders)
    series, series_hidden = _series(db, h, study)
    files = Instance.file_columns(h, path=new.path, size=new.size, sha256=new.sha256)
    inserted = _run(
        db,
        _NEW_INSTANCE,
        (
            h.sop_instance_uid,
            series,
            h.sop_class_uid,
            *(files[column] for column in _FILE_COLUMNS),
            Instance.received_at.db_value(received_at),
            new.calling_ae,
            hospital,
        ),
    ).rowcount
    if inserted == 1:
        if series_hidden or study_hidden:
            _show(db, series, study)
        return None
    # A concurrent writer won the race: its row names its file, unless both kept the same one
    # (two resends that replaced the same leftover): then it is ours too, and must stay.
    existing = find_instance(db, h.sop_instance_uid)
    return None if existing is not None and existing.path == new.path else existing


def _show(db: Database, series: int, study: int) -> None:
    """Show a series, its study and patient that rejections had hidden: an instance was
    stored into them."""
    _run(db, _SHOW_SERIES, (False, series))
    _run(db, _SHOW_STUDY, (False, study))
    _run(db, _SHOW_PATIENT, (False, study))


def _study(
    db: Database, h: Any, issuer: str, hospital: int, placeholders: frozenset[str]
) -> tuple[int, bool]:
    """The study's row id, and whether it or its patient is hidden: an indexed study, if the
    instance's patient is the study's (its demographics, and the study's own, brought up to
    date unless corrected), else a new study of the instance's patient (created or brought up
    to date; a new one of its own when anonymous; the patient it became, when merged away or
    relabelled). Raises UIDConflict."""
    row = _run(db, _STUDY, (h.study_uid,)).fetchone()
    if row is None:
        anonymous = h.study_uid if is_anonymous(h.patient_id, placeholders) else ""
        patient, aliased = _patient(db, h, issuer, anonymous)
        spans = study_spans(h.study_date, h.study_time)
        name, birth = h.patient_name, h.patient_birth_date
        inserted = _run(
            db,
            _NEW_STUDY,
            (
                h.study_uid,
                patient,
                hospital,
                h.study_date,
                h.study_time,
                h.accession_number,
                h.study_id,
                h.study_description,
                h.referring_physician,
                Study.created_at.db_value(utcnow()),
                spans["time_key"],
                spans["time_end_key"],
                spans["datetime_key"],
                spans["datetime_end_key"],
                name_key(h.referring_physician),
                name,
                name_key(name),
                birth,
                date_key(birth),
                h.patient_sex,
                aliased,
                with_prior("", (h.patient_id, issuer)) if aliased else "",
            ),
        ).rowcount
        row = _run(db, _STUDY, (h.study_uid,)).fetchone()
        if inserted == 1:
            return row[0], bool(row[13])
        # Another writer created the study first, for its own instance's patient.
        if row[1] != patient:
            _check_patient(h, row)
            if anonymous:  # made for this study, which has another patient: nobody's
                _run(db, _DROP_UNUSED_PATIENT, (patient, patient))
    else:
        _check_patient(h, row)
    if not row[10]:  # a corrected study keeps what the admin set, and so does its patient
        if not row[12]:
            _update_demographics(db, h, "patient", row[1], row[4:7])
        _update_demographics(db, h, "study", row[0], row[7:10])
    return row[0], bool(row[13])


def _check_patient(h: Any, study: tuple[Any, ...]) -> None:
    """Raise UIDConflict unless the instance's patient is the study's: the same PatientID and,
    when the instance names its IssuerOfPatientID, the same issuer. An instance without one
    joins the study's patient: the issuer is the study's, not its sender's.

    So an anonymous study (empty or placeholder PatientID) takes further instances with that
    same PatientID, and refuses one with a real PatientID: that the unknown patient is this one
    is a reconciliation for a person to make, never for a UID to imply; and an identified
    patient's study refuses instances without a PatientID alike (PS3.3 C.7.2.1: a study is
    one patient's)."""
    _, _, patient_id, issuer = study[:4]
    explicit = h.issuer_of_patient_id
    if h.patient_id == patient_id and (not explicit or explicit == issuer):
        return
    # a study moved to its right patient (or merged) still takes the late instances the
    # modality sends under the identifier it was filed under before
    if any(
        h.patient_id == prior_id and (not explicit or explicit == prior_issuer)
        for prior_id, prior_issuer in prior_ids(study[11])
    ):
        return
    log.warning(
        "instance %s refused: study %s is recorded for another patient",
        h.sop_instance_uid,
        h.study_uid,
    )
    raise UIDConflict(status.UID_CONFLICT, "StudyInstanceUID is recorded for another patient")


def _patient(db: Database, h: Any, issuer: str, anonymous: str) -> tuple[int, bool]:
    """The patient's row id, created or brought up to date (the latest non-empty demographics
    win, unless an admin corrected them), and whether it is the patient an alias names (a
    patient merged away or relabelled: the study is filed under the one it became). `anonymous`
    is '' for an identified patient, else the UID of the study it is made for."""
    key = (h.patient_id, issuer, anonymous)
    row = _run(db, _PATIENT, key).fetchone()
    if row is None and not anonymous:
        alias = _run(db, _ALIAS, (h.patient_id, issuer)).fetchone()
        if alias is not None:
            return alias[0], True
    if row is None:
        name, birth = h.patient_name, h.patient_birth_date
        _run(
            db,
            _NEW_PATIENT,
            (*key, name, name_key(name), birth, date_key(birth), h.patient_sex),
        )
        row = _run(db, _PATIENT, key).fetchone()
    pk, *stored, corrected = row
    if not corrected:
        _update_demographics(db, h, "patient", pk, stored)
    return pk, False


def _update_demographics(db: Database, h: Any, table: str, pk: int, stored: Any) -> None:
    """Bring the name, birth date and sex (`stored`, in that order) of row `pk` of `table`
    (patient or study) up to the instance's non-empty values."""
    demographics = {
        "patient_name": h.patient_name,
        "birth_date": h.patient_birth_date,
        "sex": h.patient_sex,
    }
    changed = {
        column: value
        for (column, value), old in zip(demographics.items(), stored, strict=True)
        if value and value != old
    }
    if changed:
        if "patient_name" in changed:
            changed["name_key"] = name_key(h.patient_name)
        if "birth_date" in changed:
            changed["birth_key"] = date_key(h.patient_birth_date)
        columns = ", ".join(f"{column} = ?" for column in changed)
        # not cached: the column list varies, and demographics change rarely
        db.execute_sql(
            f"UPDATE {table} SET {columns} WHERE id = ?".replace("?", db.param),
            (*changed.values(), pk),
        )


def _series(db: Database, h: Any, study: int) -> tuple[int, bool]:
    """The series' row id, created if new, and whether it is hidden. Raises UIDConflict when it
    is another study's."""
    row = _run(db, _SERIES, (h.series_uid,)).fetchone()
    if row is None:
        _run(
            db,
            _NEW_SERIES,
            (
                h.series_uid,
                study,
                h.modality,
                h.series_number,
                h.series_description,
                h.body_part,
            ),
        )
        row = _run(db, _SERIES, (h.series_uid,)).fetchone()
    if row[1] != study:
        log.warning(
            "instance %s refused: series %s is recorded for another study",
            h.sop_instance_uid,
            h.series_uid,
        )
        raise UIDConflict(status.UID_CONFLICT, "SeriesInstanceUID is recorded for another study")
    return row[0], bool(row[2])
