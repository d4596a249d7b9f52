"""The README's command examples, run as written against a real `serve` with DCMTK and the
bundled client, and what they print compared with what the README shows: an example that stops
working, or prints otherwise, fails here (issue 22, finding 9).

An example is a ```sh block after a `<!-- example -->` line. In a block with `$ ` prompts each
prompt is a command and the lines after it are what it prints: each shown line must appear, in
order, among the lines printed (`...` in a line stands for anything, runs of spaces for any
spaces); a command whose shown output has an `F:` or `Error:` line must fail, any other must
succeed. In a block without prompts every line is a command. The commands run in one shell
each, in README order, against one node made as `scripts/run` makes it (`init --demo`), with
only these stand-ins: the node's port for 11112, that of DEMO_WS's storage SCP (a DCMTK
storescp) for 11113, the node's directory for /path/to/archive-node, a directory of two
synthetic instances for some/dicom/dir, and `archive-node` for `.venv/bin/archive-node`. PATH
holds DCMTK's tools, never pynetdicom's apps of the same names.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import dicom_objects
from tests.helpers.dcmtk import dcmtk
from tests.helpers.environment import FAST_PATHS
from tests.helpers.ports import LOOPBACK, free_port
from tests.helpers.serving_process import START_DEADLINE, STOP_DEADLINE
from tests.interop.test_interop_retrieve import start_storescp

pytestmark = [
    pytest.mark.dcmtk,
    pytest.mark.skipif(dcmtk("findscu") is None, reason="DCMTK not installed"),
]

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = "<!-- example -->"
# the study the README's retrieve examples name
STUDY_UID = "1.2.826.0.1.3680043.8.498.1234"


@dataclass
class Example:
    line: int  # where the command starts in README.md
    command: str
    shown: list[str] = field(default_factory=list)

    @property
    def must_fail(self) -> bool:
        return any(s.lstrip().startswith(("F:", "Error:")) for s in self.shown)


def readme_examples(text: str) -> list[Example]:
    """Every command of the marked blocks, in order, with the output shown after it."""
    lines = text.splitlines()
    found: list[Example] = []
    for number, line in enumerate(lines):
        if line.strip() != MARK:
            continue
        assert lines[number + 1].startswith("```sh"), (
            f"README.md:{number + 1}: {MARK} before ```sh"
        )
        block = []
        for offset, text_line in enumerate(lines[number + 2 :], number + 3):
            if text_line.startswith("```"):
                break
            block.append((offset, text_line))
        found += _commands(block)
    return found


def _commands(block: list[tuple[int, str]]) -> list[Example]:
    prompts = any(text.startswith("$ ") for _, text in block)
    examples: list[Example] = []
    lines = iter(block)
    for number, text in lines:
        if prompts and not text.startswith("$ "):
            if examples and text.strip():
                examples[-1].shown.append(text)
            continue
        command = text[2:] if prompts else text
        while command.endswith("\\"):
            command = command[:-1] + " " + next(lines)[1].strip()
        if command.strip():
            examples.append(Example(number, command.strip()))
    return examples


def shown_matches(shown: str, printed: str) -> bool:
    """Whether a printed line is the shown one: `...` stands for anything, runs of spaces for
    any spaces (no regular expression: a long line cannot make it backtrack)."""
    shown, printed = " ".join(shown.split()), " ".join(printed.split())
    pieces = shown.split("...")
    if not printed.startswith(pieces[0]) or not printed.endswith(pieces[-1]):
        return False
    if len(pieces) == 1:
        return printed == shown
    position = len(pieces[0])
    for piece in pieces[1:-1]:
        found = printed.find(piece, position)
        if found < 0:
            return False
        position = found + len(piece)
    return len(printed) - len(pieces[-1]) >= position


def missing_lines(shown: list[str], printed: str) -> list[str]:
    """The shown lines not found, in order, among the printed ones."""
    printed_lines = [line.strip() for line in printed.splitlines()]
    position, missing = 0, []
    for line in shown:
        if line.strip() == "...":
            continue
        for index in range(position, len(printed_lines)):
            if shown_matches(line, printed_lines[index]):
                position = index + 1
                break
        else:
            missing.append(line)
    return missing


def test_the_examples_are_found():
    examples = readme_examples(README.read_text())
    commands = " ".join(e.command for e in examples)
    for tool in ("echoscu", "storescu", "findscu", "movescu", "getscu", "archive-node send"):
        assert tool in commands, f"no README example runs {tool}"


@pytest.fixture
def demo_node(tmp_path):
    """A node as scripts/run makes it: `init --demo`, then `serve`; the shell to run the
    README's commands in."""
    root = tmp_path / "node"
    root.mkdir()
    port = free_port()
    # DEMO_WS's own storage SCP, as a workstation runs one: DCMTK's storescp
    workstation = start_storescp(tmp_path / "workstation", tmp_path / "workstation.log")
    workstation_port = workstation.port
    config = root / "archive-node.toml"
    config.write_text(
        f"[node]\nport = {port}\nfast_paths = {'true' if FAST_PATHS else 'false'}\n"
        f"[storage]\nmin_free_mb = 0\n[metrics]\nport = 0\n"
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "archive-node"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m archive_node "$@"\n')
    wrapper.chmod(0o755)
    tools = {str(Path(dcmtk(tool) or "").parent) for tool in ("echoscu", "findscu")}
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVE_NODE_", "VIRTUAL_ENV"))
    }
    env.update(
        ARCHIVE_NODE_CONFIG=str(config),
        PATH=os.pathsep.join([str(bin_dir), *sorted(tools), "/usr/bin", "/bin"]),
        PYTHONPATH=str(README.parent),
        PYTHONUNBUFFERED="1",
    )
    corpus = root / "some" / "dicom" / "dir"
    _write_corpus(corpus)
    shell = Shell(
        root,
        env,
        {"11112": str(port), "11113": str(workstation_port), "/path/to/archive-node": str(root)},
    )
    init = shell.run("archive-node init --demo")
    assert init.returncode == 0, init.stdout + init.stderr
    shell.run(f"archive-node ae update DEMO_WS --port {workstation_port}")
    log = open(root / "serve.log", "wb")  # noqa: SIM115 - closed below
    serve = subprocess.Popen(
        ["archive-node", "serve"], cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        _wait_for_echo(shell, port, serve)
        yield shell, init.stdout, root / "serve.log"
    finally:
        serve.terminate()
        try:
            serve.wait(timeout=STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            serve.kill()
            serve.wait()
        log.close()
        workstation.stop()


class Shell:
    def __init__(self, cwd: Path, env: dict[str, str], ports: dict[str, str]) -> None:
        self.cwd, self.env, self.ports = cwd, env, ports

    def stand_in(self, text: str) -> str:
        text = text.replace(".venv/bin/archive-node", "archive-node")
        for written, real in self.ports.items():
            text = text.replace(written, real)
        return text

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["/bin/sh", "-c", self.stand_in(command)],
            cwd=self.cwd,
            env={**self.env, "LC_ALL": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def _wait_for_echo(shell: Shell, port: int, serve: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        assert serve.poll() is None, "serve exited"
        if shell.run(f"echoscu -aet DEMO_US -aec ARCHIVE {LOOPBACK} {port}").returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail("the demo node did not answer C-ECHO")


def _write_corpus(directory: Path) -> None:
    """What the README's examples send: a CT of PID001 in study STUDY_UID, and an ultrasound
    image of ØDEGÅRD^ÅSE, both of 2024-01-15."""
    ct = dicom_objects.ct(  # fixed UIDs: the size `studies` shows depends on their lengths
        patient_id="PID001",
        study_uid=STUDY_UID,
        series_uid=f"{STUDY_UID}.1",
        sop_uid=f"{STUDY_UID}.1.1",
        study_date="20240115",
    )
    us = dicom_objects.us_multiframe(
        patient_id="PID002", patient_name="ØDEGÅRD^ÅSE", charset="ISO_IR 192"
    )
    dicom_objects.write(ct, directory / "ct1.dcm")
    dicom_objects.write(us, directory / "us1.dcm")


def test_the_readme_examples_work_as_written(demo_node):
    shell, init_output, serve_log = demo_node
    text = README.read_text()
    failures = _check_the_first_start(text, init_output, serve_log, shell)
    for example in readme_examples(text):
        result = shell.run(example.command)
        printed = result.stdout + result.stderr
        if example.must_fail != (result.returncode != 0):
            failures.append(
                f"README.md:{example.line}: {example.command}\n  exit {result.returncode}"
                f" ({'should fail' if example.must_fail else 'should succeed'}):\n{printed}"
            )
            continue
        missing = missing_lines([shell.stand_in(s) for s in example.shown], printed)
        if missing:
            failures.append(
                f"README.md:{example.line}: {example.command}\n  not printed: {missing}\n"
                f"  printed:\n{printed}"
            )
    assert not failures, "\n\n".join(failures)


def _check_the_first_start(
    text: str, init_output: str, serve_log: Path, shell: Shell
) -> list[str]:
    """The block after "`scripts/run` prints" is what init --demo and serve print."""
    start = text.index("`scripts/run` prints")
    block = text[text.index("```", start) + 3 :]
    block = block[block.index("\n") + 1 : block.index("```")]
    shown = [shell.stand_in(line) for line in block.splitlines() if line.strip()]
    printed = init_output + serve_log.read_text(errors="replace")
    missing = missing_lines(shown, printed)
    return (
        [f"scripts/run's output: not printed: {missing}\n  printed:\n{printed}"] if missing else []
    )


def test_a_shown_line_matches():
    assert shown_matches("1 of 1 stored", "1 of 1 stored")
    assert shown_matches("0x0000  some/x  1.2.826...", "0x0000 some/x 1.2.826.1.2")
    assert shown_matches("... INFO x: on 0.0.0.0:1", "2026-01-01 10:00 INFO x: on 0.0.0.0:1")
    assert shown_matches("a...b...c", "a1b2c")
    assert not shown_matches("a...b...c", "a1c2b")
    assert not shown_matches("abc...abc", "abc")
    assert not shown_matches("status 0x0000", "status 0x0124")
    assert missing_lines(["a", "...", "c"], "a\nb\nc\n") == []
    assert missing_lines(["c", "a"], "a\nb\nc\n") == ["a"]


def test_dcmtk_is_not_shadowed():
    """pynetdicom's apps in the venv's bin/ have DCMTK's names: the README says so."""
    assert "shadow" in README.read_text()
    assert shutil.which("echoscu")
