"""The `archive-node` admin CLI, driven through click's CliRunner against real config files,
a real store directory and a real index (SQLite, and PostgreSQL where marked)."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import click
import pytest

from archive_node.cli import cli
from archive_node.config import CONFIG_ENV, INDEX_URL_ENV, example_toml, load_config
from archive_node.index import SCHEMA_VERSION
from archive_node.service import ArchiveService
from tests.helpers.cli import aes, cli_run, fails, hospitals, ok, write_config

EXAMPLE_CONFIG = Path(__file__).resolve().parents[2] / "config" / "archive-node.example.toml"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No config from the shell, and a scratch working directory: defaults never touch the repo."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cfg(tmp_path, sqlite_url) -> Path:
    """A config file on SQLite, not yet initialised."""
    return write_config(tmp_path, sqlite_url)


@pytest.fixture
def ready(cfg) -> Path:
    """An initialised index and store."""
    ok("--config", cfg, "init")
    return cfg


# -- init --------------------------------------------------------------------------------------


def test_init_creates_schema_and_store(cfg, tmp_path):
    result = ok("--config", cfg, "init")
    assert f"created index schema version {SCHEMA_VERSION}" in result.output
    assert f"store at {tmp_path / 'storage'}" in result.output
    assert (tmp_path / "storage").is_dir()
    assert (tmp_path / "index.sqlite3").is_file()
    # the index answers afterwards
    assert ok("--config", cfg, "hospital", "list").output.strip() == "(none)"


def test_init_again_says_current_and_keeps_data(ready):
    ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", ready)
    result = ok("--config", ready, "init")
    assert f"index schema version {SCHEMA_VERSION} is current" in result.output
    assert "created" not in result.output
    assert set(hospitals(ready)) == {"UNN"}


def test_init_demo_registers_demo_and_is_idempotent(cfg):
    first = ok("--config", cfg, "init", "--demo")
    assert "registered hospital DEMO" in first.output
    assert "registered AE DEMO_US" in first.output
    assert "registered AE DEMO_WS" in first.output
    assert set(hospitals(cfg)) == {"DEMO"}
    registered = aes(cfg)
    assert set(registered) == {"DEMO_US", "DEMO_WS"}
    assert registered["DEMO_US"]["allow"] == "echo,store"
    assert registered["DEMO_WS"]["allow"] == "echo,store,find,move,get"
    assert registered["DEMO_WS"]["port"] == 11113
    assert {ae["host"] for ae in registered.values()} == {"127.0.0.1"}

    second = ok("--config", cfg, "init", "--demo")
    assert "is current" in second.output
    assert "registered" not in second.output
    assert set(hospitals(cfg)) == {"DEMO"}
    assert aes(cfg) == registered


def test_init_demo_fills_in_what_is_missing(ready):
    ok("hospital", "add", "DEMO", "--name", "Mine", "--config", ready)
    result = ok("init", "--demo", "--config", ready)
    assert "registered hospital" not in result.output
    assert "registered AE DEMO_US" in result.output
    assert hospitals(ready)["DEMO"]["name"] == "Mine"
    assert set(aes(ready)) == {"DEMO_US", "DEMO_WS"}


def test_init_refuses_an_index_from_a_newer_release(ready, tmp_path):
    with sqlite3.connect(tmp_path / "index.sqlite3") as conn:
        conn.execute("UPDATE schema_info SET value = '99' WHERE key = 'version'")
    conn.close()
    line = fails("--config", ready, "init")
    assert "99" in line and "newer" in line
    line = fails("--config", ready, "hospital", "list")
    assert "99" in line


# -- commands before init ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["hospital", "list"],
        ["hospital", "add", "UNN", "--name", "University Hospital"],
        ["hospital", "remove", "UNN"],
        ["ae", "list"],
        ["ae", "add", "UNN_US", "--hospital", "UNN"],
        ["ae", "update", "UNN_US", "--disable"],
        ["ae", "remove", "UNN_US"],
        ["studies"],
        ["studies", "--json"],
    ],
    ids=lambda a: " ".join(a),
)
def test_commands_before_init_say_run_init(cfg, args):
    line = fails("--config", cfg, *args)
    assert "archive-node init" in line


# -- hospitals ---------------------------------------------------------------------------------


def test_hospital_crud(index_url, tmp_path):
    """The registry through the CLI, on SQLite and on PostgreSQL."""
    cfg = write_config(tmp_path, index_url)
    ok("--config", cfg, "init")

    added = ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", cfg)
    assert added.output.strip() == "added hospital UNN (University Hospital), issuer UNN"
    added = ok("hospital", "add", "NLSH", "--name", "Nordland", "--issuer", "NLSH-PID", "-c", cfg)
    assert "issuer NLSH-PID" in added.output

    table = ok("hospital", "list", "--config", cfg).output.splitlines()
    assert table[0].split() == [
        "CODE",
        "NAME",
        "ISSUER",
        "AE_COUNT",
        "STUDY_COUNT",
        "PLACEHOLDER_IDS",
    ]
    assert table[1].split()[0] == "NLSH"  # ordered by code
    assert "University Hospital" in table[2]
    assert len(table) == 3

    listed = hospitals(cfg)
    assert listed == {
        "NLSH": {
            "code": "NLSH",
            "name": "Nordland",
            "issuer": "NLSH-PID",
            "ae_count": 0,
            "study_count": 0,
            "placeholder_ids": [],
        },
        "UNN": {
            "code": "UNN",
            "name": "University Hospital",
            "issuer": "UNN",
            "ae_count": 0,
            "study_count": 0,
            "placeholder_ids": [],
        },
    }

    assert "already exists" in fails("hospital", "add", "UNN", "--name", "Again", "-c", cfg)
    assert hospitals(cfg)["UNN"]["name"] == "University Hospital"

    ok("ae", "add", "UNN_US", "--hospital", "UNN", "--config", cfg)
    assert hospitals(cfg)["UNN"]["ae_count"] == 1
    line = fails("hospital", "remove", "UNN", "--config", cfg)
    assert "UNN" in line and "AE" in line
    assert "UNN" in hospitals(cfg)

    ok("ae", "remove", "UNN_US", "--config", cfg)
    assert (
        ok("hospital", "remove", "UNN", "--config", cfg).output.strip() == "removed hospital UNN"
    )
    assert set(hospitals(cfg)) == {"NLSH"}

    assert "no hospital UNN" in fails("hospital", "remove", "UNN", "--config", cfg)


@pytest.mark.parametrize("code", ["", "_LEADING", "WITH SPACE", "X" * 17, "UNN/1"])
def test_hospital_add_bad_code(ready, code):
    line = fails("hospital", "add", code, "--name", "Somewhere", "--config", ready)
    assert "hospital code" in line
    assert hospitals(ready) == {}


def test_hospital_add_bad_name_and_issuer(ready):
    assert "name" in fails("hospital", "add", "UNN", "--name", "  ", "--config", ready)
    assert "issuer" in fails(
        "hospital", "add", "UNN", "--name", "U", "--issuer", "A\\B", "--config", ready
    )
    assert "issuer" in fails(
        "hospital", "add", "UNN", "--name", "U", "--issuer", "I" * 65, "--config", ready
    )
    assert hospitals(ready) == {}


def test_hospital_placeholder_ids(index_url, tmp_path):
    """Added, listed, changed and cleared through the CLI, on SQLite and on PostgreSQL."""
    cfg = write_config(tmp_path, index_url)
    ok("--config", cfg, "init")
    added = ok(
        "hospital",
        "add",
        "UNN",
        "--name",
        "U",
        "--placeholder-ids",
        " UNKNOWN , 000000",
        "-c",
        cfg,
    )
    assert (
        added.output.strip()
        == "added hospital UNN (U), issuer UNN, placeholder IDs UNKNOWN,000000"
    )
    assert hospitals(cfg)["UNN"]["placeholder_ids"] == ["UNKNOWN", "000000"]
    table = ok("hospital", "list", "--config", cfg).output.splitlines()
    assert table[1].split()[-1] == "UNKNOWN,000000"

    updated = ok("hospital", "update", "UNN", "--placeholder-ids", "UKJENT,UKJENT", "-c", cfg)
    assert updated.output.strip() == "updated hospital UNN (U), issuer UNN, placeholder IDs UKJENT"
    assert hospitals(cfg)["UNN"]["placeholder_ids"] == ["UKJENT"]
    renamed = ok("hospital", "update", "UNN", "--name", "University Hospital", "-c", cfg)
    assert "(University Hospital)" in renamed.output and "UKJENT" in renamed.output
    cleared = ok("hospital", "update", "UNN", "--placeholder-ids", "", "-c", cfg)
    assert cleared.output.strip().endswith("no placeholder IDs")
    assert hospitals(cfg)["UNN"]["placeholder_ids"] == []
    assert hospitals(cfg)["UNN"]["name"] == "University Hospital"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("UNKNOWN,,000000", "an empty item"),
        ("X" * 65, "more than 64 characters"),
        ("A\\B", "backslash or control character"),
        ("TAB\tBED", "backslash or control character"),
        (",".join(f"ID{n}" for n in range(21)), "21 values, at most 20"),
    ],
)
def test_hospital_bad_placeholder_ids(ready, value, message):
    line = fails("hospital", "add", "UNN", "--name", "U", "--placeholder-ids", value, "-c", ready)
    assert message in line and line.startswith("Error: --placeholder-ids")
    assert hospitals(ready) == {}
    ok("hospital", "add", "UNN", "--name", "U", "--placeholder-ids", "UNKNOWN", "-c", ready)
    line = fails("hospital", "update", "UNN", "--placeholder-ids", value, "-c", ready)
    assert message in line
    assert hospitals(ready)["UNN"]["placeholder_ids"] == ["UNKNOWN"]


def test_hospital_update_needs_a_change_and_a_hospital(ready):
    assert "nothing to change" in fails("hospital", "update", "UNN", "-c", ready)
    assert "no hospital UNN" in fails("hospital", "update", "UNN", "--name", "U", "-c", ready)
    ok("hospital", "add", "UNN", "--name", "U", "-c", ready)
    assert "name" in fails("hospital", "update", "UNN", "--name", " ", "-c", ready)
    assert "hospital code" in fails("hospital", "update", "UN N", "--name", "U", "-c", ready)


def test_hospital_add_needs_a_name(ready):
    result = cli_run("hospital", "add", "UNN", "--config", ready)
    assert result.exit_code == 2
    assert "--name" in result.output
    assert hospitals(ready) == {}


# -- application entities ----------------------------------------------------------------------


@pytest.fixture
def with_hospitals(ready) -> Path:
    ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", ready)
    ok("hospital", "add", "NLSH", "--name", "Nordland", "--config", ready)
    return ready


def test_ae_crud(index_url, tmp_path):
    """Add, update, list and remove AEs, on SQLite and on PostgreSQL."""
    cfg = write_config(tmp_path, index_url)
    ok("--config", cfg, "init")
    ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", cfg)
    ok("hospital", "add", "NLSH", "--name", "Nordland", "--config", cfg)

    added = ok("ae", "add", "UNN_US", "--hospital", "UNN", "--config", cfg)
    assert added.output.strip() == (
        "added AE UNN_US of UNN: allow echo,store, scope region, host any"
    )
    ok(
        "ae", "add", "NLSH_WS", "--hospital", "NLSH", "--host", "10.0.0.7", "--port", "11113",
        "--allow", "find, ECHO,move", "--scope", "hospital", "--description", "workstation",
        "--config", cfg,
    )  # fmt: skip

    listed = aes(cfg)
    assert listed["UNN_US"] == {
        "ae_title": "UNN_US",
        "hospital": "UNN",
        "issuer": "UNN",
        "host": "",
        "port": None,
        "allow": "echo,store",
        "scope": "region",
        "description": "",
        "enabled": True,
        "max_associations": None,
        "tls": "optional",
        "certificates": [],
    }
    assert listed["NLSH_WS"] == {
        "ae_title": "NLSH_WS",
        "hospital": "NLSH",
        "issuer": "NLSH",
        "host": "10.0.0.7",
        "port": 11113,
        "allow": "echo,find,move",
        "scope": "hospital",
        "description": "workstation",
        "enabled": True,
        "max_associations": None,
        "tls": "optional",
        "certificates": [],
    }
    assert set(aes(cfg, "--hospital", "UNN")) == {"UNN_US"}
    assert set(aes(cfg, "--hospital", "NLSH")) == {"NLSH_WS"}

    updated = ok("ae", "update", "NLSH_WS", "--disable", "--config", cfg)
    assert updated.output.strip().endswith("disabled")
    assert aes(cfg)["NLSH_WS"]["enabled"] is False
    ok("ae", "update", "NLSH_WS", "--enable", "--config", cfg)
    assert aes(cfg)["NLSH_WS"]["enabled"] is True

    ok("ae", "update", "NLSH_WS", "--port", "", "--host", "", "--config", cfg)
    row = aes(cfg)["NLSH_WS"]
    assert row["port"] is None and row["host"] == ""
    assert row["allow"] == "echo,find,move" and row["description"] == "workstation"

    ok("ae", "update", "NLSH_WS", "--port", "104", "--allow", "echo,get", "--config", cfg)
    row = aes(cfg)["NLSH_WS"]
    assert row["port"] == 104 and row["allow"] == "echo,get"

    ok("ae", "update", "NLSH_WS", "--hospital", "UNN", "--scope", "region", "--config", cfg)
    row = aes(cfg)["NLSH_WS"]
    assert row["hospital"] == "UNN" and row["issuer"] == "UNN" and row["scope"] == "region"
    assert set(aes(cfg, "--hospital", "UNN")) == {"NLSH_WS", "UNN_US"}

    assert "already exists" in fails("ae", "add", "UNN_US", "--hospital", "NLSH", "-c", cfg)

    assert ok("ae", "remove", "UNN_US", "--config", cfg).output.strip() == "removed AE UNN_US"
    assert set(aes(cfg)) == {"NLSH_WS"}
    assert "no AE UNN_US" in fails("ae", "remove", "UNN_US", "--config", cfg)


def test_ae_list_table(with_hospitals):
    assert ok("ae", "list", "--config", with_hospitals).output.strip() == "(none)"
    ok("ae", "add", "UNN_US", "--hospital", "UNN", "--port", "4006", "-c", with_hospitals)
    ok("ae", "add", "NLSH_CAM", "--hospital", "NLSH", "--host", "127.0.0.1", "-c", with_hospitals)
    lines = ok("ae", "list", "--config", with_hospitals).output.splitlines()
    assert lines[0].split() == [
        "AE_TITLE", "HOSPITAL", "HOST", "PORT", "ALLOW", "SCOPE", "ENABLED",
        "MAX_ASSOCIATIONS", "TLS", "CERTIFICATES", "DESCRIPTION",
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:]] == ["NLSH_CAM", "UNN_US"]  # by hospital
    assert "127.0.0.1" in lines[1] and "4006" in lines[2]
    only = ok("ae", "list", "--hospital", "UNN", "--config", with_hospitals).output.splitlines()
    assert [line.split()[0] for line in only[1:]] == ["UNN_US"]


def test_ae_max_associations_is_set_shown_changed_and_cleared(index_url, tmp_path):
    """--max-associations on add and update, in `ae list` and in the Peer the service gets
    for an association; update --max-associations 0 clears it. On both backends."""
    cfg = write_config(tmp_path, index_url)
    ok("--config", cfg, "init")
    ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", cfg)
    added = ok("ae", "add", "UNN_US", "--hospital", "UNN", "--max-associations", "3", "-c", cfg)
    assert added.output.strip().endswith(", at most 3 association(s) at once")
    assert aes(cfg)["UNN_US"]["max_associations"] == 3
    table = ok("ae", "list", "--config", cfg).output.splitlines()
    column = table[0].index("MAX_ASSOCIATIONS")  # empty cells: by position, not by split()
    assert table[1][column:].split()[0] == "3"
    assert peer_of(cfg, "UNN_US").max_associations == 3

    updated = ok("ae", "update", "UNN_US", "--max-associations", "1", "--config", cfg)
    assert updated.output.strip().endswith(", at most 1 association(s) at once")
    assert peer_of(cfg, "UNN_US").max_associations == 1
    ok("ae", "update", "UNN_US", "--disable", "--config", cfg)  # other changes keep it
    assert aes(cfg)["UNN_US"]["max_associations"] == 1

    cleared = ok("ae", "update", "UNN_US", "--max-associations", "0", "--config", cfg)
    assert "association(s) at once" not in cleared.output
    assert aes(cfg)["UNN_US"]["max_associations"] is None
    assert peer_of(cfg, "UNN_US").max_associations is None
    ok("ae", "add", "UNN_WS", "--hospital", "UNN", "--config", cfg)
    assert peer_of(cfg, "UNN_WS").max_associations is None  # the default: no limit of its own


def peer_of(cfg: Path, title: str):
    """The Peer the service looks up when `title` opens an association."""
    service = ArchiveService.from_config(load_config(cfg))
    try:
        _, peer = service.open_association("ARCHIVE", title, "127.0.0.1")
        assert peer is not None
        return peer
    finally:
        service.index.close()


@pytest.mark.parametrize(
    ("command", "value", "message"),
    [
        ("add", "0", "at least 1"),
        ("add", "-1", "at least 1"),
        ("update", "-2", "at least 1"),
        ("add", "two", "not a whole number"),
        ("update", "1.5", "not a whole number"),
        ("update", "", "not a whole number"),
    ],
)
def test_ae_max_associations_bad_values(with_hospitals, command, value, message):
    cfg = with_hospitals
    if command == "update":
        ok("ae", "add", "UNN_US", "--hospital", "UNN", "--max-associations", "2", "-c", cfg)
    args = ["--hospital", "UNN"] if command == "add" else []
    line = fails("ae", command, "UNN_US", *args, "--max-associations", value, "-c", cfg)
    assert "--max-associations" in line and message in line
    expected = {} if command == "add" else {"UNN_US": 2}
    assert {t: row["max_associations"] for t, row in aes(cfg).items()} == expected


def test_ae_add_unknown_service_is_named(with_hospitals):
    line = fails(
        "ae", "add", "X", "--hospital", "UNN", "--allow", "echo,fly", "-c", with_hospitals
    )
    assert "fly" in line
    line = fails("ae", "add", "X", "--hospital", "UNN", "--allow", "print", "-c", with_hospitals)
    assert "print" in line
    assert aes(with_hospitals) == {}


@pytest.mark.parametrize("title", ["A" * 17, "UNN\\US", "   ", "ÆØÅ"])
def test_ae_add_bad_title(with_hospitals, title):
    line = fails("ae", "add", title, "--hospital", "UNN", "--config", with_hospitals)
    assert "AE title" in line
    assert aes(with_hospitals) == {}


def test_ae_title_of_16_characters_is_fine(with_hospitals):
    ok("ae", "add", "A" * 16, "--hospital", "UNN", "--config", with_hospitals)
    assert set(aes(with_hospitals)) == {"A" * 16}


def test_ae_add_unknown_hospital(with_hospitals):
    assert "no hospital NOPE" in fails(
        "ae", "add", "X", "--hospital", "NOPE", "-c", with_hospitals
    )
    assert aes(with_hospitals) == {}


@pytest.mark.parametrize("port", ["70000", "0", "-1"])
def test_ae_add_bad_port(with_hospitals, port):
    line = fails("ae", "add", "X", "--hospital", "UNN", "--port", port, "-c", with_hospitals)
    assert port in line
    assert aes(with_hospitals) == {}


def test_ae_add_non_numeric_port_is_a_usage_error(with_hospitals):
    result = cli_run("ae", "add", "X", "--hospital", "UNN", "--port", "abc", "-c", with_hospitals)
    assert result.exit_code == 2
    assert "--port" in result.output
    assert aes(with_hospitals) == {}


def test_ae_add_bad_host(with_hospitals):
    line = fails(
        "ae", "add", "X", "--hospital", "UNN", "--host", "bad host!", "-c", with_hospitals
    )
    assert "bad host!" in line
    assert aes(with_hospitals) == {}


def test_ae_add_bad_scope_is_a_usage_error(with_hospitals):
    result = cli_run(
        "ae", "add", "X", "--hospital", "UNN", "--scope", "world", "-c", with_hospitals
    )
    assert result.exit_code == 2
    assert "world" in result.output
    assert aes(with_hospitals) == {}


def test_ae_update_errors_leave_the_row_alone(with_hospitals):
    cfg = with_hospitals
    ok("ae", "add", "UNN_WS", "--hospital", "UNN", "--port", "11113", "--config", cfg)
    before = aes(cfg)
    assert "70000" in fails("ae", "update", "UNN_WS", "--port", "70000", "--config", cfg)
    assert "abc" in fails("ae", "update", "UNN_WS", "--port", "abc", "--config", cfg)
    assert "fly" in fails("ae", "update", "UNN_WS", "--allow", "fly", "--config", cfg)
    assert "no hospital NOPE" in fails("ae", "update", "UNN_WS", "--hospital", "NOPE", "-c", cfg)
    assert "no AE NOPE" in fails("ae", "update", "NOPE", "--disable", "--config", cfg)
    assert "AE title" in fails("ae", "update", "A" * 17, "--disable", "--config", cfg)
    assert aes(cfg) == before


def test_ae_title_spaces_are_not_significant(with_hospitals):
    ok("ae", "add", "  UNN_US ", "--hospital", "UNN", "--config", with_hospitals)
    assert set(aes(with_hospitals)) == {"UNN_US"}
    ok("ae", "update", " UNN_US", "--disable", "--config", with_hospitals)
    assert aes(with_hospitals)["UNN_US"]["enabled"] is False
    ok("ae", "remove", "UNN_US  ", "--config", with_hospitals)
    assert aes(with_hospitals) == {}


# -- --config placement and bad configs ---------------------------------------------------------


def test_config_before_and_after_the_subcommand(ready, tmp_path):
    ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", ready)
    before = ok("--config", ready, "hospital", "list", "--json").output
    after = ok("hospital", "list", "--json", "--config", ready).output
    short = ok("-c", ready, "hospital", "list", "--json").output
    assert json.loads(before) == json.loads(after) == json.loads(short)
    assert [row["code"] for row in json.loads(before)] == ["UNN"]


def test_config_from_environment(ready, monkeypatch):
    ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", ready)
    monkeypatch.setenv(CONFIG_ENV, str(ready))
    rows = json.loads(ok("hospital", "list", "--json").output)
    assert [row["code"] for row in rows] == ["UNN"]


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nowhere.toml"
    for args in (["--config", missing, "hospital", "list"], ["hospital", "list", "-c", missing]):
        line = fails(*args)
        assert "nowhere.toml" in line and "no such config file" in line
    assert not (tmp_path / "var").exists()


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        pytest.param({"node": {"prot": 104}}, "node.prot", id="unknown-key"),
        pytest.param({"nodes": {"port": 104}}, "nodes", id="unknown-section"),
        pytest.param({"node": {"port": "104"}}, "node.port", id="wrong-type"),
        pytest.param({"storage": {"fsync": "yes"}}, "storage.fsync", id="wrong-type-bool"),
        pytest.param({"node": {"port": 70000}}, "node.port", id="out-of-range"),
        pytest.param({"storage": {"on_duplicate": "maybe"}}, "storage.on_duplicate", id="choice"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, sqlite_url, extra, key):
    cfg = write_config(tmp_path, sqlite_url, **extra)
    for args in (["--config", cfg, "init"], ["hospital", "list", "--config", cfg]):
        assert key in fails(*args)
    assert not (tmp_path / "index.sqlite3").exists()
    assert not (tmp_path / "storage").exists()


def test_invalid_toml_is_one_line(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[node\nport = 1\n", encoding="utf-8")
    line = fails("--config", cfg, "init")
    assert "broken.toml" in line and "TOML" in line


def test_unsupported_index_url_is_one_line(tmp_path):
    cfg = write_config(tmp_path, "mysql://localhost/archive")
    assert "index.url" in fails("--config", cfg, "init")


def test_index_url_environment_overrides_the_file(tmp_path, monkeypatch):
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/from-file.sqlite3")
    monkeypatch.setenv(INDEX_URL_ENV, f"sqlite:///{tmp_path}/from-env.sqlite3")
    ok("--config", cfg, "init")
    assert (tmp_path / "from-env.sqlite3").is_file()
    assert not (tmp_path / "from-file.sqlite3").exists()


def test_index_file_that_is_not_a_database_is_one_line(tmp_path):
    (tmp_path / "index.sqlite3").write_text("not a database\n", encoding="utf-8")
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path}/index.sqlite3")
    assert "not a database" in fails("--config", cfg, "init")
    assert "not a database" in fails("--config", cfg, "hospital", "list")


def test_init_with_unusable_storage_path_is_one_line(tmp_path, sqlite_url):
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    cfg = write_config(tmp_path, sqlite_url, storage={"path": str(tmp_path / "a-file" / "store")})
    line = fails("--config", cfg, "init")
    assert "storage.path" in line or "a-file" in line


def test_unreachable_postgresql_is_one_line(tmp_path):
    pytest.importorskip("psycopg2")
    with socket.socket() as sock:  # a port that nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = write_config(tmp_path, f"postgresql://postgres@127.0.0.1:{port}/archive")
    line = fails("--config", cfg, "hospital", "list")
    assert "index database error" in line


def test_echo_of_unknown_or_unreachable_ae_is_one_line(ready):
    ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", ready)
    ok("ae", "add", "UNN_US", "--hospital", "UNN", "--config", ready)
    assert "no AE NOPE" in fails("echo", "NOPE", "--config", ready)
    assert "no registered host and port" in fails("echo", "UNN_US", "--config", ready)


# -- config, studies, help ---------------------------------------------------------------------


def test_config_command_prints_the_example():
    result = ok("config")
    assert result.output == example_toml()
    if not EXAMPLE_CONFIG.exists():
        pytest.skip(f"{EXAMPLE_CONFIG} is absent")
    assert result.output == EXAMPLE_CONFIG.read_text(encoding="utf-8")


def test_config_command_shows_the_file_given_so_a_missing_one_is_an_error(tmp_path):
    """It printed the defaults whatever --config said (issue 22); tests/node/test_cli_config.py
    has the values in effect."""
    assert "no such config file" in fails("config", "--config", tmp_path / "nowhere.toml")


def test_studies_on_an_empty_index(ready):
    assert json.loads(ok("studies", "--json", "--config", ready).output) == []
    assert ok("studies", "--config", ready).output.strip() == "(none)"
    assert ok("studies", "--hospital", "UNN", "--json", "-c", ready).output.strip() == "[]"


def _walk(command: click.Command, path: tuple[str, ...] = ()):
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def test_every_command_has_help():
    walked = list(_walk(cli))
    names = {" ".join(path) for path, _ in walked}
    assert {"init", "hospital add", "hospital list", "ae update", "studies", "config"} <= names
    for path, command in walked:
        assert (command.help or "").strip(), f"{' '.join(path) or 'cli'} has no help"
        assert (command.get_short_help_str() or "").strip()
        result = cli_run(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith("Usage: archive-node"), (path, result.output)
        assert command.help.strip().splitlines()[0][:30] in " ".join(result.output.split())


def test_version():
    result = ok("--version")
    assert result.output.startswith("archive-node, version ")


def test_echo_calls_a_registered_ae_at_its_registered_address(ready):
    """`archive-node echo AET` takes host and port from the registry, not the command line."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    workstation = AE(ae_title="UNN_WS")
    workstation.add_supported_context(Verification)
    scp = workstation.start_server(("127.0.0.1", 0), block=False)
    try:
        port = scp.server_address[1]
        ok("hospital", "add", "UNN", "--name", "University Hospital", "--config", ready)
        ok(
            "ae",
            "add",
            "UNN_WS",
            "--hospital",
            "UNN",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--config",
            ready,
        )
        result = ok("echo", "UNN_WS", "--config", ready)
        assert f"C-ECHO UNN_WS at 127.0.0.1:{port}: status 0x0000" in result.output
    finally:
        scp.shutdown()


