"""C-MOVE and C-GET throughput of a real `archive-node serve`: one study of CT slices (~0.5 MB
each) moved into DCMTK `storescp` and fetched by DCMTK `getscu`, on SQLite and PostgreSQL:
python -m bench.retrieve --instances 1000 [--backend sqlite|postgresql|both] [--runs 3]."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as STUDY_MOVE

from archive_node.handlers import set_tcp_nodelay
from archive_node.index import Index
from archive_node.registry import Registry
from archive_node.scu import send_files
from bench.find import free_port, index_url_for, serving

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK's switch for Nagle's algorithm


def write_study(directory: Path, instances: int) -> int:
    """`instances` CT slices of 512 x 512 x 16 bits in one study; returns the bytes written."""
    directory.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    pixels = os.urandom(512 * 512 * 2)
    total = 0
    for number in range(1, instances + 1):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE
        ds.file_meta.MediaStorageSOPInstanceUID = uid = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE, uid
        ds.PatientID, ds.PatientName = "BENCH1", "BENCH^RETRIEVE"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.InstanceNumber = "CT", number
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = pixels
        path = directory / f"ct{number:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return total


def vm_hwm(pid: int) -> int:
    """Peak resident set size of a process, in bytes (VmHWM of /proc/PID/status)."""
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024


def start_storescp(directory: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        ["storescp", "-aet", "STORESCP", "-od", str(directory), str(port)],
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
    ae = AE(ae_title="BENCH")
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
            if rsp.Status != 0xFF00:
                final = rsp
        elapsed = time.perf_counter() - started
    finally:
        assoc.release()
    assert final is not None and final.Status == 0, f"C-MOVE ended with {final}"
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


def run(backend: str, instances: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="archive-node-bench-") as tmp:
        root = Path(tmp)
        size = write_study(root / "send", instances)
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
            with serving(root, url, aes) as node:
                started = time.perf_counter()
                sent = send_files(
                    [root / "send"], "127.0.0.1", node.port, calling="BENCH", called="ARCHIVE"
                )
                ingest = time.perf_counter() - started
                assert all(r.status == 0 for r in sent), "ingest failed"
                study = str(dcmread(root / "send" / "ct00001.dcm").StudyInstanceUID)
                moves, gets = [], []
                for _ in range(runs):
                    out = root / "storescp"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    storescp = start_storescp(out, dest_port)
                    try:
                        moves.append(time_move(node.port, study))
                    finally:
                        storescp.terminate()
                        storescp.wait(timeout=10)
                    assert len(list(out.iterdir())) == instances, "storescp lacks instances"
                    out = root / "getscu"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir()
                    gets.append(time_get(node.port, study, out))
                    assert len(list(out.iterdir())) == instances, "getscu lacks instances"
                peak = vm_hwm(node.pid)
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
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not (shutil.which("storescp") and shutil.which("getscu")):
        print("DCMTK storescp and getscu are needed: apt-get install dcmtk", file=sys.stderr)
        return 2
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    reports = [run(b, args.instances, args.runs) for b in backends]
    print(table(reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
