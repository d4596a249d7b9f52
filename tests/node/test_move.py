"""C-MOVE SCP over real associations on SQLite and PostgreSQL, into a pynetdicom storage SCP:
registered destinations only, rights and scope, partial syntax acceptance, counts and
statuses, cancel, unreachable destinations and bad identifiers."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import tracemalloc
from io import BytesIO

import pytest
from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from archive_node.dicom import status
from archive_node.rules import retrieve_plan
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, send_file, store
from tests.helpers.identifiers import identifier
from tests.helpers.ports import free_port
from tests.helpers.retrieving import (
    PATIENT_MOVE,
    STUDY_MOVE,
    Destination,
    cutting_proxy,
    failed_uids,
    four_kinds_study,
    move,
)
from tests.helpers.serving import stored_path

WORKSTATION = "UNN_WS"


@contextlib.contextmanager
def destination_at(node, tmp_path, title: str, hospital: str = "UNN", **kw):
    """A Destination registered as `title` of `hospital`, stopped afterwards."""
    dest = Destination(tmp_path / title, ae_title=title, **kw)
    node.service.registry.add_ae(title, hospital, host="127.0.0.1", port=dest.port)
    try:
        yield dest
    finally:
        dest.stop()


def move_study(node, study_uid: str, destination: str = "DEST", calling: str = WORKSTATION):
    """(final, pending, answer) of a Study Root STUDY level C-MOVE on its own association."""
    assoc = move_assoc(node, calling)
    try:
        return move(assoc, identifier("STUDY", StudyInstanceUID=study_uid), destination)
    finally:
        assoc.release()


@pytest.fixture
def study(node):
    """retrieving.four_kinds_study: US multi-frame, VL photo, H.264 video and CT."""
    return four_kinds_study(node)


def move_assoc(node, calling: str = WORKSTATION):
    assoc = associate(node, calling, [STUDY_MOVE, PATIENT_MOVE])
    assert assoc.is_established
    return assoc


def test_study_moves_byte_for_byte_with_counts_and_originator(node, destination, study):
    study_uid, uids = study
    final, pending, answer = move_study(node, study_uid)
    assert final.Status == status.SUCCESS
    assert (
        final.NumberOfCompletedSuboperations,
        final.NumberOfFailedSuboperations,
        final.NumberOfWarningSuboperations,
    ) == (4, 0, 0)
    assert "NumberOfRemainingSuboperations" not in final
    assert [p.NumberOfRemainingSuboperations for p in pending] == [3, 2, 1]
    assert [p.NumberOfCompletedSuboperations for p in pending] == [1, 2, 3]
    assert answer is None
    received = destination.received
    assert set(received.files) == set(uids)
    for uid in uids:
        assert dicom_objects.dataset_bytes(received.files[uid]) == dicom_objects.dataset_bytes(
            stored_path(node, uid)
        ), f"instance {uid} changed on the way"
    # PS3.4 C.4.2.2: the AE that asked, and its request's Message ID (pynetdicom's SCU uses 1)
    assert set(received.originators) == {(WORKSTATION, 1)}
    assert destination.associations == 1


def test_series_and_image_levels_and_lists_of_uids(node, destination, study):
    study_uid, uids = study
    series = {uid: str(dcmread(stored_path(node, uid)).SeriesInstanceUID) for uid in uids}
    assoc = move_assoc(node)
    try:
        final, _, _ = move(
            assoc,
            identifier("SERIES", StudyInstanceUID=study_uid, SeriesInstanceUID=series[uids[0]]),
        )
        assert final.Status == status.SUCCESS
        assert final.NumberOfCompletedSuboperations == 1
        final, _, _ = move(
            assoc,
            identifier(
                "IMAGE",
                StudyInstanceUID=study_uid,
                SeriesInstanceUID=series[uids[1]],
                SOPInstanceUID=uids[1],
            ),
        )
        assert final.NumberOfCompletedSuboperations == 1
        # a list of series UIDs (PS3.4 C.2.2.2.2)
        final, _, _ = move(
            assoc,
            identifier(
                "SERIES",
                StudyInstanceUID=study_uid,
                SeriesInstanceUID=[series[uids[2]], series[uids[3]]],
            ),
        )
        assert final.NumberOfCompletedSuboperations == 2
    finally:
        assoc.release()
    assert set(destination.received.files) == set(uids)


def test_patient_root_patient_and_study_levels(node, destination, study):
    study_uid, _ = study
    other = dicom_objects.ct(patient_id="P1")  # a second study of the same patient
    assert store(node, other) == status.SUCCESS
    assoc = move_assoc(node)
    try:
        final, _, _ = move(assoc, identifier("PATIENT", PatientID="P1"), model=PATIENT_MOVE)
        assert final.Status == status.SUCCESS
        assert final.NumberOfCompletedSuboperations == 5
        final, _, _ = move(
            assoc,
            identifier("STUDY", PatientID="P1", StudyInstanceUID=study_uid),
            model=PATIENT_MOVE,
        )
        assert final.NumberOfCompletedSuboperations == 4
        # the study is not that patient's: nothing matches (hierarchical retrieval)
        final, _, _ = move(
            assoc,
            identifier("STUDY", PatientID="P9", StudyInstanceUID=study_uid),
            model=PATIENT_MOVE,
        )
        assert (final.Status, final.NumberOfCompletedSuboperations) == (status.SUCCESS, 0)
    finally:
        assoc.release()


def test_zero_matches_is_success_with_no_sub_association(node, destination, study):
    final, pending, _ = move_study(node, generate_uid())
    assert final.Status == status.SUCCESS
    assert (
        final.NumberOfCompletedSuboperations,
        final.NumberOfFailedSuboperations,
        final.NumberOfWarningSuboperations,
    ) == (0, 0, 0)
    assert pending == []
    assert destination.associations == 0


# -- destinations: from the registry only ------------------------------------------------------


def test_unknown_destination_gets_a801_and_nothing_leaves(node, destination, study):
    study_uid, _ = study
    assoc = move_assoc(node)
    try:
        final, _, _ = move(
            assoc, identifier("STUDY", StudyInstanceUID=study_uid), destination="NOBODY"
        )
        assert final.Status == status.MOVE_DESTINATION_UNKNOWN
        assert final.ErrorComment == "move destination unknown"
        # the association stays usable
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
        assert final.Status == status.SUCCESS
    finally:
        assoc.release()
    assert destination.associations == 1


@pytest.mark.parametrize(
    "registration, why",
    [
        ({"host": "127.0.0.1"}, "without a host and port"),
        ({"port": 11112}, "without a host and port"),
        ({"host": "127.0.0.1", "port": 11112, "enabled": False}, "disabled"),
    ],
)
def test_destination_without_address_or_disabled_gets_a801(node, study, registration, why, caplog):
    study_uid, _ = study
    registration = dict(registration)
    enabled = registration.pop("enabled", True)
    node.service.registry.add_ae("HALFWAY", "UNN", **registration)
    if not enabled:
        node.service.registry.update_ae("HALFWAY", enabled=False)
    with caplog.at_level(logging.WARNING, logger="archive_node"):
        final, _, _ = move_study(node, study_uid, "HALFWAY")
    assert final.Status == status.MOVE_DESTINATION_UNKNOWN
    assert final.ErrorComment == "move destination unknown"
    assert why in caplog.text  # the log keeps the reason


def test_hospital_scoped_ae_moves_only_to_its_own_hospital(node, tmp_path, study, caplog):
    study_uid, _ = study
    node.service.registry.add_ae(
        "UNN_LOCAL", "UNN", host="127.0.0.1", allow="move", scope="hospital"
    )
    with (
        destination_at(node, tmp_path, "NLSH_DEST", hospital="NLSH") as other,
        destination_at(node, tmp_path, "UNN_DEST"),
    ):
        with caplog.at_level(logging.WARNING, logger="archive_node"):
            final, _, _ = move_study(node, study_uid, "NLSH_DEST", calling="UNN_LOCAL")
        assert final.Status == status.MOVE_DESTINATION_UNKNOWN
        # the requester learns nothing of the other hospital; the log keeps why
        assert final.ErrorComment == "move destination unknown"
        assert "belongs to hospital NLSH" in caplog.text
        final, _, _ = move_study(node, study_uid, "UNN_DEST", calling="UNN_LOCAL")
        assert final.NumberOfCompletedSuboperations == 4
    assert other.associations == 0


def test_ae_without_move_right_is_refused(node, destination, study):
    study_uid, _ = study
    node.service.registry.add_ae("UNN_VIEW", "UNN", host="127.0.0.1", allow="find")
    final, _, _ = move_study(node, study_uid, calling="UNN_VIEW")
    assert final.Status == status.NOT_AUTHORISED
    assert destination.associations == 0


def test_granting_move_takes_effect_on_the_next_association(node, destination, study):
    study_uid, _ = study
    node.service.registry.add_ae("UNN_VIEW", "UNN", host="127.0.0.1", allow="find")
    node.service.registry.update_ae("UNN_VIEW", allow="find,move")
    final, _, _ = move_study(node, study_uid, calling="UNN_VIEW")
    assert final.Status == status.SUCCESS


# -- scope hospital: what C-FIND shows ---------------------------------------------------------


def test_hospital_scope_retrieves_only_its_hospitals_instances(node, tmp_path):
    reg = node.service.registry
    reg.add_ae("NLSH_WS", "NLSH", host="127.0.0.1", allow="move", scope="hospital")
    shared = generate_uid()
    unn = dicom_objects.ct(study_uid=shared, patient_id="P1")
    nlsh = dicom_objects.vl_photo_jpeg(study_uid=shared, patient_id="P1")
    only_unn = dicom_objects.ct(patient_id="P1")
    assert store(node, unn, "UNN_US") == status.SUCCESS
    assert store(node, nlsh, "NLSH_CAM") == status.SUCCESS
    assert store(node, only_unn, "UNN_US") == status.SUCCESS
    with destination_at(node, tmp_path, "NLSH_DEST", hospital="NLSH") as dest:
        final, _, _ = move_study(node, shared, "NLSH_DEST", calling="NLSH_WS")
        assert final.NumberOfCompletedSuboperations == 1
        final, _, _ = move_study(node, only_unn.StudyInstanceUID, "NLSH_DEST", calling="NLSH_WS")
        assert (final.Status, final.NumberOfCompletedSuboperations) == (status.SUCCESS, 0)
    assert set(dest.received.files) == {nlsh.SOPInstanceUID}


# -- what the destination accepts --------------------------------------------------------------


def test_destination_accepting_part_of_the_syntaxes_fails_those_sub_operations(
    node, tmp_path, study
):
    study_uid, uids = study
    us, photo, video, ct = uids
    with destination_at(
        node, tmp_path, "NATIVE", syntaxes=[ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    ) as dest:
        final, pending, answer = move_study(node, study_uid, "NATIVE")
    assert final.Status == status.SUB_OPERATIONS_WARNING
    assert (
        final.NumberOfCompletedSuboperations,
        final.NumberOfFailedSuboperations,
        final.NumberOfWarningSuboperations,
    ) == (3, 1, 0)
    # the JPEG photo is decompressed (issue 17); a video never is
    assert set(failed_uids(answer)) == {video}
    assert set(dest.received.files) == {us, ct, photo}
    assert dest.received.syntaxes[photo] == ExplicitVRLittleEndian
    assert [p.NumberOfRemainingSuboperations for p in pending] == [3, 2, 1]


def test_uncompressed_instance_is_converted_when_its_syntax_is_refused(node, tmp_path):
    ds = dicom_objects.ct(patient_id="P1")  # stored in Explicit VR Little Endian
    assert store(node, ds) == status.SUCCESS
    with destination_at(node, tmp_path, "IMPLICIT", syntaxes=[ImplicitVRLittleEndian]) as dest:
        final, _, _ = move_study(node, ds.StudyInstanceUID, "IMPLICIT")
    assert final.Status == status.SUCCESS
    uid = ds.SOPInstanceUID
    assert dest.received.syntaxes[uid] == ImplicitVRLittleEndian
    raw = dicom_objects.dataset_bytes(dest.received.files[uid])
    arrived = read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
    assert arrived.PixelData == ds.PixelData and arrived.PatientID == "P1"
    assert not list(node.service.storage.incoming.iterdir()), "the converted copy is left"


def test_destination_accepting_no_context_fails_every_sub_operation(node, tmp_path):
    photo = dicom_objects.vl_photo_jpeg(patient_id="P1")
    assert store(node, photo) == status.SUCCESS
    with destination_at(node, tmp_path, "CT_ONLY", classes=[dicom_objects.CT_IMAGE]):
        final, _, answer = move_study(node, photo.StudyInstanceUID, "CT_ONLY")
    assert final.Status == status.SUB_OPERATIONS_FAILED
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 1)
    assert failed_uids(answer) == [photo.SOPInstanceUID]
    assert "accepted none" in final.ErrorComment


def test_destination_refusing_an_instance_counts_it_failed(node, tmp_path, study):
    study_uid, uids = study
    refused = uids[2]

    def refuse_video(event):
        return 0xA700 if event.request.AffectedSOPInstanceUID == refused else 0x0000

    with destination_at(node, tmp_path, "PICKY", on_store=refuse_video):
        final, _, answer = move_study(node, study_uid, "PICKY")
    assert final.Status == status.SUB_OPERATIONS_WARNING
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (3, 1)
    assert failed_uids(answer) == [refused]


def test_destination_warning_is_counted_as_warning(node, tmp_path, study):
    study_uid, _ = study
    with destination_at(node, tmp_path, "COERCING", on_store=lambda event: 0xB000):
        final, _, answer = move_study(node, study_uid, "COERCING")
    assert final.Status == status.SUB_OPERATIONS_WARNING
    assert (
        final.NumberOfCompletedSuboperations,
        final.NumberOfFailedSuboperations,
        final.NumberOfWarningSuboperations,
    ) == (0, 0, 4)
    assert answer is None or "FailedSOPInstanceUIDList" not in answer


def test_unreachable_destination_is_a_clear_failure(node, study):
    study_uid, uids = study
    node.service.registry.add_ae("GONE", "UNN", host="127.0.0.1", port=free_port())
    assoc = move_assoc(node)
    try:
        final, _, answer = move(
            assoc, identifier("STUDY", StudyInstanceUID=study_uid), destination="GONE"
        )
        assert final.Status == status.SUB_OPERATIONS_FAILED
        assert "cannot be reached" in final.ErrorComment
        assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (
            0,
            4,
        )
        assert set(failed_uids(answer)) == set(uids)
        # the node keeps serving on the same association
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=generate_uid()), "GONE")
        assert final.Status == status.SUCCESS
    finally:
        assoc.release()


def test_missing_file_fails_its_sub_operation_and_the_rest_are_sent(node, destination, study):
    study_uid, uids = study
    stored_path(node, uids[1]).unlink()
    final, _, answer = move_study(node, study_uid)
    assert final.Status == status.SUB_OPERATIONS_WARNING
    assert failed_uids(answer) == [uids[1]]
    assert set(destination.received.files) == {uids[0], uids[2], uids[3]}


# -- cancel ------------------------------------------------------------------------------------


def _requesting_association(node, calling: str):
    for assoc in node.server.ae.active_associations:
        if assoc.is_acceptor and assoc.requestor.ae_title == calling:
            return assoc
    raise AssertionError(f"no association from {calling}")


# C-CANCEL during and between sub-operations: tests/node/test_retrieve_cancel.py


# -- bad identifiers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "level, keys, model, expected",
    [
        ("STUDY", {}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
        ("STUDY", {"StudyInstanceUID": ""}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
        ("STUDY", {"StudyInstanceUID": "1.2.*"}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
        ("STUDY", {"StudyInstanceUID": "1.2.abc"}, STUDY_MOVE, status.UNABLE_TO_PROCESS),
        ("PATIENT", {"PatientID": "P*"}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
        ("PATIENT", {}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
        ("PATIENT", {"PatientID": "P*"}, PATIENT_MOVE, status.IDENTIFIER_MISMATCH),
        ("PATIENT", {"PatientID": ["P1", "P2"]}, PATIENT_MOVE, status.UNABLE_TO_PROCESS),
        ("SERIES", {"SeriesInstanceUID": "1.2.3"}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
        (
            "SERIES",
            {"StudyInstanceUID": ["1.2.3", "1.2.4"], "SeriesInstanceUID": "1.2.5"},
            STUDY_MOVE,
            status.IDENTIFIER_MISMATCH,
        ),
        ("STUDY", {"StudyInstanceUID": "1.2.3"}, PATIENT_MOVE, status.IDENTIFIER_MISMATCH),
        ("FRAME", {"StudyInstanceUID": "1.2.3"}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
        ("", {"StudyInstanceUID": "1.2.3"}, STUDY_MOVE, status.IDENTIFIER_MISMATCH),
    ],
)
def test_bad_identifier_fails_nothing_sent_association_usable(
    node, destination, study, level, keys, model, expected
):
    study_uid, _ = study
    assoc = move_assoc(node)
    try:
        final, pending, _ = move(assoc, identifier(level, **keys), model=model)
        assert final.Status == expected
        assert pending == []
        assert final.ErrorComment
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
        assert final.Status == status.SUCCESS
    finally:
        assoc.release()
    assert destination.associations == 1


def test_patient_id_of_two_issuers_needs_the_issuer(node, destination):
    unn = dicom_objects.ct(patient_id="P7", issuer="UNN")
    nlsh = dicom_objects.ct(patient_id="P7", issuer="NLSH")
    assert store(node, unn) == status.SUCCESS
    assert store(node, nlsh) == status.SUCCESS
    assoc = move_assoc(node)
    try:
        final, _, _ = move(assoc, identifier("PATIENT", PatientID="P7"), model=PATIENT_MOVE)
        assert final.Status == status.UNABLE_TO_PROCESS
        assert "IssuerOfPatientID" in final.ErrorComment
        final, _, _ = move(
            assoc,
            identifier("PATIENT", PatientID="P7", IssuerOfPatientID="NLSH"),
            model=PATIENT_MOVE,
        )
        assert final.NumberOfCompletedSuboperations == 1
    finally:
        assoc.release()
    assert set(destination.received.files) == {nlsh.SOPInstanceUID}


def test_study_root_list_of_two_patients_studies_moves_both(node, destination):
    """PS3.4 C.6.2.1: Study Root has no patient level; a list of Study Instance UIDs may name
    studies of different patients, and each is retrieved (it was refused 0xC000, "PatientID
    is used by several issuers", though no PatientID was given)."""
    first = dicom_objects.ct(patient_id="P1", study_uid=generate_uid())
    second = dicom_objects.ct(patient_id="P2", study_uid=generate_uid())
    for ds in (first, second):
        assert store(node, ds) == status.SUCCESS
    both = [str(first.StudyInstanceUID), str(second.StudyInstanceUID)]
    assoc = move_assoc(node)
    try:
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=both))
        assert final.Status == status.SUCCESS
        assert final.NumberOfCompletedSuboperations == 2
        # Patient Root: the PatientID fixes the patient; the other's study matches nothing
        final, _, _ = move(
            assoc, identifier("STUDY", PatientID="P1", StudyInstanceUID=both), model=PATIENT_MOVE
        )
        assert final.Status == status.SUCCESS
        assert final.NumberOfCompletedSuboperations == 1
    finally:
        assoc.release()
    assert set(destination.received.files) == {first.SOPInstanceUID, second.SOPInstanceUID}


