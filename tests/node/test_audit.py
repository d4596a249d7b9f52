"""The audit trail on SQLite and PostgreSQL, over real associations: what each act records
(who, from where, which patient and study, how many), fail closed when a record cannot be
written, Security Alerts bounded, tallies sealed after a crash, and the schema upgrade."""

from __future__ import annotations

import json
import time

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import UserIdentityNegotiation
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT

from archive_node.auditing import local_actor
from archive_node.dicom import status
from archive_node.index.audit_rows import AuditFilter
from archive_node.net.association import set_tcp_nodelay
from archive_node.rules.audit import Actor, Touched
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, find, push
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import (
    STUDY_MOVE,
    Destination,
    Received,
    get,
    get_association,
    move,
)
from tests.helpers.serving import make_config, serving


def move_as(node, calling: str, query, destination: str):
    """(final, pending, identifier) of a C-MOVE on an association of its own."""
    assoc = associate(node, calling, [STUDY_MOVE])
    assert assoc.is_established
    try:
        return move(assoc, query, destination)
    finally:
        assoc.release()


def trail(service, **question) -> list:
    """The node's records matching `question`, oldest first."""
    return list(reversed(service.index.audit.query(AuditFilter(**question))))


def sealed(service, count: int, **question) -> list:
    """The records matching `question` once there are `count` of them: C-STORE records are
    sealed as the node ends the association, just after the SCU has seen the release."""
    deadline = time.monotonic() + 10
    while len(found := trail(service, **question)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(found) == count, found
    return found


def study(patient_id: str = "P-AUDIT", issuer: str = "UNN", count: int = 3) -> list:
    study_uid, series_uid = generate_uid(), generate_uid()
    return [
        dicom_objects.secondary_capture(
            patient_id=patient_id, issuer=issuer, study_uid=study_uid, series_uid=series_uid
        )
        for _ in range(count)
    ]


@pytest.fixture
def region(registry):
    """A workstation of another hospital (region scope) and a third hospital's AE."""
    registry.add_hospital("HSYK", "Helse Stavanger", issuer="HSYK")
    registry.add_ae("NLSH_WS", "NLSH", host="127.0.0.1", allow="echo,find,move,get")
    return registry


def test_a_store_a_query_from_another_hospital_and_a_move_to_a_third(node, region, tmp_path):
    """The issue's first 'done when': three events for the patient, with the right AEs,
    hospitals, addresses and counts (the move as one record before and one after)."""
    datasets = study()
    study_uid = datasets[0].StudyInstanceUID
    push(node, "UNN_US", datasets)
    sealed(node.service, 1, ae_title="UNN_US")
    final, answers = find(node, identifier("STUDY", PatientID="P-AUDIT"), calling="NLSH_WS")
    assert final.Status == status.SUCCESS and len(answers) == 1
    dest = Destination(tmp_path / "dest")
    try:
        region.add_ae("HSYK_PACS", "HSYK", host="127.0.0.1", port=dest.port, allow="echo")
        final, _, _ = move_as(
            node, "NLSH_WS", identifier("STUDY", StudyInstanceUID=study_uid), "HSYK_PACS"
        )
        assert final.Status == status.SUCCESS
    finally:
        dest.stop()

    records = sealed(node.service, 4, patient_id="P-AUDIT", issuer="UNN")
    got = [
        (r.event, r.operation, r.ae_title, r.hospital, r.address, r.destination, r.touched)
        for r in records
    ]
    touched = Touched("P-AUDIT", "UNN", study_uid, 3)
    moved = (
        "DICOM Instances Transferred",
        "C-MOVE",
        "NLSH_WS",
        "NLSH",
        "127.0.0.1",
        "HSYK_PACS",
        (touched,),
    )
    assert got == [
        ("DICOM Instances Transferred", "C-STORE", "UNN_US", "UNN", "127.0.0.1", "", (touched,)),
        (
            "Query",
            "C-FIND",
            "NLSH_WS",
            "NLSH",
            "127.0.0.1",
            "",
            (Touched("P-AUDIT", "UNN", study_uid, 0),),
        ),
        moved,  # before the first sub-operation
        moved,  # after the last
    ]
    stored, query, started, ended = records
    assert (stored.action, stored.outcome, stored.details["stored"]) == ("C", 0, 3)
    assert query.details["query"]["00100020"]["Value"] == ["P-AUDIT"]  # the keys as sent
    assert query.details["sop_class"] == STUDY_ROOT
    assert (started.details["phase"], started.details["instances"]) == ("started", 3)
    assert (ended.details["phase"], ended.details["completed"], ended.outcome) == ("ended", 3, 0)
    # the other hospital's patient of the same ID is another patient
    assert trail(node.service, patient_id="P-AUDIT", issuer="NLSH") == []


def test_a_c_get_records_what_it_sent_per_study(node, region, tmp_path):
    first, second = study(count=2), study(count=1)
    push(node, "UNN_US", first + second)
    uid1, uid2 = first[0].StudyInstanceUID, second[0].StudyInstanceUID
    (tmp_path / "got").mkdir()
    assoc = get_association(node, "NLSH_WS", Received(tmp_path / "got"))
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=[uid1, uid2]))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    records = trail(node.service, ae_title="NLSH_WS", event="DICOM Instances Transferred")
    by_phase = {
        (r.details["phase"], r.touched[0].study_uid): r.touched[0].instances for r in records
    }
    assert by_phase == {
        ("started", uid1): 2,
        ("started", uid2): 1,
        ("ended", uid1): 2,
        ("ended", uid2): 1,
    }
    assert {r.destination for r in records} == {"NLSH_WS"}


