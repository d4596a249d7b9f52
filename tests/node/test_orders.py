"""Orders from the hospitals' systems on a running node, SQLite and PostgreSQL: HL7 v2 over MLLP
(orders, patient updates and merges, every kind of bad message answered and nothing changed),
the Modality Worklist they feed (PS3.4 K.6: matching, hospital scope, character sets) and the
Modality Performed Procedure Steps that end their steps (PS3.4 F.7)."""

from __future__ import annotations

import contextlib
import json

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.sop_class import (
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
)

from archive_node.dicom import status
from archive_node.index.tables import (
    AuditRecordRow,
    AuditTouched,
    Correction,
    Hl7Message,
    Patient,
    ProcedureStep,
    Study,
)
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, find, find_results, push
from tests.helpers.hl7 import TODAY, Mllp, ack_code, adt, err_location, omi, orm, pid
from tests.helpers.identifiers import identifier
from tests.helpers.serving import serving

MODALITY = "UNN_US"  # the registry fixture's ultrasound of UNN (echo,store)


@pytest.fixture
def hl7_node(service, registry):
    registry.update_ae("UNN_US", allow="echo,store,worklist")
    registry.add_ae("NLSH_US", "NLSH", host="127.0.0.1", allow="echo,store,worklist")
    service.orders.add_sender("UNN_RIS", "UNN", "127.0.0.1")
    with serving(service, hl7=True) as running:
        yield running


@contextlib.contextmanager
def unn_node(tmp_path, index_url, **sections):
    """A node of its own, with config `sections`: hospital UNN, its modality UNN_US (echo,
    store, worklist) and its RIS as HL7 sender; its HL7 listener on."""
    from archive_node.service import ArchiveService
    from tests.helpers.serving import make_config

    service = ArchiveService.from_config(make_config(tmp_path, index_url, **sections))
    service.index.init_schema()
    service.registry.add_hospital("UNN", "University Hospital", issuer="UNN")
    service.registry.add_ae("UNN_US", "UNN", host="127.0.0.1", allow="echo,store,worklist")
    service.orders.add_sender("UNN_RIS", "UNN", "127.0.0.1")
    try:
        with serving(service, hl7=True) as node:
            yield node
    finally:
        service.index.close()


def send(node, message, encoding="utf-8"):
    with Mllp(node.host, node.hl7_port) as link:
        return link.send(message, encoding)


def worklist(node, calling=MODALITY, charset="ISO_IR 192", **keys):
    """(final status, answers) of a worklist C-FIND; `keys` go in the step item, but for
    those named like top-level keys (PatientName, PatientID, AccessionNumber...)."""
    query = Dataset()
    if charset:
        query.SpecificCharacterSet = charset
    for keyword in (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "PatientBirthDate",
        "PatientSex",
        "AccessionNumber",
        "StudyInstanceUID",
        "RequestedProcedureID",
        "RequestedProcedureDescription",
    ):
        setattr(query, keyword, keys.pop(keyword, ""))
    item = Dataset()
    for keyword in (
        "ScheduledStationAETitle",
        "ScheduledProcedureStepStartDate",
        "ScheduledProcedureStepStartTime",
        "Modality",
        "ScheduledProcedureStepID",
        "ScheduledProcedureStepStatus",
    ):
        setattr(item, keyword, keys.pop(keyword, ""))
    assert not keys, f"unknown keys {keys}"
    query.ScheduledProcedureStepSequence = [item]
    assoc = associate(node, calling, [ModalityWorklistInformationFind])
    assert assoc.is_established
    try:
        return find_results(assoc.send_c_find(query, ModalityWorklistInformationFind))
    finally:
        assoc.release()


# -- orders to the worklist -----------------------------------------------------------------------


def test_an_order_is_on_the_worklist_of_its_station_with_its_patient_and_study(hl7_node):
    study_uid = generate_uid()
    ack = send(hl7_node, orm("MSG-1", study_uid=study_uid))
    assert ack_code(ack) == "AA"
    assert str(ack["MSA.F2"]) == "MSG-1"
    final, answers = worklist(hl7_node, ScheduledStationAETitle="UNN_US")
    assert final.Status == status.SUCCESS
    (answer,) = answers
    assert answer.PatientID == "PAT-1"
    assert answer.IssuerOfPatientID == "UNN"
    assert str(answer.PatientName) == "ØDEGÅRD^ÅSE^M"
    assert answer.PatientBirthDate == "19800102"
    assert answer.PatientSex == "F"
    assert answer.AccessionNumber == "ACC-1"
    assert answer.StudyInstanceUID == study_uid
    assert answer.RequestedProcedureID == "RP-ACC-1"
    assert answer.RequestedProcedureDescription == "Ultrasound abdomen"
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    (step,) = answer.ScheduledProcedureStepSequence
    assert step.ScheduledStationAETitle == "UNN_US"
    assert step.ScheduledProcedureStepStartDate == TODAY
    assert step.ScheduledProcedureStepStartTime == "103000"
    assert step.Modality == "US"
    assert step.ScheduledProcedureStepID == "SPS-ACC-1"
    assert step.ScheduledProcedureStepStatus == "SCHEDULED"
    # another station's query does not see it
    assert worklist(hl7_node, ScheduledStationAETitle="UNN_CAM")[1] == []


