"""Patients without a usable PatientID are never merged, and each study answers with the patient
attributes it arrived with: C-FIND, retrieve, import, reindex, schema 5, on both backends."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pytest
from peewee import SqliteDatabase
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PATIENT_FIND

from archive_node import integrity
from archive_node.dicom import status
from archive_node.importing.importer import Importer, ImportRequest
from archive_node.index import SCHEMA_VERSION
from archive_node.index.clock import utcnow
from archive_node.index.tables import Patient, SchemaInfo, Study
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, find, push, store, store_at_once
from tests.helpers.identifiers import identifier
from tests.helpers.media_files import pdf
from tests.helpers.postgres import pg_connect, reset_pg
from tests.helpers.retrieving import (
    PATIENT_GET,
    PATIENT_MOVE,
    STUDY_GET,
    Received,
    get,
    get_association,
    move,
)
from tests.helpers.serving import make_config, serving

ONE = {"patient_name": "EMERGENCY^ONE", "birth": "19800101", "sex": "M"}
TWO = {"patient_name": "EMERGENCY^TWO", "birth": "19900202", "sex": "F"}


def emergency(patient_id: str | None, who: dict[str, str], **kw):
    """An instance of an unidentified patient: PatientID `patient_id` (None: absent)."""
    ds = dicom_objects.secondary_capture(
        patient_id=patient_id or "", patient_name=who["patient_name"], **kw
    )
    ds.PatientBirthDate, ds.PatientSex = who["birth"], who["sex"]
    if patient_id is None:
        del ds.PatientID
    return ds


def study_answers(node, model=None, **keys) -> dict[str, tuple[str, str, str]]:
    """STUDY level answers by StudyInstanceUID: (PatientName, PatientBirthDate, PatientSex)."""
    base = {"PatientName": "", "PatientBirthDate": "", "PatientSex": "", "StudyInstanceUID": ""}
    query = identifier("STUDY", **{**base, **keys})
    final, found = find(node, query, **({"model": model} if model else {}))
    assert final.Status == status.SUCCESS
    return {
        ds.StudyInstanceUID: (str(ds.PatientName), ds.PatientBirthDate, ds.PatientSex)
        for ds in found
    }


def patient_answers(node, **keys) -> list[tuple[str, str, str, str]]:
    """PATIENT level answers (Patient Root): (PatientID, PatientName, birth date, studies)."""
    base = {"PatientID": "", "PatientName": "", "PatientBirthDate": ""}
    query = identifier("PATIENT", **{**base, "NumberOfPatientRelatedStudies": "", **keys})
    final, found = find(node, query, model=PATIENT_FIND)
    assert final.Status == status.SUCCESS
    return sorted(
        (
            ds.PatientID,
            str(ds.PatientName),
            ds.PatientBirthDate,
            str(ds.NumberOfPatientRelatedStudies),
        )
        for ds in found
    )


def patients(service) -> list[tuple[str, str, str]]:
    """(PatientID, issuer, anonymous_study) of every patient row."""
    with service.index.session():
        return sorted((p.patient_id, p.issuer, p.anonymous_study) for p in Patient.select())


def expected_one_and_two(a, b) -> dict[str, tuple[str, str, str]]:
    return {
        a.StudyInstanceUID: ("EMERGENCY^ONE", "19800101", "M"),
        b.StudyInstanceUID: ("EMERGENCY^TWO", "19900202", "F"),
    }


# -- the case: two emergency patients ---------------------------------------------------


@pytest.mark.parametrize("patient_id", [None, ""], ids=["absent", "empty"])
def test_two_emergency_patients_are_two_patients(node, patient_id, caplog):
    caplog.set_level(logging.INFO, logger="archive_node")
    a, b = emergency(patient_id, ONE), emergency(patient_id, TWO)
    push(node, "UNN_US", [a, b])

    # every study answered with its own patient attributes
    assert study_answers(node) == expected_one_and_two(a, b)
    # and found by its own name, birth date, sex, with wildcards too
    assert set(study_answers(node, PatientName="EMERGENCY^ONE")) == {a.StudyInstanceUID}
    assert set(study_answers(node, PatientName="emergency^t*")) == {b.StudyInstanceUID}
    assert set(study_answers(node, PatientBirthDate="19850101-")) == {b.StudyInstanceUID}
    assert set(study_answers(node, PatientSex="M")) == {a.StudyInstanceUID}
    # PATIENT level: a patient per study, each with its own name and one study
    assert patient_answers(node) == [
        ("", "EMERGENCY^ONE", "19800101", "1"),
        ("", "EMERGENCY^TWO", "19900202", "1"),
    ]
    assert patient_answers(node, PatientName="EMERGENCY^TWO") == [
        ("", "EMERGENCY^TWO", "19900202", "1")
    ]
    assert patients(node.service) == sorted(
        [("", "UNN", a.StudyInstanceUID), ("", "UNN", b.StudyInstanceUID)]
    )
    # SERIES and IMAGE level answers carry their study's patient
    for ds, who in ((a, "EMERGENCY^ONE"), (b, "EMERGENCY^TWO")):
        series = identifier(
            "SERIES", StudyInstanceUID=ds.StudyInstanceUID, SeriesInstanceUID="", PatientName=""
        )
        final, found = find(node, series)
        assert [str(m.PatientName) for m in found] == [who]
        image = identifier(
            "IMAGE",
            StudyInstanceUID=ds.StudyInstanceUID,
            SeriesInstanceUID=ds.SeriesInstanceUID,
            SOPInstanceUID="",
            PatientName="",
            PatientSex="",
        )
        final, found = find(node, image)
        assert [(str(m.PatientName), m.SOPInstanceUID) for m in found] == [
            (who, ds.SOPInstanceUID)
        ]
        # and a SERIES level query by the other study's name finds nothing there
        other = "EMERGENCY^TWO" if who == "EMERGENCY^ONE" else "EMERGENCY^ONE"
        series.PatientName = other
        final, found = find(node, series)
        assert final.Status == status.SUCCESS and found == []
    assert "EMERGENCY" not in caplog.text  # never a patient name in the log


def test_a_study_query_by_name_in_patient_root_finds_the_right_study(node):
    """Patient Root STUDY level names the PatientID (here a placeholder) and the name."""
    node.service.registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    a, b = emergency("UNKNOWN", ONE), emergency("UNKNOWN", TWO)
    push(node, "UNN_US", [a, b])
    answers = study_answers(node, PATIENT_FIND, PatientID="UNKNOWN", IssuerOfPatientID="UNN")
    assert answers == expected_one_and_two(a, b)
    found = study_answers(node, PATIENT_FIND, PatientID="UNKNOWN", PatientName="EMERGENCY^TWO")
    assert set(found) == {b.StudyInstanceUID}


# -- placeholder IDs ------------------------------------------------------------------------------


def test_placeholder_ids_of_the_sending_hospital_are_anonymous(node, registry):
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN,000000")
    unn = [emergency("UNKNOWN", ONE), emergency("UNKNOWN", TWO), emergency("000000", ONE)]
    push(node, "UNN_US", unn)
    # NLSH has no placeholder IDs: its UNKNOWN is a patient like any other (one patient)
    nlsh = [emergency("UNKNOWN", ONE), emergency("UNKNOWN", TWO)]
    push(node, "NLSH_CAM", nlsh)
    assert patients(node.service) == sorted(
        [
            ("UNKNOWN", "UNN", unn[0].StudyInstanceUID),
            ("UNKNOWN", "UNN", unn[1].StudyInstanceUID),
            ("000000", "UNN", unn[2].StudyInstanceUID),
            ("UNKNOWN", "NLSH", ""),
        ]
    )
    answers = study_answers(node)
    assert answers[unn[0].StudyInstanceUID][0] == "EMERGENCY^ONE"
    assert answers[unn[1].StudyInstanceUID][0] == "EMERGENCY^TWO"
    # NLSH's two studies are one patient, but each study still keeps what it arrived with
    assert answers[nlsh[0].StudyInstanceUID][0] == "EMERGENCY^ONE"
    assert answers[nlsh[1].StudyInstanceUID][0] == "EMERGENCY^TWO"
    query = identifier(
        "STUDY", PatientID="UNKNOWN", IssuerOfPatientID="", StudyInstanceUID="", PatientName=""
    )
    _, found = find(node, query)
    assert len(found) == 4 and all(m.PatientID == "UNKNOWN" for m in found)


def test_placeholder_ids_apply_to_studies_that_arrive_after_they_are_set(node, registry):
    before = emergency("UNKNOWN", ONE)
    assert store(node, before) == status.SUCCESS
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    after = emergency("UNKNOWN", TWO)
    assert store(node, after) == status.SUCCESS
    assert patients(node.service) == sorted(
        [("UNKNOWN", "UNN", ""), ("UNKNOWN", "UNN", after.StudyInstanceUID)]
    )
    registry.update_hospital("UNN", placeholder_ids="")  # cleared: a patient ID again
    again = emergency("UNKNOWN", TWO)
    assert store(node, again) == status.SUCCESS
    with node.service.index.session():
        study = Study.get(Study.study_uid == again.StudyInstanceUID)
        assert study.patient.anonymous_study == ""  # joined the identified patient UNKNOWN


# -- later instances of an anonymous study --------------------------------------------------------


@pytest.mark.parametrize("patient_id", [None, "", "UNKNOWN"])
def test_later_instances_join_their_studys_anonymous_patient(node, registry, patient_id):
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    first = emergency(patient_id, ONE)
    study = first.StudyInstanceUID
    push(node, "UNN_US", [first, emergency(patient_id, ONE, study_uid=study)])
    # another hospital adds to the study: the same (empty or placeholder) PatientID joins
    # too, whether or not that hospital lists the placeholder
    assert store(node, emergency(patient_id, ONE, study_uid=study), "NLSH_CAM") == 0
    assert patients(node.service) == [(patient_id or "", "UNN", study)]
    with node.service.index.session():
        assert Study.select().count() == 1


def test_a_real_patient_id_is_refused_in_an_anonymous_study_and_the_reverse(node):
    """A UID never decides who an unknown patient is: a real PatientID in an anonymous study
    is refused (0xC409) like any other patient's, and so is an empty one in an identified
    patient's study; nothing of either is kept."""
    anonymous = emergency("", ONE)
    assert store(node, anonymous) == status.SUCCESS
    identified = dicom_objects.secondary_capture(
        patient_id="PID-42", study_uid=anonymous.StudyInstanceUID
    )
    assert store(node, identified) == status.UID_CONFLICT
    known = dicom_objects.secondary_capture(patient_id="PID-42")
    assert store(node, known) == status.SUCCESS
    unknown = emergency("", TWO, study_uid=known.StudyInstanceUID)
    assert store(node, unknown) == status.UID_CONFLICT
    assert node.service.index.instances.count() == 2
    assert patients(node.service) == [
        ("", "UNN", anonymous.StudyInstanceUID),
        ("PID-42", "UNN", ""),
    ]


