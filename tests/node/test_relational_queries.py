"""Relational queries (PS3.4 C.4.1.2.2, C.4.1.3.2) and the Study Root PATIENT-level retrieve, as
Orthanc 1.10 and DCMTK send them, over real associations on SQLite and PostgreSQL: answered
with or without the extended negotiation, within scope, query.max_results and the issuer rule.
"""

from __future__ import annotations

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelFind as PATIENT_ROOT,
)
from pynetdicom.sop_class import (
    StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT,
)

from archive_node.dicom import status
from archive_node.net.association import set_tcp_nodelay
from tests.helpers import dicom_objects
from tests.helpers.dcmtk import TOOLS, counts, final_response, output, run
from tests.helpers.dimse import associate, find, find_results, store
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import PATIENT_MOVE, STUDY_MOVE, Destination, move
from tests.helpers.serving import node_with


@pytest.fixture
def region(node):
    """P1 of UNN: a CT study (two series: CT and SR-less OT) and a US study; P1 of NLSH (another
    patient, same PatientID): an XC photo study; P2 of UNN: a CT study."""
    reg = node.service.registry
    reg.add_ae("NLSH_WS", "NLSH", host="127.0.0.1", allow="find,move", scope="hospital")
    studies = {name: generate_uid() for name in ("ct", "us", "photo", "p2")}
    ct_series, ot_series = generate_uid(), generate_uid()
    pushes = [
        (
            "UNN_US",
            dicom_objects.ct(study_uid=studies["ct"], series_uid=ct_series, patient_id="P1"),
        ),
        (
            "UNN_US",
            dicom_objects.ct(study_uid=studies["ct"], series_uid=ct_series, patient_id="P1"),
        ),
        (
            "UNN_US",
            dicom_objects.secondary_capture(
                study_uid=studies["ct"], series_uid=ot_series, patient_id="P1"
            ),
        ),
        ("UNN_US", dicom_objects.us_multiframe(study_uid=studies["us"], patient_id="P1")),
        (
            "NLSH_CAM",
            dicom_objects.vl_photo_jpeg(
                study_uid=studies["photo"], patient_id="P1", issuer="NLSH"
            ),
        ),
        ("UNN_US", dicom_objects.ct(study_uid=studies["p2"], patient_id="P2")),
    ]
    sent = []
    for calling, ds in pushes:
        assert store(node, ds, calling) == status.SUCCESS
        sent.append(ds)
    return {**studies, "ct_series": ct_series, "ot_series": ot_series, "sent": sent}


def uids(matches, keyword: str) -> set[str]:
    return {str(m[keyword].value) for m in matches}


# -- the C-FINDs Orthanc sends ----------------------------------------------------------------


def test_series_query_on_modality_alone_carries_the_study_uid(node, region):
    """Orthanc's series query: QueryRetrieveLevel=SERIES, Modality, no StudyInstanceUID."""
    query = identifier("SERIES", Modality="CT", SeriesInstanceUID="", SeriesDescription="")
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    by_series = {m.SeriesInstanceUID: m.StudyInstanceUID for m in matches}
    assert by_series[region["ct_series"]] == region["ct"]
    assert set(by_series.values()) == {region["ct"], region["p2"]}
    for answer in matches:
        assert answer.QueryRetrieveLevel == "SERIES" and answer.Modality == "CT"
        assert "PatientID" not in answer  # Study Root: no PATIENT level above


def test_image_query_with_only_the_study_uid(node, region):
    """Orthanc's instance query: StudyInstanceUID without SeriesInstanceUID."""
    query = identifier("IMAGE", StudyInstanceUID=region["ct"], SOPInstanceUID="")
    final, matches = find(node, query)
    assert final.Status == status.SUCCESS
    assert len(matches) == 3
    assert uids(matches, "SeriesInstanceUID") == {region["ct_series"], region["ot_series"]}
    assert uids(matches, "StudyInstanceUID") == {region["ct"]}


