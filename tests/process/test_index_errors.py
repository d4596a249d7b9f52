"""The CLI against an index that is not there (issue 22, findings 3 and 4): run as a person
would, in a subprocess from some directory, a read-only command creates no index file and no
directory, and its one-line error names the index it opened (password hidden); a PostgreSQL
index.url without psycopg2 installed is one line naming the fix, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from archive_node.index.database import POSTGRESQL_DRIVER_FIX
from tests.helpers.postgres import reset_pg
from tests.helpers.serving_process import child_env

# Every command that reads the index (and some that write to an existing one): none may
# create it. `init` and `reindex` are the two that do.
READING_COMMANDS = [
    ["studies"],
    ["hospital", "list"],
    ["ae", "list"],
    ["ae", "add", "X_US", "--hospital", "UNN", "--host", "127.0.0.1"],
    ["verify"],
    ["commitments"],
    ["audit", "--patient", "PID1"],
    ["hl7", "senders"],
    ["orders"],
    ["serve", "--port", "0"],
]


def run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archive_node", *args],
        cwd=cwd,
        env=env or child_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


@pytest.mark.parametrize("args", READING_COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_a_reading_command_elsewhere_creates_no_index(tmp_path, args):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    line = one_error_line(run(elsewhere, *args))
    assert list(elsewhere.iterdir()) == [], "the command made files or directories"
    assert "sqlite:///var/index.sqlite3" in line, line
    assert str(elsewhere / "var" / "index.sqlite3") in line, line
    assert "run `archive-node init`" in line, line


def test_an_empty_sqlite_file_is_named_with_its_path(tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "index.sqlite3").touch()  # made by an earlier release's `studies`
    line = one_error_line(run(tmp_path, "studies"))
    assert line == (
        f"Error: index sqlite:///var/index.sqlite3 ({tmp_path}/var/index.sqlite3) has no "
        "schema: run `archive-node init` first"
    )


def test_init_creates_the_index_where_index_url_says(tmp_path):
    proc = run(tmp_path, "init")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "var" / "index.sqlite3").is_file()
    assert run(tmp_path, "studies").returncode == 0


def test_a_postgresql_index_without_schema_is_named_without_its_password(tmp_path, pg_url):
    reset_pg(pg_url)
    scheme, rest = pg_url.split("://", 1)
    user, host = rest.split("@", 1)
    with_password = f"{scheme}://{user.split(':')[0]}:s3cret-word@{host}"
    env = {**child_env(), "ARCHIVE_NODE_INDEX_URL": with_password}
    line = one_error_line(run(tmp_path, "studies", env=env))
    assert "s3cret-word" not in line
    assert f"index {scheme}://{user.split(':')[0]}:***@{host} has no schema" in line, line
    assert "run `archive-node init`" in line


@pytest.fixture
def without_psycopg2(tmp_path) -> Path:
    """A PYTHONPATH directory whose psycopg2 (and psycopg 3) cannot be imported: the driver
    missing, as on a machine where the `postgresql` extra was not installed."""
    shadow = tmp_path / "no-driver"
    for name in ("psycopg2", "psycopg"):
        package = shadow / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(f"raise ImportError('No module named {name}')\n")
    return shadow


@pytest.mark.parametrize(
    "args",
    [
        ["init"],
        ["serve"],
        ["studies"],
        ["verify"],
        ["reindex"],
        ["hospital", "add", "UNN", "--name", "U"],
    ],
    ids=lambda a: "-".join(a),
)
def test_postgresql_without_its_driver_is_one_line_naming_the_fix(
    tmp_path, without_psycopg2, args
):
    env = {
        **child_env(),
        "PYTHONPATH": str(without_psycopg2),
        "ARCHIVE_NODE_INDEX_URL": "postgresql://postgres@127.0.0.1:5432/test",
    }
    hidden = subprocess.run(
        [sys.executable, "-c", "import psycopg2"], env=env, capture_output=True, check=False
    )
    assert hidden.returncode != 0, "psycopg2 is still importable"
    line = one_error_line(run(tmp_path, *args, env=env))
    assert line.endswith(POSTGRESQL_DRIVER_FIX), line
    assert "psycopg2" in line
    assert POSTGRESQL_DRIVER_FIX == "pip install 'archive-node[postgresql]'"
