"""C-STORE through real associations: keep order, duplicates, bad input, on both backends."""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import struct
import threading
import time
import warnings
from pathlib import Path

import pytest
from pydicom.filereader import read_file_meta_info
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from archive_node.dicom import status
from archive_node.dicom.instance_header import read_header
from archive_node.dicom.provenance import Provenance, from_file_meta
from archive_node.index import NewInstance
from archive_node.index.tables import Patient
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, send_file, store
from tests.helpers.serving import node_with

ALL_KINDS = [
    (dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
    (dicom_objects.CT_IMAGE, [ExplicitVRLittleEndian, ImplicitVRLittleEndian]),
]


def stored_files(service) -> list[Path]:
    root = service.storage.root
    return sorted(p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def test_store_keeps_file_and_index_row(node, tmp_path):
    ds = dicom_objects.ct(patient_id="P1")
    path = dicom_objects.write(ds, tmp_path / "ct.dcm")
    assoc = associate(node, "UNN_US", ALL_KINDS)
    assert assoc.is_established
    rsp = send_file(assoc, path)
    assoc.release()
    assert rsp.Status == status.SUCCESS

    record = node.service.index.instances.find(ds.SOPInstanceUID)
    assert record is not None
    kept = node.service.storage.absolute(record.path)
    assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(path)
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == record.sha256
    assert record.size == kept.stat().st_size
    assert record.calling_ae == "UNN_US" and record.hospital == "UNN"
    assert record.study_uid == ds.StudyInstanceUID
    assert record.series_uid == ds.SeriesInstanceUID
    assert record.transfer_syntax_uid == ExplicitVRLittleEndian
    assert list(node.service.storage.incoming.iterdir()) == []
    # layout derived from the UIDs, inside the store
    assert record.path.endswith(
        f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    )


def test_file_meta_records_the_sender_for_a_rebuild(node, tmp_path):
    """PS3.10 7.1: Sending/Receiving AE Title and archive-node's Private Information (hospital,
    issuer) are written into the kept file's meta; the dataset's bytes are untouched."""
    small, large = dicom_objects.secondary_capture(), dicom_objects.ct(patient_id="P1")
    paths = [dicom_objects.write(ds, tmp_path / f"{n}.dcm") for n, ds in enumerate((small, large))]
    assoc = associate(node, "NLSH_CAM", ALL_KINDS)
    assert [send_file(assoc, path).Status for path in paths] == [status.SUCCESS] * 2
    assoc.release()
    for ds, path in zip((small, large), paths, strict=True):
        record = node.service.index.instances.find(ds.SOPInstanceUID)
        kept = node.service.storage.absolute(record.path)
        assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(path)
        meta = read_file_meta_info(kept)
        assert meta.SendingApplicationEntityTitle == "NLSH_CAM"
        assert meta.ReceivingApplicationEntityTitle == node.ae_title
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert from_file_meta(meta) == Provenance("NLSH_CAM", "NLSH", "NLSH")
        assert hashlib.sha256(kept.read_bytes()).hexdigest() == record.sha256


def test_issuer_defaults_to_sending_hospital(node):
    study_unn, study_nlsh, study_own = generate_uid(), generate_uid(), generate_uid()
    assert (
        store(node, dicom_objects.secondary_capture(patient_id="SAME", study_uid=study_unn)) == 0
    )
    assert (
        store(
            node,
            dicom_objects.secondary_capture(patient_id="SAME", study_uid=study_nlsh),
            calling="NLSH_CAM",
        )
        == 0
    )
    assert (
        store(
            node,
            dicom_objects.secondary_capture(
                patient_id="SAME", issuer="NO-FNR", study_uid=study_own
            ),
        )
        == 0
    )
    issuers = {
        s.study_uid: s.issuer for s in node.service.index.instances.studies(patient_id="SAME")
    }
    assert issuers == {study_unn: "UNN", study_nlsh: "NLSH", study_own: "NO-FNR"}
    hospitals = {s.study_uid: s.hospital for s in node.service.index.instances.studies()}
    assert hospitals[study_nlsh] == "NLSH" and hospitals[study_unn] == "UNN"


def test_latin1_and_utf8_names_are_indexed_as_text(node):
    name = "ØDEGÅRD^ÅSE"
    for charset in ("ISO_IR 100", "ISO_IR 192"):
        pid = f"PN-{charset[-3:]}"
        ds = dicom_objects.secondary_capture(patient_id=pid, patient_name=name, charset=charset)
        assert store(node, ds) == status.SUCCESS
        with node.service.index.session():
            patient = Patient.get(Patient.patient_id == pid)
        assert patient.patient_name == name
        assert patient.name_key == name.casefold()


def test_many_associations_at_once_on_one_study(node):
    study, series = generate_uid(), generate_uid()
    results: list[int] = []

    def push(count: int) -> None:
        assoc = associate(node, "UNN_US", ALL_KINDS)
        for _ in range(count):
            ds = dicom_objects.secondary_capture(study_uid=study, series_uid=series)
            results.append(int(assoc.send_c_store(ds).Status))
        assoc.release()

    threads = [threading.Thread(target=push, args=(8,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [status.SUCCESS] * 32
    (summary,) = node.service.index.instances.studies()
    assert (summary.series_count, summary.instance_count) == (1, 32)
    assert len(stored_files(node.service)) == 32


def test_same_instance_from_two_associations_at_once(node, tmp_path):
    path = dicom_objects.write(dicom_objects.us_multiframe(frames=20), tmp_path / "us.dcm")
    barrier = threading.Barrier(2)
    results = []

    def push():
        assoc = associate(
            node, "UNN_US", [(dicom_objects.US_MULTIFRAME, [ExplicitVRLittleEndian])]
        )
        barrier.wait()
        results.append(int(send_file(assoc, path).Status))
        assoc.release()

    threads = [threading.Thread(target=push) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0, 0]
    assert node.service.index.instances.count() == 1
    assert len(stored_files(node.service)) == 1


# -- duplicates ------------------------------------------------------------------------------


def test_identical_duplicate_is_success_and_stores_nothing_new(node):
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    before = stored_files(node.service)
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    assert store(node, ds) == status.SUCCESS
    assert stored_files(node.service) == before
    assert node.service.index.instances.find(ds.SOPInstanceUID) == record


def test_different_duplicate_is_refused_and_original_kept(node, caplog):
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    original = node.service.index.instances.find(ds.SOPInstanceUID)
    original_bytes = node.service.storage.absolute(original.path).read_bytes()
    ds.PixelData = bytes(len(ds.PixelData))  # same UID, other content
    with caplog.at_level(logging.WARNING, logger="archive_node"):
        assert store(node, ds) == status.SOP_INSTANCE_CONFLICT
    assert "original kept" in caplog.text
    assert node.service.index.instances.find(ds.SOPInstanceUID) == original
    assert node.service.storage.absolute(original.path).read_bytes() == original_bytes
    assert len(stored_files(node.service)) == 1


@pytest.fixture
def replacing_node(tmp_path, index_url, registry):
    with node_with(tmp_path / "r", index_url, storage={"on_duplicate": "replace"}) as node:
        yield node


def test_different_duplicate_replaces_when_configured(replacing_node):
    node = replacing_node
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    original = node.service.index.instances.find(ds.SOPInstanceUID)
    ds.PixelData = bytes(len(ds.PixelData))
    assert store(node, ds) == status.SUCCESS
    replaced = node.service.index.instances.find(ds.SOPInstanceUID)
    assert replaced.sha256 != original.sha256 and replaced.path != original.path
    files = stored_files(node.service)
    assert files == [node.service.storage.absolute(replaced.path)]
    assert hashlib.sha256(files[0].read_bytes()).hexdigest() == replaced.sha256


# -- bad input -------------------------------------------------------------------------------


def _bad_file(tmp_path: Path, mutate) -> Path:
    ds = dicom_objects.secondary_capture()
    ds.file_meta.FileMetaInformationVersion = b"\0\1"
    with warnings.catch_warnings():  # pydicom warns about the invalid values we make on purpose
        warnings.simplefilter("ignore", UserWarning)
        mutate(ds)
    path = tmp_path / f"bad-{generate_uid()[-8:]}.dcm"
    ds.preamble = b"\0" * 128
    ds.save_as(path, enforce_file_format=False)  # keep the file meta as made, mismatches too
    return path


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda ds: delattr(ds, "StudyInstanceUID"), status.MISSING_UID),
        (lambda ds: delattr(ds, "SeriesInstanceUID"), status.MISSING_UID),
        (lambda ds: setattr(ds, "SeriesInstanceUID", "1.2.3.abc"), status.MALFORMED_UID),
        (
            lambda ds: setattr(ds, "StudyInstanceUID", "../../../../etc/passwd"),
            status.MALFORMED_UID,
        ),
        (lambda ds: setattr(ds, "StudyInstanceUID", "1." + "2" * 70), status.MALFORMED_UID),
        # dataset SOP Instance UID differs from the command's Affected SOP Instance UID
        (lambda ds: setattr(ds, "SOPInstanceUID", generate_uid()), status.UID_MISMATCH),
        (lambda ds: setattr(ds, "SOPClassUID", dicom_objects.CT_IMAGE), status.DATASET_MISMATCH),
    ],
    ids=[
        "no-study",
        "no-series",
        "letters",
        "traversal",
        "too-long",
        "sop-mismatch",
        "class-mismatch",
    ],
)
def test_bad_dataset_is_refused_and_association_stays_usable(node, tmp_path, mutate, expected):
    path = _bad_file(tmp_path, mutate)
    assoc = associate(node, "UNN_US", ALL_KINDS)
    assert send_file(assoc, path).Status == expected
    assert stored_files(node.service) == []
    assert node.service.index.instances.count() == 0
    # the association goes on serving
    assert assoc.send_c_store(dicom_objects.secondary_capture()).Status == status.SUCCESS
    assoc.release()
    assert node.service.index.instances.count() == 1
    assert list(node.service.storage.incoming.iterdir()) == []


def test_unreadable_dataset_is_refused(node, tmp_path):
    path = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "trunc.dcm")
    # a dataset that opens a sequence and then holds no item tag where one must be
    raw = path.read_bytes()
    header_end = len(raw) - len(dicom_objects.dataset_bytes(path))
    garbage = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFFF)
    garbage += struct.pack("<HHI", 0x1234, 0x5678, 4) + b"abcd"
    path.write_bytes(raw[:header_end] + garbage)
    assoc = associate(node, "UNN_US", ALL_KINDS)
    assert send_file(assoc, path).Status == status.CANNOT_UNDERSTAND
    assert stored_files(node.service) == []
    assert assoc.send_c_store(dicom_objects.secondary_capture()).Status == status.SUCCESS
    assoc.release()