def test_one_record_per_study_per_association_however_many_instances(node, registry):
    a, b = study(count=4), study(count=2)
    push(node, "UNN_US", a + b)
    push(node, "UNN_US", a[:1])  # a resend, on its own association: acknowledged, counted
    records = sealed(node.service, 3, event="DICOM Instances Transferred")
    counts = sorted((r.touched[0].study_uid, r.touched[0].instances) for r in records)
    assert counts == sorted(
        [(a[0].StudyInstanceUID, 4), (b[0].StudyInstanceUID, 2), (a[0].StudyInstanceUID, 1)]
    )
    assert len({r.session for r in records}) == 2


def test_the_asserted_username_is_kept_never_the_passcode(node, registry):
    identity = UserIdentityNegotiation()
    identity.user_identity_type = 2
    identity.primary_field = b"dr.hansen"
    identity.secondary_field = b"s3cret-passcode"
    ds = study(count=1)[0]
    ae = AE(ae_title="UNN_US")
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        ext_neg=[identity],
        evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
    )
    assert assoc.send_c_store(ds).Status == status.SUCCESS
    assoc.release()
    records = sealed(node.service, 1, ae_title="UNN_US")
    assert [r.user for r in records] == ["dr.hansen"]
    db = node.service.index.db
    with node.service.index.session():
        dumped = json.dumps(
            [list(row) for row in db.execute_sql("SELECT * FROM audit_record").fetchall()],
            default=str,
        )
    assert "s3cret" not in dumped


def test_rejections_and_refusals_are_security_alerts(node, registry):
    assoc = associate(node, "STRANGER")
    assert assoc.is_rejected
    final, answers = find(node, identifier("STUDY", PatientID="X"), calling="NLSH_CAM")
    assert final.Status == status.NOT_AUTHORISED and answers == []
    alerts = trail(node.service, event="security alert")
    assert [(a.operation, a.ae_title, a.event_type, a.status) for a in alerts] == [
        ("association", "STRANGER", "110126", "rejected"),
        ("C-FIND", "NLSH_CAM", "110132", "0x0124"),
    ]
    assert alerts[0].address == "127.0.0.1" and alerts[1].hospital == "NLSH"
    assert "not registered" in alerts[0].details["reason"] or alerts[0].details["reason"]


def test_a_flood_of_rejections_is_bounded_per_address(tmp_path, index_url):
    service = ArchiveService.from_config(
        make_config(tmp_path, index_url, audit={"max_alerts_per_minute": 3})
    )
    service.index.init_schema()
    try:
        with serving(service) as node:
            for _ in range(8):
                assert associate(node, "FLOODER").is_rejected
            assert len(trail(service, event="Security Alert")) == 3
    finally:
        service.index.close()


# -- fail closed ----------------------------------------------------------------------------


def _refuse_audit_writes(service, table: str) -> None:
    """Make every insert into an audit table fail, as a full or broken trail would."""
    db = service.index.db
    with service.index.session():
        if db.param == "?":
            db.execute_sql(
                f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'audit trail refused'); END"
            )
        else:
            db.execute_sql(
                "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'audit trail refused'; END $$ LANGUAGE plpgsql"
            )
            db.execute_sql(
                f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse()"
            )


