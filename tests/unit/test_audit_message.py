"""The PS3.15 A.5.1 audit message of a record: parsed back, its event, participants and objects,
and every XML-special and non-ASCII character round-tripping."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset

from archive_node.rules import audit
from archive_node.rules.audit import Actor, AuditEvent, Touched, chained
from archive_node.rules.audit_message import audit_message, patient_object_id

TIME = "2025-03-04T05:06:07.123456Z"
STUDY_CLASS_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STORE_SCU = Actor(session="s1", ae_title="MODALITY", hospital="H1", address="10.1.2.3")


def record(event: AuditEvent, seq: int = 1) -> audit.AuditRecord:
    return chained(event, node="node-a", seq=seq, prev_hash=audit.GENESIS, time=TIME)


def message(event: AuditEvent, **kwargs) -> ET.Element:
    options = {"source_id": "archive-1", "node_address": "192.0.2.10", "node_ae_title": "ARCHIVE"}
    data = audit_message(record(event), **{**options, **kwargs})
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    data.decode("utf-8")
    return ET.fromstring(data)


def participants(root: ET.Element) -> dict[str, ET.Element]:
    return {p.get("UserID"): p for p in root.findall("ActiveParticipant")}


def role(participant: ET.Element) -> str | None:
    code = participant.find("RoleIDCode")
    return None if code is None else code.get("csd-code")


def objects(root: ET.Element, id_type: str) -> list[ET.Element]:
    return [
        o
        for o in root.findall("ParticipantObjectIdentification")
        if o.find("ParticipantObjectIDTypeCode").get("csd-code") == id_type
    ]


def store(**changes) -> AuditEvent:
    values = {
        "kind": audit.INSTANCES_TRANSFERRED,
        "action": audit.CREATE,
        "operation": "C-STORE",
        "actor": STORE_SCU,
        "touched": (
            Touched("P1", "HOSP", "1.2.3.1", 3),
            Touched("P1", "HOSP", "1.2.3.2", 1),
            Touched("P2", "", "1.2.3.3", 0),
        ),
    }
    return AuditEvent(**{**values, **changes})


def test_the_message_has_the_parts_of_the_schema_in_order():
    root = message(store())
    assert root.tag == "AuditMessage"
    tags = [child.tag for child in root]
    assert tags[0] == "EventIdentification"
    assert tags[1:3] == ["ActiveParticipant", "ActiveParticipant"]
    assert tags[3] == "AuditSourceIdentification"
    assert set(tags[4:]) == {"ParticipantObjectIdentification"}
    assert root.find("AuditSourceIdentification").get("AuditSourceID") == "archive-1"


def test_event_identification():
    root = message(store())
    event = root.find("EventIdentification")
    assert event.attrib == {
        "EventActionCode": "C",
        "EventDateTime": TIME,
        "EventOutcomeIndicator": "0",
    }
    event_id = event.find("EventID")
    assert event_id.attrib == {
        "csd-code": "110104",
        "codeSystemName": "DCM",
        "originalText": "DICOM Instances Transferred",
    }
    assert event.find("EventTypeCode") is None
    assert event.find("EventOutcomeDescription") is None


def test_a_failure_has_its_outcome_and_description():
    root = message(store(outcome=audit.MINOR_FAILURE, status="0xA700 out of resources"))
    event = root.find("EventIdentification")
    assert event.get("EventOutcomeIndicator") == "4"
    assert event.find("EventOutcomeDescription").text == "0xA700 out of resources"


def test_an_event_type_has_its_code_and_meaning():
    start = AuditEvent(
        kind=audit.APPLICATION_ACTIVITY,
        action=audit.EXECUTE,
        operation="serve",
        actor=Actor(session="cmd-1", user="alice", address="localhost", ae_title="ARCHIVE"),
        event_type=audit.APPLICATION_START,
    )
    root = message(start)
    code = root.find("EventIdentification/EventTypeCode")
    assert code.attrib == {
        "csd-code": "110120",
        "codeSystemName": "DCM",
        "originalText": "Application Start",
    }
    found = participants(root)
    assert role(found["ARCHIVE"]) == "110150"  # Application
    assert role(found["alice"]) == "110151"  # Application Launcher
    assert set(found) == {"ARCHIVE", "alice"}  # the node's AE title is the node's own
    assert found["alice"].get("UserIsRequestor") == "true"
    assert found["alice"].get("AlternativeUserID") is None
    assert found["alice"].get("NetworkAccessPointTypeCode") == "1"
    assert found["ARCHIVE"].get("UserIsRequestor") == "false"
    assert found["ARCHIVE"].get("AlternativeUserID") == "AETITLES=ARCHIVE"


def test_a_store_has_the_peer_as_source_and_the_node_as_destination():
    root = message(store(actor=Actor(session="s", ae_title="MOD", address="10.1.2.3", user="bob")))
    found = participants(root)
    assert set(found) == {"ARCHIVE", "MOD"}
    node, peer = found["ARCHIVE"], found["MOD"]
    assert role(peer) == "110153" and role(node) == "110152"
    assert peer.find("RoleIDCode").attrib == {
        "csd-code": "110153",
        "codeSystemName": "DCM",
        "originalText": "Source Role ID",
    }
    assert peer.get("UserIsRequestor") == "true" and node.get("UserIsRequestor") == "false"
    assert peer.get("NetworkAccessPointID") == "10.1.2.3"
    assert peer.get("NetworkAccessPointTypeCode") == "2"
    assert peer.get("UserName") == "bob"
    assert peer.get("AlternativeUserID") == "AETITLES=MOD"
    assert node.get("NetworkAccessPointID") == "192.0.2.10"
    assert node.get("NetworkAccessPointTypeCode") == "2"


def test_the_node_without_an_ae_title_is_its_source_id_and_a_host_name_is_type_1():
    root = message(store(), node_ae_title="", node_address="archive.example.org", process_id="42")
    node = participants(root)["archive-1"]
    assert node.get("NetworkAccessPointID") == "archive.example.org"
    assert node.get("NetworkAccessPointTypeCode") == "1"
    assert node.get("AlternativeUserID") == "42"


def test_an_ipv6_address_is_an_ip_address():
    actor = Actor(session="s", ae_title="MOD", address="2001:db8::1")
    peer = participants(message(store(actor=actor)))["MOD"]
    assert peer.get("NetworkAccessPointTypeCode") == "2"


def test_an_import_by_a_local_command_has_its_user_as_source():
    event = AuditEvent(
        kind=audit.DATA_IMPORT,
        action=audit.CREATE,
        operation="import",
        actor=Actor(session="cmd-2", user="carol"),
        touched=(Touched("P1", "", "1.2.3", 2),),
    )
    found = participants(message(event))
    assert set(found) == {"ARCHIVE", "carol"}
    assert role(found["carol"]) == "110153" and role(found["ARCHIVE"]) == "110152"
    assert found["carol"].get("UserName") is None
    assert found["carol"].get("AlternativeUserID") is None
    assert found["carol"].get("NetworkAccessPointID") is None


def test_a_move_has_the_node_as_source_and_the_destination_as_destination():
    event = store(
        action=audit.READ,
        operation="C-MOVE",
        actor=Actor(session="s", ae_title="WORKSTATION", address="10.0.0.7"),
        destination="VIEWER",
    )
    found = participants(message(event))
    assert set(found) == {"ARCHIVE", "WORKSTATION", "VIEWER"}
    assert role(found["ARCHIVE"]) == "110153"
    assert role(found["VIEWER"]) == "110152"
    assert role(found["WORKSTATION"]) is None
    assert found["WORKSTATION"].get("UserIsRequestor") == "true"
    assert found["VIEWER"].get("UserIsRequestor") == "false"


def test_a_get_has_the_peer_as_destination():
    event = store(
        action=audit.READ,
        operation="C-GET",
        actor=Actor(session="s", ae_title="WORKSTATION"),
        destination="WORKSTATION",
    )
    found = participants(message(event))
    assert set(found) == {"ARCHIVE", "WORKSTATION"}
    assert role(found["ARCHIVE"]) == "110153" and role(found["WORKSTATION"]) == "110152"


def test_an_event_of_the_node_alone_has_the_node_as_requestor():
    event = AuditEvent(
        kind=audit.SECURITY_ALERT,
        action=audit.EXECUTE,
        operation="chain check",
        actor=Actor(session="x"),
        event_type=audit.SECURITY_CONFIGURATION,
    )
    found = participants(message(event))
    assert list(found) == ["ARCHIVE"]
    assert found["ARCHIVE"].get("UserIsRequestor") == "true"


def test_one_object_per_patient_and_per_study():
    root = message(store())
    patients = objects(root, "2")
    assert [p.get("ParticipantObjectID") for p in patients] == ["P1^^^HOSP", "P2"]
    for patient in patients:
        assert patient.get("ParticipantObjectTypeCode") == "1"
        assert patient.get("ParticipantObjectTypeCodeRole") == "1"
        assert patient.find("ParticipantObjectIDTypeCode").attrib == {
            "csd-code": "2",
            "codeSystemName": "RFC-3881",
            "originalText": "Patient Number",
        }
        assert patient.find("ParticipantObjectName") is None
    studies = {s.get("ParticipantObjectID"): s for s in objects(root, "110180")}
    assert set(studies) == {"1.2.3.1", "1.2.3.2", "1.2.3.3"}
    for study in studies.values():
        assert study.get("ParticipantObjectTypeCode") == "2"
        assert study.get("ParticipantObjectTypeCodeRole") == "3"
        assert study.find("ParticipantObjectIDTypeCode").attrib == {
            "csd-code": "110180",
            "codeSystemName": "DCM",
            "originalText": "Study Instance UID",
        }
    counts = {
        uid: study.find("ParticipantObjectDescription/SOPClass") for uid, study in studies.items()
    }
    assert counts["1.2.3.1"].attrib == {"NumberOfInstances": "3"}
    assert counts["1.2.3.2"].attrib == {"NumberOfInstances": "1"}
    assert studies["1.2.3.3"].find("ParticipantObjectDescription") is None


def test_a_patient_without_an_id_is_left_out_and_their_study_kept():
    root = message(store(touched=(Touched("", "", "1.2.3.9", 1),)))
    assert objects(root, "2") == []
    assert [s.get("ParticipantObjectID") for s in objects(root, "110180")] == ["1.2.3.9"]


@pytest.mark.parametrize(
    ("patient_id", "issuer", "expected"),
    [
        ("P1", "", "P1"),
        ("P1", "HOSP", "P1^^^HOSP"),
        ("A^B&C", "X|Y~Z\\", "A\\S\\B\\T\\C^^^X\\F\\Y\\R\\Z\\E\\"),
    ],
)
def test_patient_object_id_is_hl7_cx(patient_id, issuer, expected):
    assert patient_object_id(patient_id, issuer) == expected


def query_identifier() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "Ærøskøbing-1"
    ds.PatientName = ""
    ds.StudyDate = "20240101-"
    ds.StudyInstanceUID = ""
    return ds


def query_event(detail) -> AuditEvent:
    return AuditEvent(
        kind=audit.QUERY,
        action=audit.EXECUTE,
        operation="C-FIND",
        actor=Actor(session="s", ae_title="WORKSTATION", address="10.0.0.7"),
        detail=detail,
    )


def test_a_query_has_its_sop_class_and_identifier():
    identifier = query_identifier()
    detail = {"sop_class": STUDY_CLASS_FIND, "query": identifier.to_json_dict()}
    root = message(query_event(detail))
    found = participants(root)
    assert role(found["WORKSTATION"]) == "110153" and role(found["ARCHIVE"]) == "110152"
    (query,) = objects(root, "110181")
    assert query.get("ParticipantObjectID") == STUDY_CLASS_FIND
    assert query.get("ParticipantObjectTypeCode") == "2"
    assert query.get("ParticipantObjectTypeCodeRole") == "3"
    assert query.find("ParticipantObjectIDTypeCode").attrib == {
        "csd-code": "110181",
        "codeSystemName": "DCM",
        "originalText": "SOP Class UID",
    }
    detail_element = query.find("ParticipantObjectDetail")
    assert detail_element.get("type") == "TransferSyntax"
    assert base64.b64decode(detail_element.get("value")) == b"1.2.840.10008.1.2.1"
    encoded = base64.b64decode(query.find("ParticipantObjectQuery").text)
    fp = DicomBytesIO(encoded)
    fp.is_little_endian, fp.is_implicit_VR = True, False
    decoded = read_dataset(fp, is_implicit_VR=False, is_little_endian=True)
    assert decoded.PatientID == "Ærøskøbing-1"
    assert decoded.StudyDate == "20240101-"
    assert decoded.QueryRetrieveLevel == "STUDY"
    assert "PatientName" in decoded and "StudyInstanceUID" in decoded
    # the query's keys travel inside the base64 only
    assert "Ærøskøbing".encode() not in audit_message(
        record(query_event(detail)), source_id="a", node_address="", node_ae_title="A"
    )


def test_a_query_identifier_without_a_character_set_is_written_in_utf_8():
    identifier = query_identifier()
    del identifier.SpecificCharacterSet
    detail = {"sop_class": STUDY_CLASS_FIND, "query": identifier.to_json_dict()}
    (query,) = objects(message(query_event(detail)), "110181")
    fp = DicomBytesIO(base64.b64decode(query.find("ParticipantObjectQuery").text))
    decoded = read_dataset(fp, is_implicit_VR=False, is_little_endian=True)
    assert decoded.SpecificCharacterSet == "ISO_IR 192"
    assert decoded.PatientID == "Ærøskøbing-1"


@pytest.mark.parametrize("query", [None, {"not": "dicom json"}, "text"])
def test_a_query_without_a_usable_identifier_names_the_sop_class_alone(query):
    detail = (
        {"sop_class": STUDY_CLASS_FIND}
        if query is None
        else {
            "sop_class": STUDY_CLASS_FIND,
            "query": query,
        }
    )
    (query_object,) = objects(message(query_event(detail)), "110181")
    assert query_object.get("ParticipantObjectID") == STUDY_CLASS_FIND
    assert query_object.find("ParticipantObjectQuery") is None
    assert query_object.find("ParticipantObjectDetail") is None


def test_special_and_non_ascii_characters_round_trip():
    peer = Actor(
        session="s",
        ae_title="<&>\"'AE",
        address="host<&>.example",
        user='Bjørn & "Åse" <admin>',
    )
    event = store(
        actor=peer,
        outcome=audit.SERIOUS_FAILURE,
        status='0xC000 <bad> & "worse"\nsecond line',
        touched=(Touched("Søren-Ødegård^Æ<&>", "Sykehuset i Østfold & Co", "1.2.3", 1),),
    )
    root = message(event, node_ae_title="ARKIV_Ø", source_id="kilde&<>", node_address="x")
    found = participants(root)
    assert set(found) == {"ARKIV_Ø", "<&>\"'AE"}
    peer_element = found["<&>\"'AE"]
    assert peer_element.get("UserName") == 'Bjørn & "Åse" <admin>'
    assert peer_element.get("NetworkAccessPointID") == "host<&>.example"
    assert root.find("AuditSourceIdentification").get("AuditSourceID") == "kilde&<>"
    status = root.find("EventIdentification/EventOutcomeDescription").text
    assert status == '0xC000 <bad> & "worse"\nsecond line'
    (patient,) = objects(root, "2")
    assert patient.get("ParticipantObjectID") == (
        "Søren-Ødegård\\S\\Æ<\\T\\>^^^Sykehuset i Østfold \\T\\ Co"
    )


def test_characters_xml_cannot_hold_are_replaced():
    peer = Actor(session="s", ae_title="AE\x00\x1b", user="u\x07")
    root = message(store(actor=peer, status="bad\x01"))
    assert "AE\ufffd\ufffd" in participants(root)
    assert root.find("EventIdentification/EventOutcomeDescription").text == "bad\ufffd"