def test_two_associations_racing_for_a_new_anonymous_study_make_one_patient(node):
    """The first instances of one anonymous study arriving together, from two hospitals."""
    study = generate_uid()
    datasets = {
        "UNN_US": emergency("", ONE, study_uid=study),
        "NLSH_CAM": emergency("", ONE, study_uid=study),
    }
    contexts = [(dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian])]
    results = store_at_once(node, datasets, contexts)
    assert results == {"UNN_US": 0, "NLSH_CAM": 0}
    # one patient, of the issuer of whichever hospital created the study; no row left over
    [(patient_id, _issuer, anonymous_study)] = patients(node.service)
    assert (patient_id, anonymous_study) == ("", study)


def test_an_anonymous_patient_made_for_a_study_another_writer_created_is_removed(pg_url, tmp_path):
    """PostgreSQL: another transaction creates the study (for its own hospital's anonymous
    patient) while an instance of it is being recorded; the instance joins that patient and
    the patient row made for it in the meantime is removed, not left as a patient of nothing.
    (SQLite writers are serialised from BEGIN IMMEDIATE: it cannot happen there.)"""
    reset_pg(pg_url)
    service = ArchiveService.from_config(make_config(tmp_path, pg_url))
    service.index.init_schema()
    try:
        service.registry.add_hospital("UNN", "U")
        service.registry.add_hospital("NLSH", "N")
        header = dicom_objects.instance_header(patient_id="", patient_name="EMERGENCY^ONE")
        other = pg_connect(pg_url)  # the other writer, its transaction left open
        with other.cursor() as cur:
            cur.execute(
                "INSERT INTO patient (patient_id, issuer, anonymous_study, patient_name, "
                "name_key, birth_date, birth_key, sex) "
                "VALUES ('', 'NLSH', %s, '', '', '', '', '') RETURNING id",
                (header.study_uid,),
            )
            (patient,) = cur.fetchone()
            columns = [f.column_name for f in Study._meta.sorted_fields if f.name != "id"]
            values = {
                f.column_name: f.default if isinstance(f.default, bool) else ""
                for f in Study._meta.sorted_fields
                if f.name != "id"
            }
            values.update(study_uid=header.study_uid, patient_id=patient, created_at=utcnow())
            cur.execute("SELECT id FROM hospital WHERE code = 'NLSH'")
            values["hospital_id"] = cur.fetchone()[0]
            cur.execute(
                f"INSERT INTO study ({', '.join(columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})",
                [values[c] for c in columns],
            )
        errors: list[BaseException] = []

        def record():
            try:
                dicom_objects.index_row(service, header)
            except BaseException as exc:  # reported by the test below
                errors.append(exc)

        thread = threading.Thread(target=record)
        thread.start()
        # until the recording waits on the other writer's study row
        watcher = pg_connect(pg_url)
        watcher.autocommit = True
        deadline = time.monotonic() + 30
        while True:
            with watcher.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND query LIKE %s",
                    ("%INSERT INTO study (%",),
                )
                if cur.fetchone()[0]:
                    break
            assert time.monotonic() < deadline, "the recording never reached the study insert"
            thread.join(0.01)
        watcher.close()
        other.commit()
        other.close()
        thread.join()
        assert errors == []
        assert patients(service) == [("", "NLSH", header.study_uid)]
        with service.index.session():
            assert Study.get(Study.study_uid == header.study_uid).name_key == "emergency^one"
    finally:
        service.index.close()


