"""The free-space reserve on a really full disk: C-STORE answers 0xA700 and keeps nothing
below storage.min_free_mb, and the same running node stores again once there is room.

No attribute is patched: the reserve is set in the config from the free space the test's
filesystem has, a filler file allocated with posix_fallocate takes the free space below it,
and deleting the filler gives it back. Other processes may write to the disk meanwhile, so
the reserve sits MARGIN below the free space and the filler is twice MARGIN: either side of
the reserve there is MARGIN to spare.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, evt

from archive_node.dicom import status
from archive_node.net.association import set_tcp_nodelay
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate
from tests.helpers.serving import make_config
from tests.helpers.serving_process import CALLED, CALLING, HOST, Archive, incoming_files

MiB = 1 << 20
MARGIN = 512 * MiB
FILLER = 2 * MARGIN
NEEDED = 2 << 30  # free space below which the test cannot fill the disk safely
SETTLE = 30.0  # seconds the filesystem gets to show the filler's blocks free again
CONTEXTS = [(dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian])]


def free_bytes(path: Path) -> int:
    """What the node compares with its reserve (storage.has_room: shutil.disk_usage)."""
    return shutil.disk_usage(path).free


def reserve_mb(path: Path) -> int:
    """A reserve MARGIN below the free space of `path`'s filesystem; skips on a small disk."""
    free = free_bytes(path)
    if free < NEEDED:
        pytest.skip(f"{free / MiB:.0f} MiB free at {path}: the test needs {NEEDED // MiB} MiB")
    return (free - MARGIN) // MiB


@contextlib.contextmanager
def disk_filled(path: Path, size: int = FILLER) -> Iterator[Path]:
    """A file of `size` bytes truly allocated (posix_fallocate), deleted on leaving."""
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            pytest.skip(f"cannot allocate a {size // MiB} MiB filler at {path}: {exc}")
        yield path
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def wait_for_room(path: Path, reserve: int) -> None:
    """Poll until the filesystem shows free space above `reserve` again (a deleted file's
    blocks may be released a little later)."""
    deadline = time.monotonic() + SETTLE
    while free_bytes(path) < reserve:
        assert time.monotonic() < deadline, (
            f"free space {free_bytes(path) / MiB:.0f} MiB stayed below the reserve "
            f"{reserve / MiB:.0f} MiB after the filler was deleted"
        )
        time.sleep(0.05)


def files_in(storage: Path) -> list[Path]:
    """Every file in the store outside the incoming area, but for the store's identity
    (.archive-node-store, written by `init`)."""
    return sorted(
        p
        for p in storage.rglob("*")
        if p.is_file() and ".incoming" not in p.parts and p.name != ".archive-node-store"
    )


def sop_uid(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


# -- in-process node, SQLite and PostgreSQL ----------------------------------------------------


@pytest.fixture
def config(tmp_path, index_url):
    """conftest's config with storage.min_free_mb MARGIN below the real free space."""
    return make_config(tmp_path, index_url, storage={"min_free_mb": reserve_mb(tmp_path)})


def test_full_disk_refuses_then_resumes_without_restart(node, tmp_path):
    storage = node.service.storage.root
    assert os.stat(tmp_path).st_dev == os.stat(storage).st_dev  # the filler shares the disk
    reserve = node.service.config.storage.min_free_mb * MiB
    index = node.service.index
    first = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "send" / "first.dcm")
    refused = dicom_objects.write(
        dicom_objects.secondary_capture(), tmp_path / "send" / "refused.dcm"
    )
    refused_uid = sop_uid(refused)

    assoc = associate(node, "UNN_US", CONTEXTS)
    assert assoc.is_established
    try:
        # Above the reserve: stored.
        assert free_bytes(storage) >= reserve
        assert assoc.send_c_store(first).Status == status.SUCCESS
        kept_before = files_in(storage)
        assert len(kept_before) == 1 and index.instances.count() == 1

        with disk_filled(tmp_path / "filler"):
            assert free_bytes(storage) < reserve, "the filler did not take the disk under"
            rsp = assoc.send_c_store(refused)
            assert rsp.Status == status.OUT_OF_RESOURCES == 0xA700
            # Nothing kept: no new file, no row, and the received copy is gone already.
            assert files_in(storage) == kept_before
            assert index.instances.find(refused_uid) is None
            assert index.instances.count() == 1
            assert incoming_files(storage) == []

        # Room again: the very same node and association store it, no restart.
        wait_for_room(storage, reserve)
        assert assoc.send_c_store(refused).Status == status.SUCCESS
    finally:
        assoc.release()
    record = index.instances.find(refused_uid)
    assert record is not None
    kept = node.service.storage.absolute(record.path)
    assert dicom_objects.dataset_bytes(kept) == dicom_objects.dataset_bytes(refused)
    assert index.instances.count() == 2
    assert incoming_files(storage) == []
    # And a new association is served too.
    another = associate(node, "UNN_US", CONTEXTS)
    try:
        assert another.send_c_store(dicom_objects.secondary_capture()).Status == status.SUCCESS
    finally:
        another.release()


def test_full_disk_refusal_carries_an_error_comment(node, tmp_path):
    with disk_filled(tmp_path / "filler"):
        assert free_bytes(node.service.storage.root) < (
            node.service.config.storage.min_free_mb * MiB
        )
        assoc = associate(node, "UNN_US", CONTEXTS)
        try:
            rsp = assoc.send_c_store(dicom_objects.secondary_capture())
        finally:
            assoc.release()
    assert rsp.Status == status.OUT_OF_RESOURCES
    assert "reserve" in str(rsp.get("ErrorComment", "")), rsp


# -- `archive-node serve` as a process, SQLite -------------------------------------------------


def test_serve_process_refuses_on_full_disk_then_resumes(tmp_path):
    archive = Archive(tmp_path, min_free_mb=reserve_mb(tmp_path))
    archive.init()
    try:
        proc = archive.start()
        reserve = archive.min_free_mb * MiB
        ae = AE(ae_title=CALLING)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        ae.add_requested_context(dicom_objects.SECONDARY_CAPTURE, [ExplicitVRLittleEndian])
        assoc = ae.associate(
            HOST,
            archive.port,
            ae_title=CALLED,
            evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
        )
        assert assoc.is_established
        path = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "send" / "sc.dcm")
        try:
            with disk_filled(tmp_path / "filler"):
                assert free_bytes(archive.storage) < reserve
                assert assoc.send_c_store(path).Status == 0xA700
                assert files_in(archive.storage) == []
                assert incoming_files(archive.storage) == []
                assert _rows(archive) == 0
            wait_for_room(archive.storage, reserve)
            assert assoc.send_c_store(path).Status == 0x0000
        finally:
            assoc.release()
        assert proc.poll() is None and archive.proc is proc  # the same process throughout
        assert _rows(archive) == 1
        assert dicom_objects.dataset_bytes(archive.stored(sop_uid(path))) == (
            dicom_objects.dataset_bytes(path)
        )
        log = archive.log()
        assert "0xA700" in log and "reserve" in log
        assert archive.terminate() == 0, log
    finally:
        archive.close()


def _rows(archive: Archive) -> int:
    conn = sqlite3.connect(archive.url.removeprefix("sqlite:///"))
    try:
        return conn.execute("SELECT COUNT(*) FROM instance").fetchone()[0]
    finally:
        conn.close()