def test_an_order_without_a_study_uid_gets_one_under_the_uid_root(tmp_path, index_url):
    with unn_node(tmp_path, index_url, node={"uid_root": "1.2.826.0.1.3680043.10.999"}) as node:
        steps = (("ACC-A", "XC", "UNN_US"), ("ACC-B", "XC", "UNN_US"))
        assert ack_code(send(node, omi("OMI-1", steps=steps))) == "AA"
        final, answers = worklist(node)
        assert final.Status == status.SUCCESS
        uids = {a.AccessionNumber: a.StudyInstanceUID for a in answers}
        assert set(uids) == {"ACC-A", "ACC-B"}
        assert all(u.startswith("1.2.826.0.1.3680043.10.999.") for u in uids.values())
        assert uids["ACC-A"] != uids["ACC-B"]  # two requested procedures, two studies
        # the order changed (XO) keeps its studies
        assert ack_code(send(node, omi("OMI-2", control="XO", steps=steps))) == "AA"
        again = {a.AccessionNumber: a.StudyInstanceUID for a in worklist(node)[1]}
        assert again == uids


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        ({"ScheduledStationAETitle": "UNN_US"}, {"ACC-1", "ACC-3"}),
        ({"ScheduledStationAETitle": "UNN_CAM"}, {"ACC-2"}),
        ({"ScheduledStationAETitle": "UNN_US\\UNN_CAM"}, {"ACC-1", "ACC-2", "ACC-3"}),
        ({"Modality": "XC"}, {"ACC-2"}),
        ({"ScheduledProcedureStepStartDate": TODAY}, {"ACC-1", "ACC-2"}),
        ({"ScheduledProcedureStepStartDate": f"-{TODAY}"}, {"ACC-1", "ACC-2", "ACC-3"}),
        ({"ScheduledProcedureStepStartDate": "20300101-"}, set()),
        ({"ScheduledProcedureStepStartTime": "1000-1100"}, {"ACC-1"}),
        ({"ScheduledProcedureStepStartTime": "1200-"}, {"ACC-2"}),
        ({"PatientName": "ødeg*"}, {"ACC-1", "ACC-2", "ACC-3"}),
        ({"PatientName": "ødegård^åse^m"}, {"ACC-1", "ACC-2", "ACC-3"}),
        ({"PatientName": "ØDEGÅRD^ÅSE"}, set()),  # a single value matches the whole name
        ({"PatientName": "HANSEN*"}, set()),
        ({"PatientID": "PAT-1", "IssuerOfPatientID": "UNN"}, {"ACC-1", "ACC-2", "ACC-3"}),
        ({"PatientID": "PAT-1", "IssuerOfPatientID": "NLSH"}, set()),
        ({"AccessionNumber": "ACC-2"}, {"ACC-2"}),
        ({"AccessionNumber": "ACC-?"}, {"ACC-1", "ACC-2", "ACC-3"}),
    ],
)
def test_worklist_matching(hl7_node, keys, found):
    send(hl7_node, orm("M1", placer="O1", accession="ACC-1", start=f"{TODAY}1030"))
    send(
        hl7_node,
        orm(
            "M2",
            placer="O2",
            accession="ACC-2",
            modality="XC",
            station="UNN_CAM",
            start=f"{TODAY}1400",
        ),
    )
    send(hl7_node, orm("M3", placer="O3", accession="ACC-3", start="20200101"))
    final, answers = worklist(hl7_node, **keys)
    assert final.Status == status.SUCCESS
    assert {a.AccessionNumber for a in answers} == found


def test_the_worklist_is_the_own_hospitals_only_and_needs_the_right(hl7_node, registry):
    send(hl7_node, orm("M1"))
    # NLSH's modality sees none of UNN's orders, whatever it asks
    assert worklist(hl7_node, calling="NLSH_US")[1] == []
    assert worklist(hl7_node, calling="NLSH_US", PatientID="PAT-1")[1] == []
    # an AE without the worklist right is refused
    registry.add_ae("UNN_PLAIN", "UNN", host="127.0.0.1", allow="echo,store,find")
    final, answers = worklist(hl7_node, calling="UNN_PLAIN")
    assert final.Status == status.NOT_AUTHORISED
    assert answers == []


def test_a_malformed_worklist_query_is_answered_with_a_failure(hl7_node):
    final, answers = worklist(hl7_node, ScheduledProcedureStepStartDate="2024-13-45")
    assert final.Status == status.UNABLE_TO_PROCESS
    assert answers == []
    assert "ScheduledProcedureStepStartDate" in final.ErrorComment
    query = Dataset()
    query.ScheduledProcedureStepSequence = [Dataset(), Dataset()]
    assoc = associate(hl7_node, MODALITY, [ModalityWorklistInformationFind])
    try:
        final, _ = find_results(assoc.send_c_find(query, ModalityWorklistInformationFind))
    finally:
        assoc.release()
    assert final.Status == status.IDENTIFIER_MISMATCH
    # and the node keeps serving
    assert worklist(hl7_node)[0].Status == status.SUCCESS


def test_latin1_answers_when_the_query_asks_in_latin1(hl7_node):
    send(hl7_node, orm("M1"))
    final, (answer,) = worklist(hl7_node, charset="ISO_IR 100")
    assert final.Status == status.SUCCESS
    assert answer.SpecificCharacterSet == "ISO_IR 100"
    assert str(answer.PatientName) == "ØDEGÅRD^ÅSE^M"


def test_cancel_and_discontinue_take_steps_off_the_worklist(hl7_node):
    send(hl7_node, orm("M1", placer="O1", accession="ACC-1"))
    send(hl7_node, orm("M2", placer="O2", accession="ACC-2"))
    assert ack_code(send(hl7_node, orm("M3", control="CA", placer="O1"))) == "AA"
    assert ack_code(send(hl7_node, orm("M4", control="DC", placer="O2"))) == "AA"
    assert worklist(hl7_node)[1] == []
    rows = {s.accession_number: s.status for s in ProcedureStep.select()}
    assert rows == {"ACC-1": "CANCELLED", "ACC-2": "DISCONTINUED"}
    # a cancel of an order the node does not know is an error naming ORC-2, and is not kept
    ack = send(hl7_node, orm("M5", control="CA", placer="NOPE"))
    assert ack_code(ack) == "AE"
    assert err_location(ack) == "ORC^1^2"
    assert not Hl7Message.select().where(Hl7Message.control_id == "M5").exists()


