"""HL7 v2 messages read field by field (rules/hl7_messages.py): the header and its character
set, orders and ADT into what the node applies, every bad field named, and the ACK."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest

from archive_node.rules.hl7_messages import (
    MessageRefused,
    OrderMessage,
    PatientMerge,
    PatientUpdate,
    acknowledgement,
    escape,
    interpret,
    parse_timestamp,
    read_message,
)
from tests.helpers.hl7 import adt, omi, orm, pid

ISSUER = "UNN"  # the sending hospital's Issuer of Patient ID


def read(message: str, encoding: str = "utf-8"):
    """(header, content); an order message's one order."""
    received = read_message(message.encode(encoding))
    header = received.header
    content = interpret(received, ISSUER)
    if isinstance(content, tuple):
        (content,) = content
    return header, content


def refused(message: str | bytes) -> MessageRefused:
    raw = message.encode() if isinstance(message, str) else message
    with pytest.raises(MessageRefused) as caught:
        interpret(read_message(raw), ISSUER)
    return caught.value


def test_an_orm_is_read_as_ihe_maps_it():
    header, order = read(orm("C-1", study_uid="1.2.3.4", start="202612051030"))
    assert (header.facility, header.kind, header.control_id) == ("UNN_RIS", "ORM^O01", "C-1")
    assert header.charset == "UNICODE UTF-8"
    assert isinstance(order, OrderMessage)
    assert (order.control, order.order_key) == ("new", "ORD-1")
    assert order.patient.patient_id == "PAT-1"
    assert order.patient.issuer == "UNN"
    assert order.patient.name == "ØDEGÅRD^ÅSE^M"
    assert (order.patient.birth_date, order.patient.sex) == ("19800102", "F")
    (step,) = order.steps
    assert step.accession_number == "ACC-1"
    assert step.requested_procedure_id == "RP-ACC-1"
    assert step.step_id == "SPS-ACC-1"
    assert step.modality == "US"
    assert step.station_ae == "UNN_US"
    assert (step.start_date, step.start_time) == ("20261205", "103000")
    assert step.study_uid == "1.2.3.4"
    assert step.procedure_code == "US-ABD^Ultrasound abdomen^L"
    assert step.procedure_description == "Ultrasound abdomen"


def test_an_omi_gives_a_step_per_ipc():
    _, order = read(omi(steps=(("A1", "US", "S1"), ("A2", "xc", "S2")), study_uid="1.2.9"))
    assert isinstance(order, OrderMessage)
    assert [(s.accession_number, s.modality, s.station_ae) for s in order.steps] == [
        ("A1", "US", "S1"),
        ("A2", "XC", "S2"),
    ]
    assert {s.study_uid for s in order.steps} == {"1.2.9"}
    assert [s.step_id for s in order.steps] == ["SPS-1", "SPS-2"]


@pytest.mark.parametrize(
    ("control", "meaning"),
    [("NW", "new"), ("XO", "change"), ("CA", "cancel"), ("OC", "cancel"), ("DC", "discontinue")],
)
def test_order_controls(control, meaning):
    _, order = read(orm(control=control))
    assert isinstance(order, OrderMessage)
    assert order.control == meaning
    assert bool(order.steps) == (meaning in ("new", "change"))


def test_adt_updates_and_merges():
    _, update = read(adt("A08", "A-1", patient=pid(name="NORDMANN^KARI^^JR^DR", sex="U")))
    assert isinstance(update, PatientUpdate)
    # HL7 XPN puts the suffix (4) before the prefix (5); a DICOM PN the prefix first
    assert update.patient.name == "NORDMANN^KARI^^DR^JR"
    assert update.patient.sex == ""
    _, merge = read(adt("A40", "A-2", merge_from="OLD-1"))
    assert isinstance(merge, PatientMerge)
    assert (merge.prior_id, merge.patient.issuer) == ("OLD-1", "UNN")