def test_no_answer_and_no_retrieve_without_a_record(node, region, tmp_path):
    datasets = study()
    push(node, "UNN_US", datasets)
    sealed(node.service, 1, ae_title="UNN_US")
    _refuse_audit_writes(node.service, "audit_record")
    final, answers = find(node, identifier("STUDY", PatientID="P-AUDIT"), calling="NLSH_WS")
    assert (final.Status, answers) == (status.QUERY_FAILED, [])
    assert "audit" in final.ErrorComment
    dest = Destination(tmp_path / "dest")
    try:
        region.add_ae("HSYK_PACS", "HSYK", host="127.0.0.1", port=dest.port, allow="echo")
        uid = datasets[0].StudyInstanceUID
        final, pending, _ = move_as(
            node, "NLSH_WS", identifier("STUDY", StudyInstanceUID=uid), "HSYK_PACS"
        )
        assert final.Status == status.QUERY_FAILED and pending == []
        assert dest.received.files == {}
    finally:
        dest.stop()
    # the node goes on serving
    assoc = associate(node, "UNN_WS")
    assert assoc.send_c_echo().Status == status.SUCCESS
    assoc.release()


def test_no_store_is_acknowledged_without_its_count(node, registry):
    _refuse_audit_writes(node.service, "audit_tally")
    ds = study(count=1)[0]
    assoc = associate(node, "UNN_US", [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID])])
    rsp = assoc.send_c_store(ds)
    assoc.release()
    # a database error (PostgreSQL) is out of resources; SQLite's RAISE is a constraint
    assert rsp.Status in (status.INDEX_UNAVAILABLE, status.PROCESSING_FAILURE)
    assert node.service.index.instances.find(ds.SOPInstanceUID) is None
    assert not any(node.service.storage.root.rglob(f"*{ds.SOPInstanceUID}*"))


# -- crash: tallies left behind -------------------------------------------------------------


def test_tallies_a_crash_left_are_sealed_at_the_next_start(service, registry, tmp_path):
    ds = study(count=2)
    actor = Actor("crashed-session", ae_title="UNN_US", hospital="UNN", address="127.0.0.9")
    peer = service.registry.peer("UNN_US")
    for item in ds:
        path = dicom_objects.write(item, tmp_path / f"{item.SOPInstanceUID}.dcm")
        outcome = service.store(
            peer,
            path,
            sop_class_uid=item.SOPClassUID,
            sop_instance_uid=item.SOPInstanceUID,
            actor=actor,
        )
        assert outcome.status == status.SUCCESS
    assert trail(service, event="DICOM Instances Transferred") == []  # not yet sealed
    with serving(service):
        records = trail(service, event="DICOM Instances Transferred")
    assert [(r.session, r.address, r.touched[0].instances) for r in records] == [
        ("crashed-session", "127.0.0.9", 2)
    ]
    activity = trail(service, event="Application Activity")
    assert [r.operation for r in activity] == ["start", "stop"]
    assert activity[0].event_type == "110120" and activity[1].event_type == "110121"


def test_every_record_chains_to_the_one_before(service, registry):
    service.audit.admin_change(local_actor(), "test", {"n": 1})
    service.audit.admin_change(local_actor(), "test", {"n": 2})
    results = service.audit.verify()
    assert results == {service.audit.node: (2, [])}


def test_a_running_node_prunes_what_retain_days_no_longer_keeps(tmp_path, index_url):
    from datetime import UTC, datetime, timedelta

    from archive_node.auditing import DailyPrune

    service = ArchiveService.from_config(
        make_config(tmp_path, index_url, audit={"retain_days": 1})
    )
    service.index.init_schema()
    try:
        with serving(service) as node:  # the node's own prune found nothing that old
            assert trail(node.service, event="Audit Log Used") == []
        service.audit.admin_change(local_actor(), "test", {})
        later = DailyPrune(service.audit, 1, now=lambda: datetime.now(UTC) + timedelta(days=2))
        checkpoint = later.run_once()
        assert checkpoint is not None and checkpoint.operation == "audit prune"
        assert [r.seq for r in trail(service)] == [checkpoint.seq]
        assert service.audit.verify() == {service.audit.node: (1, [])}
    finally:
        service.index.close()


