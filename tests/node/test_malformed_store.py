"""C-STORE of malformed encodings through real associations: refused 0xC000 with the problem and
its offset, nothing kept; pydicom's well-formed bundled files still kept; a deflate bomb refused
in bounded memory. On both backends."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from archive_node.dicom import status
from archive_node.dicom.structure import check_path
from archive_node.rules.commitment import EVENT_FAILURES_EXIST
from tests.helpers import dicom_objects
from tests.helpers.commitment import modality, n_action, referenced, request
from tests.helpers.dimse import associate, send_file
from tests.helpers.raw_dicom import (
    DEFLATED,
    EXPLICIT_BE,
    EXPLICIT_LE,
    IMPLICIT_LE,
    deflate,
    encode,
    file_meta,
    write_deflate_bomb,
)
from tests.unit.test_structure import BROKEN, TEST_FILES, WELL_FORMED

SYNTAXES = [EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE, DEFLATED]


def stored_files(service) -> list[Path]:
    root = service.storage.root
    return sorted(p for p in root.rglob("*") if p.is_file() and ".incoming" not in p.parts)


def assert_nothing_kept(node) -> None:
    assert stored_files(node.service) == []
    assert node.service.index.instances.count() == 0
    assert list(node.service.storage.incoming.iterdir()) == []


def written(tmp_path: Path, ds, dataset: bytes, ts: str) -> Path:
    """A Part 10 file of `ds`'s SOP Class and Instance with `dataset` as its bytes."""
    path = tmp_path / f"{generate_uid()[-12:]}.dcm"
    path.write_bytes(file_meta(ts, ds.SOPClassUID, ds.SOPInstanceUID) + dataset)
    return path


def truncated_pixel_data(tmp_path: Path) -> tuple[Path, str]:
    """Pixel Data declaring 8192 bytes of which 8130 arrived (issue 17)."""
    ds = dicom_objects.secondary_capture()
    ds.Rows, ds.Columns = 64, 128
    ds.PixelData = os.urandom(8192)
    dataset = encode(ds)
    path = written(tmp_path, ds, dataset[:-62], EXPLICIT_LE)
    at = len(dataset) - 8192 - 12
    return path, f"(7FE0,0010) length 8192 > 8130 bytes left at dataset byte {at}"


def implicit_under_explicit(tmp_path: Path) -> tuple[Path, str]:
    ds = dicom_objects.secondary_capture()
    path = written(tmp_path, ds, encode(ds, IMPLICIT_LE), EXPLICIT_LE)
    return path, "(0008,0016) invalid VR bytes 1A 00 at dataset byte 0"


def odd_length_dataset(tmp_path: Path) -> tuple[Path, str]:
    ds = dicom_objects.secondary_capture()
    dataset = encode(ds)
    path = written(tmp_path, ds, dataset + b"\0", EXPLICIT_LE)
    return path, f"odd dataset length: 1 stray byte(s) at dataset byte {len(dataset)}"


def odd_length_deflate_stream(tmp_path: Path) -> tuple[Path, str]:
    ds = dicom_objects.secondary_capture()
    for n in range(1, 200):
        ds.StudyDescription = "S" * n
        stream = deflate(encode(ds), pad=False)
        if len(stream) % 2:
            break
    path = written(tmp_path, ds, stream, DEFLATED)
    return path, f"odd deflate stream length {len(stream)}, no pad at dataset byte {len(stream)}"