def test_serve_on_a_port_in_use_is_one_line(ready):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = fails("serve", "--bind", "127.0.0.1", "--port", str(port), "--config", ready)
    assert f"cannot listen on 127.0.0.1:{port}" in line


def test_init_leaves_transfers_in_progress_alone(ready, tmp_path):
    """init may run beside a serving node: it must not sweep .incoming (only serve does)."""
    ok("init", "--config", ready)
    incoming = next(tmp_path.rglob(".incoming"))
    partial = incoming / "tmp-in-progress.dcm"
    partial.write_bytes(b"half a video")
    ok("init", "--config", ready)
    assert partial.read_bytes() == b"half a video"


def test_find_refuses_bad_keys_in_one_line(cfg):
    assert "'Bogus' is not a DICOM keyword" in fails(
        "find", "--calling-aet", "UNN_WS", "-k", "Bogus=1", "--config", cfg
    )
    assert fails("find", "--calling-aet", "UNN_WS", "-k", "SeriesNumber=abc", "--config", cfg)


def test_move_refuses_bad_keys_in_one_line(cfg):
    args = ("--calling-aet", "UNN_WS", "--destination", "DEST", "--config", cfg)
    assert "'Bogus' is not a DICOM keyword" in fails("move", *args, "-k", "Bogus=1")
    assert "give a value" in fails("move", *args, "-k", "StudyInstanceUID")