def test_the_patient_is_the_one_of_the_senders_issuer():
    # the repetition of the hospital's authority (namespace or universal ID), else one
    # without an authority; always under the hospital's issuer
    _, order = read(orm(patient="PID|1||N-9^^^NO-NIN~P1^^^UNN||DOE"))
    assert (order.patient.patient_id, order.patient.issuer) == ("P1", "UNN")
    _, order = read(orm(patient="PID|1||P2^^^&UNN&L||DOE"))
    assert order.patient.patient_id == "P2"
    _, order = read(orm(patient="PID|1||N-9^^^NO-NIN~P3||DOE"))
    assert order.patient.patient_id == "P3"
    # another hospital's patient: refused, whatever the message
    for message in (
        orm(patient="PID|1||P4^^^NLSH||DOE"),
        adt("A08", "A-1", patient="PID|1||P4^^^NLSH||DOE"),
        adt("A40", "A-2", patient=pid("P1"), merge_from="OLD").replace("OLD^^^UNN", "OLD^^^NLSH"),
    ):
        problem = refused(message)
        assert problem.ack == "AE"
        assert problem.location in ("PID^1^3^1^4", "MRG^1^1^1^4")


def test_fields_left_out_and_fields_deleted():
    _, update = read(adt("A08", "A-1", patient="PID|1||P1^^^UNN||DOE^JO"))
    assert (update.patient.name, update.patient.birth_date, update.patient.sex) == (
        "DOE^JO",
        None,
        None,
    )
    _, update = read(adt("A08", "A-1", patient='PID|1||P1^^^UNN||""||""|""'))
    assert (update.patient.name, update.patient.birth_date, update.patient.sex) == ("", "", "")


def test_escapes_are_unescaped():
    _, order = read(orm(patient="PID|1||P\\T\\1^^^UNN||O\\S\\BRIEN^ANN"))
    assert order.patient.patient_id == "P&1"
    # a ^ in a PN component would split it: refused
    assert refused(orm(patient="PID|1||P1^^^UNN||A\\S\\B\\E\\C")).location == "PID^1^5"


@pytest.mark.parametrize(
    ("charset", "encoding"),
    [("8859/1", "latin-1"), ("UNICODE UTF-8", "utf-8"), ("8859/15", "iso8859_15")],
)
def test_the_character_set_of_msh_18(charset, encoding):
    _, order = read(orm(charset=charset), encoding)
    assert order.patient.name == "ØDEGÅRD^ÅSE^M"


def test_bytes_outside_the_declared_set_are_refused():
    problem = refused(orm(charset="").encode("utf-8"))
    assert (problem.ack, problem.location) == ("AR", "MSH^1^18")
    assert "ASCII" in problem.text
    assert refused(orm(charset="UNICODE UTF-8").encode("latin-1")).location == "MSH^1^18"


@pytest.mark.parametrize(
    ("message", "ack", "location"),
    [
        (b"", "AR", "MSH^1"),
        (b"EVN|A08\r", "AR", "MSH^1"),
        (orm().replace("|MSG-1|", "||"), "AR", "MSH^1^10"),
        (orm().replace("|UNN_RIS|", "||"), "AR", "MSH^1^4"),
        (orm().replace("ORM^O01", "SIU^S12"), "AR", "MSH^1^9"),
        (orm().replace("ORM^O01", "ADT^A99"), "AR", "MSH^1^9^1^2"),
        (orm().replace("|P|2.5.1|", "|T|2.5.1|"), "AR", "MSH^1^11"),
        (orm().replace("PV1|1|O", "PV1|1|O\x00"), "AR", "PV1^1"),
        (orm().replace("|MSG-1|", "|MSG\t1|"), "AR", "MSH^1^10"),
        (orm() + orm().split("\r", 2)[2] * 60, "AE", "ORC"),
        (orm(patient=""), "AE", "PID"),
        (orm(patient="PID|1||" + "9" * 65 + "^^^UNN||DOE"), "AE", "PID^1^3"),
        (orm(patient="PID|1||P1^^^UNN||DOE||19801302"), "AE", "PID^1^7"),
        (orm(station="A" * 17), "AE", "ORC^1^18"),
        (orm(station="NOT\x01TITLE"), "AR", "ORC^1"),
        (orm(modality="ULTRASOUND_MODALITY"), "AE", "OBR^1^24"),
        (orm(accession="A" * 17), "AE", "OBR^1^18"),
        (orm(start="20261305"), "AE", "ORC^1^7"),
        (orm(start="2026120525"), "AE", "ORC^1^7"),
        (omi(steps=(("", "US", "S1"),)), "AE", "IPC^1^1"),
        (omi(study_uid="1.02.x"), "AE", "IPC^1^3"),
        (omi(start=""), "AE", "TQ1^1^7"),
        (adt("A08", "X", patient="PID|1"), "AE", "PID^1^3"),
    ],
)
def test_each_bad_field_is_named(message, ack, location):
    problem = refused(message)
    assert (problem.ack, problem.location) == (ack, location)
    assert problem.text


