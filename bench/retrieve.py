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

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as STUDY_MOVE

from archive_node.index import Index
from archive_node.net.association import set_tcp_nodelay
from archive_node.net.client import client_ae, send_files
from archive_node.registry import Registry
from bench.find import (
    DCMTK_ENV,
    add_audit_argument,
    audited,
    configuration,
    free_port,
    index_url_for,
    serving,
    with_audit,
)
from bench.media import CACHE, media


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


def time_move(port: int, study: str) -> float:
    ae = client_ae("BENCH", 60.0, fast_paths=True)  # the client does not poll: the node's figure
    ae.add_requested_context(STUDY_MOVE)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="ARCHIVE", evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    )
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", study
    try:
        started = time.perf_counter()
        final = None
        for rsp, _ in assoc.send_c_move(query, "STORESCP", STUDY_MOVE):
            # pynetdicom yields an empty dataset when the node did not answer in time
            if rsp.get("Status") != 0xFF00:
                final = rsp
        elapsed = time.perf_counter() - started
    finally:
        if assoc.is_established:
            assoc.release()
    assert final is not None and final.get("Status") == 0, (
        f"C-MOVE ended with {final or 'no response (timed out or aborted)'}"
    )
    return elapsed


def time_get(port: int, study: str, directory: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            *("getscu", "-S", "-aet", "BENCH", "-aec", "ARCHIVE", "-od", str(directory)),
            *("-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"),
            *("127.0.0.1", str(port)),
        ],
        env=DCMTK_ENV,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def run(
    backend: str,
    instances: int,
    runs: int,
    *,
    seed: int = 1,
    workers: int = 1,
    cache: Path = CACHE,
) -> dict:
    _, fast_paths = configuration(backend)
    study = media("ct", instances, seed, cache=cache)
    size = study.bytes
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
                moves, gets = [], []
                for _ in range(runs):
                    out = root / "storescp"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    storescp = start_storescp(out, dest_port)
                    try:
                        moves.append(time_move(node.port, study.study_uid))
                    finally:
                        storescp.terminate()
                        storescp.wait(timeout=10)
                    assert len(list(out.iterdir())) == instances, "storescp lacks instances"
                    out = root / "getscu"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    gets.append(time_get(node.port, study.study_uid, out))
                    assert len(list(out.iterdir())) == instances, "getscu lacks instances"
                peak = tree_hwm(node.pid)
    move_s, get_s = statistics.median(moves), statistics.median(gets)
    return {
        "backend": backend,
        "instances": instances,
        "mb": round(size / 1e6, 1),
        "ingest_instances_per_s": round(instances / ingest, 1),
        "move_instances_per_s": round(instances / move_s, 1),
        "move_mb_per_s": round(size / 1e6 / move_s, 1),
        "get_instances_per_s": round(instances / get_s, 1),
        "get_mb_per_s": round(size / 1e6 / get_s, 1),
        "serve_peak_rss_mb": round(peak / 2**20, 1),
    }


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="index"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1, help="archive-node serve --workers")
    add_audit_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not (shutil.which("storescp") and shutil.which("getscu")):
        print("DCMTK storescp and getscu are needed: apt-get install dcmtk", file=sys.stderr)
        return 2
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    backends = with_audit(backends, args.audit)
    reports = [
        run(b, args.instances, args.runs, seed=args.seed, workers=args.workers) for b in backends
    ]
    print(table(reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