def test_a_resent_control_id_is_acknowledged_and_applied_once(hl7_node):
    send(hl7_node, orm("DUP-1", placer="O1", accession="ACC-1"))
    # the same control ID again, now saying something else: acknowledged AA, not applied
    ack = send(hl7_node, orm("DUP-1", placer="O1", accession="ACC-1", modality="XC"))
    assert ack_code(ack) == "AA"
    assert str(ack["MSA.F2"]) == "DUP-1"
    (answer,) = worklist(hl7_node)[1]
    assert answer.ScheduledProcedureStepSequence[0].Modality == "US"
    assert Hl7Message.select().count() == 1
    # another sender may use the same control ID
    assert ProcedureStep.select().count() == 1


def test_the_message_is_kept_before_its_ack(hl7_node):
    send(hl7_node, orm("KEPT-1"))
    row = Hl7Message.get(Hl7Message.control_id == "KEPT-1")
    assert row.facility == "UNN_RIS"
    assert row.message_type == "ORM^O01"
    assert "ØDEGÅRD" in row.text
    assert "1 step(s) scheduled" in row.outcome


# -- bad messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "location"),
    [
        (orm("B1", patient="PID|1||||DOE^JOHN"), "AE", "PID^1^3"),
        (orm("B2", patient="PID|1||P1^^^UNN||DOE||1980-01-02"), "AE", "PID^1^7"),
        (orm("B3", patient="PID|1||P1^^^UNN||DOE||19800102|X"), "AE", "PID^1^8"),
        (orm("B4", accession=""), "AE", "OBR^1^18"),
        (orm("B5", modality=""), "AE", "OBR^1^24"),
        (orm("B6", station="A\\S\\B" * 10), "AE", "ORC^1^18"),
        (orm("B7", start="tomorrow"), "AE", "ORC^1^7"),
        (orm("B8", study_uid="1.2.x"), "AE", "ZDS^1^1"),
        (orm("B9", control="ZZ"), "AE", "ORC^1^1"),
        (orm("B10", placer=""), "AE", "ORC^1^2"),
        (orm("B11").replace("ORM^O01", "ORU^R01"), "AR", "MSH^1^9"),
        (orm("B12").replace("ORM^O01", "ORM^O02"), "AR", "MSH^1^9^1^2"),
        (adt("A99", "B13"), "AR", "MSH^1^9^1^2"),
        (orm("B17", patient=pid(authority="NLSH")), "AE", "PID^1^3^1^4"),
        (orm("B18").replace("PV1|1|O", "PV1|1|\x00"), "AR", "PV1^1"),
        (adt("A40", "B14"), "AE", "MRG^1^1"),
        (orm("B15", charset="KLINGON"), "AR", "MSH^1^18"),
        (orm("B16", facility="UNKNOWN_RIS"), "AR", "MSH^1^4"),
        ("PID|1||P1\r", "AR", "MSH^1"),
    ],
)
def test_a_bad_message_is_answered_with_the_field_and_changes_nothing(
    hl7_node, message, code, location
):
    ack = send(hl7_node, message)
    assert ack_code(ack) == code
    assert err_location(ack) == location
    assert str(ack["ERR.F3.R1.C1"]) in ("100", "101", "102", "103", "200", "201", "204")
    assert str(ack["MSH.F9.R1.C1"]) == "ACK"
    assert ProcedureStep.select().count() == 0
    assert Hl7Message.select().count() == 0
    # the listener keeps serving
    assert ack_code(send(hl7_node, orm("GOOD"))) == "AA"


def test_a_sender_from_another_address_is_refused(hl7_node, service):
    service.orders.add_sender("NLSH_RIS", "NLSH", "10.255.255.1")
    ack = send(hl7_node, orm("X1", facility="NLSH_RIS"))
    assert ack_code(ack) == "AR"
    assert err_location(ack) == "MSH^1^4"
    assert ProcedureStep.select().count() == 0
    (alert,) = AuditRecordRow.select().where(AuditRecordRow.event == "Security Alert")
    assert (alert.user_name, alert.address, alert.status) == ("hl7:NLSH_RIS", "127.0.0.1", "AR")
    assert "not from 10.255.255.1" in alert.detail


def test_character_sets_of_msh_18(hl7_node):
    # 8859/1: the name arrives in Latin-1 bytes and is read as such
    ack = send(hl7_node, orm("L1", charset="8859/1"), encoding="latin-1")
    assert ack_code(ack) == "AA"
    (answer,) = worklist(hl7_node)[1]
    assert str(answer.PatientName) == "ØDEGÅRD^ÅSE^M"
    # non-ASCII bytes without MSH-18 are refused (HL7's default is ASCII)
    ack = send(hl7_node, orm("L2", placer="O2", accession="ACC-2", charset=""))
    assert ack_code(ack) == "AR"
    assert err_location(ack) == "MSH^1^18"
    # UTF-8 bytes declared 8859/1 would be mojibake, but are valid Latin-1: the declared set
    # is what counts; ASCII declared holding UTF-8 is refused
    ack = send(hl7_node, orm("L3", placer="O3", accession="ACC-3", charset="ASCII"))
    assert ack_code(ack) == "AR"
    assert ProcedureStep.select().count() == 1


