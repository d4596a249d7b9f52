"""A disk that fills up while an instance is being received: 0xA700, nothing kept, no restart.

The store is put on a small tmpfs (needs root and mount; skipped where the machine forbids it),
so the write really fails with ENOSPC part way through a dataset.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from archive_node.dicom import status
from archive_node.net.patches import receiving
from archive_node.service import ArchiveService
from tests.helpers import dicom_objects
from tests.helpers.dimse import associate, store_response
from tests.helpers.serving import make_config, serving

SIZE_MB = 16


@pytest.fixture
def small_disk(tmp_path):
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def node_on(tmp_path, index_url, disk: Path, min_free_mb: int):
    config = make_config(
        tmp_path, index_url, storage={"path": str(disk / "store"), "min_free_mb": min_free_mb}
    )
    service = ArchiveService.from_config(config)
    service.index.init_schema()
    service.storage.create()
    service.registry.add_hospital("UNN", "University Hospital of North Norway", issuer="UNN")
    service.registry.add_ae("UNN_US", "UNN", host="127.0.0.1")
    return serving(service)


@pytest.fixture
def full_disk_node(tmp_path, index_url, small_disk):
    with node_on(tmp_path, index_url, small_disk, min_free_mb=0) as node:
        yield node


def kept_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*.dcm") if ".incoming" not in p.parts]


def test_a_full_disk_mid_transfer_answers_a700_and_the_association_goes_on(full_disk_node):
    node = full_disk_node
    video = dicom_objects.video_h264(payload=2 * SIZE_MB * 1024 * 1024)  # twice the disk
    small = dicom_objects.secondary_capture()
    contexts = [(ds.SOPClassUID, [ds.file_meta.TransferSyntaxUID]) for ds in (video, small)]
    assoc = associate(node, "UNN_US", contexts)
    assert assoc.is_established
    with contextlib.ExitStack() as stack:
        stack.callback(assoc.release)
        rsp = assoc.send_c_store(video)
        assert rsp.Status == status.OUT_OF_RESOURCES
        assert "No space left" in rsp.ErrorComment
        assert node.service.index.instances.find(video.SOPInstanceUID) is None
        assert kept_files(node.service.storage.root) == []
        assert list(node.service.storage.incoming.iterdir()) == []  # the partial file is gone
        # the space came back at once: the same association stores the next instance
        assert assoc.send_c_store(small).Status == status.SUCCESS
    assert node.service.index.instances.find(small.SOPInstanceUID) is not None
    assert shutil.disk_usage(node.service.storage.root).free > SIZE_MB * 1024 * 1024 // 2


def test_below_the_reserve_an_arriving_video_is_not_even_written(tmp_path, index_url, small_disk):
    """The reserve is checked as a dataset begins: a video larger than the space left is read
    off the network and dropped, not written until the disk is full."""
    with node_on(tmp_path, index_url, small_disk, min_free_mb=SIZE_MB // 2) as node:
        filler = small_disk / "filler"
        with open(filler, "wb") as fh:
            os.posix_fallocate(fh.fileno(), 0, (SIZE_MB // 2 + 4) * 1024 * 1024)
        rsp = store_response(node, dicom_objects.video_h264(payload=SIZE_MB * 1024 * 1024))
        assert rsp.Status == status.OUT_OF_RESOURCES
        assert "reserve" in rsp.ErrorComment and "No space" not in rsp.ErrorComment
        assert list(node.service.storage.incoming.iterdir()) == []
        assert node.service.index.instances.count() == 0
        filler.unlink()
        assert store_response(node, dicom_objects.secondary_capture()).Status == status.SUCCESS


def test_a_transfer_that_crosses_the_reserve_is_stopped_there(
    tmp_path, index_url, small_disk, monkeypatch
):
    """Free space is looked at again as a dataset arrives: one large transfer that began above
    the reserve does not eat it (or fill the disk), whatever size it declares."""
    monkeypatch.setattr(receiving, "ROOM_CHECK_EVERY", 1 << 20)
    with node_on(tmp_path, index_url, small_disk, min_free_mb=SIZE_MB // 2) as node:
        rsp = store_response(node, dicom_objects.video_h264(payload=(SIZE_MB * 3 // 4) << 20))
        assert rsp.Status == status.OUT_OF_RESOURCES
        assert "reserve" in rsp.ErrorComment and "No space" not in rsp.ErrorComment
        assert list(node.service.storage.incoming.iterdir()) == []
        assert shutil.disk_usage(node.service.storage.root).free > SIZE_MB * 1024 * 1024 // 2
