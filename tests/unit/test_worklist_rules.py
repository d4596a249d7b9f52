"""The Modality Worklist's identifiers and answers (rules/worklist.py, PS3.4 K.6)."""

from __future__ import annotations

import pytest
from pydicom import config
from pydicom.dataset import Dataset

from archive_node.dicom import status
from archive_node.rules.query import InvalidQuery
from archive_node.rules.worklist import parse_worklist_query, worklist_answer

STEP = {
    "patient_id": "PAT-1",
    "issuer": "UNN",
    "patient_name": "ØDEGÅRD^ÅSE",
    "birth_date": "19800102",
    "sex": "F",
    "accession_number": "ACC-1",
    "requested_procedure_id": "RP-1",
    "step_id": "SPS-1",
    "modality": "US",
    "procedure_code": "US-ABD^Ultrasound abdomen^L",
    "procedure_description": "Ultrasound abdomen",
    "station_ae": "UNN_US",
    "start_date": "20261205",
    "start_time": "1030",
    "study_uid": "1.2.3",
    "status": "IN PROGRESS",
}


def query(charset=None, step=None, **top):
    """An identifier as a peer may send it, malformed values included."""
    with config.disable_value_validation():
        return _query(charset, step, **top)


def _query(charset=None, step=None, **top):
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    for keyword, value in top.items():
        setattr(ds, keyword, value)
    if step is not None:
        item = Dataset()
        for keyword, value in step.items():
            setattr(item, keyword, value)
        ds.ScheduledProcedureStepSequence = [item]
    return ds


def test_conditions_come_from_the_identifier_and_the_step_item():
    parsed = parse_worklist_query(
        query(
            PatientName="ødeg*",
            PatientID="PAT-1",
            AccessionNumber="",
            step={
                "ScheduledStationAETitle": "UNN_US\\UNN_CAM",
                "ScheduledProcedureStepStartDate": "20261201-20261231",
                "ScheduledProcedureStepStartTime": "0800-1200",
                "Modality": "",
            },
        )
    )
    by_key = {c.keyword: (c.kind, c.values) for c in parsed.conditions}
    assert by_key == {
        "PatientName": ("wildcard", ("ødeg*",)),
        "PatientID": ("single", ("PAT-1",)),
        "ScheduledStationAETitle": ("list", ("UNN_US", "UNN_CAM")),
        "ScheduledProcedureStepStartDate": ("range", ("20261201", "20261231")),
    }
    assert parsed.time == ("080000.000000", "120059.999999")  # 1200 is a whole minute
    assert parsed.requested == (  # in tag order, as the identifier holds them
        "AccessionNumber",
        "PatientName",
        "PatientID",
        "ScheduledProcedureStepSequence",
    )


@pytest.mark.parametrize(
    ("identifier", "code"),
    [
        (query(step={"ScheduledProcedureStepStartDate": "2026-12-05"}), status.UNABLE_TO_PROCESS),
        (query(step={"ScheduledProcedureStepStartTime": "25"}), status.UNABLE_TO_PROCESS),
        (query(PatientID="A\\B"), status.UNABLE_TO_PROCESS),
        (query(StudyInstanceUID="1.2.x"), status.UNABLE_TO_PROCESS),
        (query(PatientName="A" * 200), status.UNABLE_TO_PROCESS),
    ],
)
def test_malformed_values_are_refused_naming_the_key(identifier, code):
    with pytest.raises(InvalidQuery) as caught:
        parse_worklist_query(identifier)
    assert caught.value.status == code


def test_one_step_item_at_most():
    ds = Dataset()
    ds.ScheduledProcedureStepSequence = [Dataset(), Dataset()]
    with pytest.raises(InvalidQuery) as caught:
        parse_worklist_query(ds)
    assert caught.value.status == status.IDENTIFIER_MISMATCH


def test_the_answer_has_every_requested_key_and_no_other():
    parsed = parse_worklist_query(
        query(
            charset="ISO_IR 192",
            PatientName="",
            PatientID="",
            PatientWeight="",
            RequestedProcedureCodeSequence=[],
            step={
                "ScheduledStationAETitle": "",
                "ScheduledPerformingPhysicianName": "",
                "ScheduledProcedureStepStatus": "",
                "ScheduledProcedureStepStartDate": "",
            },
        )
    )
    answer = worklist_answer(parsed, STEP)
    assert str(answer.PatientName) == "ØDEGÅRD^ÅSE"
    assert answer.PatientID == "PAT-1"
    assert answer.IssuerOfPatientID == "UNN"  # goes with PatientID
    assert answer.PatientWeight is None  # asked, not known: empty (PS3.4 K.6.1.2.2)
    (code,) = answer.RequestedProcedureCodeSequence
    assert (code.CodeValue, code.CodeMeaning, code.CodingSchemeDesignator) == (
        "US-ABD",
        "Ultrasound abdomen",
        "L",
    )
    (item,) = answer.ScheduledProcedureStepSequence
    assert item.ScheduledStationAETitle == "UNN_US"
    assert item.ScheduledPerformingPhysicianName is None
    assert item.ScheduledProcedureStepStatus == "STARTED"
    assert item.ScheduledProcedureStepStartDate == "20261205"
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    assert "AccessionNumber" not in answer
    assert "Modality" not in item  # not asked for


def test_an_empty_step_sequence_asks_for_the_whole_item():
    ds = Dataset()
    ds.ScheduledProcedureStepSequence = []
    (item,) = worklist_answer(parse_worklist_query(ds), STEP).ScheduledProcedureStepSequence
    assert (item.Modality, item.ScheduledProcedureStepID) == ("US", "SPS-1")
    assert item.ScheduledProcedureStepDescription == "Ultrasound abdomen"


def test_an_ascii_answer_needs_no_character_set():
    parsed = parse_worklist_query(query(PatientID=""))
    assert "SpecificCharacterSet" not in worklist_answer(parsed, STEP)


def test_a_value_the_node_cannot_match_matches_nothing():
    asked = parse_worklist_query(query(step={"ScheduledPerformingPhysicianName": "HOUSE^G"}))
    assert asked.nothing
    universal = parse_worklist_query(query(step={"ScheduledPerformingPhysicianName": ""}))
    assert not universal.nothing
    assert "ScheduledPerformingPhysicianName" in universal.step_keys