def test_index_failure_is_a_failure_and_the_node_keeps_serving(node, destination, study):
    study_uid, _ = study
    assoc = move_assoc(node)
    try:
        with node.service.index.session(write=True):
            node.service.index.db.execute_sql('ALTER TABLE "study" RENAME TO "study_away"')
        try:
            final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
        finally:
            with node.service.index.session(write=True):
                node.service.index.db.execute_sql('ALTER TABLE "study_away" RENAME TO "study"')
        assert final.Status == status.QUERY_FAILED
        final, _, _ = move(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
        assert final.Status == status.SUCCESS
    finally:
        assoc.release()
    assert destination.associations == 1


def test_no_patient_data_in_info_logs(node, destination, caplog):
    ds = dicom_objects.ct(patient_id="SECRETPID", patient_name="SECRET^NAME")
    assert store(node, ds) == status.SUCCESS
    with caplog.at_level(logging.INFO, logger="archive_node"):
        assoc = move_assoc(node)
        try:
            final, _, _ = move(
                assoc, identifier("PATIENT", PatientID="SECRETPID"), model=PATIENT_MOVE
            )
            refused, _, _ = move(
                assoc,
                identifier("PATIENT", PatientID=["SECRETPID", "SECRETPID2"]),
                model=PATIENT_MOVE,
            )
        finally:
            assoc.release()
    assert final.Status == status.SUCCESS
    assert refused.Status == status.UNABLE_TO_PROCESS
    assert "C-MOVE from UNN_WS" in caplog.text and "refused" in caplog.text
    assert "SECRET" not in caplog.text


# -- found in review: peers that go away, long failure lists, re-encoding ---------------------


def _secondary_captures(node, count: int) -> str:
    study_uid = generate_uid()
    for _ in range(count):
        assert store(node, dicom_objects.secondary_capture(study_uid=study_uid)) == status.SUCCESS
    return study_uid


def test_requester_abort_stops_the_move(node, tmp_path, caplog):
    """pynetdicom updates is_established only in the association's own (busy) thread: the
    node must notice the abort otherwise and send nothing more."""
    study_uid = _secondary_captures(node, 8)
    release, holding, stores = threading.Event(), threading.Event(), []

    def hold_the_second(event):
        stores.append(event.request.AffectedSOPInstanceUID)
        if len(stores) == 2:
            holding.set()
            assert release.wait(30)
        return 0x0000

    with (
        destination_at(node, tmp_path, "SLOW", on_store=hold_the_second),
        caplog.at_level(logging.WARNING, logger="archive_node"),
    ):
        try:
            assoc = move_assoc(node)
            responses = assoc.send_c_move(
                identifier("STUDY", StudyInstanceUID=study_uid), "SLOW", STUDY_MOVE
            )
            assert next(responses)[0].Status == status.PENDING
            # the abort comes while the second sub-operation is under way
            assert holding.wait(30), "the second C-STORE never arrived"
            node_side = _requesting_association(node, WORKSTATION)
            assoc.abort()
            deadline = time.monotonic() + 10
            while node_side.dul.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
            release.set()
            deadline = time.monotonic() + 10
            while "requesting association is gone" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                time.sleep(0.005)
        finally:
            release.set()
    assert len(stores) == 2  # the one under way when the abort came; never the rest


def test_destination_abort_ends_the_move_at_once(node, tmp_path):
    """A destination that aborts after a C-STORE: the node must not wait its DIMSE timeout
    for the response (the requester's 30 s would run out first)."""
    study_uid = _secondary_captures(node, 6)
    stores = []

    def abort_on_the_second(event):
        stores.append(1)
        if len(stores) == 2:
            event.assoc.abort()
        return 0x0000

    with destination_at(node, tmp_path, "ABORTER", on_store=abort_on_the_second):
        final, _, answer = move_study(node, study_uid, "ABORTER")
    assert final.Status == status.SUB_OPERATIONS_WARNING
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 5)
    assert len(failed_uids(answer)) == 5
    assert final.ErrorComment


