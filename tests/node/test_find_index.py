"""The index behind C-FIND on both backends: schema 2 migration, index use of the selective
filters, and values that are bound parameters, never SQL."""

from __future__ import annotations

import pytest
from peewee import SqliteDatabase

from archive_node.dicom import status
from archive_node.dicom.instance_header import InstanceHeader
from archive_node.index import SCHEMA_VERSION, find_sql
from archive_node.index.tables import Patient, SchemaInfo, Study
from archive_node.rules.access import Peer
from archive_node.rules.query import PATIENT_ROOT, STUDY_ROOT, parse_query
from tests.helpers import dicom_objects
from tests.helpers.identifiers import identifier

PEER = Peer("UNN_WS", "UNN", "UNN", "127.0.0.1", None, frozenset({"find"}), "region")


def record(service, **overrides) -> InstanceHeader:
    """An indexed instance (no file) of a study on 2024-01-10 at 10:15 of ØDEGÅRD^ÅSE."""
    defaults = {
        "patient_id": "P1",
        "patient_name": "ØDEGÅRD^ÅSE^^",
        "patient_birth_date": "19700101",
        "patient_sex": "F",
        "study_date": "20240110",
        "study_time": "1015",
        "accession_number": "A1",
        "study_id": "1",
        "referring_physician": "Lægen^Kari",
        "modality": "US",
    }
    return dicom_objects.index_row(
        service, dicom_objects.instance_header(**{**defaults, **overrides})
    )


def find_uids(service, **keys) -> set[str]:
    responses = list(service.find(PEER, identifier("STUDY", **keys), STUDY_ROOT))
    assert responses[-1].status == status.SUCCESS, responses[-1].comment
    return {r.identifier.StudyInstanceUID for r in responses[:-1]}


# -- schema 2 ----------------------------------------------------------------------------------


def test_schema_1_index_is_upgraded_with_matching_keys_filled(service, registry):
    h = record(service)
    db = service.index.db
    sqlite = isinstance(db, SqliteDatabase)
    with service.index.session():  # make it look like a schema 1 index
        if sqlite:  # SQLite's DROP COLUMN rechecks foreign keys; outside a transaction only
            db.execute_sql("PRAGMA foreign_keys = OFF")
        db.execute_sql('DROP INDEX IF EXISTS "study_datetime_key"')
        db.execute_sql('ALTER TABLE "patient" DROP COLUMN "birth_key"')
        for column in (
            "time_key",
            "time_end_key",
            "datetime_key",
            "datetime_end_key",
            "referring_key",
        ):
            db.execute_sql(f'ALTER TABLE "study" DROP COLUMN "{column}"')
        if sqlite:
            db.execute_sql("PRAGMA foreign_keys = ON")
    with service.index.session(write=True):
        Patient.update(name_key="ødegård^åse^^").execute()  # schema 1 casefolded the whole name
        SchemaInfo.update(value="1").where(SchemaInfo.key == "version").execute()
    assert service.index.init_schema() == (1, SCHEMA_VERSION)
    service.index.check_schema()
    with service.index.session():
        study = Study.get(Study.study_uid == h.study_uid)
        assert (study.time_key, study.time_end_key) == ("101500.000000", "101559.999999")
        assert study.datetime_key == "20240110101500.000000"
        assert study.datetime_end_key == "20240110101559.999999"
        assert study.referring_key == "lægen^kari"
        assert Patient.get().name_key == "ødegård^åse"
        assert Patient.get().birth_key == "19700101"
    assert find_uids(service, PatientName="ødegård^åse", StudyDate="20240110") == {h.study_uid}


# -- index use ---------------------------------------------------------------------------------

