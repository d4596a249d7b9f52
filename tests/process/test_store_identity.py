"""A store knows which index it belongs to (issue 22, finding 1), through the real CLI and real
`serve` processes: `init` records one store identity in the store (.archive-node-store) and
in the index; `serve`, `verify`, `reindex` and `import` refuse an index and a store that do
not belong together, with one line naming both and both identities; `reindex` (the way back
from a lost index) adopts a store; an index and store made before identities are given one by
`init`; several nodes on one index and one store work as before.

The issue's scenario: a second node given the first node's store and an index of its own
started, and a resend it took replaced an instance the first node had acknowledged (the
5-minute leftover rule saw a file that no row of *its* index named).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import dicom_objects
from tests.helpers.serving_process import (
    CALLING,
    HOST,
    Archive,
    child_env,
    file_sha256,
    send,
)

IDENTITY_FILE = ".archive-node-store"


@dataclass
class Node(Archive):
    """An Archive whose store may be another node's (`store`), its index and config its own."""

    store: Path | None = None

    @property
    def storage(self) -> Path:
        return self.store or self.root / "storage"

    @property
    def index_file(self) -> Path:
        return self.root / "index.sqlite3"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "archive_node", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=self.root,
            env=child_env(),
            check=False,
        )

    def refused(self, *args: str) -> str:
        """Run a command that must end with exit status 1 and one error line; the line."""
        proc = self.run(*args)
        assert proc.returncode == 1, (args, proc.returncode, proc.stdout, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
        return errors[0]

    def identity_in_index(self) -> str | None:
        with sqlite3.connect(self.index_file) as db:
            row = db.execute(
                "SELECT value FROM schema_info WHERE key = 'store_identity'"
            ).fetchone()
        return row[0] if row else None

    def identity_in_store(self) -> str | None:
        path = self.storage / IDENTITY_FILE
        return path.read_text().strip() if path.exists() else None


@pytest.fixture
def nodes(tmp_path):
    made: list[Node] = []

    def make(name: str, store: Path | None = None) -> Node:
        node = Node(tmp_path / name, store=store)
        node.root.mkdir()
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def not_a_pair(
    line: str, index: Node, store: Path, recorded: str | None, held: str | None
) -> None:
    """The one line names the index (its URL), the store (its path) and both identities."""
    assert (
        f"index sqlite:///{index.index_file} (store identity {recorded or 'none'}) and store "
        f"{store} (store identity {held or 'none'}) do not belong together" in line
    ), line


def stored_ct(node: Node, tmp_path: Path) -> tuple[Path, Path]:
    """A CT sent to `node` over a real association: (the file sent, the file kept)."""
    ds = dicom_objects.ct()
    source = dicom_objects.write(ds, tmp_path / "send" / f"{ds.SOPInstanceUID}.dcm")
    assert send(node, source).status == 0x0000
    return source, node.stored(ds.SOPInstanceUID)


def test_init_records_one_identity_in_the_store_and_the_index(nodes):
    a = nodes("a")
    a.init()
    identity = a.identity_in_store()
    assert identity is not None and str(uuid.UUID(identity)) == identity
    assert a.identity_in_index() == identity
    assert (a.storage / IDENTITY_FILE).stat().st_mode & 0o777 == 0o600
    again = a.cli("init").stdout  # run again at any time: the same identity
    assert f"store identity {identity}" in again and a.identity_in_store() == identity


def test_a_second_node_with_its_own_index_refuses_the_first_nodes_store(nodes, tmp_path):
    """The issue's scenario: node B, the same store as A and an index of its own, does not
    start, so a resend through it can never replace what A acknowledged."""
    a = nodes("a")
    a.init()
    a.start()
    source, kept = stored_ct(a, tmp_path)
    acknowledged = file_sha256(kept)
    # old enough for the leftover rule that replaced it in the issue
    aged = time.time() - 3600
    os.utime(kept, (aged, aged))
    identity = a.identity_in_store()

    b = nodes("b", store=a.storage)
    b.write_config()
    line = b.refused("init")  # the schema is made, the store is not taken
    not_a_pair(line, b, a.storage, None, identity)
    assert "only if that index is lost, `archive-node reindex --adopt-store`" in line
    assert b.identity_in_index() is None
    assert b.refused("reindex") == line  # adopting another index's store is never implicit

    for command in (["serve"], ["verify"]):
        assert b.refused(*command) == line, command
    photo = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "x.dcm")
    imported = b.refused("import", str(photo), "--hospital", "UNN", "--patient-id", "P1")
    assert imported == line

    assert file_sha256(kept) == acknowledged  # A's acknowledged file untouched
    assert send(a, source).status == 0x0000  # A still takes the resend as a duplicate
    assert file_sha256(kept) == acknowledged
    assert "no problems" in a.cli("verify").stdout
    assert a.identity_in_store() == a.identity_in_index() == identity


def test_an_index_and_a_store_of_other_pairs_are_refused(nodes, tmp_path):
    a = nodes("a")
    a.init()
    other = nodes("other")
    other.init()
    # `other`'s index given a's store: both have identities, and they differ
    swapped = Node(other.root, store=a.storage)
    swapped.write_config()
    recorded, held = other.identity_in_index(), a.identity_in_store()
    assert recorded != held
    photo = dicom_objects.write(dicom_objects.secondary_capture(), tmp_path / "x.dcm")
    for command in (
        ["serve"],
        ["verify"],
        ["reindex"],
        ["init"],
        ["import", str(photo), "--hospital", "UNN", "--patient-id", "P1"],
    ):
        not_a_pair(swapped.refused(*command), swapped, a.storage, recorded, held)
    # a's index given an empty directory: not its store (an unmounted share looks like this)
    empty = Node(a.root, store=tmp_path / "not-mounted")
    empty.write_config()
    line = empty.refused("serve")
    not_a_pair(line, empty, tmp_path / "not-mounted", a.identity_in_index(), None)
    assert "check storage.path" in line


