"""The systemd unit and the README's recipe that installs it (issue 22, finding 2).

The recipe failed as written on Debian 12: `useradd --system` made no home directory and
`init` ran, by hand, before the unit's StateDirectory existed (`Error: index.url: cannot create
...: Permission denied`). Now the unit runs `init` itself (ExecStartPre), as its user, in its
StateDirectory and sandbox. These tests check the unit with `systemd-analyze verify` where it
is installed, and that the recipe's commands agree with the unit: user, directories, the
venv, the config file, and no `init` run by hand before the unit has made its directory.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "archive-node.service"
README = REPO / "README.md"


def unit_settings() -> dict[str, list[str]]:
    """Every Key=Value of the unit, by key (a key may be given more than once)."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def one(key: str) -> str:
    values = unit_settings().get(key, [])
    assert len(values) == 1, (key, values)
    return values[0]


def recipe() -> list[list[str]]:
    """The commands of the README's "Running under systemd" recipe (its first sh block),
    continuation lines joined, comments left out, each split as the shell would."""
    text = README.read_text()
    section = text.split("### Running under systemd", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block in the systemd section"
    joined = block.group(1).replace("\\\n", " ")
    return [
        shlex.split(line, comments=True)
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def option(command: list[str], *names: str) -> str:
    for i, word in enumerate(command):
        for name in names:
            if word == name:
                return command[i + 1]
            if word.startswith(f"{name}="):
                return word.split("=", 1)[1]
    raise AssertionError(f"none of {names} in {command}")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    """`systemd-analyze verify` checks every key and that the commands exist: the venv's
    archive-node stands in for /opt/archive-node's (the only change)."""
    installed = "/opt/archive-node/.venv/bin/archive-node"
    here = str(Path(sys.executable).with_name("archive-node"))
    assert Path(here).is_file(), here
    copy = tmp_path / "archive-node.service"
    copy.write_text(UNIT.read_text().replace(installed, here))
    proc = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    # unknown keys and bad values are only warnings: none may be printed
    assert proc.stdout.strip() == proc.stderr.strip() == "", proc.stderr


def test_the_unit_runs_init_as_its_user_in_its_state_directory():
    executable = one("ExecStart").split()[0]
    assert one("ExecStart") == f"{executable} serve"
    assert one("ExecStartPre") == f"{executable} init"
    state = one("StateDirectory")
    assert one("WorkingDirectory") == f"/var/lib/{state}"
    assert one("StateDirectoryMode") == "0700"
    assert f"/var/lib/{state}" in one("ReadWritePaths").split()
    assert one("User") == one("Group") == "archive-node"


def test_the_readme_recipe_agrees_with_the_unit():
    commands = recipe()
    names = [c[0] for c in commands]
    # the user the unit runs as, with the unit's directory as its home (made by systemd)
    (useradd,) = [c for c in commands if c[0] == "useradd"]
    assert "--system" in useradd and useradd[-1] == one("User")
    assert option(useradd, "--home-dir", "--home", "-d") == one("WorkingDirectory")
    # the venv whose archive-node the unit runs, installed with the PostgreSQL driver
    (venv,) = [c for c in commands if c[:3] == ["python3", "-m", "venv"]]
    assert f"{venv[3]}/bin/archive-node" == one("ExecStart").split()[0]
    (pip,) = [c for c in commands if c[0] == f"{venv[3]}/bin/pip"]
    assert any(word.endswith("[postgresql]") for word in pip), pip
    # the config file the unit names, readable by the unit's group
    config = one("Environment").removeprefix("ARCHIVE_NODE_CONFIG=")
    installs = [c for c in commands if c[0] == "install" and c[-1] == config]
    assert len(installs) == 1 and option(installs[0], "-g") == one("Group")
    assert all(Path(word).is_absolute() for word in installs[0][1:] if "/" in word)
    # this unit file is the one installed
    (cp,) = [c for c in commands if c[0] == "cp"]
    assert cp[1].endswith("/systemd/archive-node.service")
    assert cp[2].rstrip("/") == "/etc/systemd/system"
    # no `init` by hand before the unit's first start made its directory: the unit runs it
    start = next(i for i, c in enumerate(commands) if c[:2] == ["systemctl", "enable"])
    assert not any("init" in c for c in commands[:start] if "archive-node" in " ".join(c)), names
    assert "--now" in commands[start]