# -- a study keeps the demographics it arrived with -----------------------------------------------


def test_each_study_of_a_patient_is_answered_with_its_own_demographics(node):
    old = dicom_objects.secondary_capture(patient_id="PID-7", patient_name="MAIDEN^KARI")
    new = dicom_objects.secondary_capture(patient_id="PID-7", patient_name="MARRIED^KARI")
    nameless = dicom_objects.secondary_capture(patient_id="PID-7", patient_name="")
    push(node, "UNN_US", [old, new, nameless])
    answers = study_answers(node)
    assert answers[old.StudyInstanceUID][0] == "MAIDEN^KARI"
    assert answers[new.StudyInstanceUID][0] == "MARRIED^KARI"
    # a study that arrived without a name is answered with the patient record's
    assert answers[nameless.StudyInstanceUID][0] == "MARRIED^KARI"
    assert set(study_answers(node, PatientName="maiden*")) == {old.StudyInstanceUID}
    married = set(study_answers(node, PatientName="MARRIED^KARI"))
    assert married == {new.StudyInstanceUID, nameless.StudyInstanceUID}
    # the patient record is the latest: one patient, with its three studies
    assert patient_answers(node) == [("PID-7", "MARRIED^KARI", "19700101", "3")]
    # a later instance of a study with a name brings that study (and the patient) up to date
    corrected = dicom_objects.secondary_capture(
        patient_id="PID-7", patient_name="MAIDEN^KARI^ANNE", study_uid=old.StudyInstanceUID
    )
    assert store(node, corrected) == status.SUCCESS
    assert study_answers(node)[old.StudyInstanceUID][0] == "MAIDEN^KARI^ANNE"
    assert study_answers(node)[new.StudyInstanceUID][0] == "MARRIED^KARI"
    assert patient_answers(node)[0][1] == "MAIDEN^KARI^ANNE"