CASES = {
    "truncated-pixel-data": truncated_pixel_data,
    "implicit-under-explicit": implicit_under_explicit,
    "odd-length-dataset": odd_length_dataset,
    "odd-length-deflate-stream": odd_length_deflate_stream,
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_dataset_is_refused_with_its_problem_and_nothing_kept(node, tmp_path, case):
    path, problem = CASES[case](tmp_path)
    ds_class = dicom_objects.SECONDARY_CAPTURE
    assoc = associate(node, "UNN_US", [(ds_class, [ts]) for ts in SYNTAXES])
    assert assoc.is_established
    try:
        answer = send_file(assoc, path)
        assert answer.Status == status.CANNOT_UNDERSTAND
        assert answer.ErrorComment == problem[:64]
        assert_nothing_kept(node)
        # the same instance well-formed is kept, on the same association
        good = dicom_objects.secondary_capture()
        assert assoc.send_c_store(good).Status == status.SUCCESS
    finally:
        assoc.release()
    assert node.service.index.instances.count() == 1


def test_the_refusal_is_logged_with_the_problem(node, tmp_path, caplog):
    path, problem = truncated_pixel_data(tmp_path)
    assoc = associate(node, "UNN_US", [(dicom_objects.SECONDARY_CAPTURE, [EXPLICIT_LE])])
    try:
        assert send_file(assoc, path).Status == status.CANNOT_UNDERSTAND
    finally:
        assoc.release()
    assert any(problem in r.getMessage() and "0xC000" in r.getMessage() for r in caplog.records)


def bundled_contexts(paths: list[Path]) -> list[tuple[str, list[str]]]:
    contexts: dict[str, set[str]] = {}
    for path in paths:
        meta = pydicom.filereader.read_file_meta_info(path)
        contexts.setdefault(meta.MediaStorageSOPClassUID, set()).add(meta.TransferSyntaxUID)
    return [(sop_class, sorted(syntaxes)) for sop_class, syntaxes in contexts.items()]


def sendable(names) -> list[Path]:
    """The bundled Part 10 files a C-STORE can carry as they are: a file meta naming the SOP
    Class, Instance and Transfer Syntax (pynetdicom needs them), and a storage class (not a
    DICOMDIR's Media Storage Directory)."""
    paths = []
    for name in names:
        path = TEST_FILES / name
        meta = pydicom.filereader.read_file_meta_info(path)
        needed = ("MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID", "TransferSyntaxUID")
        if all(meta.get(keyword) for keyword in needed) and not str(
            meta.MediaStorageSOPClassUID
        ).startswith("1.2.840.10008.1.3.10"):
            paths.append(path)
    return paths


def test_every_well_formed_bundled_file_passes_the_check_when_sent(node):
    """Each goes through C-STORE as it is on disk: none is refused for its encoding. (Some
    share a SOP Instance UID with another one, or lack a UID: those get the statuses of
    duplicates and missing attributes, which come after the check.)"""
    paths = sendable(WELL_FORMED)
    assert len(paths) > 70
    answers = {}
    for path in paths:
        contexts = bundled_contexts([path])
        assoc = associate(node, "UNN_US", contexts)
        if not assoc.is_established:  # a class or syntax the node does not take
            answers[path.name] = "rejected"
            continue
        try:
            if not assoc.accepted_contexts:
                answers[path.name] = "no context"
                continue
            answer = send_file(assoc, path)
            answers[path.name] = (answer.Status, answer.get("ErrorComment", ""))
        finally:
            assoc.release()
    refused_for_encoding = {
        name: answer
        for name, answer in answers.items()
        if isinstance(answer, tuple) and answer[0] == status.CANNOT_UNDERSTAND
    }
    assert refused_for_encoding == {}
    kept = [name for name, answer in answers.items() if answer == (status.SUCCESS, "")]
    assert len(kept) > 50, answers


@pytest.mark.parametrize("name", [str(p.relative_to(TEST_FILES)) for p in sendable(BROKEN)])
def test_the_broken_bundled_files_are_refused_when_sent(node, name):
    path = TEST_FILES / name
    assoc = associate(node, "UNN_US", bundled_contexts([path]))
    assert assoc.is_established
    try:
        answer = send_file(assoc, path)
    finally:
        assoc.release()
    assert answer.Status == status.CANNOT_UNDERSTAND
    # offsets in the Error Comment count from the dataset's first byte: the file meta is the
    # receiver's own
    assert answer.ErrorComment.rsplit(" at ", 1)[0] == BROKEN[name].rsplit(" at ", 1)[0]
    assert_nothing_kept(node)


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_4_gib_deflate_bomb_is_refused_in_bounded_memory(node, tmp_path):
    ds = dicom_objects.secondary_capture()
    del ds.PixelData
    bomb = write_deflate_bomb(tmp_path / "bomb.dcm", encode(ds), 4 << 30)
    assert bomb.stat().st_size < 8 << 20
    baseline, peak, done = rss(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assoc = associate(node, "UNN_US", [(ds.SOPClassUID, [DEFLATED])])
    try:
        started = time.monotonic()
        answer = send_file(assoc, bomb)
        took = time.monotonic() - started
    finally:
        assoc.release()
        done.set()
        sampler.join()
    assert answer.Status == status.CANNOT_UNDERSTAND
    assert answer.ErrorComment.startswith("deflate bomb: over 256 MiB inflated")
    assert peak[0] - baseline < 100 << 20, f"RSS grew {(peak[0] - baseline) >> 20} MiB"
    assert took < 30
    assert_nothing_kept(node)
    # the check alone, in this process: the same bound, the same memory
    assert str(check_path(bomb)).startswith("deflate bomb")


def test_a_refused_instance_is_never_committed(node, tmp_path):
    """The issue's second half: a malformed instance got a positive Storage Commitment. Now it
    is refused, so commitment reports it failed (no such object instance), beside a kept one."""
    path, _problem = truncated_pixel_data(tmp_path)
    meta = pydicom.filereader.read_file_meta_info(path)
    good = dicom_objects.secondary_capture()
    assoc = associate(node, "UNN_US", [(dicom_objects.SECONDARY_CAPTURE, [EXPLICIT_LE])])
    try:
        assert send_file(assoc, path).Status == status.CANNOT_UNDERSTAND
        assert assoc.send_c_store(good).Status == status.SUCCESS
    finally:
        assoc.release()
    refs = [
        (good.SOPClassUID, good.SOPInstanceUID),
        (meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID),
    ]
    with modality("UNN_US") as scu:
        commitment = scu.associate(node)
        assert n_action(commitment, request(refs)).Status == status.SUCCESS
        _where, event_type, info = scu.report()
        commitment.release()
    assert event_type == EVENT_FAILURES_EXIST
    assert referenced(info) == {good.SOPInstanceUID}
    assert {i.ReferencedSOPInstanceUID: i.FailureReason for i in info.FailedSOPSequence} == {
        meta.MediaStorageSOPInstanceUID: 0x0112
    }
