"""Corrections on a running node, SQLite and PostgreSQL: a study moved to the right patient,
patients merged and updated, an issuer corrected, instances rejected, restored and deleted. What
C-FIND answers, what C-MOVE and C-GET send (the index's patient attributes, every other byte as
stored), what verify says, and that the stored files never change."""

from __future__ import annotations

import hashlib

import pytest
from pydicom import dcmread
from pydicom.uid import ImplicitVRLittleEndian

from archive_node import integrity
from archive_node.dicom import status
from archive_node.errors import InvalidInput, NotFound
from archive_node.index.database import database
from archive_node.index.tables import Correction, Instance, Patient, Study
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.commitment import modality, n_action, request
from tests.helpers.dimse import PATIENT_ROOT, find, push, store_response
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import (
    PATIENT_MOVE,
    Received,
    get,
    get_association,
    get_study,
    move,
)
from tests.helpers.serving import make_config, serving, stored_path

from .test_move import move_assoc

WORKSTATION = "UNN_WS"


def frame(node, reason="test correction", **kw):
    return node.service.corrections.frame(reason, **kw)


def a_study(node, patient_id="WRONG-1", name="WRONG^PATIENT", count=2, **kw):
    """`count` CT slices of one study of `patient_id`, stored by UNN_US."""
    first = dicom_objects.ct(patient_id=patient_id, patient_name=name, **kw)
    others = [
        dicom_objects.ct(
            patient_id=patient_id,
            patient_name=name,
            study_uid=first.StudyInstanceUID,
            series_uid=first.SeriesInstanceUID,
            **kw,
        )
        for _ in range(count - 1)
    ]
    push(node, "UNN_US", [first, *others])
    return [first, *others]


def studies_of(node, patient_id, **keys):
    final, matches = find(
        node,
        identifier(
            "STUDY",
            **{
                "PatientID": patient_id,
                "IssuerOfPatientID": "",
                "PatientName": "",
                "StudyInstanceUID": "",
                "NumberOfStudyRelatedInstances": "",
                **keys,
            },
        ),
    )
    assert final.Status == status.SUCCESS
    return matches


def digests(node, datasets):
    return {
        ds.SOPInstanceUID: hashlib.sha256(
            stored_path(node, ds.SOPInstanceUID).read_bytes()
        ).hexdigest()
        for ds in datasets
    }


def move_study(node, study_uid, destination="DEST"):
    assoc = move_assoc(node, WORKSTATION)
    try:
        return move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), destination)
    finally:
        assoc.release()


def verify_clean(node):
    report = integrity.verify(node.service.storage, node.service.index)
    assert report.ok, report.to_json()


# -- study move ----------


def test_a_study_moved_to_the_right_patient_is_found_and_sent_under_them_only(node, destination):
    right = a_study(node, "RIGHT-1", "RIGHT^PATIENT", count=1)
    wrong = a_study(node, "WRONG-1", "WRONG^PATIENT", count=2)
    study_uid = wrong[0].StudyInstanceUID
    before = digests(node, wrong)

    change = node.service.corrections.move_study(
        study_uid, "RIGHT-1", "UNN", frame=frame(node, "wrong patient picked")
    )
    assert change.kind == "study move" and change.instances == 2

    found = {m.StudyInstanceUID: m for m in studies_of(node, "RIGHT-1")}
    assert set(found) == {right[0].StudyInstanceUID, study_uid}
    assert str(found[study_uid].PatientName) == "RIGHT^PATIENT"
    assert found[study_uid].IssuerOfPatientID == "UNN"
    assert studies_of(node, "WRONG-1") == []

    final, _, _ = move_study(node, study_uid)
    assert final.Status == status.SUCCESS
    for ds in wrong:
        sent = dcmread(destination.received.files[ds.SOPInstanceUID])
        assert (sent.PatientID, sent.IssuerOfPatientID) == ("RIGHT-1", "UNN")
        assert str(sent.PatientName) == "RIGHT^PATIENT"
        assert [(i.PatientID, i.IssuerOfPatientID) for i in sent.OtherPatientIDsSequence] == [
            ("WRONG-1", "UNN")
        ]
        assert sent.PixelData == ds.PixelData
        assert sent.StudyInstanceUID == study_uid
    # the right patient's own study, never corrected, is sent as it was stored
    final, _, _ = move_study(node, right[0].StudyInstanceUID)
    sent = destination.received.files[right[0].SOPInstanceUID].read_bytes()
    assert sent.endswith(stored_path(node, right[0].SOPInstanceUID).read_bytes()[-4096:])
    assert "OtherPatientIDsSequence" not in dcmread(
        destination.received.files[right[0].SOPInstanceUID]
    )
    assert digests(node, wrong) == before  # the stored files are as received
    verify_clean(node)