def test_patient_root_study_query_without_patient_id(node, region):
    """DCMTK's Patient Root STUDY query without PatientID: answers carry the PatientID and its
    issuer (the unique key above), one per patient domain."""
    query = identifier("STUDY", StudyInstanceUID="", ModalitiesInStudy="")
    final, matches = find(node, query, model=PATIENT_ROOT)
    assert final.Status == status.SUCCESS
    got = {(m.StudyInstanceUID, m.PatientID, m.IssuerOfPatientID) for m in matches}
    assert got == {
        (region["ct"], "P1", "UNN"),
        (region["us"], "P1", "UNN"),
        (region["photo"], "P1", "NLSH"),
        (region["p2"], "P2", "UNN"),
    }


def test_patient_root_image_query_matches_keys_of_every_level(node, region):
    query = identifier("IMAGE", PatientID="P1", IssuerOfPatientID="UNN", Modality="US")
    final, matches = find(node, query, model=PATIENT_ROOT)
    assert final.Status == status.SUCCESS
    assert len(matches) == 1
    answer = matches[0]
    assert (answer.PatientID, answer.IssuerOfPatientID) == ("P1", "UNN")
    assert answer.StudyInstanceUID == region["us"] and answer.SeriesInstanceUID


def test_relational_query_keeps_to_the_scope(node, region):
    """NLSH_WS (scope hospital) sees only the series its hospital sent."""
    final, matches = find(node, identifier("SERIES", Modality=""), calling="NLSH_WS")
    assert final.Status == status.SUCCESS
    assert uids(matches, "StudyInstanceUID") == {region["photo"]}


def test_relational_query_keeps_to_max_results(tmp_path, index_url, node, region):
    with node_with(tmp_path / "capped", index_url, query={"max_results": 2}) as capped:
        final, matches = find(capped, identifier("IMAGE", SOPInstanceUID=""))
    assert final.Status == status.OUT_OF_RESOURCES
    assert len(matches) == 2


@pytest.mark.parametrize(
    ("model", "keys", "expected", "offending"),
    [
        (STUDY_ROOT, {"QueryRetrieveLevel": "PATIENT"}, status.IDENTIFIER_MISMATCH, None),
        (STUDY_ROOT, {}, status.IDENTIFIER_MISMATCH, "QueryRetrieveLevel"),
        (
            STUDY_ROOT,
            {"QueryRetrieveLevel": "SERIES", "StudyInstanceUID": "1.2.*"},
            status.UNABLE_TO_PROCESS,
            "StudyInstanceUID",
        ),
        (
            PATIENT_ROOT,
            {"QueryRetrieveLevel": "SERIES", "PatientID": ["P1", "P2"]},
            status.UNABLE_TO_PROCESS,
            "PatientID",
        ),
    ],
)
def test_what_is_really_invalid_is_still_refused(node, region, model, keys, expected, offending):
    final, matches = find(node, identifier(None, **keys, Modality=""), model=model)
    assert (final.Status, matches) == (expected, [])
    if offending:
        from pydicom.datadict import tag_for_keyword

        assert final.OffendingElement == tag_for_keyword(offending)


# -- SOP Class Extended Negotiation (PS3.4 C.5.1.1) -------------------------------------------


def negotiating(node, app_info: bytes):
    ae = AE(ae_title="UNN_WS")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_ROOT)
    item = SOPClassExtendedNegotiation()
    item.sop_class_uid = STUDY_ROOT
    item.service_class_application_information = app_info
    return ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        ext_neg=[item],
        evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
    )


@pytest.mark.parametrize(
    ("offered", "answered"),
    [(b"\x01", b"\x01"), (b"\x01\x01\x01", b"\x01\x01\x00"), (b"\x00", b"\x00")],
)
def test_relational_queries_accepted_in_extended_negotiation(node, region, offered, answered):
    assoc = negotiating(node, offered)
    assert assoc.is_established
    try:
        assert assoc.acceptor.sop_class_extended == {STUDY_ROOT: answered}
        final, matches = find_results(
            assoc.send_c_find(identifier("SERIES", Modality="CT"), STUDY_ROOT)
        )
        assert final.Status == status.SUCCESS
        assert uids(matches, "StudyInstanceUID") == {region["ct"], region["p2"]}
    finally:
        assoc.release()