def test_broken_framing_and_oversized_messages_are_answered_and_the_link_goes_on(
    tmp_path, index_url
):
    with (
        unn_node(tmp_path, index_url, hl7={"max_message_bytes": 4096}) as node,
        Mllp(node.host, node.hl7_port) as link,
    ):
        # no start block
        link.send_raw(orm("F1").encode() + b"\x1c\r")
        ack = link.ack()
        assert ack_code(ack) == "AR"
        assert "framing" in str(ack.segment("ERR")[8])
        # over hl7.max_message_bytes: AR naming its control ID, nothing kept
        big = orm("BIG-1").replace("PV1|1|O", "NTE|1||" + "x" * 10_000)
        link.send_raw(b"\x0b" + big.encode() + b"\x1c\r")
        ack = link.ack()
        assert ack_code(ack) == "AR"
        assert str(ack["MSA.F2"]) == "BIG-1"
        assert "max_message_bytes" in str(ack.segment("ERR")[8])
        # the same connection goes on with the next message
        assert ack_code(link.send(orm("AFTER"))) == "AA"
        assert ProcedureStep.select().count() == 1
        assert not Hl7Message.select().where(Hl7Message.control_id == "BIG-1").exists()


def test_connections_over_the_limit_are_closed(tmp_path, index_url):
    with unn_node(tmp_path, index_url, hl7={"max_connections": 2, "idle_timeout": 30.0}) as node:
        first, second = Mllp(node.host, node.hl7_port), Mllp(node.host, node.hl7_port)
        with first, second:
            assert ack_code(first.send(orm("C1"))) == "AA"
            assert ack_code(second.send(orm("C2", placer="O2"))) == "AA"
            with Mllp(node.host, node.hl7_port) as third:
                assert third.closed()
        # once they are gone, new ones are served
        with Mllp(node.host, node.hl7_port) as fourth:
            assert ack_code(fourth.send(orm("C3", placer="O3"))) == "AA"


# -- patients from ADT ----------------------------------------------------------------------------


def _stored_study(node, patient_id="PAT-1", name="ODEGARD^ASE", accession="ACC-1", study_uid=None):
    ds = dicom_objects.secondary_capture(
        patient_id=patient_id, issuer="UNN", patient_name=name, study_uid=study_uid
    )
    ds.AccessionNumber = accession
    push(node, MODALITY, [ds])
    return ds


def test_adt_update_changes_what_c_find_and_the_worklist_answer(hl7_node, registry):
    registry.update_ae("UNN_WS", allow="echo,store,find,move,get")
    ds = _stored_study(hl7_node)
    send(hl7_node, orm("M1"))
    ack = send(hl7_node, adt("A08", "ADT-1", patient=pid(name="NORDMANN^KARI", sex="F")))
    assert ack_code(ack) == "AA"
    _, (study,) = find(
        hl7_node, identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID, PatientName="")
    )
    assert str(study.PatientName) == "NORDMANN^KARI"
    (answer,) = worklist(hl7_node)[1]
    assert str(answer.PatientName) == "NORDMANN^KARI"
    # recorded as a correction (and so journaled and audited) by the HL7 sender
    (correction,) = Correction.select()
    assert correction.kind == "patient update"
    assert correction.user_name == "hl7:UNN_RIS"
    assert "ADT-1" in correction.reason
    # the same values again change nothing, and are acknowledged
    assert ack_code(send(hl7_node, adt("A31", "ADT-2", patient=pid(name="NORDMANN^KARI")))) == "AA"
    assert Correction.select().count() == 1


def test_adt_for_a_patient_without_images_is_acknowledged(hl7_node):
    ack = send(hl7_node, adt("A28", "ADT-1", patient=pid("NEW-1", name="NY^PASIENT")))
    assert ack_code(ack) == "AA"
    assert Patient.select().count() == 0  # no image, no patient row: nothing to show


def test_adt_merge_files_the_prior_patients_studies_under_the_survivor(hl7_node, registry):
    registry.update_ae("UNN_WS", allow="echo,store,find,move,get")
    old = _stored_study(hl7_node, patient_id="OLD-7")
    send(hl7_node, orm("M1", patient=pid("OLD-7")))
    ack = send(
        hl7_node, adt("A40", "ADT-9", patient=pid("PAT-1", name="RIKTIG^NAVN"), merge_from="OLD-7")
    )
    assert ack_code(ack) == "AA"
    _, (study,) = find(
        hl7_node, identifier("STUDY", StudyInstanceUID=old.StudyInstanceUID, PatientID="")
    )
    assert study.PatientID == "PAT-1"
    # a C-FIND by the prior ID finds the survivor
    _, answers = find(hl7_node, identifier("STUDY", PatientID="OLD-7", StudyInstanceUID=""))
    assert [a.PatientID for a in answers] == ["PAT-1"]
    (answer,) = worklist(hl7_node)[1]
    assert answer.PatientID == "PAT-1"
    assert str(answer.PatientName) == "RIKTIG^NAVN"
    assert Correction.get().kind == "patient merge"
    assert Study.select().count() == 1


# -- performed -----------------------------------------------------------------------------------


def test_a_stored_study_shows_its_order_performed(hl7_node):
    study_uid = generate_uid()
    send(hl7_node, orm("M1", placer="O1", accession="ACC-1", study_uid=study_uid))
    send(hl7_node, orm("M2", placer="O2", accession="ACC-2"))
    send(hl7_node, orm("M3", placer="O3", accession="ACC-3"))
    _stored_study(hl7_node, accession="OTHER", study_uid=study_uid)  # by its Study UID
    _stored_study(hl7_node, accession="ACC-2")  # by accession number in its hospital
    performed = {
        s.values["accession_number"]: s.performed for s in hl7_node.service.orders.steps()
    }
    assert performed == {"ACC-1": True, "ACC-2": True, "ACC-3": False}


