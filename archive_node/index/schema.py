"""Versioned schema: create a new index or upgrade an older one in place, never losing rows."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import cast

from peewee import Database, SqliteDatabase

from ..errors import SchemaError
from ..rules.matching import date_key, datetime_span, name_key, time_span
from .tables import (
    AUDIT_MODELS,
    CORRECTION_MODELS,
    MODELS,
    ORDER_MODELS,
    Acknowledgement,
    AECertificate,
    ApplicationEntity,
    CommitmentRequest,
    Instance,
    Patient,
    SchemaInfo,
    Study,
)

SCHEMA_VERSION = 9

# MIGRATIONS[n] upgrades a version n-1 index to version n, inside one transaction. Prefer
# additive changes (columns with defaults, new tables, indexes): on SQLite anything else
# rebuilds the table, which foreign keys forbid inside a transaction.


def study_spans(study_date: str, study_time: str) -> dict[str, str]:
    """The study's time and date-time matching keys, by column name."""
    time_start, time_end = time_span(study_time)
    datetime_start, datetime_end = datetime_span(study_date, study_time)
    return {
        "time_key": time_start,
        "time_end_key": time_end,
        "datetime_key": datetime_start,
        "datetime_end_key": datetime_end,
    }


def _add_matching_keys(db: Database) -> None:
    """Schema 2 (C-FIND): study time and date-time spans, the referring physician's and the
    birth date's matching keys, and patients' name keys recomputed (values.name_key)."""
    # Plain SQL, the same on both backends: playhouse's SQLite migrator adds a NOT NULL column
    # by rebuilding the table, which the foreign keys refuse inside a transaction.
    for column in (
        "time_key",
        "time_end_key",
        "datetime_key",
        "datetime_end_key",
        "referring_key",
    ):
        db.execute_sql(f'ALTER TABLE "study" ADD COLUMN "{column}" TEXT NOT NULL DEFAULT \'\'')
    db.execute_sql('CREATE INDEX "study_datetime_key" ON "study" ("datetime_key")')
    db.execute_sql('ALTER TABLE "patient" ADD COLUMN "birth_key" TEXT NOT NULL DEFAULT \'\'')
    query = Study.select(Study.id, Study.study_date, Study.study_time, Study.referring_physician)
    for row in list(query.tuples()):  # read first: no cursor open on a table being updated
        study_id, study_date, study_time, referring = cast(tuple[int, str, str, str], row)
        Study.update(
            **study_spans(study_date, study_time), referring_key=name_key(referring)
        ).where(Study.id == study_id).execute()
    patients = Patient.select(Patient.id, Patient.patient_name, Patient.birth_date).tuples()
    for patient_id, name, birth_date in list(cast(Iterable[tuple[int, str, str]], patients)):
        Patient.update(name_key=name_key(name), birth_key=date_key(birth_date)).where(
            Patient.id == patient_id
        ).execute()


def _add_commitment_requests(db: Database) -> None:
    """Schema 3: pending Storage Commitment reports, kept across restarts; an index on when
    instances were received (`verify --since/--until`)."""
    db.create_tables([CommitmentRequest])
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "instance_received_at" ON "instance" ("received_at")'
    )


def _add_acknowledgements(db: Database) -> None:
    """Schema 4: the acknowledgements of C-STOREs beyond the instance row's own (Storage
    Commitment commits only what an AE was told is stored), and a per-AE association limit."""
    db.create_tables([Acknowledgement])  # safe: IF NOT EXISTS
    table = ApplicationEntity._meta.table_name
    if "max_associations" not in {c.name for c in db.get_columns(table)}:
        db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "max_associations" INTEGER')


