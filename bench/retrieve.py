"""C-MOVE and C-GET throughput of a real `archive-node serve`: one study of CT slices (~0.5 MB
each) moved into DCMTK `storescp` and fetched by DCMTK `getscu`, on SQLite and PostgreSQL:
python -m bench.retrieve --instances 1000 [--backend sqlite|postgresql|both] [--runs 3]."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from archive_node.index import Index
from archive_node.net.client import send_files
from archive_node.registry import Registry
from bench.find import (
    DCMTK_ENV,
    add_audit_argument,
    add_workers_argument,
    audited,
    configuration,
    free_port,
    index_url_for,
    serving,
    with_audit,
)
from bench.media import CACHE, Media, media


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a process, in bytes (VmHWM of /proc/PID/status)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024


def tree_hwm(pid: int) -> int:
    """Peak RSS in bytes of a process and its living descendants (the largest of them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    peak, todo = 0, [pid]
    while todo:
        current = todo.pop()
        with contextlib.suppress(OSError, AttributeError):
            peak = max(peak, vm_hwm(current))
        todo += children.get(current, [])
    return peak


def start_storescp(directory: Path, port: int, *options: str) -> subprocess.Popen:
    """DCMTK storescp as STORESCP writing into `directory`, once it accepts connections."""
    proc = subprocess.Popen(
        ["storescp", *options, "-aet", "STORESCP", "-od", str(directory), str(port)],
        env=DCMTK_ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.02)


def time_move(port: int, study: str, called: str = "ARCHIVE") -> float:
    """Seconds of a C-MOVE of `study` into STORESCP by DCMTK movescu (as BENCH, to `called`),
    from its start to its exit; raises unless the final response is a success."""
    started = time.perf_counter()
    done = subprocess.run(
        [
            *("movescu", "-S", "-v", "-aet", "BENCH", "-aec", called, "-aem", "STORESCP"),
            *("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"),
            *("127.0.0.1", str(port)),
        ],
        env=DCMTK_ENV,
        capture_output=True,
    )
    elapsed = time.perf_counter() - started
    output = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0 or "Received Final Move Response (Success)" not in output:
        raise RuntimeError(f"C-MOVE by movescu failed ({done.returncode}): {output[-1500:]}")
    return elapsed


def time_get(port: int, study: str, directory: Path, called: str = "ARCHIVE") -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            *("getscu", "-S", "-aet", "BENCH", "-aec", called, "-od", str(directory)),
            *("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"),
            *("127.0.0.1", str(port)),
        ],
        env=DCMTK_ENV,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def _retrieve_runs(
    port: int, called: str, study: Media, runs: int, root: Path, dest_port: int
) -> tuple[list[float], list[float]]:
    """`runs` times a C-MOVE of the study into a fresh DCMTK storescp, then a C-GET of it by
    getscu; each checked to deliver every instance. Seconds of each."""
    instances = len(study.files)
    moves, gets = [], []
    for _ in range(runs):
        out = root / "storescp"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        storescp = start_storescp(out, dest_port)
        try:
            moves.append(time_move(port, study.study_uid, called))
        finally:
            storescp.terminate()
            storescp.wait(timeout=10)
        moved = len(list(out.iterdir()))
        assert moved == instances, f"storescp holds {moved} of {instances} instances"
        out = root / "getscu"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        gets.append(time_get(port, study.study_uid, out, called))
        got = len(list(out.iterdir()))
        assert got == instances, f"getscu holds {got} of {instances} instances"
    return moves, gets


def _figures(
    name: str, study: Media, ingest: float, moves: list[float], gets: list[float], peak: int
) -> dict:
    instances, size = len(study.files), study.bytes
    move_s, get_s = statistics.median(moves), statistics.median(gets)
    return {
        "backend": name,
        "instances": instances,
        "mb": round(size / 1e6, 1),
        "ingest_instances_per_s": round(instances / ingest, 1),
        "move_runs_s": [round(s, 3) for s in moves],
        "get_runs_s": [round(s, 3) for s in gets],
        "move_instances_per_s": round(instances / move_s, 1),
        "move_mb_per_s": round(size / 1e6 / move_s, 1),
        "get_instances_per_s": round(instances / get_s, 1),
        "get_mb_per_s": round(size / 1e6 / get_s, 1),
        "serve_peak_rss_mb": round(peak / 2**20, 1),
    }


