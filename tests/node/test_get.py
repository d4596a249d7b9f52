"""C-GET SCP over real associations on SQLite and PostgreSQL: sub-operations over the
requesting association with SCP role selection, counts and statuses, syntaxes, scope, rights,
cancel and bad identifiers."""

from __future__ import annotations

import pytest
from pydicom import dcmread
from pydicom.uid import (
    MPEG4HP41,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)
from pynetdicom import AE, build_role, evt

from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.dimse import store
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import (
    PATIENT_GET,
    STUDY_GET,
    Received,
    failed_uids,
    four_kinds_study,
    get,
    get_association,
)
from tests.helpers.serving import stored_path

VIEWER = "UNN_WS"


@pytest.fixture
def study(node):
    """retrieving.four_kinds_study: US multi-frame, VL photo, H.264 video and CT."""
    return four_kinds_study(node)


@pytest.fixture
def received(tmp_path) -> Received:
    directory = tmp_path / "viewer"
    directory.mkdir()
    return Received(directory)


def test_study_arrives_byte_for_byte_over_the_requesting_association(node, study, received):
    study_uid, uids = study
    assoc = get_association(node, VIEWER, received)
    assert assoc.is_established
    try:
        final, pending, answer = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    assert (
        final.NumberOfCompletedSuboperations,
        final.NumberOfFailedSuboperations,
        final.NumberOfWarningSuboperations,
    ) == (4, 0, 0)
    assert [p.NumberOfRemainingSuboperations for p in pending] == [3, 2, 1]
    assert answer is None
    assert set(received.files) == set(uids)
    for uid in uids:
        assert dicom_objects.dataset_bytes(received.files[uid]) == dicom_objects.dataset_bytes(
            stored_path(node, uid)
        )
    # a C-GET's sub-operations name no Move Originator
    assert {aet for aet, _ in received.originators} == {""}


def test_one_context_per_class_is_given_a_syntax_every_image_can_go_in(node, study, received):
    """A viewer proposing one context per class with its preferred syntax first (as DCMTK
    getscu +xy, pynetdicom's getscu Implicit first) is given Explicit VR Little Endian for the
    image classes, in which every image can be sent (issue 17): the CT and US go as stored
    (not re-encoded into Implicit), the JPEG photo decompressed; a video class its video
    syntax, the only one a video can go in."""
    study_uid, uids = study
    us, photo, video, ct = uids
    native = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
    assoc = get_association(
        node,
        VIEWER,
        received,
        syntaxes={
            dicom_objects.VIDEO_PHOTO: [MPEG4HP41, *native],
            dicom_objects.VL_PHOTO: [JPEGBaseline8Bit, *native],
            dicom_objects.CT_IMAGE: native,
            dicom_objects.US_MULTIFRAME: native,
        },
    )
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    assert received.syntaxes == {
        photo: ExplicitVRLittleEndian,
        video: MPEG4HP41,
        ct: ExplicitVRLittleEndian,
        us: ExplicitVRLittleEndian,
    }
    for uid in (video, ct, us):
        assert dicom_objects.dataset_bytes(received.files[uid]) == dicom_objects.dataset_bytes(
            stored_path(node, uid)
        )
    assert dcmread(received.files[photo]).PhotometricInterpretation == "RGB"


def test_syntaxes_the_scu_does_not_take_are_failed_sub_operations(node, study, received):
    study_uid, uids = study
    us, photo, video, ct = uids
    assoc = get_association(
        node, VIEWER, received, syntaxes=[ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    )
    try:
        final, _, answer = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUB_OPERATIONS_WARNING
    # the JPEG photo is decompressed (issue 17); a video never is
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (3, 1)
    assert set(failed_uids(answer)) == {video}
    assert set(received.files) == {us, ct, photo}


def test_no_storage_role_for_any_instance_fails_them_all(node, study, received):
    study_uid, uids = study
    assoc = get_association(node, VIEWER, received, classes=[dicom_objects.ENCAPSULATED_PDF])
    try:
        final, _pending, answer = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUB_OPERATIONS_FAILED
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 4)
    assert set(failed_uids(answer)) == set(uids)
    assert received.files == {}


def test_scu_refusing_an_instance_counts_it_failed(node, study, received):
    study_uid, uids = study
    assoc = get_association(
        node,
        VIEWER,
        received,
        on_store=lambda event: 0xA700 if event.request.AffectedSOPInstanceUID == uids[0] else 0,
    )
    try:
        final, _, answer = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUB_OPERATIONS_WARNING
    assert failed_uids(answer) == [uids[0]]
    assert set(received.files) == set(uids[1:])


def test_image_level_with_a_list_of_instances_in_patient_root(node, study, received):
    study_uid, uids = study
    series = dcmread(stored_path(node, uids[3])).SeriesInstanceUID
    assoc = get_association(node, VIEWER, received)
    try:
        final, _, _ = get(
            assoc,
            identifier(
                "IMAGE",
                PatientID="P1",
                StudyInstanceUID=study_uid,
                SeriesInstanceUID=series,
                SOPInstanceUID=[uids[3], generate_uid()],
            ),
            model=PATIENT_GET,
        )
    finally:
        assoc.release()
    assert (final.Status, final.NumberOfCompletedSuboperations) == (status.SUCCESS, 1)
    assert set(received.files) == {uids[3]}


def test_zero_matches_is_success_with_zero_counts(node, study, received):
    assoc = get_association(node, VIEWER, received)
    try:
        final, pending, _ = get(assoc, identifier("STUDY", StudyInstanceUID=generate_uid()))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (0, 0)
    assert pending == []