def _anonymous_patients(db: Database) -> None:
    """Schema 5 (part): a patient without a usable PatientID is a patient per study. Hospitals
    gain their placeholder IDs; patients an `anonymous_study` in their identity; studies the
    patient's name, birth date and sex they arrived with, filled from their patient row.

    Patients with an empty PatientID, until now one row per issuer for every such study, are
    split into one per study (each keeps the demographics the merged row had: the latest
    received). Written to run beside other version-5 steps, in the same transaction."""
    for table, column in (
        ("hospital", "placeholder_ids"),
        ("patient", "anonymous_study"),
        *(("study", c) for c in ("patient_name", "name_key", "birth_date", "birth_key", "sex")),
    ):
        if column not in {c.name for c in db.get_columns(table)}:
            db.execute_sql(
                f'ALTER TABLE "{table}" ADD COLUMN "{column}" TEXT NOT NULL DEFAULT \'\''
            )
    db.execute_sql('DROP INDEX IF EXISTS "patient_patient_id_issuer"')
    db.execute_sql(
        'CREATE UNIQUE INDEX IF NOT EXISTS "patient_patient_id_issuer_anonymous_study" '
        'ON "patient" ("patient_id", "issuer", "anonymous_study")'
    )
    # one statement per column, the same SQL on both backends
    for column in ("patient_name", "name_key", "birth_date", "birth_key", "sex"):
        db.execute_sql(
            f'UPDATE "study" SET "{column}" = '
            f'(SELECT p."{column}" FROM "patient" p WHERE p."id" = "study"."patient_id")'
        )
    merged = (
        Study.select(Study.id, Study.study_uid, Patient.id)
        .join(Patient, on=(Study.patient == Patient.id))
        .where(Patient.patient_id == "")
        .order_by(Study.id)
        .tuples()
    )
    for study_pk, study_uid, patient_pk in list(cast(Iterable[tuple[int, str, int]], merged)):
        source = Patient.get_by_id(patient_pk)
        own = Patient.create(
            patient_id=source.patient_id,
            issuer=source.issuer,
            patient_name=source.patient_name,
            name_key=source.name_key,
            birth_date=source.birth_date,
            sex=source.sex,
            birth_key=source.birth_key,
            anonymous_study=study_uid,
        )
        Study.update(patient=own.id).where(Study.id == study_pk).execute()
    Patient.delete().where((Patient.patient_id == "") & (Patient.anonymous_study == "")).execute()


def _series_modality_index(db: Database) -> None:
    """Schema 5 (C-FIND, relational queries): the series.modality index that a SERIES query on
    Modality alone walks (an index of schema 1 has it already: this only makes sure), and the
    person name keys of names with an ideographic or phonetic group recomputed to hold every
    group (matching.name_key). Idempotent."""
    db.execute_sql('CREATE INDEX IF NOT EXISTS "series_modality" ON "series" ("modality")')
    _name_group_keys(db)


def _name_group_keys(db: Database) -> None:
    """Patients' and referring physicians' name keys of every name with more than one component
    group ('=' in the value): other names' keys are unchanged (matching.name_key)."""
    patients = Patient.select(Patient.id, Patient.patient_name).where(
        Patient.patient_name.contains("=")
    )
    for patient_id, name in list(cast(Iterable[tuple[int, str]], patients.tuples())):
        Patient.update(name_key=name_key(name)).where(Patient.id == patient_id).execute()
    studies = Study.select(Study.id, Study.referring_physician).where(
        Study.referring_physician.contains("=")
    )
    for study_id, referring in list(cast(Iterable[tuple[int, str]], studies.tuples())):
        Study.update(referring_key=name_key(referring)).where(Study.id == study_id).execute()


def _schema_5(db: Database) -> None:
    """Schema 5: relational C-FIND's index and every name group's matching key, then a patient
    per study for the unidentified (which copies the patients' keys, recomputed first, to their
    studies)."""
    _series_modality_index(db)
    _anonymous_patients(db)


def _add_tls(db: Database) -> None:
    """Schema 6 (DICOM TLS): each AE's TLS mode, and the client certificates bound to AEs."""
    table = ApplicationEntity._meta.table_name
    if "tls" not in {c.name for c in db.get_columns(table)}:
        db.execute_sql(
            f'ALTER TABLE "{table}" ADD COLUMN "tls" VARCHAR(16) NOT NULL DEFAULT \'optional\''
        )
    db.create_tables([AECertificate])  # safe: IF NOT EXISTS


def _add_audit_trail(db: Database) -> None:
    """Schema 7 (audit trail): the records, the patients and studies they touched, each
    node's chain head, and the C-STORE tallies not yet sealed into records."""
    db.create_tables(AUDIT_MODELS)  # safe: IF NOT EXISTS


