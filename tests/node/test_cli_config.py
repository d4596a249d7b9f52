"""`archive-node config` shows the config in effect, `config check` finds every problem of a
file, and a repeated `-k` is an error (issue 22, finding 7); through click's CliRunner."""

from __future__ import annotations

import dataclasses
import os
import tomllib

import pytest

from archive_node.config import (
    CONFIG_ENV,
    INDEX_URL_ENV,
    build_config,
    check_config_file,
    config_problems,
    example_toml,
    load_config,
)
from tests.helpers.cli import cli_run, fails, ok, toml_text, write_config


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


def _file(tmp_path, text: str, name: str = "node.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _same(a, b) -> bool:
    return dataclasses.replace(a, source="") == dataclasses.replace(b, source="")


# -- config: the values in effect ----------------------------------------------------------------


def test_config_without_a_file_prints_the_defaults_as_before():
    assert ok("config").output == example_toml()


@pytest.mark.parametrize("where", ["before", "after", "environment"])
def test_config_prints_the_effective_values_of_the_file_given(tmp_path, monkeypatch, where):
    cfg = _file(
        tmp_path,
        toml_text(
            {
                "node": {"ae_title": "RPACS", "port": 4242, "fast_paths": ["reactor"]},
                "storage": {"path": str(tmp_path / "store"), "on_duplicate": "replace"},
                "query": {"max_results": 77},
                "log": {"format": "json"},
            }
        ),
    )
    if where == "before":
        output = ok("--config", cfg, "config").output
    elif where == "after":
        output = ok("config", "--config", cfg).output
    else:
        monkeypatch.setenv(CONFIG_ENV, str(cfg))
        output = ok("config").output
    assert output != example_toml()
    assert 'ae_title = "RPACS"' in output and "port = 4242" in output
    assert 'fast_paths = ["reactor"]' in output and "max_results = 77" in output
    assert f"# archive-node configuration in effect: {cfg}" in output
    assert "# Our AE title" in output  # the help comments stay
    # valid TOML that loads back to the same Config
    printed = _file(tmp_path, output, "printed.toml")
    assert _same(load_config(printed), load_config(cfg))
    tomllib.loads(output)


def test_config_masks_an_index_password(tmp_path):
    cfg = _file(
        tmp_path,
        toml_text({"index": {"url": "postgresql://archive:s3cret-pw@db.example:5432/archive"}}),
    )
    output = ok("config", "--config", cfg).output
    assert "s3cret-pw" not in output
    assert 'url = "postgresql://archive:***@db.example:5432/archive"' in output
    loaded = build_config(tomllib.loads(output))
    assert loaded.index.url == "postgresql://archive:***@db.example:5432/archive"
    assert _same(
        dataclasses.replace(loaded, index=load_config(cfg).index), load_config(cfg)
    )  # all but the masked password loads back


def test_config_shows_the_index_url_of_the_environment_masked(tmp_path, monkeypatch):
    monkeypatch.setenv(INDEX_URL_ENV, "postgresql://archive:envpw@db/archive?password=qpw")
    output = ok("config").output
    assert "envpw" not in output and "qpw" not in output
    assert f"# In effect from {INDEX_URL_ENV}" in output
    assert 'url = "postgresql://archive:***@db/archive?password=***"' in output


def test_config_of_a_missing_or_bad_file_is_one_line(tmp_path):
    assert "no such config file" in fails("config", "--config", tmp_path / "nowhere.toml")
    bad = _file(tmp_path, "[node]\nport = 70000\n")
    assert "node.port" in fails("config", "--config", bad)


def test_strings_that_need_escapes_round_trip(tmp_path):
    cfg = _file(
        tmp_path,
        toml_text({"storage": {"path": str(tmp_path / 'a "quoted" \\ dir ø')}}),
    )
    printed = _file(tmp_path, ok("config", "--config", cfg).output, "printed.toml")
    assert load_config(printed).storage.path == tmp_path / 'a "quoted" \\ dir ø'


# -- config check --------------------------------------------------------------------------------


def test_check_of_a_good_file(tmp_path, sqlite_url):
    cfg = write_config(tmp_path, sqlite_url)
    result = ok("config", "check", cfg)
    assert result.output == f"ok: {cfg}\n"
    assert ok("--config", cfg, "config", "check").output == f"ok: {cfg}\n"
    assert ok("config", "check", "--config", cfg).output == f"ok: {cfg}\n"


def test_check_of_the_shipped_example(tmp_path):
    """Its storage.path is var/storage, relative to the working directory: it needs ./var."""
    cfg = _file(tmp_path, example_toml(), "example.toml")
    (line,) = _problems(cfg)
    assert line == "storage.path: var/storage: its parent directory does not exist"
    (tmp_path / "var").mkdir()
    assert ok("config", "check", cfg).output == f"ok: {cfg}\n"


def _problems(path) -> list[str]:
    result = cli_run("config", "check", path)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return result.output.splitlines()


def test_check_reports_every_problem_one_a_line(tmp_path):
    cfg = _file(
        tmp_path,
        toml_text(
            {
                "nodes": {"port": 1},  # unknown section
                "node": {
                    "port": "11112",  # wrong type
                    "max_associations": 0,  # below the minimum
                    "colour": "blue",  # unknown key
                },
                "storage": {
                    "on_duplicate": "overwrite",  # not a choice
                    "path": str(tmp_path / "no" / "such" / "store"),  # no parent
                },
                "index": {"url": "mysql://db/archive"},  # unknown scheme
                "log": {"level": "CHATTY"},
                "tls": {"port": 2762},  # without its files
            }
        ),
    )
    lines = _problems(cfg)
    expected = [
        "[nodes]: unknown section",
        "node.colour: unknown key",
        "node.port: expected int, got str '11112'",
        "node.max_associations: 0 is below the minimum 1",
        "storage.on_duplicate: 'overwrite' is not one of keep, replace",
        "log.level: 'CHATTY' is not one of DEBUG, INFO, WARNING, ERROR",
        "tls.certificate: must be set when tls.port is set",
        "tls.private_key: must be set when tls.port is set",
        "tls.ca_certificates: must be set when tls.port is set",
        "index.url: unsupported scheme 'mysql' (sqlite or postgresql)",
        "storage.path: ",
    ]
    assert len(lines) == len(expected), lines
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), (line, start)
    assert lines[-1].endswith("its parent directory does not exist")
    # load_config still stops at the first, with one line
    assert "[nodes]: unknown section" in fails("config", "--config", cfg)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"node": {"port": -1}}, "node.port: -1 is below the minimum 0"),
        ({"node": {"port": 65536}}, "node.port: 65536 is above the maximum 65535"),
        ({"node": {"fast_paths": ["warp"]}}, "node.fast_paths: 'warp' is not a speed patch"),
        ({"node": {"uid_root": "1.2.abc"}}, "node.uid_root: '1.2.abc' is not a UID root"),
        ({"node": {"ae_title": "A\\B"}}, "node.ae_title: "),
        ({"node": {"acse_timeout": True}}, "node.acse_timeout: expected float, got bool"),
        ({"storage": {"fsync": "yes"}}, "storage.fsync: expected bool, got str"),
        ({"log": {"format": "xml"}}, "log.format: 'xml' is not one of text, json"),
        ({"node": "ARCHIVE"}, "node: expected a table [node]"),
        ({"index": {"url": "var/index.sqlite3"}}, "index.url: unsupported scheme ''"),
        (
            {"audit": {"repository": "http://x:1"}},
            "audit.repository: 'http://x:1' is not tls://host:port",
        ),
        ({"audit": {"repository": "tcp://x:70000"}}, "audit.repository: port 70000 is out of"),
        (
            {"audit": {"repository": "tls://x:6514"}},
            "audit.ca_certificates: must be set for a tls:// repository",
        ),
        ({"audit": {"certificate": "a.pem"}}, "audit.certificate and audit.private_key"),
    ],
)
def test_each_kind_of_value_problem(data, problem):
    problems = config_problems(data)
    assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_problems_of_the_files_named(tmp_path, pki):
    unreadable = _file(tmp_path, "-----BEGIN CERTIFICATE-----\n", "unreadable.pem")
    unreadable.chmod(0)
    not_pem = _file(tmp_path, "hello", "not.pem")
    (tmp_path / "a-file").write_text("x")
    cfg = _file(
        tmp_path,
        toml_text(
            {
                "tls": {
                    "port": 2762,
                    "certificate": str(tmp_path / "missing.pem"),
                    "private_key": str(pki.node.certificate),  # a certificate, not a key
                    "ca_certificates": str(not_pem),
                },
                "audit": {
                    "repository": "tls://audit.example:6514",
                    "ca_certificates": str(pki.node.ca),  # good
                    "certificate": str(unreadable),
                    "private_key": str(pki.node.private_key),  # good
                },
                "storage": {"path": str(tmp_path / "a-file")},
            }
        ),
    )
    lines = _problems(cfg)
    expected = [
        f"tls.certificate: {tmp_path / 'missing.pem'}: no such file",
        f"tls.private_key: {pki.node.certificate}: no PEM private key in it",
        f"tls.ca_certificates: {not_pem}: no PEM certificate in it",
        f"storage.path: {tmp_path / 'a-file'}: not a directory",
    ]
    if os.geteuid() != 0:  # root reads a file of mode 0
        expected.insert(3, f"audit.certificate: {unreadable}: cannot read: Permission denied")
    assert lines == expected


