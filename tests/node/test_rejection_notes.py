"""IHE IOCM rejection notes over C-STORE, SQLite and PostgreSQL: a KOS titled with a rejection
code of PS3.16 CID 7010 rejects what it references in the commit that stores it; references to
instances not stored or not visible to the sender fail it whole; a KOS that is not a valid
rejection note is kept as an ordinary one; the rejection is audited and journaled."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from pydicom.uid import generate_uid

from archive_node import correcting
from archive_node.dicom import status
from archive_node.index.audit_rows import AuditFilter
from archive_node.index.clock import utcnow
from archive_node.index.tables import Instance
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.dimse import find, push, store_response
from tests.helpers.identifiers import identifier
from tests.helpers.rejection_notes import references_of, rejection_kos
from tests.helpers.serving import make_config, serving, stored_path


@pytest.fixture
def scoped(registry):
    """NLSH's camera, scope hospital, that may also send rejection notes."""
    registry.add_ae("NLSH_SCOPED", "NLSH", host="127.0.0.1", allow="store", scope="hospital")
    return registry


def a_study(node, patient_id="IOCM-1", count=3, calling="UNN_US", **kw):
    study_uid, series_uid = generate_uid(), generate_uid()
    datasets = [
        dicom_objects.secondary_capture(
            patient_id=patient_id, study_uid=study_uid, series_uid=series_uid, **kw
        )
        for _ in range(count)
    ]
    push(node, calling, datasets)
    return datasets


def shown(node, study_uid):
    final, matches = find(
        node,
        identifier("IMAGE", StudyInstanceUID=study_uid, SeriesInstanceUID="", SOPInstanceUID=""),
    )
    assert final.Status == status.SUCCESS
    return {m.SOPInstanceUID for m in matches}


def rejected(node):
    with node.service.index.session():
        return {
            row.sop_uid: row.rejection for row in Instance.select().where(Instance.rejection != "")
        }


@pytest.mark.parametrize("code", ["113001", "113037", "113038", "113039"])
def test_a_rejection_note_hides_exactly_what_it_references(node, code, caplog):
    study = a_study(node)
    kos = rejection_kos(references_of(*study[:2]), code=code, patient_id="IOCM-1")
    caplog.set_level(logging.INFO, logger="archive_node")
    assert store_response(node, kos, "UNN_WS").Status == status.SUCCESS
    assert shown(node, study[0].StudyInstanceUID) == {
        study[2].SOPInstanceUID,
        kos.SOPInstanceUID,
    }
    assert rejected(node) == {ds.SOPInstanceUID: code for ds in study[:2]}
    with node.service.index.session():
        row = Instance.get(Instance.sop_uid == study[0].SOPInstanceUID)
        assert (row.delete_after is not None) == (code in ("113038", "113039"))
    assert "2 instance(s) rejected" in caplog.text
    journal = node.service.storage.root / "corrections.jsonl"
    assert '"reject"' in journal.read_text()
    records = node.service.index.audit.query(AuditFilter(event="DICOM Instances Accessed"))
    assert [r.operation for r in records] == ["reject"]
    assert records[0].ae_title == "UNN_WS"


def test_a_note_naming_an_unknown_instance_fails_whole(node):
    study = a_study(node)
    refs = references_of(study[0])
    refs.append(
        (
            study[0].StudyInstanceUID,
            study[0].SeriesInstanceUID,
            study[0].SOPClassUID,
            generate_uid(),
        )
    )
    kos = rejection_kos(refs, patient_id="IOCM-1")
    rsp = store_response(node, kos, "UNN_WS")
    assert rsp.Status == status.REJECTION_FAILED
    assert "1 referenced instance(s) unknown or not visible" in rsp.ErrorComment
    assert rejected(node) == {}
    assert node.service.index.instances.find(kos.SOPInstanceUID) is None
    assert kos.SOPInstanceUID not in shown(node, study[0].StudyInstanceUID)
    # the node goes on serving, and the same note without the bad reference works
    good = rejection_kos(references_of(study[0]), patient_id="IOCM-1")
    assert store_response(node, good, "UNN_WS").Status == status.SUCCESS


def test_a_note_naming_the_wrong_series_fails(node):
    study = a_study(node)
    wrong_series = [
        (study[0].StudyInstanceUID, generate_uid(), study[0].SOPClassUID, study[0].SOPInstanceUID)
    ]
    rsp = store_response(node, rejection_kos(wrong_series, patient_id="IOCM-1"), "UNN_WS")
    assert rsp.Status == status.REJECTION_FAILED


