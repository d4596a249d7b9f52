"""The order in which a received instance is made durable (storage.keep, service._store): its
kept name made, its bytes fsynced, the name's directory fsynced, then its row committed, and
only then the success status; a duplicate stores and fsyncs nothing. The node's own calls of
os.link and os.fsync are recorded (and made) as a real C-STORE runs; nothing is replaced."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from archive_node.dicom import status
from archive_node.index.instance_rows import InstanceRows
from tests.helpers import dicom_objects
from tests.helpers.dimse import store
from tests.helpers.serving import make_config, serving


@pytest.fixture
def fsyncing_node(tmp_path, index_url, monkeypatch):
    """A node with storage.fsync on, its link, fsync and index commits in `events`, in order."""
    from archive_node.service import ArchiveService

    service = ArchiveService.from_config(make_config(tmp_path, index_url, storage={"fsync": True}))
    service.index.init_schema()
    service.storage.create()
    service.registry.add_hospital("UNN", "University Hospital of North Norway", issuer="UNN")
    service.registry.add_ae("UNN_US", "UNN", host="127.0.0.1")
    events: list[tuple[str, object]] = []
    lock = threading.Lock()
    real_fsync, real_link, real_record = os.fsync, os.link, InstanceRows.record

    def fsync(fd: int) -> None:
        real_fsync(fd)
        target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        with lock:
            events.append(("fsync", (target, os.fstat(fd).st_ino)))

    def link(source, target, *args, **kwargs) -> None:
        real_link(source, target, *args, **kwargs)
        with lock:
            events.append(("link", (Path(target), os.stat(target).st_ino)))

    def record(self, new, *args, **kwargs):
        outcome = real_record(self, new, *args, **kwargs)
        with lock:
            events.append(("committed", new.path))
        return outcome

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(InstanceRows, "record", record)
    with serving(service) as node:
        yield node, events
    service.index.close()


def test_name_then_bytes_then_directory_then_row(fsyncing_node):
    node, events = fsyncing_node
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    kept = next(p for p in node.service.storage.root.rglob("*.dcm") if ".incoming" not in p.parts)
    inode = kept.stat().st_ino
    ours = [
        (kind, what)
        for kind, what in events
        if kind == "committed"
        or what[1] == inode  # the file, under its received or its kept name
        or what[0] == kept.parent
    ]
    kinds = [(kind, what[0] if kind != "committed" else what) for kind, what in ours]
    relative = kept.relative_to(node.service.storage.root).as_posix()
    assert kinds == [
        ("link", kept),  # the kept name first
        ("fsync", kinds[1][1]),  # then the bytes (one inode, whichever name it is opened by)
        ("fsync", kept.parent),  # then the name
        ("committed", relative),  # then the row; the status only after record() returned
    ], kinds
    assert ours[1][1][1] == inode


def test_an_identical_resend_fsyncs_no_file(fsyncing_node):
    node, events = fsyncing_node
    ds = dicom_objects.secondary_capture()
    assert store(node, ds) == status.SUCCESS
    before = len(events)
    assert store(node, ds) == status.SUCCESS  # a duplicate, identical: nothing kept
    files_synced = [
        what for kind, what in events[before:] if kind == "fsync" and what[0].suffix == ".dcm"
    ]
    assert files_synced == []