@pytest.mark.slow
def test_link_lost_mid_file_stops_reading_it(node, tmp_path):
    """A link lost part way through a large video: the node stops reading the file (memory
    stays flat instead of the rest of the file piling up in pynetdicom's send queue)."""
    large = dicom_objects.write_large_video(tmp_path / "large.dcm", 96 << 20, patient_id="P1")
    header = dcmread(large, stop_before_pixels=True)
    sender = associate(
        node, "UNN_US", [(header.SOPClassUID, [header.file_meta.TransferSyntaxUID])]
    )
    assert send_file(sender, large).Status == status.SUCCESS
    sender.release()
    dest = Destination(tmp_path / "dest")
    port = cutting_proxy(dest.port, 4 << 20)
    node.service.registry.add_ae("CUT", "UNN", host="127.0.0.1", port=port)
    tracemalloc.start()
    try:
        assoc = move_assoc(node)
        try:
            final, _, _ = move(
                assoc, identifier("STUDY", StudyInstanceUID=header.StudyInstanceUID), "CUT"
            )
        finally:
            assoc.release()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        dest.stop()
    assert final.Status == status.SUB_OPERATIONS_FAILED
    assert "lost" in final.ErrorComment or "no response" in final.ErrorComment
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MiB allocated while sending a cut 96 MiB file"


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
def test_a_long_failed_list_arrives_whole_or_cut_to_fit(node, syntax):
    """1,200 failed instances: all listed in Implicit VR (the node's first choice for retrieve
    contexts); a requester that offers only Explicit VR gets as many as a UI value holds."""
    study_uid = generate_uid()
    for _ in range(1200):
        dicom_objects.index_row(node.service, dicom_objects.instance_header(study_uid=study_uid))
    node.service.registry.add_ae("NOWHERE", "UNN", host="127.0.0.1", port=free_port())
    assoc = associate(node, WORKSTATION, [(STUDY_MOVE, [syntax])])
    try:
        final, _, answer = move(
            assoc, identifier("STUDY", StudyInstanceUID=study_uid), destination="NOWHERE"
        )
    finally:
        assoc.release()
    assert final.Status == status.SUB_OPERATIONS_FAILED
    assert final.NumberOfFailedSuboperations == 1200
    listed = failed_uids(answer)
    assert all(uid.startswith("1.2.") for uid in listed)
    if syntax == ImplicitVRLittleEndian:
        assert len(listed) == 1200
    else:
        assert 900 < len(listed) < 1200


def test_unreachable_destination_comment_names_no_address(node, study):
    study_uid, _ = study
    node.service.registry.add_ae("GONE", "UNN", host="127.0.0.1", port=free_port())
    final, _, _ = move_study(node, study_uid, "GONE")
    assert final.ErrorComment == "GONE cannot be reached"


def test_more_contexts_than_one_association_takes_are_spread_over_several(
    node, destination, study, monkeypatch
):
    """PS3.8 allows 128 contexts per association; with the limit lowered to 2, the four kinds
    of object (four SOP classes) go over several associations, all of them delivered."""
    study_uid, uids = study
    monkeypatch.setattr(retrieve_plan, "MAX_CONTEXTS", 2)
    final, pending, _ = move_study(node, study_uid)
    assert (final.Status, final.NumberOfCompletedSuboperations) == (status.SUCCESS, 4)
    assert [p.NumberOfRemainingSuboperations for p in pending] == [3, 2, 1]
    assert set(destination.received.files) == set(uids)
    assert destination.associations >= 3