def test_an_import_into_an_anonymous_study_takes_that_studys_patient(node, registry, tmp_path):
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    a, b = emergency("UNKNOWN", ONE), emergency("UNKNOWN", TWO)
    push(node, "UNN_US", [a, b])
    request = ImportRequest(
        paths=[pdf(tmp_path / "referral.pdf")],
        hospital="UNN",
        patient_id="UNKNOWN",
        study_uid=a.StudyInstanceUID,
    )
    report = Importer(node.service).run(request)
    assert report.complete
    (imported,) = report.files
    query = identifier(
        "IMAGE",
        StudyInstanceUID=a.StudyInstanceUID,
        SeriesInstanceUID=imported.series_instance_uid,
        SOPInstanceUID="",
        PatientName="",
    )
    _, found = find(node, query)
    assert [str(m.PatientName) for m in found] == ["EMERGENCY^ONE"]
    # the file itself names the study's patient, not the other unknown one
    record = node.service.index.instances.find(imported.sop_instance_uid)
    kept = dcmread(node.service.storage.absolute(record.path), stop_before_pixels=True)
    assert (str(kept.PatientName), kept.PatientBirthDate) == ("EMERGENCY^ONE", "19800101")
    assert len(patients(node.service)) == 2
    # an identified patient's older study: the attributes it arrived with, not the latest
    old = dicom_objects.secondary_capture(patient_id="PID-7", patient_name="MAIDEN^KARI")
    new = dicom_objects.secondary_capture(patient_id="PID-7", patient_name="MARRIED^KARI")
    push(node, "UNN_US", [old, new])
    request = ImportRequest(
        paths=[pdf(tmp_path / "other.pdf", "Other")],
        hospital="UNN",
        patient_id="PID-7",
        study_uid=old.StudyInstanceUID,
    )
    (imported,) = Importer(node.service).run(request).files
    record = node.service.index.instances.find(imported.sop_instance_uid)
    kept = dcmread(node.service.storage.absolute(record.path), stop_before_pixels=True)
    assert str(kept.PatientName) == "MAIDEN^KARI"