def test_a_late_instance_under_the_old_patient_joins_the_moved_study(node):
    wrong = a_study(node, "WRONG-2", "WRONG^TWO", count=1)
    a_study(node, "RIGHT-2", "RIGHT^TWO", count=1)
    node.service.corrections.move_study(
        wrong[0].StudyInstanceUID, "RIGHT-2", None, frame=frame(node)
    )
    late = dicom_objects.ct(
        patient_id="WRONG-2",
        patient_name="WRONG^TWO",
        study_uid=wrong[0].StudyInstanceUID,
        series_uid=wrong[0].SeriesInstanceUID,
    )
    assert store_response(node, late).Status == status.SUCCESS
    (match,) = [
        m for m in studies_of(node, "RIGHT-2") if m.StudyInstanceUID == late.StudyInstanceUID
    ]
    assert match.NumberOfStudyRelatedInstances == 2
    assert str(match.PatientName) == "RIGHT^TWO"  # the late instance renames nothing


def test_a_study_moves_to_a_new_patient_only_with_their_demographics(node):
    wrong = a_study(node, "WRONG-3", count=1)
    uid = wrong[0].StudyInstanceUID
    corrections = node.service.corrections
    with pytest.raises(NotFound, match="give --issuer and --name"):
        corrections.move_study(uid, "NEW-3", "UNN", frame=frame(node))
    corrections.move_study(
        uid, "NEW-3", "UNN", name="NEW^PATIENT", birth_date="19800101", sex="F", frame=frame(node)
    )
    (match,) = studies_of(node, "NEW-3")
    assert str(match.PatientName) == "NEW^PATIENT"


def test_dry_run_shows_the_change_and_changes_nothing(node):
    wrong = a_study(node, "WRONG-4", count=1)
    a_study(node, "RIGHT-4", count=1)
    change = node.service.corrections.move_study(
        wrong[0].StudyInstanceUID, "RIGHT-4", "UNN", frame=frame(node, dry_run=True)
    )
    assert "WRONG-4" in change.summary and "RIGHT-4" in change.summary
    assert len(studies_of(node, "WRONG-4")) == 1
    with node.service.index.session():
        assert Correction.select().count() == 0


# -- patients ----------


def test_merged_patients_are_found_by_either_id_answered_with_the_survivor(node, destination):
    old = a_study(node, "DUP-1", "SAME^PERSON", count=1)
    kept = a_study(node, "KEEP-1", "SAME^PERSON", count=1)
    node.service.corrections.merge_patients("DUP-1", "UNN", "KEEP-1", "UNN", frame=frame(node))
    for asked in ("DUP-1", "KEEP-1"):
        matches = studies_of(node, asked)
        assert {m.StudyInstanceUID for m in matches} == {
            old[0].StudyInstanceUID,
            kept[0].StudyInstanceUID,
        }
        assert {m.PatientID for m in matches} == {"KEEP-1"}
    final, matches = find(
        node, identifier("PATIENT", PatientID="DUP-1", IssuerOfPatientID=""), model=PATIENT_ROOT
    )
    assert [m.PatientID for m in matches] == ["KEEP-1"]
    # a Patient Root retrieve by the merged ID sends both studies, under the survivor
    assoc = move_assoc(node, WORKSTATION)
    try:
        final, _, _ = move(
            assoc, identifier("PATIENT", PatientID="DUP-1"), "DEST", model=PATIENT_MOVE
        )
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    sent = dcmread(destination.received.files[old[0].SOPInstanceUID])
    assert sent.PatientID == "KEEP-1"
    # an instance the modality still sends under the old ID joins the survivor
    late = dicom_objects.ct(patient_id="DUP-1", patient_name="SAME^PERSON")
    assert store_response(node, late).Status == status.SUCCESS
    assert late.StudyInstanceUID in {m.StudyInstanceUID for m in studies_of(node, "KEEP-1")}