def mpps_association(node, calling=MODALITY):
    """An association for MPPS made by the node's own client AE: several N-CREATE and N-SET
    back to back on one association meet pynetdicom's requestor race (its reactor can take a
    response meant for send_n_*(), patches/reactor.py), which the node's reactor closes."""
    from archive_node.net.client import client_ae as node_client_ae
    from tests.helpers.environment import FAST_PATHS

    ae = node_client_ae(calling, 30, fast_paths=FAST_PATHS)
    ae.add_requested_context(ModalityPerformedProcedureStep)
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title)
    assert assoc.is_established
    return assoc


def _mpps(study_uid="", accession="ACC-1", state="IN PROGRESS", step="SPS-ACC-1") -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepID = "PPS-1"
    ds.PerformedProcedureStepStatus = state
    ds.PerformedStationAETitle = MODALITY
    ds.PerformedProcedureStepStartDate = TODAY
    ds.PerformedProcedureStepStartTime = "1035"
    ds.Modality = "US"
    item = Dataset()
    item.StudyInstanceUID = study_uid
    item.AccessionNumber = accession
    item.ScheduledProcedureStepID = step
    ds.ScheduledStepAttributesSequence = [item]
    return ds


def _ended(state: str, end_time: str | None = "1100") -> Dataset:
    ds = Dataset()
    ds.PerformedProcedureStepStatus = state
    ds.PerformedProcedureStepEndDate = TODAY
    if end_time is not None:
        ds.PerformedProcedureStepEndTime = end_time
    return ds


def test_mpps_starts_completes_and_ends_the_step(hl7_node):
    study_uid = generate_uid()
    send(hl7_node, orm("M1", study_uid=study_uid))
    assoc = mpps_association(hl7_node)
    assert assoc.is_established
    uid = generate_uid()
    try:
        rsp, _ = assoc.send_n_create(_mpps(study_uid), ModalityPerformedProcedureStep, uid)
        assert rsp.Status == status.SUCCESS
        (answer,) = worklist(hl7_node)[1]
        assert answer.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStatus == "STARTED"
        # a second N-CREATE of the same UID is a duplicate
        rsp, _ = assoc.send_n_create(_mpps(study_uid), ModalityPerformedProcedureStep, uid)
        assert rsp.Status == status.DUPLICATE_SOP_INSTANCE
        # COMPLETED needs its end date and time (F.7.2.2.2)
        rsp, _ = assoc.send_n_set(_ended("COMPLETED", None), ModalityPerformedProcedureStep, uid)
        assert rsp.Status == status.PROCESSING_FAILURE
        assert "PerformedProcedureStepEndTime" in rsp.ErrorComment
        rsp, _ = assoc.send_n_set(_ended("COMPLETED"), ModalityPerformedProcedureStep, uid)
        assert rsp.Status == status.SUCCESS
        assert worklist(hl7_node)[1] == []  # a completed step leaves the worklist
        # COMPLETED is final (PS3.4 F.7.2.2.4)
        again = Dataset()
        again.PerformedProcedureStepStatus = "DISCONTINUED"
        rsp, _ = assoc.send_n_set(again, ModalityPerformedProcedureStep, uid)
        assert rsp.Status == status.PROCESSING_FAILURE
        assert rsp.ErrorComment == "Performed Procedure Step Object may no longer be updated"
        assert rsp.ErrorID == 0xA710
        # an unknown step
        rsp, _ = assoc.send_n_set(again, ModalityPerformedProcedureStep, generate_uid())
        assert rsp.Status == status.NO_SUCH_SOP_INSTANCE
        # N-CREATE must start IN PROGRESS
        rsp, _ = assoc.send_n_create(
            _mpps(state="COMPLETED"), ModalityPerformedProcedureStep, generate_uid()
        )
        assert rsp.Status == status.INVALID_ATTRIBUTE_VALUE
        # a Type 1 attribute of Table F.7.2-1 missing
        lacking = _mpps()
        del lacking.PerformedProcedureStepID
        rsp, _ = assoc.send_n_create(lacking, ModalityPerformedProcedureStep, generate_uid())
        assert rsp.Status == status.MISSING_ATTRIBUTE
        assert "PerformedProcedureStepID" in rsp.ErrorComment
    finally:
        assoc.release()
    assert ProcedureStep.get().status == "COMPLETED"
    kept = hl7_node.service.index.orders.performed(uid)
    assert kept["status"] == "COMPLETED"


def test_mpps_discontinued_and_rights(hl7_node, registry):
    send(hl7_node, orm("M1"))
    assoc = mpps_association(hl7_node)
    uid = generate_uid()
    try:
        assert assoc.send_n_create(_mpps(), ModalityPerformedProcedureStep, uid)[0].Status == 0
        stop = _ended("DISCONTINUED")
        assert assoc.send_n_set(stop, ModalityPerformedProcedureStep, uid)[0].Status == 0
    finally:
        assoc.release()
    assert ProcedureStep.get().status == "DISCONTINUED"
    # another hospital's AE cannot touch the step; one without `store` cannot create
    registry.add_ae("UNN_VIEW", "UNN", host="127.0.0.1", allow="echo,find")
    assoc = mpps_association(hl7_node, "UNN_VIEW")
    try:
        rsp, _ = assoc.send_n_create(_mpps(), ModalityPerformedProcedureStep, generate_uid())
        assert rsp.Status == status.NOT_AUTHORISED
    finally:
        assoc.release()
    registry.update_ae("NLSH_CAM", allow="store")
    assoc = mpps_association(hl7_node, "NLSH_CAM")
    try:
        rsp, _ = assoc.send_n_set(_ended("COMPLETED"), ModalityPerformedProcedureStep, uid)
        assert rsp.Status == status.NO_SUCH_SOP_INSTANCE
    finally:
        assoc.release()


# -- accounted for --------------------------------------------------------------------------------