# -- retrieve -----------------------------------------------------------------------------------


def test_a_patient_level_retrieve_never_gathers_anonymous_studies(node, registry, tmp_path):
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    a, b = emergency("UNKNOWN", ONE), emergency("UNKNOWN", TWO)
    c, d = emergency("", ONE), emergency("", TWO)
    push(node, "UNN_US", [a, b, c, d])
    received = Received(tmp_path / "got")
    received.directory.mkdir()
    assoc = get_association(node, "UNN_WS", received)
    assert assoc.is_established
    try:
        # an empty PatientID is universal matching: no unique key to retrieve by (PS3.4 C.4.2)
        for keys in ({"PatientID": ""}, {"PatientID": "", "IssuerOfPatientID": "UNN"}):
            final, _, _ = get(assoc, identifier("PATIENT", **keys), PATIENT_GET)
            assert final.Status == status.IDENTIFIER_MISMATCH
        # a placeholder names a patient per study: refused, with or without the issuer
        for keys in ({}, {"IssuerOfPatientID": "UNN"}):
            query = identifier("PATIENT", PatientID="UNKNOWN", **keys)
            final, _, _ = get(assoc, query, PATIENT_GET)
            assert final.Status == status.UNABLE_TO_PROCESS
            assert "several unidentified patients" in final.ErrorComment
            assert "UNKNOWN" not in final.ErrorComment
        assert received.files == {}
        # each study is retrieved by its Study Instance UID, and only it
        for ds in (a, d):
            query = identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID)
            final, _, _ = get(assoc, query, STUDY_GET)
            assert final.Status == status.SUCCESS
        assert set(received.files) == {a.SOPInstanceUID, d.SOPInstanceUID}
        # Patient Root, STUDY level: the placeholder with the study UID names one study
        query = identifier("STUDY", PatientID="UNKNOWN", StudyInstanceUID=b.StudyInstanceUID)
        final, _, _ = get(assoc, query, PATIENT_GET)
        assert final.Status == status.SUCCESS
        assert b.SOPInstanceUID in received.files and c.SOPInstanceUID not in received.files
    finally:
        assoc.release()
    # C-MOVE answers the same
    assoc = associate(node, "UNN_WS", [PATIENT_MOVE])
    assert assoc.is_established
    try:
        query = identifier("PATIENT", PatientID="UNKNOWN")
        final, _, _ = move(assoc, query, "UNN_WS", PATIENT_MOVE)
        assert final.Status == status.UNABLE_TO_PROCESS
    finally:
        assoc.release()