def test_no_extended_negotiation_no_answer_item(node, region):
    assoc = associate(node, "UNN_WS", [STUDY_ROOT])
    assert assoc.is_established
    try:
        assert not assoc.acceptor.sop_class_extended
    finally:
        assoc.release()


# -- the Study Root PATIENT-level C-MOVE Orthanc sends -------------------------------------------


@pytest.fixture
def destination(tmp_path, node):
    dest = Destination(tmp_path / "dest")
    node.service.registry.add_ae("DEST", "UNN", host="127.0.0.1", port=dest.port, allow="echo")
    yield dest
    dest.stop()


def move_patient(node, keys: dict, calling: str = "UNN_WS", model=STUDY_MOVE):
    assoc = associate(node, calling, [STUDY_MOVE, PATIENT_MOVE])
    assert assoc.is_established
    try:
        return move(assoc, identifier("PATIENT", **keys), "DEST", model=model)
    finally:
        assoc.release()


@pytest.mark.parametrize("model", [STUDY_MOVE, PATIENT_MOVE], ids=["study-root", "patient-root"])
def test_patient_level_move_retrieves_the_whole_patient(node, region, destination, model):
    final, _, _ = move_patient(node, {"PatientID": "P1", "IssuerOfPatientID": "UNN"}, model=model)
    assert final.Status == status.SUCCESS
    expected = {
        str(ds.SOPInstanceUID)
        for ds in region["sent"]
        if ds.PatientID == "P1" and ds.get("IssuerOfPatientID", "UNN") == "UNN"
    }
    assert len(expected) == 4
    assert set(destination.received.files) == expected
    assert final.NumberOfCompletedSuboperations == 4


def test_patient_level_move_keeps_the_issuer_rule(node, region, destination):
    final, pending, _ = move_patient(node, {"PatientID": "P1"})
    assert final.Status == status.UNABLE_TO_PROCESS
    assert "IssuerOfPatientID" in final.ErrorComment
    assert pending == [] and destination.received.files == {}


def test_patient_level_move_of_one_issuer_needs_no_issuer(node, region, destination):
    final, _, _ = move_patient(node, {"PatientID": "P2"})
    assert final.Status == status.SUCCESS
    assert final.NumberOfCompletedSuboperations == 1


def test_patient_level_move_keeps_to_the_scope(node, region, destination):
    """NLSH_WS (scope hospital) moving UNN's P1 gets nothing: it is not its hospital's."""
    node.service.registry.add_ae("NLSH_DEST", "NLSH", host="127.0.0.1", port=destination.port)
    assoc = associate(node, "NLSH_WS", [STUDY_MOVE])
    try:
        final, _, _ = move(
            assoc,
            identifier("PATIENT", PatientID="P1", IssuerOfPatientID="UNN"),
            "NLSH_DEST",
        )
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    assert final.NumberOfCompletedSuboperations == 0
    assert destination.received.files == {}


@pytest.mark.parametrize(
    "keys", [{}, {"PatientID": ""}, {"PatientID": "*"}, {"PatientID": "P*"}], ids=str
)
def test_patient_level_move_needs_one_patient_id(node, region, destination, keys):
    final, pending, _ = move_patient(node, keys)
    assert final.Status == status.IDENTIFIER_MISMATCH
    assert pending == [] and destination.received.files == {}


@pytest.mark.dcmtk
@pytest.mark.skipif(TOOLS["movescu"] is None, reason="DCMTK movescu not installed")
def test_movescu_study_root_patient_level(node, region, destination):
    """DCMTK movescu, Study Root (-S), QueryRetrieveLevel=PATIENT: the whole patient."""
    proc = run(
        str(TOOLS["movescu"]),
        *("-d", "-S", "-aet", "UNN_WS", "-aec", node.ae_title, "-aem", "DEST"),
        *("-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID=P1"),
        *("-k", "IssuerOfPatientID=UNN"),
        node.host,
        str(node.port),
    )
    final = final_response(proc, "C-MOVE RSP")
    assert final.status == status.SUCCESS, output(proc)
    assert counts(final) == (4, 0, 0)
    assert len(destination.received.files) == 4