def test_orders_and_worklist_queries_are_in_the_audit_trail(hl7_node):
    study_uid = generate_uid()
    send(hl7_node, orm("M1", study_uid=study_uid))
    (record,) = AuditRecordRow.select().where(AuditRecordRow.event == "Order Record")
    assert (record.action, record.user_name, record.address) == ("C", "hl7:UNN_RIS", "127.0.0.1")
    assert record.hospital == "UNN"
    (touched,) = AuditTouched.select().where(AuditTouched.record == record.id)
    assert (touched.patient_id, touched.issuer, touched.study_uid) == ("PAT-1", "UNN", study_uid)
    worklist(hl7_node)
    (query,) = AuditRecordRow.select().where(AuditRecordRow.event == "Query")
    assert query.ae_title == MODALITY
    assert json.loads(query.detail)["sop_class"] == "1.2.840.10008.5.1.4.31"
    assert AuditTouched.select().where(AuditTouched.record == query.id).count() == 1


def test_a_message_whose_record_cannot_be_written_is_not_applied(hl7_node):
    from tests.node.test_audit import _refuse_audit_writes

    _refuse_audit_writes(hl7_node.service, "audit_record")
    ack = send(hl7_node, orm("NOREC"))
    assert ack_code(ack) == "AE"
    assert "cannot keep it" in str(ack.segment("ERR")[8])
    assert ProcedureStep.select().count() == 0
    assert Hl7Message.select().count() == 0


def test_an_hl7_merge_is_journaled_and_replayed_by_reindex(hl7_node, tmp_path):
    from archive_node import integrity
    from archive_node.index.database import database
    from archive_node.service import ArchiveService
    from tests.helpers.serving import make_config

    old = _stored_study(hl7_node, patient_id="OLD-8")
    # the survivor has no images yet: the node makes it, and the journal says how
    assert ack_code(send(hl7_node, adt("A40", "ADT-8", merge_from="OLD-8"))) == "AA"
    journal = hl7_node.service.storage.root / "corrections.jsonl"
    (entry,) = [json.loads(line) for line in journal.read_text().splitlines()]
    assert entry["kind"] == "patient merge"

    serving_db = database.obj
    fresh = ArchiveService.from_config(make_config(tmp_path, f"sqlite:///{tmp_path}/new.sqlite3"))
    try:
        fresh.index.init_schema()
        report = integrity.reindex(fresh.storage, fresh.index, corrections=fresh.corrections)
        assert report.corrections_replayed == 1, report.to_json()
        with fresh.index.session():
            study = Study.get(Study.study_uid == old.StudyInstanceUID)
            patient = Patient.get_by_id(study.patient)
            assert (patient.patient_id, patient.patient_name) == ("PAT-1", "ØDEGÅRD^ÅSE^M")
    finally:
        fresh.index.close()
        database.initialize(serving_db)


def test_an_oversized_mpps_is_refused_and_the_association_goes_on(tmp_path, index_url):
    with unn_node(tmp_path, index_url, query={"max_identifier_bytes": 4096}) as node:
        assoc = mpps_association(node)
        try:
            big = _mpps()
            big.CommentsOnThePerformedProcedureStep = "x" * 8000
            uid = generate_uid()
            rsp, _ = assoc.send_n_create(big, ModalityPerformedProcedureStep, uid)
            assert rsp.Status == status.RESOURCE_LIMITATION
            rsp, _ = assoc.send_n_create(_mpps(), ModalityPerformedProcedureStep, uid)
            assert rsp.Status == status.SUCCESS
            rsp, _ = assoc.send_n_set(big, ModalityPerformedProcedureStep, uid)
            assert rsp.Status == status.RESOURCE_LIMITATION
            assert assoc.is_established
        finally:
            assoc.release()
        assert node.service.index.orders.performed(uid)["status"] == "IN PROGRESS"


def test_control_ids_are_forgotten_after_remember_days(hl7_node):
    from datetime import timedelta

    from archive_node.index.clock import utcnow

    send(hl7_node, orm("OLD-1", accession="ACC-1"))
    Hl7Message.update(received_at=utcnow() - timedelta(days=8)).execute()
    send(hl7_node, orm("NEW-1", placer="O2", accession="ACC-2"))
    assert hl7_node.service.orders.prune_messages() == 1  # hl7.remember_days = 7
    assert [m.control_id for m in Hl7Message.select()] == ["NEW-1"]
    # once forgotten, the control ID is a new message again
    send(hl7_node, orm("OLD-1", control="XO", accession="ACC-1", modality="XC"))
    modalities = {s.accession_number: s.modality for s in ProcedureStep.select()}
    assert modalities == {"ACC-1": "XC", "ACC-2": "US"}


def test_one_message_on_two_connections_at_once_is_applied_once(hl7_node):
    import threading

    message = orm("TWICE-1")
    acks: list[str] = []
    start = threading.Barrier(4)

    def sender() -> None:
        with Mllp(hl7_node.host, hl7_node.hl7_port) as link:
            start.wait(timeout=10)
            acks.append(ack_code(link.send(message)))

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert acks == ["AA"] * 4
    assert Hl7Message.select().count() == 1
    assert ProcedureStep.select().count() == 1
    assert AuditRecordRow.select().where(AuditRecordRow.event == "Order Record").count() == 1


# -- one hospital's sender, one hospital's patients --------------------------------------------