def test_reindex_makes_a_new_index_over_a_kept_store_and_adopts_it(nodes, tmp_path):
    """A lost index: `serve`, `init` and a plain `reindex` on a new one refuse the store;
    `reindex --adopt-store` takes it over under a new identity and rebuilds the index from its
    files."""
    a = nodes("a")
    a.init()
    a.start()
    source, kept = stored_ct(a, tmp_path)
    assert a.terminate() == 0
    identity = a.identity_in_store()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{a.index_file}{suffix}").unlink(missing_ok=True)

    assert "does not exist: run `archive-node init`" in a.refused("serve")
    assert "reindex --adopt-store" in a.refused("reindex")  # makes the index, takes nothing
    report = a.cli("reindex", "--adopt-store").stdout
    assert "1 files in the store: 1 indexed" in report
    adopted = a.identity_in_index()
    assert adopted not in (None, identity) and a.identity_in_store() == adopted
    assert f"index adopted the store (store identity {adopted})" in report
    assert "no problems" in a.cli("verify").stdout
    a.cli("ae", "add", CALLING, "--hospital", "UNN", "--host", HOST, "--allow", "echo,store")
    a.start()
    acknowledged = file_sha256(kept)
    assert send(a, source).status == 0x0000
    assert file_sha256(kept) == acknowledged


def test_a_new_index_over_a_store_of_files_without_identity_needs_reindex(nodes, tmp_path):
    """A store kept from before identities whose index was lost: not served until adopted."""
    a = nodes("a")
    a.init()
    a.start()
    stored_ct(a, tmp_path)
    assert a.terminate() == 0
    (a.storage / IDENTITY_FILE).unlink()
    a.index_file.unlink()

    line = a.refused("init")
    not_a_pair(line, a, a.storage, None, None)
    assert "the index is new and the store holds files: run `archive-node reindex`" in line
    assert a.refused("serve") == line
    report = a.cli("reindex").stdout
    assert "1 indexed" in report and "index adopted the store" in report
    assert a.identity_in_index() == a.identity_in_store() is not None


def test_init_gives_an_index_and_store_made_before_identities_one(nodes, tmp_path):
    """An existing deployment upgrades cleanly: its index and store have no identity; `serve`
    still starts (warning), `init` records one in both, nothing else changes."""
    a = nodes("a")
    a.init()
    a.start()
    source, _ = stored_ct(a, tmp_path)
    assert a.terminate() == 0
    (a.storage / IDENTITY_FILE).unlink()
    with sqlite3.connect(a.index_file) as db:
        db.execute("DELETE FROM schema_info WHERE key = 'store_identity'")

    a.start()
    assert "have no store identity: run `archive-node init`" in a.log()
    assert a.terminate() == 0
    out = a.cli("init").stdout
    identity = a.identity_in_store()
    assert identity is not None and a.identity_in_index() == identity
    assert f"store identity {identity}" in out
    a.start()
    assert send(a, source).status == 0x0000
    assert "no problems" in a.cli("verify").stdout


def test_nodes_sharing_one_index_and_one_store_share_its_identity(nodes, tmp_path):
    a = nodes("a")
    a.init()
    b = nodes("b", store=a.storage)
    b.index_url = a.url
    b.write_config()
    out = b.cli("init").stdout
    assert "is current" in out and f"store identity {a.identity_in_store()}" in out
    a.start()
    b.start()
    _, kept = stored_ct(b, tmp_path)
    assert kept.is_relative_to(a.storage)
    assert "no problems" in a.cli("verify").stdout


def test_init_never_gives_an_index_with_instances_an_empty_store(nodes, tmp_path):
    """Under systemd `init` runs before every start: a share that is not mounted (an empty
    directory at storage.path) must not become the index's store."""
    a = nodes("a")
    a.init()
    a.start()
    stored_ct(a, tmp_path)
    assert a.terminate() == 0
    unmounted = Node(a.root, store=tmp_path / "mnt" / "store")
    unmounted.write_config()
    recorded = a.identity_in_index()
    for command in ("init", "serve", "verify", "reindex"):
        line = unmounted.refused(command)
        not_a_pair(line, unmounted, tmp_path / "mnt" / "store", recorded, None)
        assert "check storage.path" in line, (command, line)
    assert unmounted.identity_in_store() is None


def test_a_store_taken_over_on_purpose_stops_the_index_it_belonged_to(nodes, tmp_path):
    """`reindex --adopt-store` by node B gives the store a new identity: node A, still
    serving it, stores nothing more (0xA700 saying why) and its `verify` is refused, so the
    two never write one store from two indexes."""
    a = nodes("a")
    a.init()
    a.start()
    source, kept = stored_ct(a, tmp_path)
    old = a.identity_in_store()

    b = nodes("b", store=a.storage)
    b.write_config()
    report = b.cli("reindex", "--adopt-store").stdout
    new = b.identity_in_index()
    assert new not in (None, old) and b.identity_in_store() == new
    assert f"index adopted the store (store identity {new})" in report
    assert "1 files in the store: 1 indexed" in report

    other = dicom_objects.write(dicom_objects.ct(), tmp_path / "later.dcm")
    refused = send(a, other)
    assert refused.status == 0xA700
    assert "another index" in refused.error
    not_a_pair(a.refused("verify"), a, a.storage, old, new)
    assert file_sha256(kept) == file_sha256(b.stored(dicom_objects.dcmread(source).SOPInstanceUID))