def test_good_tls_files_and_a_directory_of_cas(tmp_path, pki):
    cfg = _file(
        tmp_path,
        toml_text(
            {
                "tls": {
                    "port": 2762,
                    "certificate": str(pki.node.certificate),
                    "private_key": str(pki.node.private_key),
                    "ca_certificates": str(pki.node.ca.parent),  # a directory is taken
                },
                "storage": {"path": str(tmp_path / "store")},  # absent, its parent exists
            }
        ),
    )
    assert ok("config", "check", cfg).output == f"ok: {cfg}\n"
    assert check_config_file(cfg) == []


def test_check_of_an_unreadable_or_missing_file_is_its_problem(tmp_path):
    assert _problems(tmp_path / "nowhere.toml") == [
        f"{tmp_path / 'nowhere.toml'}: no such config file"
    ]
    broken = _file(tmp_path, "[node\n")
    (line,) = _problems(broken)
    assert line.startswith(f"{broken}: not valid TOML")


def test_check_without_any_file_says_how_to_give_one():
    assert "give a FILE" in fails("config", "check")


# -- find and move: one -k per keyword -----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["find", "--calling-aet", "UNN_WS", "-k", "PatientName=bjørn*", "-k", "PatientName"],
        ["find", "--calling-aet", "UNN_WS", "-k", "PatientID=1", "-k", " PatientID=2"],
        [
            "move",
            "--calling-aet",
            "UNN_WS",
            "--destination",
            "UNN_WS",
            "-k",
            "StudyInstanceUID=1.2.3",
            "-k",
            "StudyInstanceUID=1.2.4",
        ],
    ],
    ids=["find-match-then-return", "find-two-values", "move"],
)
def test_a_repeated_key_is_an_error(tmp_path, sqlite_url, args):
    """Refused before any association: no node runs here (a silent replacement would have
    reached for one)."""
    cfg = write_config(tmp_path, sqlite_url)
    line = fails(*args, "--config", cfg)
    assert "is given twice" in line
