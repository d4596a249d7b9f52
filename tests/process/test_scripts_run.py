"""`scripts/run` starts offline once installed (issue 22, finding 5): its install step
(scripts/install) runs pip only when .venv is missing or setup.cfg, pyproject.toml or
constraints.txt changed since the last install. Before, every start reinstalled from the
package index, so a second start without network failed.

The script runs for real in a copy of the project in tmp_path, with a venv of its own whose
dependencies come from this test's environment (a .pth file), so the first install only builds
archive-node itself. The second run has no package index and no pip at all: it can only
succeed by not calling pip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STAMP = ".venv/.archive-node-install"
# pip with nowhere to install from: an index nothing listens on, no local wheels, no config
OFFLINE = {
    "PIP_NO_INDEX": "1",
    "PIP_INDEX_URL": "http://127.0.0.1:9/",
    "PIP_FIND_LINKS": "",
    "PIP_CONFIG_FILE": "/dev/null",
}


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of what scripts/install reads and installs, with a venv that already holds the
    dependencies (through a .pth file to this interpreter's site-packages)."""
    copy = tmp_path / "archive-node"
    (copy / "scripts").mkdir(parents=True)
    for name in ("setup.cfg", "pyproject.toml", "constraints.txt", "README.md"):
        shutil.copy2(REPO / name, copy / name)
    shutil.copy2(REPO / "scripts" / "install", copy / "scripts" / "install")
    shutil.copytree(
        REPO / "archive_node", copy / "archive_node", ignore=shutil.ignore_patterns("__pycache__")
    )
    subprocess.run([sys.executable, "-m", "venv", str(copy / ".venv")], check=True, timeout=120)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = copy / ".venv" / "lib" / version / "site-packages"
    (site / "shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return copy


def install(project: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_NODE_")}
    return subprocess.run(
        [str(project / "scripts" / "install")],
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def without_pip(tmp_path: Path) -> dict[str, str]:
    """An environment in which `python -m pip` cannot run: a `pip` package first on
    PYTHONPATH that says it was called and fails (pip also stands in the site-packages the
    venv shares)."""
    shadow = tmp_path / "no-pip" / "pip"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    (shadow / "__main__.py").write_text("raise SystemExit('pip was called')\n")
    return {"PYTHONPATH": str(shadow.parent)}


def test_a_second_start_installs_nothing_and_works_offline(project, tmp_path):
    first = install(project)
    assert first.returncode == 0, first.stderr
    stamp = (project / STAMP).read_text()
    node = project / ".venv" / "bin" / "archive-node"
    assert node.is_file()

    no_pip = without_pip(tmp_path)
    started = time.monotonic()
    second = install(project, **OFFLINE, **no_pip)
    assert second.returncode == 0, second.stderr
    assert second.stdout == second.stderr == ""
    assert time.monotonic() - started < 5
    assert (project / STAMP).read_text() == stamp
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, check=False)
    assert version.returncode == 0 and "archive-node" in version.stdout

    # a changed constraints.txt is an install that is out of date: pip is called (here it
    # fails), and no stamp claims the venv current
    with open(project / "constraints.txt", "a") as fh:
        fh.write("# changed\n")
    third = install(project, **OFFLINE, **no_pip)
    assert third.returncode != 0
    assert "pip was called" in third.stderr
    assert not (project / STAMP).exists()


def test_scripts_run_installs_through_scripts_install():
    """scripts/run has one install step, scripts/install, and no pip of its own."""
    run = (REPO / "scripts" / "run").read_text()
    commands = [line.strip() for line in run.splitlines() if not line.startswith("#")]
    assert "scripts/install" in commands
    assert commands.index("scripts/install") < commands.index(".venv/bin/archive-node init --demo")
    assert not re.search(r"\bpip\b", run)