def test_a_sender_cannot_touch_another_hospitals_patients(hl7_node, service):
    """UNN's sender naming an NLSH patient is refused; the same patient ID in NLSH (another
    issuer) is another patient, whose steps and images an UNN update never reaches."""
    service.orders.add_sender("NLSH_RIS", "NLSH", "127.0.0.1")
    nlsh = orm("N1", facility="NLSH_RIS", patient=pid("PAT-1", authority="NLSH", name="NLSH^ONE"))
    assert ack_code(send(hl7_node, nlsh)) == "AA"
    ack = send(hl7_node, adt("A08", "X1", patient=pid("PAT-1", authority="NLSH", name="EVIL^X")))
    assert (ack_code(ack), err_location(ack)) == ("AE", "PID^1^3^1^4")
    # PAT-1 without an authority is UNN's PAT-1: NLSH's is untouched
    assert ack_code(send(hl7_node, adt("A08", "X2", patient=pid("PAT-1", authority="")))) == "AA"
    (step,) = ProcedureStep.select()
    assert (step.issuer, step.patient_name) == ("NLSH", "NLSH^ONE")


def test_an_update_that_leaves_fields_out_keeps_them(hl7_node):
    send(hl7_node, orm("M1"))
    send(hl7_node, adt("A08", "A-1", patient="PID|1||PAT-1^^^UNN||NORDMANN^KARI"))
    (answer,) = worklist(hl7_node)[1]
    assert str(answer.PatientName) == "NORDMANN^KARI"
    assert (answer.PatientBirthDate, answer.PatientSex) == ("19800102", "F")
    # the HL7 null deletes
    send(hl7_node, adt("A08", "A-2", patient='PID|1||PAT-1^^^UNN||NORDMANN^KARI||""'))
    (answer,) = worklist(hl7_node)[1]
    assert (answer.PatientBirthDate, answer.PatientSex) == ("", "F")


def test_the_start_time_is_matched_in_the_index_past_max_results(tmp_path, index_url):
    with unn_node(tmp_path, index_url, query={"max_results": 2}) as node:
        for n in range(6):
            send(
                node,
                orm(f"E{n}", placer=f"E{n}", accession=f"EARLY-{n}", start=f"{TODAY}0800"),
            )
        send(node, orm("L1", placer="L1", accession="LATE", start=f"{TODAY}1200"))
        final, answers = worklist(node, ScheduledProcedureStepStartTime="1100-1300")
        assert final.Status == status.SUCCESS
        assert [a.AccessionNumber for a in answers] == ["LATE"]


def test_birth_date_and_sex_match_and_an_unmatchable_key_matches_nothing(hl7_node):
    send(hl7_node, orm("M1"))
    assert len(worklist(hl7_node, PatientBirthDate="19800101-19800131")[1]) == 1
    assert worklist(hl7_node, PatientBirthDate="19900101")[1] == []
    assert len(worklist(hl7_node, PatientSex="F")[1]) == 1
    assert worklist(hl7_node, PatientSex="M")[1] == []
    query = Dataset()
    item = Dataset()
    item.ScheduledPerformingPhysicianName = "HOUSE^GREGORY"
    query.ScheduledProcedureStepSequence = [item]
    assoc = associate(hl7_node, MODALITY, [ModalityWorklistInformationFind])
    try:
        final, answers = find_results(assoc.send_c_find(query, ModalityWorklistInformationFind))
    finally:
        assoc.release()
    assert (final.Status, answers) == (status.SUCCESS, [])


def test_mpps_names_its_own_step_among_steps_of_one_study(hl7_node):
    study_uid = generate_uid()
    steps = (("ACC-9", "US", "UNN_US"), ("ACC-9", "US", "UNN_US"))
    send(hl7_node, omi("OMI-1", steps=steps, study_uid=study_uid))
    assoc = mpps_association(hl7_node)
    uid = generate_uid()
    try:
        created = _mpps(study_uid, accession="ACC-9", step="SPS-2")
        assert assoc.send_n_create(created, ModalityPerformedProcedureStep, uid)[0].Status == 0
        done = _ended("COMPLETED")
        assert assoc.send_n_set(done, ModalityPerformedProcedureStep, uid)[0].Status == 0
    finally:
        assoc.release()
    assert {s.step_id: s.status for s in ProcedureStep.select()} == {
        "SPS-1": "SCHEDULED",
        "SPS-2": "COMPLETED",
    }
    # a new order message (NW, another control ID) does not bring a completed step back
    send(hl7_node, omi("OMI-2", steps=steps, study_uid=study_uid))
    assert ProcedureStep.get(ProcedureStep.step_id == "SPS-2").status == "COMPLETED"


def test_performed_by_accession_for_every_step_sharing_it(hl7_node):
    steps = (("ACC-7", "US", "UNN_US"), ("ACC-7", "XC", "UNN_CAM"))
    send(hl7_node, omi("OMI-1", steps=steps))
    _stored_study(hl7_node, accession="ACC-7")
    performed = hl7_node.service.orders.steps(status="PERFORMED")
    assert sorted(s.values["step_id"] for s in performed) == ["SPS-1", "SPS-2"]


def test_an_oversized_message_after_a_good_one_in_one_write_is_named(tmp_path, index_url):
    with (
        unn_node(tmp_path, index_url, hl7={"max_message_bytes": 4096}) as node,
        Mllp(node.host, node.hl7_port) as link,
    ):
        big = orm("BIG-2", placer="O2").replace("PV1|1|O", "NTE|1||" + "x" * 10_000)
        link.send_raw(
            b"\x0b" + orm("OK-1").encode() + b"\x1c\r" + b"\x0b" + big.encode() + b"\x1c\r"
        )
        first = link.ack()
        assert (ack_code(first), str(first["MSA.F2"])) == ("AA", "OK-1")
        second = link.ack()
        assert (ack_code(second), str(second["MSA.F2"])) == ("AR", "BIG-2")


