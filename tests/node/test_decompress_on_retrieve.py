"""Issue 17 over real associations: a compressed or Big Endian object is decompressed or
byte-swapped for a C-GET SCU or a Move Destination that takes only uncompressed little endian
syntaxes; a C-GET SCU's contexts are chosen so that each instance goes as stored wherever any
context offers its syntax; an object that cannot be decoded (a video, a broken bitstream) is a
failed sub-operation with its reason, and the others go on. The stored files never change."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from archive_node.dicom import status
from tests.helpers import dicom_objects
from tests.helpers.dimse import store
from tests.helpers.identifiers import identifier
from tests.helpers.retrieving import (
    Destination,
    Received,
    failed_uids,
    get,
    get_association,
    move,
)
from tests.helpers.serving import stored_path
from tests.node.test_move import move_assoc

VIEWER = "UNN_WS"
UNCOMPRESSED = [ImplicitVRLittleEndian, ExplicitVRLittleEndian]
# JPEG baseline, JPEG extended, JPEG-LS near-lossless: lossy whatever the dataset says
ONLY_LOSSY = {JPEGBaseline8Bit, "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}

# A representative set of pydicom's bundled files: every kind of stored syntax the node
# decompresses or re-encodes
BUNDLED = [
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline, YBR_FULL_422, lossy
    "examples_ybr_color.dcm",  # JPEG baseline, multi-frame (US)
    "JPGExtended.dcm",  # JPEG extended 12-bit
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
    "JPEGLSNearLossless_08.dcm",  # JPEG-LS near-lossless
    "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
    "JPEG2000.dcm",  # JPEG 2000
    "MR_small_RLE.dcm",  # RLE
    "SC_rgb_rle_2frame.dcm",  # RLE, RGB, two frames
    "image_dfl.dcm",  # Deflated Explicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian, 16-bit
    "SC_rgb_small_odd_big_endian.dcm",  # Explicit VR Big Endian, 8-bit RGB in an OW
]


def bundled(name: str, study_uid: str, patient_id: str = "DEC-1") -> Dataset:
    """A bundled file made an instance of `study_uid` (new series and instance UIDs)."""
    ds = dcmread(dicom_objects.testdata(name))
    ds.PatientID = patient_id
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    return ds


def expected_pixels(ds: Dataset) -> np.ndarray:
    """The pixels as pydicom decodes the whole object (8-bit JPEG by pillow, as the node)."""
    if ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit:
        return pixel_array(ds, decoding_plugin="pillow")
    return ds.pixel_array


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def stored(node) -> dict[str, Dataset]:
    """The BUNDLED files stored in one study, by SOP Instance UID."""
    study_uid = generate_uid()
    kept = {}
    for name in BUNDLED:
        ds = bundled(name, study_uid)
        assert store(node, ds) == status.SUCCESS, name
        kept[str(ds.SOPInstanceUID)] = ds
    return kept


@pytest.fixture
def received(tmp_path) -> Received:
    directory = tmp_path / "viewer"
    directory.mkdir()
    return Received(directory)


def classes_of(datasets) -> list[str]:
    return list(dict.fromkeys(str(ds.SOPClassUID) for ds in datasets))


def assert_same_pixels(arrived: Path, original: Dataset, syntax: str) -> None:
    out = dcmread(arrived)
    assert out.file_meta.TransferSyntaxUID == syntax
    assert out.SOPInstanceUID == original.SOPInstanceUID
    assert np.array_equal(out.pixel_array, expected_pixels(original)), original.SOPInstanceUID
    if out.SamplesPerPixel > 1:
        assert (out.PhotometricInterpretation, out.PlanarConfiguration) == ("RGB", 0)


def study_of(stored: dict[str, Dataset]) -> str:
    return str(next(iter(stored.values())).StudyInstanceUID)


def test_get_with_uncompressed_syntaxes_only_receives_every_object(node, stored, received):
    """One context per class offering [Implicit, Explicit] (pynetdicom's getscu): every object
    arrives in Explicit VR Little Endian with the pixels it was stored with; the files kept
    are unchanged."""
    before = {uid: digest(stored_path(node, uid)) for uid in stored}
    assoc = get_association(
        node, VIEWER, received, syntaxes=UNCOMPRESSED, classes=classes_of(stored.values())
    )
    assert assoc.is_established
    try:
        final, _, answer = get(assoc, identifier("STUDY", StudyInstanceUID=study_of(stored)))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS, failed_uids(answer)
    assert final.NumberOfCompletedSuboperations == len(stored)
    assert set(received.files) == set(stored)
    for uid, original in stored.items():
        assert_same_pixels(received.files[uid], original, ExplicitVRLittleEndian)
    assert {uid: digest(stored_path(node, uid)) for uid in stored} == before


def test_move_to_an_implicit_only_destination_receives_every_object(node, stored, tmp_path):
    dest = Destination(
        tmp_path / "dest",
        ae_title="IMPLONLY",
        classes=classes_of(stored.values()),
        syntaxes=[ImplicitVRLittleEndian],
    )
    node.service.registry.add_ae("IMPLONLY", "UNN", host="127.0.0.1", port=dest.port)
    try:
        assoc = move_assoc(node)
        try:
            final, _, answer = move(
                assoc, identifier("STUDY", StudyInstanceUID=study_of(stored)), "IMPLONLY"
            )
        finally:
            assoc.release()
    finally:
        dest.stop()
    assert final.Status == status.SUCCESS, failed_uids(answer)
    assert set(dest.received.files) == set(stored)
    for uid, original in stored.items():
        assert dest.received.syntaxes[uid] == ImplicitVRLittleEndian
        assert_same_pixels(dest.received.files[uid], original, ImplicitVRLittleEndian)


def test_lossy_history_is_kept_and_lossless_sources_stay_lossless(node, stored, received):
    assoc = get_association(
        node, VIEWER, received, syntaxes=UNCOMPRESSED, classes=classes_of(stored.values())
    )
    try:
        get(assoc, identifier("STUDY", StudyInstanceUID=study_of(stored)))
    finally:
        assoc.release()
    for uid, original in stored.items():
        out = dcmread(received.files[uid], stop_before_pixels=True)
        if original.get("LossyImageCompression") == "01":
            assert out.LossyImageCompression == "01"
            for keyword in ("LossyImageCompressionRatio", "LossyImageCompressionMethod"):
                assert out.get(keyword) == original.get(keyword)
        elif original.file_meta.TransferSyntaxUID in ONLY_LOSSY:
            assert out.LossyImageCompression == "01"  # PS3.3 C.7.6.1.1.5, said where it was not
        else:
            assert out.get("LossyImageCompression") == original.get("LossyImageCompression")


def test_each_instance_goes_as_stored_when_any_context_offers_its_syntax(node, received):
    """A C-GET SCU proposing, for one class, a context of JPEG baseline and one of the
    uncompressed syntaxes: the JPEG object goes as stored on the first, the uncompressed and
    Big Endian ones on the second (the accepted syntaxes are the union over the contexts)."""
    study_uid = generate_uid()
    jpeg = bundled("SC_rgb_jpeg_dcmtk.dcm", study_uid)
    rle = bundled("SC_rgb_rle.dcm", study_uid)
    big = bundled("SC_rgb_small_odd_big_endian.dcm", study_uid)
    sc = dicom_objects.secondary_capture(study_uid=study_uid, patient_id="DEC-1")
    for ds in (jpeg, rle, big, sc):
        assert str(ds.SOPClassUID) == dicom_objects.SECONDARY_CAPTURE
        assert store(node, ds) == status.SUCCESS
    from pynetdicom import AE, build_role, evt

    from tests.helpers.retrieving import STUDY_GET

    ae = AE(ae_title=VIEWER)
    ae.add_requested_context(STUDY_GET)
    ae.add_requested_context(dicom_objects.SECONDARY_CAPTURE, [JPEGBaseline8Bit])
    ae.add_requested_context(dicom_objects.SECONDARY_CAPTURE, UNCOMPRESSED)

    def keep(event):
        received.keep(event)
        return 0x0000

    assoc = ae.associate(
        node.host,
        node.port,
        ae_title=node.ae_title,
        ext_neg=[build_role(dicom_objects.SECONDARY_CAPTURE, scp_role=True)],
        evt_handlers=[(evt.EVT_C_STORE, keep)],
    )
    assert assoc.is_established
    try:
        accepted = sorted(str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts[1:])
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert accepted == sorted([JPEGBaseline8Bit, ExplicitVRLittleEndian])
    assert final.Status == status.SUCCESS
    uid = str(jpeg.SOPInstanceUID)
    assert received.syntaxes == {
        uid: JPEGBaseline8Bit,
        str(rle.SOPInstanceUID): ExplicitVRLittleEndian,
        str(big.SOPInstanceUID): ExplicitVRLittleEndian,
        str(sc.SOPInstanceUID): ExplicitVRLittleEndian,
    }
    assert dicom_objects.dataset_bytes(received.files[uid]) == dicom_objects.dataset_bytes(
        stored_path(node, uid)
    )
    assert_same_pixels(received.files[str(rle.SOPInstanceUID)], rle, ExplicitVRLittleEndian)
    assert_same_pixels(received.files[str(big.SOPInstanceUID)], big, ExplicitVRLittleEndian)


def test_undecodable_and_video_objects_fail_and_the_others_go_on(node, received, caplog):
    study_uid = generate_uid()
    good = bundled("MR_small_RLE.dcm", study_uid)
    broken = bundled("MR_small_RLE.dcm", study_uid)
    broken.PixelData = encapsulate([b"\x01\x00\x00\x00" + b"\0" * 60 + b"not RLE at all"])
    video = dicom_objects.video_h264(study_uid=study_uid, patient_id="DEC-1")
    for ds in (good, broken, video):
        assert store(node, ds) == status.SUCCESS
    classes = [str(good.SOPClassUID), dicom_objects.VIDEO_PHOTO]
    assoc = get_association(node, VIEWER, received, syntaxes=UNCOMPRESSED, classes=classes)
    try:
        with caplog.at_level(logging.WARNING, logger="archive_node"):
            final, _, answer = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUB_OPERATIONS_WARNING
    assert (final.NumberOfCompletedSuboperations, final.NumberOfFailedSuboperations) == (1, 2)
    assert set(failed_uids(answer)) == {str(broken.SOPInstanceUID), str(video.SOPInstanceUID)}
    assert set(received.files) == {str(good.SOPInstanceUID)}
    assert_same_pixels(received.files[str(good.SOPInstanceUID)], good, ExplicitVRLittleEndian)
    text = caplog.text
    assert f"{broken.SOPInstanceUID} failed: cannot be converted from RLE Lossless" in text
    assert "does not convert or decompress" in text  # the video
    assert assoc.is_released  # the association was never aborted


def test_big_endian_stored_is_sent_as_stored_to_a_peer_that_takes_it(node, received):
    study_uid = generate_uid()
    big = bundled("MR_small_bigendian.dcm", study_uid)
    assert store(node, big) == status.SUCCESS
    uid = str(big.SOPInstanceUID)
    assoc = get_association(
        node,
        VIEWER,
        received,
        syntaxes={str(big.SOPClassUID): [ExplicitVRBigEndian]},
    )
    try:
        final, _, _ = get(assoc, identifier("STUDY", StudyInstanceUID=study_uid))
    finally:
        assoc.release()
    assert final.Status == status.SUCCESS
    assert received.syntaxes[uid] == ExplicitVRBigEndian
    assert dicom_objects.dataset_bytes(received.files[uid]) == dicom_objects.dataset_bytes(
        stored_path(node, uid)
    )


def test_an_rle_multi_frame_is_decompressed_for_a_move(node, tmp_path):
    """A 60-frame RLE US multi-frame, decompressed for a destination taking Explicit only."""
    ds = dicom_objects.us_multiframe(frames=60, patient_id="DEC-2")
    ds.Rows = ds.Columns = 128
    frames = np.random.default_rng(3).integers(0, 16, (60, 128, 128, 3), dtype=np.uint8)
    ds.PixelData = frames.tobytes()
    ds.compress(RLELossless, encoding_plugin="pylibjpeg")
    assert store(node, ds) == status.SUCCESS
    dest = Destination(tmp_path / "dest", ae_title="EXPLONLY", syntaxes=[ExplicitVRLittleEndian])
    node.service.registry.add_ae("EXPLONLY", "UNN", host="127.0.0.1", port=dest.port)
    try:
        assoc = move_assoc(node)
        try:
            final, _, _ = move(
                assoc, identifier("STUDY", StudyInstanceUID=ds.StudyInstanceUID), "EXPLONLY"
            )
        finally:
            assoc.release()
    finally:
        dest.stop()
    assert final.Status == status.SUCCESS
    out = dcmread(dest.received.files[str(ds.SOPInstanceUID)])
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert out.PixelData == frames.tobytes()
    assert out.NumberOfFrames == 60
