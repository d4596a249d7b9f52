"""The index schema and registry rules on both backends, and the filesystem store's guarantees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from archive_node.errors import Conflict, InvalidInput, NotFound, SchemaError
from archive_node.index import SCHEMA_VERSION, Index
from archive_node.index import schema as schema_module
from archive_node.index.tables import SchemaInfo
from archive_node.storage import FilesystemStorage

# -- schema ------------------------------------------------------------------------------------


def test_init_creates_then_keeps_data(service, registry):
    assert service.index.init_schema() == (SCHEMA_VERSION, SCHEMA_VERSION)
    assert {h.code for h in service.registry.list_hospitals()} == {"UNN", "NLSH"}


def test_unmigrated_index_is_refused(index_url):
    index = Index.open(index_url)
    try:
        with pytest.raises(SchemaError, match="archive-node init"):
            index.check_schema()
    finally:
        index.close()


def test_newer_schema_is_refused(service):
    with service.index.session(write=True):
        SchemaInfo.update(value="999").where(SchemaInfo.key == "version").execute()
    with pytest.raises(SchemaError, match="newer"):
        service.index.init_schema()
    with pytest.raises(SchemaError, match="999"):
        service.index.check_schema()


def test_upgrade_runs_each_migration_once_and_keeps_rows(service, registry, monkeypatch):
    from peewee import TextField
    from playhouse.migrate import SchemaMigrator, migrate

    calls = []

    def add_note_column(db):
        calls.append(db)
        migrator = SchemaMigrator.from_database(db)
        migrate(migrator.add_column("hospital", "note", TextField(null=True)))

    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setitem(schema_module.MIGRATIONS, SCHEMA_VERSION + 1, add_note_column)
    assert service.index.init_schema() == (SCHEMA_VERSION, SCHEMA_VERSION + 1)
    assert service.index.init_schema() == (SCHEMA_VERSION + 1, SCHEMA_VERSION + 1)
    assert len(calls) == 1
    assert {h.code for h in service.registry.list_hospitals()} == {"UNN", "NLSH"}


# -- registry rules ----------------------------------------------------------------------------


def test_hospital_issuer_defaults_to_code(service):
    assert service.registry.add_hospital("FINNMARK", "Finnmark Hospital").issuer == "FINNMARK"


def test_duplicate_hospital_and_ae_are_conflicts(registry):
    with pytest.raises(Conflict):
        registry.add_hospital("UNN", "Again")
    with pytest.raises(Conflict):
        registry.add_ae("UNN_US", "UNN")


def test_hospital_removal_refused_while_referenced(registry):
    with pytest.raises(Conflict, match="AE"):
        registry.remove_hospital("UNN")
    registry.add_hospital("EMPTY", "Nobody yet")
    registry.remove_hospital("EMPTY")
    with pytest.raises(NotFound):
        registry.remove_hospital("EMPTY")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ae_title": "X" * 17}, "16 characters"),
        ({"ae_title": "BAD\\AE"}, "backslash"),
        ({"ae_title": "   "}, "empty"),
        ({"host": "not a host!"}, "host name"),
        ({"host": "10.0.0.256"}, "host name"),
        ({"host": "foo-"}, "host name"),
        ({"port": 0}, "1-65535"),
        ({"port": 70000}, "1-65535"),
        ({"allow": "echo,delete"}, "delete"),
        ({"scope": "world"}, "scope"),
    ],
)
def test_bad_ae_input_is_refused(registry, kwargs, message):
    values = {"ae_title": "NEW_AE", "host": "", "port": None, "allow": None, "scope": "region"}
    values.update(kwargs)
    title = values.pop("ae_title")
    with pytest.raises(InvalidInput, match=message):
        registry.add_ae(title, "UNN", **values)
    assert "NEW_AE" not in {ae.ae_title for ae in registry.list_aes()}


def test_ae_for_unknown_hospital_is_not_found(registry):
    with pytest.raises(NotFound, match="NOPE"):
        registry.add_ae("NEW_AE", "NOPE")


def test_ae_update_changes_only_what_is_given(registry):
    before = registry.list_aes("UNN")
    record = registry.update_ae("UNN_WS", allow="find,get", scope="hospital")
    assert (record.allow, record.scope, record.port, record.host) == (
        "find,get",
        "hospital",
        11999,
        "127.0.0.1",
    )
    record = registry.update_ae("UNN_WS", clear_port=True, hospital="NLSH")
    assert record.port is None and record.hospital == "NLSH"
    assert len(registry.list_aes()) == 5 and len(before) == 2


# -- storage -----------------------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path):
    store = FilesystemStorage(tmp_path / "store")
    store.create()
    return store


@pytest.mark.parametrize("bad", ["..", "1.2/../3", "1.2.3a", "", "1." + "9" * 64, "/etc"])
def test_layout_refuses_uids_unfit_for_a_path(storage, bad):
    with pytest.raises(InvalidInput):
        storage.layout("1.2.3", bad, "1.2.3.4")


def test_keep_never_overwrites_a_kept_file(storage, tmp_path):
    relative = storage.layout("1.2", "1.2.3", "1.2.3.4")
    first, second = tmp_path / "a", tmp_path / "b"
    first.write_bytes(b"first")
    second.write_bytes(b"second")
    kept_first = storage.keep(first, relative)
    kept_second = storage.keep(second, relative)
    assert kept_first == relative and kept_second != relative
    assert storage.absolute(kept_first).read_bytes() == b"first"
    assert storage.absolute(kept_second).read_bytes() == b"second"
    storage.remove(kept_second)
    assert not storage.absolute(kept_second).exists()


def test_keep_from_another_filesystem_copies(storage):
    source = "/dev/shm/archive-node-test-source"
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    with open(source, "wb") as fh:
        fh.write(b"x" * 1000)
    try:
        kept = storage.keep(Path(source), storage.layout("1", "1.1", "1.1.1"))
        assert storage.absolute(kept).read_bytes() == b"x" * 1000
        assert list(storage.incoming.iterdir()) == []
    finally:
        os.remove(source)


def test_sweep_removes_partial_transfers(storage):
    for name in ("tmpabc.dcm", "tmpdef.dcm"):
        (storage.incoming / name).write_bytes(b"partial")
    assert storage.sweep_incoming() == 2
    assert list(storage.incoming.iterdir()) == []


def test_a_node_sweeps_only_its_own_partial_transfers(storage):
    """Nodes sharing a store (NFS) each write in .incoming/<host>-<port>: one starting up must
    not remove another's transfers in progress. Loose files in .incoming itself (the CLI's,
    an earlier version's) go once they have not changed for a while."""
    shared = storage.root / ".incoming"
    other = shared / "other-host-11112"
    other.mkdir(parents=True)
    (other / "tmp-in-progress.dcm").write_bytes(b"another node's transfer")
    young, old = shared / "copy-young.dcm", shared / "copy-old.dcm"
    young.write_bytes(b"a CLI copy being made")
    old.write_bytes(b"left by a crash")
    an_hour_ago = os.stat(old).st_mtime - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    storage.use_node_directory("this-host-11112")
    assert storage.incoming == shared / "this-host-11112"
    storage.create()
    (storage.incoming / "tmp-mine.dcm").write_bytes(b"partial")
    assert storage.sweep_incoming() == 2  # its own, and the old loose file
    assert list(storage.incoming.iterdir()) == []
    assert (other / "tmp-in-progress.dcm").exists() and young.exists() and not old.exists()


def test_inspect_hashes_in_chunks(storage, tmp_path):
    import hashlib

    path = tmp_path / "big"
    data = os.urandom(3 * (1 << 20) + 17)
    path.write_bytes(data)
    facts = storage.inspect(path)
    assert facts.size == len(data)
    assert facts.sha256 == hashlib.sha256(data).hexdigest()


def test_absolute_refuses_paths_outside_the_store(storage):
    with pytest.raises(InvalidInput):
        storage.absolute("../../etc/passwd")


def test_a_store_reached_through_a_symlink_keeps_files(tmp_path):
    """storage.path may be a symlink (or hold ..): keeping walks up to the resolved root."""
    real = tmp_path / "real-store"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    storage = FilesystemStorage(tmp_path / "link" / ".." / "link")
    storage.create()
    source = tmp_path / "received.dcm"
    source.write_bytes(b"dataset")
    layout = storage.layout("1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert storage.keep(source, layout) == layout
    assert (real / layout).read_bytes() == b"dataset"