def test_ae_without_get_right_is_refused(node, study, received):
    study_uid, _ = study
    node.service.registry.add_ae("UNN_MOVER", "UNN", host="127.0.0.1", allow="find,move")
    assoc = get_association(node, "UNN_MOVER", received)
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.NOT_AUTHORISED
    assert received.files == {}


def test_hospital_scope_gets_only_its_hospitals_instances(node, received):
    node.service.registry.add_ae(
        "NLSH_VIEW", "NLSH", host="127.0.0.1", allow="get", scope="hospital"
    )
    shared = generate_uid()
    unn = dicom_objects.ct(study_uid=shared, patient_id="P1")
    nlsh = dicom_objects.vl_photo_jpeg(study_uid=shared, patient_id="P1")
    assert store(node, unn, "UNN_US") == status.SUCCESS
    assert store(node, nlsh, "NLSH_CAM") == status.SUCCESS
    assoc = get_association(node, "NLSH_VIEW", received)
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=shared))
    finally:
        assoc.release()
    assert (final.Status, final.NumberOfCompletedSuboperations) == (status.SUCCESS, 1)
    assert set(received.files) == {nlsh.SOPInstanceUID}


@pytest.mark.parametrize(
    "level, keys, expected",
    [
        ("STUDY", {}, status.IDENTIFIER_MISMATCH),
        ("STUDY", {"StudyInstanceUID": "1.2.3?"}, status.IDENTIFIER_MISMATCH),
        ("STUDY", {"StudyInstanceUID": "1.2.3.x"}, status.UNABLE_TO_PROCESS),
        ("IMAGE", {"SOPInstanceUID": "1.2.3"}, status.IDENTIFIER_MISMATCH),
        ("PATIENT", {"PatientID": "P?"}, status.IDENTIFIER_MISMATCH),
    ],
)
def test_bad_identifier_fails_nothing_sent_association_usable(
    node, study, received, level, keys, expected
):
    study_uid, uids = study
    assoc = get_association(node, VIEWER, received)
    try:
        final, pending, _ = get(assoc, identifier(level, **keys))
        assert final.Status == expected
        assert pending == [] and received.files == {}
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
        assert final.Status == status.SUCCESS
    finally:
        assoc.release()
    assert set(received.files) == set(uids)


# C-CANCEL during and between sub-operations: tests/node/test_retrieve_cancel.py


def test_study_root_list_of_two_patients_studies_gets_both(node, received):
    """PS3.4 C.6.2.1: a Study Root C-GET of a list of studies of two patients sends both."""
    first = dicom_objects.ct(patient_id="P1", study_uid=generate_uid())
    second = dicom_objects.ct(patient_id="P2", study_uid=generate_uid())
    for ds in (first, second):
        assert store(node, ds) == status.SUCCESS
    both = [str(first.StudyInstanceUID), str(second.StudyInstanceUID)]
    assoc = get_association(node, VIEWER, received)
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=both))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    assert set(received.files) == {first.SOPInstanceUID, second.SOPInstanceUID}


def test_classes_the_scu_also_pushes_keep_the_nodes_syntax_order(node):
    """Only for classes it will only receive does the node follow the SCU's order: a peer that
    pushes CT in the same association is not asked to compress its CT lossily."""
    ae = AE(ae_title=VIEWER)
    ae.add_requested_context(STUDY_GET)
    ae.add_requested_context(dicom_objects.CT_IMAGE, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    ae.add_requested_context(dicom_objects.VL_PHOTO, [JPEGBaseline8Bit, ExplicitVRLittleEndian])
    ae.add_requested_context(dicom_objects.VL_PHOTO, [ExplicitVRLittleEndian])
    roles = [
        build_role(dicom_objects.CT_IMAGE, scu_role=True, scp_role=True),
        build_role(dicom_objects.VL_PHOTO, scp_role=True),
    ]
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=roles)
    assert assoc.is_established
    try:
        accepted: dict[str, set[str]] = {}
        for cx in assoc.accepted_contexts:
            accepted.setdefault(str(cx.abstract_syntax), set()).add(str(cx.transfer_syntax[0]))
    finally:
        assoc.release()
    assert accepted[dicom_objects.CT_IMAGE] == {ExplicitVRLittleEndian}
    # received only: its two contexts are chosen together, JPEG where Explicit is had already
    assert accepted[dicom_objects.VL_PHOTO] == {JPEGBaseline8Bit, ExplicitVRLittleEndian}


def test_other_aes_in_the_process_keep_pynetdicoms_own_retrieve_service(node):
    """The node takes over C-GET/C-MOVE for its own AE only (net/patches/service_classes.py):
    a plain pynetdicom C-GET SCP in the same process still works by its handler."""
    ds = dicom_objects.ct(patient_id="P1")
    plain = AE(ae_title="PLAIN")
    plain.add_supported_context(STUDY_GET)
    plain.add_supported_context(dicom_objects.CT_IMAGE, scu_role=True, scp_role=True)

    def on_get(event):
        yield 1
        yield 0xFF00, ds

    server = plain.start_server(
        ("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_GET, on_get)]
    )
    received = []
    viewer = AE(ae_title="VIEWER")
    viewer.add_requested_context(STUDY_GET)
    viewer.add_requested_context(dicom_objects.CT_IMAGE)
    try:
        assoc = viewer.associate(
            "127.0.0.1",
            server.server_address[1],
            ext_neg=[build_role(dicom_objects.CT_IMAGE, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, lambda event: received.append(event) or 0)],
        )
        query = identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID)
        statuses = [rsp.Status for rsp, _ in assoc.send_c_get(query, STUDY_GET)]
        assoc.release()
    finally:
        plain.shutdown()
    assert statuses[-1] == status.SUCCESS and len(received) == 1