# -- reindex --------------------------------------------------------------------------------------


def drop_index(service) -> None:
    """Lose the index database (as test_reindex does) and `init` a new one."""
    service.index.close()
    url = service.index.url
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url[len("sqlite:///") :] + suffix).unlink(missing_ok=True)
    else:
        reset_pg(url)
    service.index.init_schema()


def test_reindex_keeps_anonymous_studies_apart(service, registry):
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    a, b, c = emergency("", ONE), emergency("", TWO), emergency("UNKNOWN", TWO)
    with serving(service) as node:
        push(node, "UNN_US", [a, b, c, emergency("", ONE, study_uid=a.StudyInstanceUID)])
        before = patients(service), study_answers(node)
    drop_index(service)
    # the placeholder list comes from the registry, registered again before the rebuild
    service.registry.add_hospital("UNN", "University Hospital", placeholder_ids="UNKNOWN")
    service.registry.add_ae("UNN_WS", "UNN", host="127.0.0.1", allow="echo,find")
    report = integrity.reindex(service.storage, service.index)
    assert report.ok and report.indexed == 4
    with serving(service) as node:
        assert (patients(service), study_answers(node)) == before
    assert before[1] == {
        **expected_one_and_two(a, b),
        c.StudyInstanceUID: ("EMERGENCY^TWO", "19900202", "F"),
    }


# -- the C-STORE hot path -------------------------------------------------------------------------


def statements_of(service, monkeypatch, header) -> list[str]:
    """The SELECT, INSERT and UPDATE statements recording `header` took."""
    statements: list[str] = []
    real = service.index.db.execute_sql

    def counting(sql, params=None, *args, **kwargs):
        statements.append(sql)
        return real(sql, params, *args, **kwargs)

    monkeypatch.setattr(service.index.db, "execute_sql", counting)
    try:
        dicom_objects.index_row(service, header)
    finally:
        monkeypatch.undo()
    return [s for s in statements if s.split()[0].upper() in ("SELECT", "INSERT", "UPDATE")]


