"""UID collisions (PS3.3 C.7.2.1, C.7.3.1; PS3.4 B.2.3): an instance under a study of another
patient, or a series of another study, is refused and nothing of it is filed, by C-STORE,
`import` and `reindex`; a second hospital adding to the same patient's study still can."""

from __future__ import annotations

import logging

import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from archive_node import integrity
from archive_node.dicom import status
from archive_node.importing.importer import FAILED, STORED, Importer, ImportRequest, derived_uid
from archive_node.index.tables import Patient, Series, Study
from archive_node.integrity.reindexing import CONFLICT
from tests.helpers import dicom_objects
from tests.helpers.dimse import find, store_at_once, store_response
from tests.helpers.identifiers import identifier
from tests.helpers.media_files import jpeg, pdf
from tests.helpers.retrieving import get_study

STUDY_COMMENT = "StudyInstanceUID is recorded for another patient"
SERIES_COMMENT = "SeriesInstanceUID is recorded for another study"


@pytest.fixture
def scoped(registry):
    """NLSH's hospital-scoped workstation (what it sees, and what it may retrieve)."""
    registry.add_ae("NLSH_WS", "NLSH", host="127.0.0.1", allow="echo,find,get", scope="hospital")
    return registry


def a_patient(**kw):
    """Hospital UNN's patient (issuer UNN by its hospital)."""
    values = {"patient_id": "UNN-PID-7", "patient_name": "HOSPITAL_A^PATIENT"}
    return dicom_objects.secondary_capture(**{**values, **kw})


def b_patient(**kw):
    """Another patient, at NLSH."""
    values = {"patient_id": "NLSH-PID-9", "patient_name": "HOSPITAL_B^OTHER"}
    return dicom_objects.secondary_capture(**{**values, **kw})


def kept_files(service):
    root = service.storage.root
    return sorted(p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def rows(service):
    """(patients, studies, series) as (patient_id, issuer), study UIDs, series UIDs."""
    with service.index.session():
        return (
            sorted((p.patient_id, p.issuer) for p in Patient.select()),
            sorted(s.study_uid for s in Study.select()),
            sorted(s.series_uid for s in Series.select()),
        )


def assert_refused(rsp, comment):
    assert rsp.Status == status.UID_CONFLICT
    assert rsp.ErrorComment == comment
    for secret in ("UNN", "NLSH", "PID", "HOSPITAL_A", "HOSPITAL_B"):
        assert secret not in rsp.ErrorComment


# -- C-STORE -----------------------------------------------------------------------------------


def test_another_patient_under_a_kept_study_is_refused_and_nothing_shows(
    node, scoped, tmp_path, caplog
):
    first = a_patient()
    assert store_response(node, first, "UNN_US").Status == status.SUCCESS
    before = rows(node.service), kept_files(node.service)

    attack = b_patient(study_uid=first.StudyInstanceUID)
    caplog.set_level(logging.INFO, logger="archive_node")
    assert_refused(store_response(node, attack, "NLSH_CAM"), STUDY_COMMENT)

    # nothing filed: no instance, patient, study or series row, no file
    assert node.service.index.instances.find(attack.SOPInstanceUID) is None
    assert (rows(node.service), kept_files(node.service)) == before
    assert node.service.index.instances.count() == 1
    # logged at WARNING with UIDs, AE and hospital; no patient name or ID anywhere
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(attack.SOPInstanceUID in m and "NLSH_CAM" in m and "NLSH" in m for m in warnings)
    assert any(first.StudyInstanceUID in m for m in warnings)
    for secret in ("PID", "HOSPITAL_A", "HOSPITAL_B"):
        assert secret not in caplog.text

    # B's hospital-scoped workstation sees nothing of A's patient
    query = identifier(
        "STUDY", StudyInstanceUID="", PatientID="", PatientName="", StudyDescription=""
    )
    final, found = find(node, query, calling="NLSH_WS")
    assert final.Status == status.SUCCESS and found == []
    # and a retrieve of A's study by A's workstation delivers A's image only
    final, received = get_study(node, "UNN_WS", tmp_path / "got", first.StudyInstanceUID)
    assert final.Status == status.SUCCESS
    assert set(received.files) == {first.SOPInstanceUID}


def test_a_series_of_another_study_is_refused(node, registry):
    first = a_patient()
    assert store_response(node, first, "UNN_US").Status == status.SUCCESS
    before = rows(node.service), kept_files(node.service)
    # B's own patient and a new study, under A's series
    attack = b_patient(series_uid=first.SeriesInstanceUID)
    assert_refused(store_response(node, attack, "NLSH_CAM"), SERIES_COMMENT)
    assert (rows(node.service), kept_files(node.service)) == before
    # the same patient, another study, A's series: refused too (a series is one study's)
    again = a_patient(series_uid=first.SeriesInstanceUID)
    assert_refused(store_response(node, again, "UNN_US"), SERIES_COMMENT)
    assert (rows(node.service), kept_files(node.service)) == before


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"patient_id": "UNN-PID-8"}, id="other-patient-id-same-hospital"),
        pytest.param({"issuer": "NLSH"}, id="other-explicit-issuer"),
        pytest.param({"patient_id": "UNN-PID-8", "issuer": "UNN"}, id="other-id-same-issuer"),
    ],
)
def test_a_study_is_one_patients(node, registry, changes):
    first = a_patient()
    assert store_response(node, first, "UNN_US").Status == status.SUCCESS
    before = rows(node.service)
    other = a_patient(study_uid=first.StudyInstanceUID, **changes)
    assert_refused(store_response(node, other, "UNN_US"), STUDY_COMMENT)
    assert rows(node.service) == before