def test_a_storage_commitment_records_its_request_and_its_report(node, registry):
    from tests.helpers.commitment import modality, n_action, request

    datasets = study(count=2)
    push(node, "UNN_US", datasets)
    refs = [(ds.SOPClassUID, ds.SOPInstanceUID) for ds in datasets]
    refs.append((datasets[0].SOPClassUID, generate_uid()))  # not stored: not committed
    with modality("UNN_US") as scu:
        assoc = scu.associate(node)
        ds = request(refs)
        assert n_action(assoc, ds).Status == status.SUCCESS
        scu.report()
        assoc.release()
    records = trail(node.service, event="DICOM Instances Accessed")
    study_of_two = Touched("P-AUDIT", "UNN", datasets[0].StudyInstanceUID, 2)
    assert [(r.operation, r.touched, r.outcome) for r in records] == [
        ("N-ACTION", (study_of_two,), 0),
        ("N-EVENT-REPORT", (study_of_two,), 4),
    ]
    assert records[0].details["references"] == 3
    assert (records[1].details["committed"], records[1].details["failed"]) == (2, 1)
    assert {r.details["transaction_uid"] for r in records} == {ds.TransactionUID}


def test_a_move_refused_before_sending_is_recorded_as_a_failure(node, region):
    final, _, _ = move_as(
        node, "NLSH_WS", identifier("STUDY", StudyInstanceUID="1.2.3"), "NOWHERE"
    )
    assert final.Status == status.MOVE_DESTINATION_UNKNOWN
    (record,) = trail(node.service, event="DICOM Instances Transferred")
    assert (record.operation, record.destination, record.outcome) == ("C-MOVE", "NOWHERE", 8)
    assert record.status.startswith("0xA801") and record.touched == ()


def test_a_query_at_each_level_names_whom_its_answers_touched(node, region):
    from tests.helpers.dimse import PATIENT_ROOT

    datasets = study(count=2)
    push(node, "UNN_US", datasets)
    uid = datasets[0].StudyInstanceUID
    patient = identifier("PATIENT", PatientID="P-AUDIT")  # asks for no other key
    final, answers = find(node, patient, model=PATIENT_ROOT, calling="NLSH_WS")
    assert final.Status == status.SUCCESS and len(answers) == 1
    assert "StudyInstanceUID" not in answers[0]  # the answer has only what was asked
    images = identifier("IMAGE", StudyInstanceUID=uid, SeriesInstanceUID="", SOPInstanceUID="")
    final, answers = find(node, images, calling="NLSH_WS")
    assert final.Status == status.SUCCESS and len(answers) == 2
    assert "PatientID" not in answers[0]
    queries = trail(node.service, event="Query")
    assert [(q.details["level"], q.details["matches"], q.touched) for q in queries] == [
        ("PATIENT", 1, (Touched("P-AUDIT", "UNN"),)),
        ("IMAGE", 2, (Touched("P-AUDIT", "UNN", uid),)),
    ]


def test_a_worker_that_died_has_its_tallies_sealed_by_its_successor(service, registry, tmp_path):
    import socket

    from archive_node.index.audit_rows import Tally

    host = socket.gethostname()
    dead = Actor("dead-worker-session", ae_title="UNN_US", hospital="UNN", address="127.0.0.7")
    alive = Actor("live-worker-session", ae_title="UNN_US", hospital="UNN", address="127.0.0.8")
    node = service.audit.node
    db = service.index.db
    for actor, pid in ((dead, 999_999_999), (alive, 4242)):  # as two workers counted them
        service.index.audit.count(Tally(node, actor, "1.2.3", "P-W", "UNN"))
        with service.index.session(write=True):
            db.execute_sql(
                f"UPDATE audit_tally SET process = {db.param} WHERE session = {db.param}",
                (f"{host}:{pid}", actor.session),
            )
    service.audit.seal_orphans(alive=lambda pid: pid == 4242)
    sealed_ = trail(service, event="DICOM Instances Transferred")
    assert [(r.session, r.touched[0].instances) for r in sealed_] == [("dead-worker-session", 1)]
    assert service.index.audit.tally_processes(node) == [f"{host}:4242"]


def test_concurrent_writers_keep_every_chain_whole(tmp_path, index_url):
    """Threads of one node and a second node on the same index append at once: every record
    gets its own number in its node's chain, and both chains verify."""
    import threading

    from archive_node.auditing import AuditTrail

    service = ArchiveService.from_config(make_config(tmp_path, index_url))
    service.index.init_schema()
    other = AuditTrail(
        make_config(tmp_path, index_url, audit={"source_id": "ARCHIVE@node2"}), service.index
    )
    errors: list[BaseException] = []

    def write(trail, n: int) -> None:
        try:
            for i in range(n):
                trail.admin_change(local_actor(), "test", {"i": i})
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=write, args=(trail, 15))
        for trail in (service.audit, service.audit, service.audit, other, other)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert service.audit.verify() == {"ARCHIVE": (45, []), "ARCHIVE@node2": (30, [])}
    finally:
        service.index.close()