def test_patient_update_changes_answers_and_what_leaves_and_sticks(node, destination):
    study = a_study(node, "TYPO-1", "NORDMAN^KARI", count=1)
    change = node.service.corrections.update_patient(
        "TYPO-1", None, name="Nordmann^Kari", birth_date="19750505", sex="F", frame=frame(node)
    )
    assert change.before["name"] == "NORDMAN^KARI" and change.after["name"] == "Nordmann^Kari"
    (match,) = studies_of(node, "TYPO-1", PatientBirthDate="", PatientSex="")
    assert (str(match.PatientName), match.PatientBirthDate, match.PatientSex) == (
        "Nordmann^Kari",
        "19750505",
        "F",
    )
    move_study(node, study[0].StudyInstanceUID)
    sent = dcmread(destination.received.files[study[0].SOPInstanceUID])
    assert (str(sent.PatientName), sent.PatientBirthDate, sent.PatientSex) == (
        "Nordmann^Kari",
        "19750505",
        "F",
    )
    # a later instance with the old spelling does not undo the correction
    late = dicom_objects.ct(patient_id="TYPO-1", patient_name="NORDMAN^KARI")
    assert store_response(node, late).Status == status.SUCCESS
    with node.service.index.session():
        patient = Patient.get(Patient.patient_id == "TYPO-1")
        assert patient.patient_name == "Nordmann^Kari"


def test_an_issuer_corrected_relabels_its_patients_and_refuses_silent_merges(node, registry):
    a_study(node, "ISS-1", count=1)
    corrections = node.service.corrections
    corrections.change_issuer("UNN", "UNN-NEW", merge=False, frame=frame(node))
    (match,) = studies_of(node, "ISS-1")
    assert match.IssuerOfPatientID == "UNN-NEW"
    assert {h.code: h.issuer for h in registry.list_hospitals()}["UNN"] == "UNN-NEW"
    # asked by the old issuer, found under the new one
    (match,) = studies_of(node, "ISS-1", IssuerOfPatientID="UNN")
    assert match.IssuerOfPatientID == "UNN-NEW"
    # NLSH's patient ISS-3 exists under the issuer NLSH is corrected to: merged only on demand
    nlsh = dicom_objects.ct(patient_id="ISS-3")
    assert store_response(node, nlsh, "NLSH_CAM").Status == status.SUCCESS
    a_study(node, "ISS-3", count=1, issuer="UNN-NEW")
    with pytest.raises(InvalidInput, match="--merge"):
        corrections.change_issuer("NLSH", "UNN-NEW", merge=False, frame=frame(node))
    assert {m.IssuerOfPatientID for m in studies_of(node, "ISS-3")} == {"NLSH", "UNN-NEW"}
    change = corrections.change_issuer("NLSH", "UNN-NEW", merge=True, frame=frame(node))
    assert "1 merged" in change.summary
    assert [m.IssuerOfPatientID for m in studies_of(node, "ISS-3")] == ["UNN-NEW"] * 2


# -- rejection, restore, deletion ----------


def test_rejected_instances_disappear_everywhere_and_come_back_when_restored(node, destination):
    study = a_study(node, "REJ-1", count=3)
    gone, kept = study[0], study[1:]
    corrections = node.service.corrections
    corrections.reject([gone.SOPInstanceUID], "113001", frame=frame(node, "blurred"))

    (match,) = studies_of(node, "REJ-1", ModalitiesInStudy="")
    assert match.NumberOfStudyRelatedInstances == 2
    final, images = find(
        node,
        identifier(
            "IMAGE",
            StudyInstanceUID=gone.StudyInstanceUID,
            SeriesInstanceUID=gone.SeriesInstanceUID,
            SOPInstanceUID="",
        ),
    )
    assert {i.SOPInstanceUID for i in images} == {ds.SOPInstanceUID for ds in kept}
    final, _, _ = move_study(node, gone.StudyInstanceUID)
    assert final.Status == status.SUCCESS
    assert set(destination.received.files) == {ds.SOPInstanceUID for ds in kept}
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        n_action(assoc, request([(gone.SOPClassUID, gone.SOPInstanceUID)]))
        _, _, info = scu.report()
        assoc.release()
    assert info.FailedSOPSequence[0].FailureReason == 0x0112
    # a resend is refused, saying why
    rsp = store_response(node, gone)
    assert rsp.Status == status.REJECTED_INSTANCE
    assert "rejected" in rsp.ErrorComment

    # the whole study rejected: it disappears, at every level
    corrections.reject([gone.StudyInstanceUID], "113037", frame=frame(node))
    assert studies_of(node, "REJ-1") == []
    final, patients = find(node, identifier("PATIENT", PatientID="REJ-1"), model=PATIENT_ROOT)
    assert patients == []
    corrections.restore([gone.StudyInstanceUID], frame=frame(node, "rejected by mistake"))
    (match,) = studies_of(node, "REJ-1")
    assert match.NumberOfStudyRelatedInstances == 3
    verify_clean(node)