def test_free_space_reserve_refuses_then_resumes_without_restart(node):
    node.service.storage.min_free_bytes = 1 << 62  # more than any disk has
    ds = dicom_objects.secondary_capture()
    assoc = associate(node, "UNN_US", ALL_KINDS)
    assert assoc.send_c_store(ds).Status == status.OUT_OF_RESOURCES
    assert stored_files(node.service) == []
    assert node.service.index.instances.count() == 0
    node.service.storage.min_free_bytes = 0
    assert assoc.send_c_store(ds).Status == status.SUCCESS
    assoc.release()


def test_index_failure_removes_the_file_and_reports_failure(fast_failing_node, index_url):
    """Keep order: the file is written first; if the index commit fails it is removed."""
    node = fast_failing_node
    ds = dicom_objects.secondary_capture()
    locker = _lock_index(index_url)
    try:
        assoc = associate(node, "UNN_US", ALL_KINDS)
        assert assoc.send_c_store(ds).Status == status.INDEX_UNAVAILABLE
    finally:
        locker()
    assert stored_files(node.service) == []
    assert node.service.index.instances.find(ds.SOPInstanceUID) is None
    # and the node goes on storing once the index is back
    assert assoc.send_c_store(ds).Status == status.SUCCESS
    assoc.release()
    assert len(stored_files(node.service)) == 1