def test_only_what_the_sender_may_see_can_be_rejected(node, scoped):
    unn = a_study(node, "SHARED-1", count=1)
    kos = rejection_kos(references_of(*unn), patient_id="SHARED-1")
    rsp = store_response(node, kos, "NLSH_SCOPED")
    assert rsp.Status == status.REJECTION_FAILED
    assert "UNN" not in rsp.ErrorComment and "SHARED" not in rsp.ErrorComment
    assert rejected(node) == {}
    # its own hospital's instance it may reject
    own = a_study(node, "SHARED-1", count=1, calling="NLSH_SCOPED")
    kos = rejection_kos(references_of(*own), patient_id="SHARED-1")
    assert store_response(node, kos, "NLSH_SCOPED").Status == status.SUCCESS
    assert set(rejected(node)) == {own[0].SOPInstanceUID}


@pytest.mark.parametrize(
    ("variant", "warned"),
    [
        ({"scheme": "99LOCAL"}, "coding scheme"),
        ({"with_evidence": False}, "Current Requested Procedure Evidence"),
        ({"patient_id": "SOMEONE-ELSE", "study_uid": generate_uid()}, "another patient"),
        ({"code": "113000"}, None),  # Of Interest: an ordinary KOS, no warning
    ],
)
def test_a_kos_that_is_not_a_valid_rejection_note_is_kept_as_an_ordinary_one(
    node, caplog, variant, warned
):
    study = a_study(node)
    kos = rejection_kos(references_of(study[0]), **{"patient_id": "IOCM-1", **variant})
    caplog.set_level(logging.WARNING, logger="archive_node")
    assert store_response(node, kos, "UNN_WS").Status == status.SUCCESS
    assert rejected(node) == {}
    assert node.service.index.instances.find(kos.SOPInstanceUID) is not None
    if warned:
        assert warned in caplog.text and "ordinary KOS" in caplog.text
    else:
        assert "rejection note" not in caplog.text


def test_a_note_whose_instances_are_rejected_already_is_kept_and_rejects_nothing_new(node):
    study = a_study(node, count=1)
    first = rejection_kos(references_of(*study), patient_id="IOCM-1")
    assert store_response(node, first, "UNN_WS").Status == status.SUCCESS
    second = rejection_kos(references_of(*study), patient_id="IOCM-1", code="113037")
    assert store_response(node, second, "UNN_WS").Status == status.SUCCESS
    assert rejected(node) == {study[0].SOPInstanceUID: "113001"}
    # a resend of the rejection note itself is an identical duplicate
    assert store_response(node, first, "UNN_WS").Status == status.SUCCESS


def test_a_113039_note_deletes_its_instances_once_the_delay_has_passed(node):
    study = a_study(node, count=2)
    paths = [
        node.service.storage.absolute(node.service.index.instances.find(ds.SOPInstanceUID).path)
        for ds in study
    ]
    kos = rejection_kos(references_of(study[0]), code="113039", patient_id="IOCM-1")
    assert store_response(node, kos, "UNN_WS").Status == status.SUCCESS
    corrections = node.service.corrections
    assert corrections.run_lifecycle() == []  # lifecycle.delete_rejected_after: 30 days
    assert paths[0].exists()
    later = utcnow() + timedelta(days=30, minutes=1)
    (change,) = corrections.run_lifecycle(now=later)
    assert change.instances == 1
    assert not paths[0].exists() and paths[1].exists()
    assert store_response(node, study[0]).Status == status.REJECTED_INSTANCE
    records = node.service.index.audit.query(AuditFilter(event="DICOM Study Deleted"))
    assert [(r.operation, r.user) for r in records] == [("lifecycle delete", "lifecycle")]


def test_a_running_node_deletes_what_is_due(tmp_path, index_url, monkeypatch):
    monkeypatch.setattr(correcting, "LIFECYCLE_INTERVAL", 0.05)
    service = ArchiveService.from_config(
        make_config(tmp_path, index_url, lifecycle={"delete_rejected_after": 0})
    )
    service.index.init_schema()
    service.storage.create()
    service.registry.add_hospital("UNN", "U", issuer="UNN")
    service.registry.add_ae("UNN_US", "UNN", host="127.0.0.1")
    try:
        with serving(service) as node:
            study = a_study(node, count=1)
            path = stored_path(node, study[0].SOPInstanceUID)
            kos = rejection_kos(references_of(*study), code="113038", patient_id="IOCM-1")
            assert store_response(node, kos, "UNN_US").Status == status.SUCCESS
            deadline = time.monotonic() + 30
            while path.exists():
                assert time.monotonic() < deadline, "the running node never deleted it"
                time.sleep(0.02)
            assert node.service.index.instances.find(study[0].SOPInstanceUID).deleted
    finally:
        service.index.close()