def test_an_instance_of_an_indexed_study_costs_four_statements(service, registry, monkeypatch):
    """hospital, study (with patient), series, instance: as before anonymous patients."""
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    for patient_id in ("PID-1", "", "UNKNOWN"):
        first = dicom_objects.instance_header(patient_id=patient_id, patient_name="A^B")
        dicom_objects.index_row(service, first)
        second = dicom_objects.instance_header(
            patient_id=patient_id,
            patient_name="A^B",
            study_uid=first.study_uid,
            series_uid=first.series_uid,
        )
        statements = statements_of(service, monkeypatch, second)
        assert len(statements) == 4, statements


# -- schema 5 -----------------------------------------------------------------------------------


def test_schema_4_index_is_upgraded_and_its_merged_anonymous_patient_split(service, registry):
    db = service.index.db
    sqlite = isinstance(db, SqliteDatabase)
    identified = dicom_objects.instance_header(patient_id="P1", patient_name="HANSEN^KARI")
    dicom_objects.index_row(service, identified)
    first = dicom_objects.instance_header(patient_id="", patient_name="EMERGENCY^ONE")
    dicom_objects.index_row(service, first)
    second = dicom_objects.instance_header(patient_id="", patient_name="EMERGENCY^TWO")
    dicom_objects.index_row(service, second)
    with service.index.session(write=True):  # schema 4 merged them into one patient
        merged = Study.get(Study.study_uid == first.study_uid).patient_id
        own = Study.get(Study.study_uid == second.study_uid).patient_id
        Study.update(patient=merged).where(Study.study_uid == second.study_uid).execute()
        Patient.update(patient_name="EMERGENCY^TWO", name_key="emergency^two").where(
            Patient.id == merged
        ).execute()
        Patient.delete().where(Patient.id == own).execute()
    with service.index.session():  # make it look like a schema 4 index
        if sqlite:  # SQLite's DROP COLUMN rechecks foreign keys; outside a transaction only
            db.execute_sql("PRAGMA foreign_keys = OFF")
        db.execute_sql('DROP INDEX "patient_patient_id_issuer_anonymous_study"')
        db.execute_sql('ALTER TABLE "patient" DROP COLUMN "anonymous_study"')
        db.execute_sql(
            'CREATE UNIQUE INDEX "patient_patient_id_issuer" ON "patient" ("patient_id", "issuer")'
        )
        db.execute_sql('ALTER TABLE "hospital" DROP COLUMN "placeholder_ids"')
        for column in ("patient_name", "name_key", "birth_date", "birth_key", "sex"):
            db.execute_sql(f'ALTER TABLE "study" DROP COLUMN "{column}"')
        if sqlite:
            db.execute_sql("PRAGMA foreign_keys = ON")
    with service.index.session(write=True):
        SchemaInfo.update(value="4").where(SchemaInfo.key == "version").execute()
    assert service.index.init_schema() == (4, SCHEMA_VERSION)
    service.index.check_schema()
    assert patients(service) == sorted(
        [("", "UNN", first.study_uid), ("", "UNN", second.study_uid), ("P1", "UNN", "")]
    )
    with service.index.session():
        names = {s.study_uid: (s.patient_name, s.name_key) for s in Study.select()}
    assert names == {
        identified.study_uid: ("HANSEN^KARI", "hansen^kari"),
        # the merged row's (the latest received): all a schema 4 index knew
        first.study_uid: ("EMERGENCY^TWO", "emergency^two"),
        second.study_uid: ("EMERGENCY^TWO", "emergency^two"),
    }
    assert registry.list_hospitals()[0].placeholder_ids == ()
    # and it takes new instances by the new rules
    registry.update_hospital("UNN", placeholder_ids="UNKNOWN")
    dicom_objects.index_row(service, dicom_objects.instance_header(patient_id="UNKNOWN"))
    dicom_objects.index_row(service, dicom_objects.instance_header(patient_id="UNKNOWN"))
    assert len([p for p in patients(service) if p[0] == "UNKNOWN"]) == 2