def _lock_index(index_url: str):
    """Hold a write lock on the index from another connection; return the release."""
    if index_url.startswith("sqlite"):
        conn = sqlite3.connect(index_url[len("sqlite:///") :], isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # readers go on (WAL), writers time out
    else:
        import psycopg2

        conn = psycopg2.connect(index_url)
        conn.cursor().execute("LOCK TABLE patient IN SHARE MODE")  # blocks inserts only

    def release():
        conn.rollback() if not index_url.startswith("sqlite") else conn.execute("ROLLBACK")
        conn.close()

    return release


@pytest.fixture
def fast_failing_node(tmp_path, index_url, registry):
    with node_with(tmp_path / "f", index_url, index={"busy_timeout": 0.3}) as node:
        yield node


def test_no_patient_data_in_info_logs(node, caplog):
    ds = dicom_objects.secondary_capture(patient_id="SECRETPID42", patient_name="SECRET^NAME")
    with caplog.at_level(logging.DEBUG, logger="archive_node"):
        assert store(node, ds) == status.SUCCESS
    info = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.INFO)
    assert ds.SOPInstanceUID in info
    assert "SECRETPID42" not in info and "SECRET" not in info


def test_replacement_refused_across_hospitals_and_studies(replacing_node):
    node = replacing_node
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    original = node.service.index.instances.find(ds.SOPInstanceUID)
    ds.PixelData = bytes(len(ds.PixelData))
    # another hospital; then the same hospital, but filed elsewhere: neither is kept, so
    # neither is told it is (a failure, not 0x0000)
    assert store(node, ds, calling="NLSH_CAM") == status.SOP_INSTANCE_CONFLICT
    ds.StudyInstanceUID = generate_uid()
    assert store(node, ds) == status.SOP_INSTANCE_CONFLICT
    assert node.service.index.instances.find(ds.SOPInstanceUID) == original
    assert stored_files(node.service) == [node.service.storage.absolute(original.path)]