def test_a_rejected_instance_due_for_deletion_is_deleted_and_stays_refused(tmp_path, index_url):
    service = ArchiveService.from_config(
        make_config(tmp_path, index_url, lifecycle={"delete_rejected_after": 0})
    )
    service.index.init_schema()
    service.storage.create()
    service.registry.add_hospital("UNN", "U", issuer="UNN")
    service.registry.add_ae("UNN_US", "UNN", host="127.0.0.1")
    with serving(service) as node:
        study = a_study(node, "DEL-1", count=2)
        path = stored_path(node, study[0].SOPInstanceUID)
        node.service.corrections.reject(
            [study[0].SOPInstanceUID], "113039", frame=frame(node, "retention expired")
        )
        changes = node.service.corrections.run_lifecycle()
        assert sum(c.instances for c in changes) == 1
        assert not path.exists()
        assert store_response(node, study[0]).Status == status.REJECTED_INSTANCE
        with pytest.raises(InvalidInput, match="deleted already"):
            node.service.corrections.restore([study[0].SOPInstanceUID], frame=frame(node))
        assert node.service.corrections.run_lifecycle() == []
        verify_clean(node)
    service.index.close()


def test_a_deleted_study_loses_its_files_and_rows_and_may_be_sent_again(node):
    study = a_study(node, "GONE-1", count=2)
    paths = [stored_path(node, ds.SOPInstanceUID) for ds in study]
    change = node.service.corrections.delete(
        "study", study[0].StudyInstanceUID, frame=frame(node, "test study")
    )
    assert change.instances == 2
    assert not any(p.exists() for p in paths)
    assert studies_of(node, "GONE-1") == []
    with node.service.index.session():
        assert Study.select().where(Study.study_uid == study[0].StudyInstanceUID).count() == 0
        assert Patient.select().where(Patient.patient_id == "GONE-1").count() == 0
    verify_clean(node)
    assert store_response(node, study[0]).Status == status.SUCCESS


def test_series_and_instance_delete_leave_the_rest(node):
    study = a_study(node, "PART-1", count=3)
    corrections = node.service.corrections
    corrections.delete("instance", study[0].SOPInstanceUID, frame=frame(node))
    (match,) = studies_of(node, "PART-1")
    assert match.NumberOfStudyRelatedInstances == 2
    corrections.delete("series", study[0].SeriesInstanceUID, frame=frame(node))
    assert studies_of(node, "PART-1") == []
    with node.service.index.session():
        assert Instance.select().count() == 0


# -- bad input ----------


def test_bad_corrections_are_refused_and_change_nothing(node):
    study = a_study(node, "BAD-1", count=1)
    other = dicom_objects.ct(patient_id="BAD-1", issuer="ELSEWHERE")
    assert store_response(node, other).Status == status.SUCCESS
    corrections = node.service.corrections
    cases = [
        (
            NotFound,
            lambda: corrections.update_patient(
                "NOBODY", None, name="X", birth_date=None, sex=None, frame=frame(node)
            ),
        ),
        (
            InvalidInput,
            lambda: corrections.update_patient(
                "BAD-1", None, name="X", birth_date=None, sex=None, frame=frame(node)
            ),
        ),
        (
            InvalidInput,
            lambda: corrections.merge_patients("BAD-1", "UNN", "BAD-1", "UNN", frame=frame(node)),
        ),
        (NotFound, lambda: corrections.move_study("1.2.3.4", "BAD-1", "UNN", frame=frame(node))),
        (
            InvalidInput,
            lambda: corrections.move_study(
                study[0].StudyInstanceUID, "BAD-1", "UNN", frame=frame(node)
            ),
        ),
        (NotFound, lambda: corrections.reject(["1.2.3.4"], "113001", frame=frame(node))),
        (
            InvalidInput,
            lambda: corrections.reject([study[0].SOPInstanceUID], "113000", frame=frame(node)),
        ),
        (InvalidInput, lambda: corrections.reject(["not a uid"], "113001", frame=frame(node))),
        (InvalidInput, lambda: corrections.restore([study[0].SOPInstanceUID], frame=frame(node))),
        (
            InvalidInput,
            lambda: corrections.update_patient(
                "BAD-1", "UNN", name=None, birth_date="19991332", sex=None, frame=frame(node)
            ),
        ),
        (
            InvalidInput,
            lambda: corrections.update_patient(
                "BAD-1", "UNN", name=None, birth_date=None, sex="X", frame=frame(node)
            ),
        ),
        (InvalidInput, lambda: frame(node, "  ")),
        (NotFound, lambda: corrections.delete("study", "1.2.3.4", frame=frame(node))),
    ]
    for error, attempt in cases:
        with pytest.raises(error):
            attempt()
    assert {m.IssuerOfPatientID for m in studies_of(node, "BAD-1")} == {"UNN", "ELSEWHERE"}
    with node.service.index.session():
        assert Correction.select().count() == 0
        assert Instance.select().where(Instance.rejection != "").count() == 0