def test_the_value_is_never_in_the_reason():
    """Reasons go to the log and the sender: they name fields, never a patient's values."""
    problem = refused(orm(patient="PID|1||SECRET-" + "9" * 60 + "^^^UNN||DOE"))
    assert "SECRET" not in problem.text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20261205", ("20261205", "")),
        ("202612051030", ("20261205", "103000")),
        ("20261205103015.123+0100", ("20261205", "103015")),
        ("20261205-0500", ("20261205", "")),
        ("2026120510", ("20261205", "100000")),
        ("20261205103", ("", "")),
        ("20261232", ("", "")),
        ("tomorrow", ("", "")),
        ("", ("", "")),
    ],
)
def test_parse_timestamp(value, expected):
    assert parse_timestamp(value) == expected


def test_the_ack_of_an_error_parses_with_its_err_segment():
    header = read_message(orm("C-9").encode()).header
    error = MessageRefused("AE", "PID^1^3", 101, "PID-3 is required | and ^ escaped")
    text = acknowledgement(
        header,
        "AE",
        application="ARCHIVE",
        facility="ARCHIVE",
        control_id="ACK-1",
        text=error.text,
        error=error,
        now=datetime(2026, 12, 5, 12, 0, tzinfo=UTC),
    )
    ack = hl7.parse(text)
    assert str(ack["MSH.F3"]) == "ARCHIVE"
    assert str(ack["MSH.F5"]) == "RIS"  # back to the sender
    assert str(ack["MSH.F6"]) == "UNN_RIS"
    assert str(ack["MSH.F7"]) == "20261205120000"
    assert str(ack["MSH.F9.R1.C1"]) == "ACK"
    assert str(ack["MSH.F9.R1.C2"]) == "O01"
    assert str(ack["MSH.F10"]) == "ACK-1"
    assert str(ack["MSH.F12"]) == "2.5.1"
    assert str(ack["MSH.F18"]) == "UNICODE UTF-8"
    assert (str(ack["MSA.F1"]), str(ack["MSA.F2"])) == ("AE", "C-9")
    assert str(ack.segment("ERR")[2]) == "PID^1^3"
    # ERR-1 (ELD) for HL7 v2.3/v2.4 receivers: segment, sequence, field, code
    assert str(ack.segment("ERR")[1]) == "PID^1^3^101&Required field missing&HL70357"
    assert str(ack["ERR.F3.R1.C1"]) == "101"
    assert str(ack["ERR.F3.R1.C3"]) == "HL70357"
    assert str(ack["ERR.F4"]) == "E"
    assert ack["ERR.F8"] == "PID-3 is required | and ^ escaped"


def test_the_ack_without_a_header():
    text = acknowledgement(
        None,
        "AR",
        application="ARCHIVE",
        facility="ARCHIVE",
        control_id="ACK-2",
        error=MessageRefused("AR", "MSH^1", 100, "broken framing"),
    )
    ack = hl7.parse(text)
    assert str(ack["MSA.F1"]) == "AR"
    assert str(ack["MSA.F2"]) == ""


def test_escape():
    assert escape("a|b^c~d\\e&f\r") == "a\\F\\b\\S\\c\\R\\d\\E\\e\\T\\f "