@pytest.mark.parametrize("issuer", [None, "UNN"], ids=["no-issuer", "the-study-issuer"])
def test_a_second_hospital_adds_to_the_same_patients_study(node, scoped, issuer):
    """A report or second opinion from NLSH on UNN's study joins UNN's patient: without an
    IssuerOfPatientID the issuer is the study's, not the sending hospital's."""
    first = a_patient()
    assert store_response(node, first, "UNN_US").Status == status.SUCCESS
    report = a_patient(study_uid=first.StudyInstanceUID, issuer=issuer, patient_name="")
    assert store_response(node, report, "NLSH_CAM").Status == status.SUCCESS
    patients, studies, series = rows(node.service)
    assert patients == [("UNN-PID-7", "UNN")]
    assert studies == [first.StudyInstanceUID] and len(series) == 2
    (summary,) = node.service.index.instances.studies()
    assert (summary.issuer, summary.instance_count) == ("UNN", 2)
    # NLSH's scoped workstation sees the study its hospital added to
    final, found = find(node, identifier("STUDY", StudyInstanceUID=""), calling="NLSH_WS")
    assert final.Status == status.SUCCESS
    assert [ds.StudyInstanceUID for ds in found] == [first.StudyInstanceUID]


def test_the_joined_patients_demographics_are_brought_up_to_date(node, registry):
    first = a_patient(patient_name="BEFORE^NAME")
    assert store_response(node, first, "UNN_US").Status == status.SUCCESS
    later = a_patient(study_uid=first.StudyInstanceUID, patient_name="AFTER^NAME")
    later.PatientSex = "F"
    assert store_response(node, later, "NLSH_CAM").Status == status.SUCCESS
    with node.service.index.session():
        (patient,) = Patient.select()
        assert (patient.patient_name, patient.sex, patient.name_key) == (
            "AFTER^NAME",
            "F",
            "after^name",
        )


def test_two_patients_racing_for_a_new_study_one_is_refused(node, registry):
    """Two associations store the first instance of one study for different patients at
    once: one is kept, the other refused, and only the first's patient is filed."""
    study_uid = generate_uid()
    datasets = {
        "UNN_US": a_patient(study_uid=study_uid),
        "NLSH_CAM": b_patient(study_uid=study_uid),
    }
    contexts = [(dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian])]
    results = store_at_once(node, datasets, contexts)
    assert sorted(results.values()) == [status.SUCCESS, status.UID_CONFLICT]
    (winner,) = [c for c, code in results.items() if code == status.SUCCESS]
    kept = datasets[winner]
    patients, studies, series = rows(node.service)
    assert [p for p, _ in patients] == [kept.PatientID]
    assert studies == [study_uid] and series == [kept.SeriesInstanceUID]
    assert [p.name for p in kept_files(node.service)] == [f"{kept.SOPInstanceUID}.dcm"]


# -- import and reindex ------------------------------------------------------------------------


def test_import_reports_a_refused_file_and_goes_on(service, registry, tmp_path):
    """A series UID the import derives is held by another study: that file is refused with
    the reason, the next one is stored."""
    photo = jpeg(tmp_path / "photo.jpg")
    document = pdf(tmp_path / "letter.pdf")
    study_uid = generate_uid()
    taken = derived_uid(service.config.node.uid_root, "series", study_uid, "photo")
    other = b_patient(series_uid=taken)
    peer = service.registry.peer("NLSH_CAM")
    path = dicom_objects.write(other, tmp_path / "other.dcm")
    outcome = service.store(
        peer, path, sop_class_uid=other.SOPClassUID, sop_instance_uid=other.SOPInstanceUID
    )
    assert outcome.status == status.SUCCESS

    report = Importer(service).run(
        ImportRequest(
            paths=[photo, document], hospital="UNN", patient_id="IMP-1", study_uid=study_uid
        )
    )
    assert [f.status for f in report.files] == [FAILED, STORED]
    assert report.files[0].detail == f"0x{status.UID_CONFLICT:04X} {SERIES_COMMENT}"
    assert not report.complete
    assert service.index.instances.find(report.files[0].sop_instance_uid) is None
    assert service.index.instances.find(report.files[1].sop_instance_uid) is not None
    assert service.index.instances.count() == 2
    assert len(kept_files(service)) == 2


def test_reindex_reports_a_file_of_another_patient_in_a_kept_study_and_skips_it(node, registry):
    first = a_patient()
    assert store_response(node, first, "UNN_US").Status == status.SUCCESS
    before = rows(node.service)
    # a file for another patient under A's study, in the store but in no row (no provenance)
    stray = b_patient(study_uid=first.StudyInstanceUID)
    storage = node.service.storage
    where = storage.layout(stray.StudyInstanceUID, stray.SeriesInstanceUID, stray.SOPInstanceUID)
    dicom_objects.write(stray, storage.absolute(where))

    report = integrity.reindex(storage, node.service.index, default_hospital="NLSH")
    assert [(p.kind, p.path, p.sop_instance_uid) for p in report.problems] == [
        (CONFLICT, where, stray.SOPInstanceUID)
    ]
    assert STUDY_COMMENT in report.problems[0].detail
    assert not report.ok and report.indexed == 0
    assert rows(node.service) == before
    assert node.service.index.instances.find(stray.SOPInstanceUID) is None
    assert storage.absolute(where).is_file()  # left on disk, as reindex leaves duplicates
