"""DCMTK's command-line tools for tests: found on PATH, run, their -d logs read as responses."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid

from archive_node.dicom import status

TIMEOUT = 60
WORKSTATION = "UNN_WS"  # registered with echo,store,find,move,get (conftest's registry)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool with TCP_NODELAY (DCMTK reads it from the environment)."""
    env = {**os.environ, "TCP_NODELAY": "1"}
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
        check=False,
    )


def stop_process(proc: subprocess.Popen) -> None:
    """End a DCMTK server (storescp) started for a test: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def dcmtk(tool: str) -> str | None:
    """The first `tool` on PATH that is DCMTK's. pynetdicom installs apps of the same names
    (.venv/bin/storescp, getscu, movescu) with other options: an activated venv shadows DCMTK."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        found = shutil.which(tool, path=directory) if directory else None
        if found is None:
            continue
        version = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        if "$dcmtk: " in version.stdout + version.stderr:
            return found
    return None


TOOLS = {tool: dcmtk(tool) for tool in ("movescu", "getscu", "storescp")}
MISSING = [tool for tool, path in TOOLS.items() if path is None]


def files_by_uid(directory: Path) -> dict[str, Path]:
    """The DICOM files DCMTK wrote into `directory`, by the SOP Instance UID they hold; DCMTK
    names them <modality>.<SOP Instance UID>."""
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        uid = str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert path.name.endswith(f".{uid}"), path.name
        assert uid not in files, f"{uid} written twice"
        files[uid] = path
    return files


@dataclass
class Response:
    """One C-MOVE or C-GET response as DCMTK's -d log dumps it (None: not in the message)."""

    status: int
    remaining: int | None
    completed: int | None
    failed: int | None
    warning: int | None


def responses(proc: subprocess.CompletedProcess[str], kind: str) -> list[Response]:
    """The incoming `kind` ("C-MOVE RSP", "C-GET RSP") messages, in order."""
    found = []
    for block in re.findall(
        r"INCOMING DIMSE MESSAGE =+\n(.*?)END DIMSE MESSAGE", output(proc), re.S
    ):
        if not re.search(rf"Message Type\s*: {kind}\b", block):
            continue
        code = re.search(r"DIMSE Status\s*: 0x([0-9a-fA-F]{4})", block)
        assert code, block
        numbers = {}
        for name in ("Remaining", "Completed", "Failed", "Warning"):
            match = re.search(rf"{name} Suboperations\s*: (\d+|none)", block)
            assert match, block
            numbers[name.lower()] = None if match.group(1) == "none" else int(match.group(1))
        found.append(Response(int(code.group(1), 16), **numbers))
    return found


def final_response(proc: subprocess.CompletedProcess[str], kind: str) -> Response:
    """The one final response, after only pending ones. It is the verdict: getscu 3.6 exits 0
    whatever the status, and movescu's exit code does not tell one failure from another."""
    got = responses(proc, kind)
    assert got, output(proc)
    *pending, final = got
    assert all(rsp.status == status.PENDING for rsp in pending), output(proc)
    assert final.status != status.PENDING, output(proc)
    return final


def counts(rsp: Response) -> tuple[int | None, int | None, int | None]:
    return rsp.completed, rsp.failed, rsp.warning


def getscu(
    node, tmp_path: Path, model: str, *keys: str, prefer: str = "", calling: str = WORKSTATION
) -> tuple[subprocess.CompletedProcess[str], dict[str, Path]]:
    """Run getscu (`prefer`: its preferred-syntax option, e.g. +xy) into a fresh directory;
    the process, and the files it wrote by SOP Instance UID."""
    out = tmp_path / f"getscu-{generate_uid()[-12:]}"
    out.mkdir()
    args = [str(TOOLS["getscu"]), "-d", model, *([prefer] if prefer else [])]
    args += ["-aet", calling, "-aec", node.ae_title, "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    proc = run(*args, node.host, str(node.port))
    return proc, files_by_uid(out)
