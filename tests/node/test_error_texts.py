"""What the node's refusals tell peers and its log (issue 16), over real associations: no query
value echoed, no other hospital's AE named, the same 0xA801 whatever makes a Move Destination
unusable, and an unusable Move Destination answered 0xA801, not by an abort."""

from __future__ import annotations

import logging
import time
from io import BytesIO
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dimse_primitives import C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import Verification

from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.dimse import PATIENT_ROOT, STUDY_ROOT, associate, find, store
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import STUDY_MOVE, Destination, move

BIRTH_DATE_TAG = 0x00100030

# -- C-FIND: a malformed value is named by its keyword only ------------------------------------


@pytest.mark.parametrize("value", ["19xx0101", "1970\n0101", "19700101-1969"])
@pytest.mark.parametrize(
    ("level", "model", "above"),
    [
        ("PATIENT", PATIENT_ROOT, {}),
        ("STUDY", STUDY_ROOT, {}),
        ("STUDY", PATIENT_ROOT, {"PatientID": "P1"}),
    ],
    ids=["patient-root-patient", "study-root-study", "patient-root-study"],
)
def test_malformed_birth_date_is_not_echoed(node, caplog, value, level, model, above):
    with caplog.at_level(logging.DEBUG, logger="archive_node"):
        final, matches = find(node, identifier(level, PatientBirthDate=value, **above), model)
    assert final.Status == status.UNABLE_TO_PROCESS
    assert matches == []
    comment = str(final.ErrorComment)
    assert comment.startswith("PatientBirthDate")
    assert "1970" not in comment and "19xx" not in comment and "1969" not in comment
    assert final.OffendingElement == BIRTH_DATE_TAG
    assert value not in caplog.text and "19xx" not in caplog.text
    assert "PatientBirthDate" in caplog.text and "UNN_WS" in caplog.text


def test_malformed_values_of_other_keys_are_not_echoed_either(node, caplog):
    with caplog.at_level(logging.DEBUG, logger="archive_node"):
        final, _ = find(node, identifier("STUDY", StudyDate="2020SECRET"))
    assert final.Status == status.UNABLE_TO_PROCESS
    assert final.ErrorComment == "StudyDate: not a DICOM date or range"
    assert "SECRET" not in caplog.text


# -- C-MOVE: other hospitals' AEs are not named --------------------------------------------------


@pytest.fixture
def other_hospitals_destination(node, tmp_path):
    dest = Destination(tmp_path / "nlsh", ae_title="NLSH_DEST")
    node.service.registry.add_ae("NLSH_DEST", "NLSH", host="127.0.0.1", port=dest.port)
    node.service.registry.add_ae("NLSH_OFF", "NLSH", host="127.0.0.1", port=dest.port)
    node.service.registry.update_ae("NLSH_OFF", enabled=False)
    node.service.registry.add_ae(
        "UNN_LOCAL", "UNN", host="127.0.0.1", allow="echo,move,get,find", scope="hospital"
    )
    yield dest
    dest.stop()


def test_hospital_scoped_ae_cannot_probe_other_hospitals_titles(
    node, other_hospitals_destination, caplog
):
    """Another hospital's AE, a disabled one and an unregistered title: one answer."""
    study_uid = generate_uid()
    assert store(node, dicom_objects.ct(study_uid=study_uid)) == status.SUCCESS
    assoc = associate(node, "UNN_LOCAL", [STUDY_MOVE])
    assert assoc.is_established
    answers = {}
    try:
        with caplog.at_level(logging.WARNING, logger="archive_node"):
            for title in ("NLSH_DEST", "NLSH_OFF", "NOBODY"):
                final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), title)
                answers[title] = (final.Status, final.ErrorComment, "OffendingElement" in final)
    finally:
        assoc.release()
    assert set(answers.values()) == {
        (status.MOVE_DESTINATION_UNKNOWN, "move destination unknown", False)
    }
    assert other_hospitals_destination.associations == 0
    # the log keeps the reasons
    assert "belongs to hospital NLSH" in caplog.text
    assert "'NLSH_OFF' is disabled" in caplog.text
    assert "'NOBODY' is not a registered AE" in caplog.text


# -- C-MOVE: an unusable Move Destination is 0xA801, the association stays ---------------------


def _raw_move(assoc: Any, destination: str, query: Dataset) -> list[Dataset]:
    """A C-MOVE-RQ whose Move Destination is sent as given: pynetdicom's C_MOVE refuses to
    build one that is empty or not an AE title, so it is set past its validation and sent as
    send_c_move() sends (the reactor paused while the responses are read)."""
    context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == STUDY_MOVE)
    req = C_MOVE()
    req.MessageID = 7
    req.AffectedSOPClassUID = STUDY_MOVE
    req.Priority = 2
    req._move_destination = destination
    req.Identifier = BytesIO(encode(query, True, True))
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.0001)
    try:
        assoc.dimse.send_msg(req, context.context_id)
        responses = []
        while True:
            _, rsp = assoc.dimse.get_msg(block=True)
            assert rsp is not None, "no response: the association was aborted"
            responses.append(rsp)
            if rsp.Status != status.PENDING:
                return responses
    finally:
        assoc._reactor_checkpoint.set()


@pytest.mark.parametrize(
    "destination",
    ["", " " * 16, "A" * 17, "DE\x01ST", "DEST\nX"],
    ids=["empty", "spaces", "too-long", "control-byte", "newline"],
)
def test_unusable_move_destination_is_a801_and_the_association_stays(node, destination):
    study_uid = generate_uid()
    assert store(node, dicom_objects.ct(study_uid=study_uid)) == status.SUCCESS
    assoc = associate(node, "UNN_WS", [STUDY_MOVE, Verification])
    assert assoc.is_established
    try:
        responses = _raw_move(assoc, destination, identifier("STUDY", StudyInstanceUID=study_uid))
        assert [r.Status for r in responses] == [status.MOVE_DESTINATION_UNKNOWN]
        assert responses[0].ErrorComment == "Move Destination is not a valid AE title"
        assert assoc.send_c_echo().Status == status.SUCCESS
    finally:
        assoc.release()