def _add_corrections(db: Database) -> None:
    """Schema 8 (corrections): rejected and hidden rows, corrected studies and patients with
    the identifiers they had, patient aliases and the corrections made."""
    boolean = (
        "INTEGER NOT NULL DEFAULT 0"
        if isinstance(db, SqliteDatabase)
        else ("BOOLEAN NOT NULL DEFAULT false")
    )
    columns = {
        "patient": {"hidden": boolean, "corrected": boolean},
        "study": {
            "hidden": boolean,
            "corrected": boolean,
            "prior_ids": "TEXT NOT NULL DEFAULT ''",
        },
        "series": {"hidden": boolean},
        "instance": {
            "rejection": "VARCHAR(16) NOT NULL DEFAULT ''",
            "rejected_at": "TIMESTAMP",
            "delete_after": "TIMESTAMP",
            "deleted": boolean,
        },
    }
    for table, added in columns.items():
        present = {c.name for c in db.get_columns(table)}
        for column, ddl in added.items():
            if column not in present:
                db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {ddl}')
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "instance_delete_after" ON "instance" ("delete_after") '
        'WHERE "delete_after" IS NOT NULL'
    )
    db.execute_sql(
        'CREATE INDEX IF NOT EXISTS "instance_rejected" ON "instance" ("series_id") '
        "WHERE \"rejection\" != ''"
    )
    db.create_tables(CORRECTION_MODELS)  # safe: IF NOT EXISTS


def _add_orders(db: Database) -> None:
    """Schema 9 (orders): HL7 senders and the messages taken, scheduled procedure steps (the
    Modality Worklist) and performed procedure steps (MPPS)."""
    db.create_tables(ORDER_MODELS)  # safe: IF NOT EXISTS


MIGRATIONS: dict[int, Callable[[Database], None]] = {
    2: _add_matching_keys,
    3: _add_commitment_requests,
    4: _add_acknowledgements,
    5: _schema_5,
    6: _add_tls,
    7: _add_audit_trail,
    8: _add_corrections,
    9: _add_orders,
}


def current_version(db: Database) -> int | None:
    """The index's schema version, or None when the index is empty."""
    if not db.table_exists(SchemaInfo._meta.table_name):
        return None
    row = SchemaInfo.get_or_none(SchemaInfo.key == "version")
    return int(row.value) if row else None


def init_schema(db: Database, name: str = "the index") -> tuple[int | None, int]:
    """Create the schema, or upgrade it to SCHEMA_VERSION; return (before, after).

    Raises SchemaError when the index was made by a newer release.
    """
    with db.atomic():
        before = current_version(db)
        if before is not None and before > SCHEMA_VERSION:
            raise SchemaError(
                f"{_index(name)} has schema version {before}, newer than this release's "
                f"{SCHEMA_VERSION}: upgrade archive-node"
            )
        if before is None:
            db.create_tables(MODELS, safe=True)
        else:
            for version in range(before + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version](db)
        SchemaInfo.insert(key="version", value=str(SCHEMA_VERSION)).on_conflict(
            conflict_target=[SchemaInfo.key], update={SchemaInfo.value: str(SCHEMA_VERSION)}
        ).execute()
    return before, SCHEMA_VERSION


# The SchemaInfo key of the identity of the store this index belongs to (integrity/pairing.py);
# a key of its own, so no schema change: an index without it is one made before identities.
STORE_IDENTITY = "store_identity"


def store_identity(db: Database) -> str | None:
    """The identity of the store the index belongs to, or None when none is recorded."""
    row = SchemaInfo.get_or_none(SchemaInfo.key == STORE_IDENTITY)
    return str(row.value) if row else None


def record_store_identity(db: Database, identity: str) -> str:
    """Record `identity` unless an identity is recorded already; return the recorded one."""
    SchemaInfo.insert(key=STORE_IDENTITY, value=identity).on_conflict_ignore().execute()
    recorded = store_identity(db)
    assert recorded is not None
    return recorded


def holds_instances(db: Database) -> bool:
    """Whether any instance row exists (deleted or rejected ones included)."""
    return Instance.select(Instance.id).limit(1).exists()


def check_schema(db: Database, name: str = "the index") -> None:
    """Raise SchemaError, naming the index (`name`: its URL without password), unless it has
    exactly this release's schema."""
    version = current_version(db)
    if version is None:
        raise SchemaError(f"{_index(name)} has no schema: run `archive-node init` first")
    if version != SCHEMA_VERSION:
        raise SchemaError(
            f"{_index(name)} has schema version {version}, this release needs "
            f"{SCHEMA_VERSION}: run `archive-node init` to upgrade"
        )


def _index(name: str) -> str:
    return name if name == "the index" else f"index {name}"