SELECTIVE = [
    pytest.param({"PatientID": "P1"}, id="PatientID"),
    pytest.param({"AccessionNumber": "A1"}, id="AccessionNumber"),
    pytest.param({"StudyInstanceUID": "1.2.3"}, id="StudyInstanceUID"),
    pytest.param({"StudyDate": "20240101-20240131"}, id="StudyDate-range"),
    pytest.param({"StudyDate": "20240101-20240131", "StudyTime": "1000-1200"}, id="date-time"),
    pytest.param({"ModalitiesInStudy": "US"}, id="ModalitiesInStudy"),
]


SCOPED = [
    pytest.param("PATIENT", {"PatientID": "P1"}, id="PATIENT-PatientID"),
    pytest.param("STUDY", {"PatientID": "P1"}, id="STUDY-PatientID"),
    pytest.param("STUDY", {"StudyDate": "20240101-20240131"}, id="STUDY-date-range"),
    pytest.param(
        "STUDY", {"AccessionNumber": "A1", "ModalitiesInStudy": "US"}, id="STUDY-acc-mod"
    ),
    pytest.param("SERIES", {"StudyInstanceUID": "1.2.3"}, id="SERIES"),
    pytest.param(
        "IMAGE", {"StudyInstanceUID": "1.2.3", "SeriesInstanceUID": "1.2.3.4"}, id="IMAGE"
    ),
]


@pytest.mark.parametrize("keys", SELECTIVE)
def test_selective_study_queries_never_scan_a_table(service, registry, keys):
    assert_no_table_scan(service, "STUDY", keys, hospital=None)


@pytest.mark.parametrize(("level", "keys"), SCOPED)
def test_hospital_scoped_queries_never_scan_a_table(service, registry, level, keys):
    assert_no_table_scan(service, level, keys, hospital="UNN")


def assert_no_table_scan(service, level: str, keys: dict[str, str], hospital: str | None):
    for _ in range(3):
        record(service)
    query = identifier(level, **keys)
    model = PATIENT_ROOT if level == "PATIENT" else STUDY_ROOT
    db = service.index.db
    with service.index.session():
        scope = find_sql.hospital_pk(hospital)
        select = find_sql.matches_select(db, parse_query(query, model), scope)
        sql, params = select.limit(100).sql()
        if isinstance(db, SqliteDatabase):
            plan = [row[3] for row in db.execute_sql(f"EXPLAIN QUERY PLAN {sql}", params)]
            # Every table is reached by SEARCH on an index; a SCAN reads the whole table.
            assert not [step for step in plan if step.startswith("SCAN")], plan
        else:
            # PostgreSQL prefers a sequential scan on tiny tables: forbid it to prove an
            # index can serve the query.
            db.execute_sql("SET enable_seqscan = off")
            try:
                plan = [row[0] for row in db.execute_sql(f"EXPLAIN {sql}", params)]
            finally:
                db.execute_sql("SET enable_seqscan = on")
            assert not [step for step in plan if "Seq Scan" in step], plan


# -- values are data, never SQL ----------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    ["O'BRIEN", "x' OR '1'='1", "'; DROP TABLE study; --", '"quoted"', "back\\slash"],
)
def test_hostile_values_match_only_themselves(service, registry, hostile):
    target = record(service, accession_number=hostile.replace("\\", "/")[:16])
    record(service, accession_number="OTHER")
    value = hostile.replace("\\", "/")[:16]
    assert find_uids(service, AccessionNumber=value) == {target.study_uid}
    assert find_uids(service, AccessionNumber=value[:3] + "*") == {target.study_uid}
    with service.index.session():
        assert Study.select().count() == 2


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("50%*", {"50%_OFF"}), ("50_*", set()), ("*[A]*", {"[A]B"}), ("?A]*", {"[A]B"})],
)
def test_sql_wildcards_are_literal(service, registry, pattern, expected):
    uids = {record(service, accession_number=v).study_uid: v for v in ("50%_OFF", "50X", "[A]B")}
    found = find_uids(service, AccessionNumber=pattern)
    assert {uids[u] for u in found} == expected
