"""The index and the store are their owner's alone whatever the umask (issue 22, finding 12):
with umask 022, as a shell outside systemd has it, `init`, a C-STORE through a real `serve`,
an `import`, `verify` and `reindex` leave every file (the SQLite index with its -wal and -shm
among them) mode 0600 and every directory they made 0700. Before, the index (names, IDs,
birth dates) and the store were created world-readable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.helpers import dicom_objects, media_files
from tests.helpers.serving_process import Archive, send


@pytest.fixture
def umask_022():
    """The test process's umask (inherited by the node's processes) set to 022."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def modes_not_owner_only(*tops: Path) -> dict[str, str]:
    """Every directory and file at and below `tops` whose mode gives the group or others
    anything, or is not 0600/0700, by path."""
    wrong = {}
    for top in tops:
        for path in [top, *top.rglob("*")]:
            mode = stat.S_IMODE(path.lstat().st_mode)
            expected = 0o700 if path.is_dir() else 0o600
            if mode != expected:
                wrong[str(path)] = oct(mode)
    return wrong


def test_index_and_store_are_owner_only_under_umask_022(tmp_path, umask_022):
    # the index in a directory `init` makes, as the default var/index.sqlite3 is
    node = Archive(tmp_path / "node", index_url=f"sqlite:///{tmp_path}/node/var/index.sqlite3")
    node.root.mkdir()
    probe = tmp_path / "probe"
    probe.touch()
    assert stat.S_IMODE(probe.stat().st_mode) == 0o644  # the umask is really 022
    var = node.root / "var"
    try:
        node.init()
        node.start()
        ct = dicom_objects.write(dicom_objects.ct(), tmp_path / "send" / "ct.dcm")
        assert send(node, ct).status == 0x0000
        photo = media_files.jpeg(tmp_path / "photo.jpg")
        node.cli("import", str(photo), "--hospital", "UNN", "--patient-id", "PERM1")
        # while serve runs, the index has its -wal and -shm
        assert {p.name for p in var.iterdir()} >= {
            "index.sqlite3",
            "index.sqlite3-wal",
            "index.sqlite3-shm",
        }
        assert modes_not_owner_only(var, node.storage) == {}
        assert "no problems" in node.cli("verify").stdout
        assert node.terminate() == 0
        assert "0 problem(s)" in node.cli("reindex").stdout
        assert modes_not_owner_only(var, node.storage) == {}
        assert len(list(node.storage.rglob("*.dcm"))) == 2
    finally:
        node.close()