def test_stopping_answers_the_message_being_applied(tmp_path, sqlite_url):
    """A message the node is applying when it stops still commits and gets its AA: the
    listener stops reading, not answering. (SQLite: another connection's write lock holds the
    message in flight until the stop has begun.)"""
    import sqlite3
    import threading

    from archive_node.net.server import ArchiveServer
    from archive_node.service import ArchiveService
    from tests.helpers.serving import make_config

    service = ArchiveService.from_config(make_config(tmp_path, sqlite_url))
    service.index.init_schema()
    service.registry.add_hospital("UNN", "University Hospital", issuer="UNN")
    service.orders.add_sender("UNN_RIS", "UNN", "127.0.0.1")
    server = ArchiveServer(service)
    server.start("127.0.0.1", 0, hl7_port=0)
    assert server.hl7 is not None and server.hl7.address is not None
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    link = Mllp("127.0.0.1", server.hl7.address[1], timeout=30)
    stopper = threading.Thread(target=server.stop, kwargs={"grace": 1})
    try:
        link.send_raw(b"\x0b" + orm("INFLIGHT").encode() + b"\x1c\r")
        poll_until(lambda: server.hl7._applying)  # the message is being applied
        stopper.start()
        poll_until(lambda: server.hl7._stopping)
        blocker.execute("ROLLBACK")
        ack = link.ack()
        assert (ack_code(ack), str(ack["MSA.F2"])) == ("AA", "INFLIGHT")
        stopper.join(timeout=30)
        assert not stopper.is_alive()
    finally:
        link.sock.close()
        blocker.close()
        server.stop(grace=1)
    check = ArchiveService.from_config(make_config(tmp_path, sqlite_url))
    try:
        with check.index.session():
            assert Hl7Message.select().where(Hl7Message.control_id == "INFLIGHT").exists()
    finally:
        check.index.close()


def poll_until(condition, timeout: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_an_order_change_keeps_what_it_leaves_out(hl7_node):
    send(hl7_node, orm("M1"))
    send(hl7_node, orm("M2", control="XO", modality="XC", patient="PID|1||PAT-1^^^UNN"))
    (answer,) = worklist(hl7_node)[1]
    assert answer.ScheduledProcedureStepSequence[0].Modality == "XC"
    assert (str(answer.PatientName), answer.PatientBirthDate) == ("ØDEGÅRD^ÅSE^M", "19800102")


def test_performed_is_asked_of_the_index_before_its_row_limit(hl7_node):
    send(hl7_node, orm("M1", placer="O1", accession="ACC-1", start=f"{TODAY}0800"))
    send(hl7_node, orm("M2", placer="O2", accession="ACC-2", start=f"{TODAY}1600"))
    _stored_study(hl7_node, accession="ACC-1")  # the older step is the performed one
    rows = hl7_node.service.index.orders.steps(performed=True, limit=1)
    assert [s.values["accession_number"] for s in rows] == ["ACC-1"]
    assert [
        s.values["accession_number"] for s in hl7_node.service.orders.steps(status="PERFORMED")
    ] == ["ACC-1"]


@pytest.mark.parametrize("operation", ["N-CREATE", "N-SET"])
def test_an_mpps_dataset_that_cannot_be_decoded_is_refused(hl7_node, operation):
    """A truncated sequence in the Attribute (or Modification) List: 0x0106, nothing kept,
    the association goes on."""
    import struct

    from pydicom.uid import ImplicitVRLittleEndian

    from tests.helpers.raw_peer import RawPeer, associate_rq, command, p_data, response_command

    mpps = str(ModalityPerformedProcedureStep)
    broken = (
        struct.pack("<HHL", 0x0040, 0x0270, 0xFFFFFFFF)  # ScheduledStepAttributesSequence
        + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)  # an item, then nothing
        + b"\x01\x02"
    )
    uid = generate_uid()
    if operation == "N-CREATE":
        request = command(
            AffectedSOPClassUID=mpps,
            CommandField=0x0140,
            MessageID=1,
            CommandDataSetType=0x0001,
            AffectedSOPInstanceUID=uid,
        )
    else:
        request = command(
            RequestedSOPClassUID=mpps,
            CommandField=0x0120,
            MessageID=1,
            CommandDataSetType=0x0001,
            RequestedSOPInstanceUID=uid,
        )
    with RawPeer(hl7_node.host, hl7_node.port) as peer:
        accepted = peer.associate(
            associate_rq(MODALITY, contexts=((1, mpps, (ImplicitVRLittleEndian,)),))
        )
        assert accepted.context_results == {1: 0}
        peer.send(p_data(1, 0x03, request, (0x02, broken)))
        answer = response_command(peer)
        assert answer.Status == status.INVALID_ATTRIBUTE_VALUE
        assert answer.ErrorComment == "cannot be decoded"
        # the association goes on: the next request is answered on it
        status_only = struct.pack("<HHL", 0x0040, 0x0252, 12) + b"IN PROGRESS "
        peer.send(p_data(1, 0x03, request, (0x02, status_only)))
        answer = response_command(peer)
        expected = (
            status.MISSING_ATTRIBUTE if operation == "N-CREATE" else status.NO_SUCH_SOP_INSTANCE
        )
        assert answer.Status == expected
    assert hl7_node.service.index.orders.performed(uid) is None


def test_a_step_scheduled_by_hand_is_on_the_worklist_by_its_time(hl7_node):
    step = hl7_node.service.orders.add_step(
        "UNN",
        patient_id="P-9",
        issuer=None,
        name="NORDMANN^KARI",
        birth_date="",
        sex="",
        accession="DERM-9",
        modality="XC",
        station="UNN_US",
        date=TODAY,
        time="1030",
        procedure="Skin photo",
    )
    assert (step["issuer"], step["start_time"]) == ("UNN", "103000")  # the hospital's issuer
    (answer,) = worklist(hl7_node, ScheduledProcedureStepStartTime="1030-1100")[1]
    assert (answer.AccessionNumber, answer.IssuerOfPatientID) == ("DERM-9", "UNN")