def orthanc_run(instances: int, runs: int, *, seed: int = 1, cache: Path = CACHE) -> dict:
    """The same C-MOVE and C-GET runs against Orthanc (bench.orthanc), filled with the same
    study by DCMTK storescu (one association)."""
    from bench import orthanc

    study = media("ctstudy", instances, seed, cache=cache)
    with tempfile.TemporaryDirectory(prefix="archive-node-bench-orthanc-") as tmp:
        root = Path(tmp)
        dest_port = free_port()
        with orthanc.serving(root / "orthanc", {"STORESCP": ("127.0.0.1", dest_port)}) as server:
            started = time.perf_counter()
            subprocess.run(
                [
                    *("storescu", "-R", "-aet", "BENCH", "-aec", orthanc.AET),
                    *("127.0.0.1", str(server.port), *map(str, study.files)),
                ],
                env=DCMTK_ENV,
                check=True,
                capture_output=True,
            )
            ingest = time.perf_counter() - started
            held = server.count()
            assert held == instances, f"Orthanc holds {held} of {instances} instances"
            moves, gets = _retrieve_runs(server.port, orthanc.AET, study, runs, root, dest_port)
            peak = tree_hwm(server.pid)
    return _figures("orthanc", study, ingest, moves, gets, peak)


def run(
    backend: str,
    instances: int,
    runs: int,
    *,
    seed: int = 1,
    workers: int | None = None,
    cache: Path = CACHE,
) -> dict:
    """C-MOVE and C-GET of one study of `instances` CT slices (kind "ctstudy") from the
    configuration `backend` (bench.find.configuration), `runs` times each."""
    _, fast_paths = configuration(backend)
    study = media("ctstudy", instances, seed, cache=cache)
    with tempfile.TemporaryDirectory(prefix="archive-node-bench-") as tmp:
        root = Path(tmp)
        with index_url_for(backend, root) as url:
            index = Index.open(url)
            index.init_schema()
            Registry(index).add_hospital("UNN", "Bench hospital")
            index.close()
            dest_port = free_port()
            local = ("--hospital", "UNN", "--host", "127.0.0.1")
            aes = (
                ["BENCH", *local, "--allow", "echo,store,move,get"],
                ["STORESCP", *local, "--port", str(dest_port)],
            )
            with serving(
                root, url, aes, workers=workers, fast_paths=fast_paths, audit=audited(backend)
            ) as node:
                started = time.perf_counter()
                sent = send_files(
                    study.files, "127.0.0.1", node.port, calling="BENCH", called="ARCHIVE"
                )
                ingest = time.perf_counter() - started
                assert all(r.status == 0 for r in sent), "ingest failed"
                moves, gets = _retrieve_runs(node.port, "ARCHIVE", study, runs, root, dest_port)
                peak = tree_hwm(node.pid)
    return _figures(backend, study, ingest, moves, gets, peak)


def table(reports: list[dict]) -> str:
    lines = [
        "| backend | instances (MB) | C-MOVE inst/s | C-MOVE MB/s | C-GET inst/s | C-GET MB/s "
        "| serve peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lines.append(
            f"| {r['backend']} | {r['instances']} ({r['mb']}) | {r['move_instances_per_s']} "
            f"| {r['move_mb_per_s']} | {r['get_instances_per_s']} | {r['get_mb_per_s']} "
            f"| {r['serve_peak_rss_mb']} |"
        )
    return "\n".join(lines)


def orthanc_available() -> bool:
    from bench import orthanc

    return orthanc.executable() is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="index"
    )
    parser.add_argument("--seed", type=int, default=1)
    add_workers_argument(parser)
    parser.add_argument(
        "--orthanc", choices=["on", "off"], default="on", help="Orthanc beside (if installed)"
    )
    add_audit_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not all(shutil.which(tool) for tool in ("storescp", "getscu", "movescu")):
        print(
            "DCMTK storescp, getscu and movescu are needed: apt-get install dcmtk", file=sys.stderr
        )
        return 2
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    backends = with_audit(backends, args.audit)
    reports = [
        run(b, args.instances, args.runs, seed=args.seed, workers=args.workers) for b in backends
    ]
    if args.orthanc == "on" and orthanc_available():
        reports.append(orthanc_run(args.instances, args.runs, seed=args.seed))
    print(table(reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