# -- the journal: reindex on a new index keeps every correction ----------


def test_reindex_onto_a_new_index_replays_the_corrections_journal(node, tmp_path):
    moved = a_study(node, "JRN-WRONG", count=1)
    a_study(node, "JRN-RIGHT", count=1)
    rejected = a_study(node, "JRN-REJ", count=2)
    corrections = node.service.corrections
    corrections.move_study(moved[0].StudyInstanceUID, "JRN-RIGHT", "UNN", frame=frame(node))
    corrections.reject([rejected[0].SOPInstanceUID], "113001", frame=frame(node))
    journal = node.service.storage.root / "corrections.jsonl"
    assert len(journal.read_text().splitlines()) == 2

    serving_db = database.obj
    fresh = ArchiveService.from_config(make_config(tmp_path, f"sqlite:///{tmp_path}/new.sqlite3"))
    try:
        fresh.index.init_schema()
        report = integrity.reindex(
            fresh.storage, fresh.index, default_hospital=None, corrections=fresh.corrections
        )
        assert report.corrections_replayed == 2, report.to_json()
        with fresh.index.session():
            study = Study.get(Study.study_uid == moved[0].StudyInstanceUID)
            assert Patient.get_by_id(study.patient).patient_id == "JRN-RIGHT"
            row = Instance.get(Instance.sop_uid == rejected[0].SOPInstanceUID)
            assert row.rejection == "113001"
        again = integrity.reindex(fresh.storage, fresh.index, corrections=fresh.corrections)
        assert again.corrections_replayed == 0
    finally:
        fresh.index.close()
        database.initialize(serving_db)  # the running node's index, bound again


# -- fail closed -------------------------------------------------------------------------------


def test_a_correction_that_cannot_be_recorded_changes_nothing(node):
    from archive_node.errors import Conflict, IndexUnavailable

    from .test_audit import _refuse_audit_writes

    wrong = a_study(node, "CLOSED-1", count=1)
    a_study(node, "CLOSED-2", count=1)
    _refuse_audit_writes(node.service, "audit_record")
    corrections = node.service.corrections
    with pytest.raises((IndexUnavailable, Conflict)):
        corrections.move_study(wrong[0].StudyInstanceUID, "CLOSED-2", "UNN", frame=frame(node))
    with pytest.raises((IndexUnavailable, Conflict)):
        corrections.reject([wrong[0].SOPInstanceUID], "113001", frame=frame(node))
    with node.service.index.session():
        study = Study.get(Study.study_uid == wrong[0].StudyInstanceUID)
        assert Patient.get_by_id(study.patient).patient_id == "CLOSED-1"
        assert Instance.select().where(Instance.rejection != "").count() == 0
        assert Correction.select().count() == 0


def test_c_get_sends_the_correction_also_when_the_syntax_is_converted(node, tmp_path):
    wrong = a_study(node, "GET-WRONG", "GET^WRONG", count=1)
    a_study(node, "GET-RIGHT", "GET^RIGHT", count=1)
    uid = wrong[0].StudyInstanceUID
    node.service.corrections.move_study(uid, "GET-RIGHT", "UNN", frame=frame(node))
    final, received = get_study(node, WORKSTATION, tmp_path / "get", uid)
    assert final.Status == status.SUCCESS
    sent = dcmread(received.files[wrong[0].SOPInstanceUID])
    assert (sent.PatientID, str(sent.PatientName)) == ("GET-RIGHT", "GET^RIGHT")
    assert sent.PixelData == wrong[0].PixelData
    # the SCU takes Implicit VR only: converted first, then corrected
    received = Received(tmp_path / "implicit")
    (tmp_path / "implicit").mkdir()
    assoc = get_association(node, WORKSTATION, received, syntaxes=[ImplicitVRLittleEndian])
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=uid))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    sent = dcmread(received.files[wrong[0].SOPInstanceUID])
    assert received.syntaxes[wrong[0].SOPInstanceUID] == ImplicitVRLittleEndian
    assert (sent.PatientID, sent.OtherPatientIDsSequence[0].PatientID) == (
        "GET-RIGHT",
        "GET-WRONG",
    )
    assert sent.PixelData == wrong[0].PixelData
    incoming = node.service.storage.incoming
    assert not [*incoming.glob("corrected-*"), *incoming.glob("outgoing-*")]  # copies removed
