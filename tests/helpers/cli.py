"""The `archive-node` CLI for tests: config files written from dicts, commands run by CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from archive_node.cli import cli
from archive_node.index.database import database
from tests.helpers.environment import FAST_PATHS


def toml_text(data: dict[str, dict[str, object]]) -> str:
    lines = []
    for section, table in data.items():
        lines.append(f"[{section}]")
        for key, value in table.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, str):
                lines.append(f"{key} = {json.dumps(value)}")
            else:
                lines.append(f"{key} = {value!r}")
        lines.append("")
    return "\n".join(lines)


def write_config(tmp_path: Path, index_url: str, name: str = "archive-node.toml", **extra) -> Path:
    data: dict[str, dict[str, object]] = {
        "node": {"ae_title": "ARCHIVE", "port": 11112, "fast_paths": FAST_PATHS},
        "storage": {"path": str(tmp_path / "storage"), "min_free_mb": 0, "fsync": False},
        "index": {"url": index_url, "busy_timeout": 5.0},
        "log": {"level": "WARNING"},
        "metrics": {"port": 0},
    }
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    path = tmp_path / name
    path.write_text(toml_text(data), encoding="utf-8")
    return path


def cli_run(*args: str | Path) -> Result:
    """Run a command in this process. Its index is bound to the one table proxy of the
    process (index/database.py): a node served by the test gets back its own afterwards, or
    its writes would go through the command's closed database beside its own transaction."""
    serving = database.obj
    try:
        return CliRunner().invoke(cli, [str(a) for a in args], prog_name="archive-node")
    finally:
        if serving is not None and database.obj is not serving:
            database.initialize(serving)


def ok(*args: str | Path) -> Result:
    result = cli_run(*args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def fails(*args: str | Path) -> str:
    """Run a command that must fail with a one-line error and no traceback; return the line."""
    result = cli_run(*args)
    assert result.exit_code != 0, (args, result.output)
    # a ClickException exits via SystemExit; anything else escaped the error handling
    assert isinstance(result.exception, SystemExit), (args, result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, (args, result.output)
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def hospitals(cfg: Path) -> dict[str, dict]:
    rows = json.loads(ok("hospital", "list", "--json", "--config", cfg).output)
    return {row["code"]: row for row in rows}


def aes(cfg: Path, *extra: str) -> dict[str, dict]:
    rows = json.loads(ok("ae", "list", "--json", "--config", cfg, *extra).output)
    return {row["ae_title"]: row for row in rows}