def test_concurrent_replacements_leave_the_row_on_an_existing_file(replacing_node, tmp_path):
    """A replacement that read the row before another replaced it must not delete that file."""
    node = replacing_node
    service = node.service
    peer = service.registry.peer("UNN_US")
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    stale = service.index.instances.find(ds.SOPInstanceUID)  # what A read before B ran

    ds.PixelData = bytes(len(ds.PixelData))
    b_file = dicom_objects.write(ds, tmp_path / "b.dcm")
    assert (
        service.store(
            peer, b_file, sop_class_uid=ds.SOPClassUID, sop_instance_uid=ds.SOPInstanceUID
        ).status
        == status.SUCCESS
    )
    ds.PixelData = b"\x01" * len(ds.PixelData)
    a_file = dicom_objects.write(ds, tmp_path / "a.dcm")
    header = read_header(
        a_file, expected_sop_class=ds.SOPClassUID, expected_sop_instance=ds.SOPInstanceUID
    )
    facts = service.storage.inspect(a_file)
    a_new = NewInstance(header, stale.path, facts.size, facts.sha256, "UNN_US", "UNN", "UNN")
    assert service._duplicate(stale, a_new, a_file).status == status.SUCCESS

    row = service.index.instances.find(ds.SOPInstanceUID)
    assert row.sha256 == facts.sha256
    kept = service.storage.absolute(row.path)
    assert kept.is_file() and hashlib.sha256(kept.read_bytes()).hexdigest() == row.sha256
    assert stored_files(service) == [kept]  # B's displaced file is gone, nothing else left


def test_identical_resend_restores_a_missing_file(node):
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    node.service.storage.absolute(record.path).unlink()  # lost behind the node's back
    assert store(node, ds) == status.SUCCESS
    healed = node.service.index.instances.find(ds.SOPInstanceUID)
    kept = node.service.storage.absolute(healed.path)
    assert kept.is_file() and hashlib.sha256(kept.read_bytes()).hexdigest() == healed.sha256
    assert healed.sha256 == record.sha256


def test_file_stays_when_the_commit_landed_despite_an_error(node, tmp_path):
    """After an index error the file is removed only if no row names it."""
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    node.service._discard_unless_indexed(record.path, ds.SOPInstanceUID)
    assert node.service.storage.exists(record.path)
    stray = node.service.storage.keep(dicom_objects.write(ds, tmp_path / "x.dcm"), record.path)
    node.service._discard_unless_indexed(stray, ds.SOPInstanceUID)
    assert not node.service.storage.exists(stray)


def test_referenced_and_streaming_syntaxes_are_not_accepted(node):
    jpip, smpte = "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.7.1"
    assoc = associate(
        node,
        "UNN_US",
        [
            (dicom_objects.CT_IMAGE, [jpip]),
            (dicom_objects.VIDEO_PHOTO, [smpte]),
            (dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian]),
        ],
    )
    assert assoc.is_established
    accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
    assoc.release()
    assert accepted == {dicom_objects.SECONDARY_CAPTURE}


@pytest.mark.parametrize(("age", "replaced"), [(3600, True), (0, False)], ids=["old", "young"])
def test_a_crash_leftover_at_the_instances_place(node, age, replaced):
    """A file at an instance's place that no row names was left by a crash between keeping and
    indexing: once it has not changed for a while it is replaced by the resend; a young one may
    be another association's store in progress, and the resend goes beside it."""
    ds = dicom_objects.secondary_capture()
    storage = node.service.storage
    place = storage.layout(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    leftover = storage.root / place
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"the first copy, never indexed")
    os.utime(leftover, (time.time() - age, time.time() - age))
    assert store(node, ds) == status.SUCCESS
    record = node.service.index.instances.find(ds.SOPInstanceUID)
    kept = storage.absolute(record.path)
    assert hashlib.sha256(kept.read_bytes()).hexdigest() == record.sha256
    assert (record.path == place) is replaced
    siblings = sorted(p.name for p in leftover.parent.iterdir())
    assert len(siblings) == (1 if replaced else 2), siblings
