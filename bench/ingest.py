"""C-STORE ingest into archive-node (SQLite, PostgreSQL) beside DCMTK and pynetdicom storescp."""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from archive_node.index import Index
from archive_node.integrity import pairing
from archive_node.registry import Registry, bound_certificates
from archive_node.storage import FilesystemStorage
from bench import orthanc as orthanc_bench
from bench.certificates import BenchPki, make_pki
from bench.find import (
    DCMTK_ENV,
    add_audit_argument,
    add_workers_argument,
    audited,
    configuration,
    configuration_label,
    free_port,
    index_url_for,
    serving,
    wait_until_answering,
    with_audit,
)
from bench.media import CACHE, KINDS, MPEG4_HP41, Media, media
from bench.retrieve import start_storescp, time_move, tree_hwm

BACKENDS = ("sqlite", "postgresql")
BASELINES = ("dcmtk", "pynetdicom", "orthanc")
BASELINE_NAMES = {
    "dcmtk": "DCMTK storescp",
    "pynetdicom": "pynetdicom storescp",
    "orthanc": orthanc_bench.LABEL,
}


def receiver_name(key: str, *, tls: bool = False) -> str:
    """The name of a receiver in the report: a baseline's, or a configuration's of the node
    (find.configuration), with " (TLS)" when it is measured over DICOM TLS."""
    name = BASELINE_NAMES.get(key) or configuration_label(key)
    return f"{name}{TLS_SUFFIX}" if tls else name


TLS_SUFFIX = " (TLS)"


QUICK = {"sc": 100, "ct": 30, "ctstudy": 200, "us": 2, "video": 1}


@dataclass
class Target:
    """A receiver listening for one run: where to send, what to measure, how to count."""

    name: str
    port: int
    called: str
    pid: int
    count: Callable[[], int]
    storescu_tls: list[str] = field(default_factory=list)  # storescu's TLS options, if any


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _files_in(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.is_file())


def node_run(
    backend: str,
    corpus: Media,
    associations: int,
    *,
    workers: int | None,
    send_video: bool,
    tls: bool = False,
) -> tuple[dict, dict | None]:
    """One run into a fresh `archive-node serve` (empty store and index); with `send_video`,
    then a C-MOVE of what it received into DCMTK storescp, by the node restarted on the same
    store and index, so its peak RSS is that of sending alone. `backend` is a configuration
    (find.configuration).

    With `tls`, a throwaway CA, node and client certificate are made in the run's directory
    (not timed), the node speaks DICOM TLS only (node.port = 0), the sending AE is
    registered with --tls required and the client certificate bound, and storescu pushes with
    +tls (no C-MOVE of the video then)."""
    _, fast_paths = configuration(backend)
    with tempfile.TemporaryDirectory(prefix="archive-node-bench-ingest-") as tmp:
        root = Path(tmp)
        pki: BenchPki | None = make_pki(root / "pki") if tls else None
        with index_url_for(backend, root) as url:
            dest_port = free_port()
            index = Index.open(url)
            index.init_schema()  # in process, not by `archive-node init` and `ae add`: quicker
            registry = Registry(index)
            registry.add_hospital("UNN", "Bench hospital")
            secure: dict = {}
            if pki:  # as `ae add BENCH --tls required --certificate bench.pem`
                bound = bound_certificates(files=[pki.client.certificate])
                secure = {"tls": "required", "certificates": bound}
            rights = "echo,store,find,move,get"
            registry.add_ae("BENCH", "UNN", host="127.0.0.1", allow=rights, **secure)
            registry.add_ae("STORESCP", "UNN", host="127.0.0.1", port=dest_port)
            # as `archive-node init`: the index and the store share an identity (the node
            # checks it as it stores, and warns at its start without one)
            pairing.claim(FilesystemStorage(root / "storage"), index)
            index.close()
            aes = (["BENCH"],)  # serving() calls as the first AE to see that it answers
            name = receiver_name(backend, tls=tls)
            audit = audited(backend)
            with serving(
                root,
                url,
                aes,
                workers=workers,
                prepare=False,
                fast_paths=fast_paths,
                tls=pki,
                audit=audit,
            ) as node:
                target = Target(name, node.port, "ARCHIVE", node.pid, _counter(url))
                if pki:
                    target.storescu_tls = pki.storescu_args()
                result = _receive(target, corpus, associations, root)
            if not send_video or tls:
                return result, None
            with serving(
                root, url, aes, workers=workers, prepare=False, fast_paths=fast_paths, audit=audit
            ) as node:
                target = Target(name, node.port, "ARCHIVE", node.pid, _counter(url))
                return result, _send(target, corpus, root, dest_port)


def _counter(url: str) -> Callable[[], int]:
    def count() -> int:
        index = Index.open(url)
        try:
            return index.instances.count()
        finally:
            index.close()

    return count


@contextlib.contextmanager
def dcmtk_storescp(root: Path, associations: int) -> Iterator[Target]:
    """DCMTK storescp writing files (no index), accepting every syntax it knows (the H.264 video
    too), one child process per association when there are several."""
    out = root / "storescp"
    out.mkdir()
    port = free_port()
    with open(root / "storescp.log", "wb") as log:
        proc = subprocess.Popen(
            [
                *("storescp", "+xa", "-aet", "STORESCP", "-od", str(out)),
                *(["--fork"] if associations > 1 else []),
                str(port),
            ],
            env=DCMTK_ENV,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(proc, port, "BENCH", "STORESCP")
        yield Target(receiver_name("dcmtk"), port, "STORESCP", proc.pid, lambda: _files_in(out))
    finally:
        _stop(proc)


@contextlib.contextmanager
def pynetdicom_storescp(root: Path, associations: int) -> Iterator[Target]:
    """pynetdicom's own storescp app writing files (no index), as it comes."""
    out = root / "pynetdicom"
    out.mkdir()
    port = free_port()
    with open(root / "pynetdicom.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pynetdicom", "storescp", str(port), "-od", str(out)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_answering(proc, port, "BENCH", "STORESCP")
        yield Target(
            receiver_name("pynetdicom"), port, "STORESCP", proc.pid, lambda: _files_in(out)
        )
    finally:
        _stop(proc)


@contextlib.contextmanager
def orthanc_receiver(root: Path, dest_port: int | None = None) -> Iterator[Target]:
    """Orthanc (bench.orthanc) with its own index and storage under `root` (a second one on the
    same `root` is a restart); STORESCP registered at `dest_port` when given."""
    modalities = {"STORESCP": ("127.0.0.1", dest_port)} if dest_port else {}
    with orthanc_bench.serving(root / "orthanc", modalities) as server:
        yield Target(
            receiver_name("orthanc"), server.port, orthanc_bench.AET, server.pid, server.count
        )


def storescu_args(kind: str) -> list[str]:
    """Propose only the contexts the files need (-R), in the files' own syntax: storescu
    proposes an H.264 syntax only when told to (-xn), never by itself."""
    return ["-R", "-xn"] if kind == "video" else ["-R"]


def push(files: list[Path], kind: str, target: Target, associations: int, log: Path) -> float:
    """Send `files` with `associations` storescu processes at once (files dealt round-robin);
    returns the wall time from the first start to the last exit. Raises when one fails."""
    groups = [files[i::associations] for i in range(associations)]
    started = time.perf_counter()
    with open(log, "wb") as out:
        procs = [
            subprocess.Popen(
                [
                    *("storescu", *storescu_args(kind), *target.storescu_tls),
                    *("-aet", "BENCH", "-aec", target.called),
                    *("127.0.0.1", str(target.port), *map(str, group)),
                ],
                env=DCMTK_ENV,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            for group in groups
            if group
        ]
        codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - started
    if any(codes):
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"storescu into {target.name} exited {codes}:\n{tail}")
    return elapsed


def baseline_run(
    baseline: str, corpus: Media, associations: int, *, send_video: bool = False
) -> tuple[dict, dict | None]:
    """One run into a fresh DCMTK or pynetdicom storescp writing into an empty directory, or
    into a fresh Orthanc; with `send_video` (Orthanc only), then a C-MOVE of what it received
    into DCMTK storescp by Orthanc restarted on the same index and storage, as node_run."""
    with tempfile.TemporaryDirectory(prefix="archive-node-bench-ingest-") as tmp:
        root = Path(tmp)
        if baseline != "orthanc":
            receiver = dcmtk_storescp if baseline == "dcmtk" else pynetdicom_storescp
            with receiver(root, associations) as target:
                return _receive(target, corpus, associations, root), None
        dest_port = free_port()
        with orthanc_receiver(root, dest_port) as target:
            result = _receive(target, corpus, associations, root)
        if not send_video:
            return result, None
        with orthanc_receiver(root, dest_port) as target:
            return result, _send(target, corpus, root, dest_port)


def _receive(target: Target, corpus: Media, associations: int, root: Path) -> dict:
    seconds = push(corpus.files, corpus.kind, target, associations, root / "storescu.log")
    peak = tree_hwm(target.pid)
    received = target.count()
    if received != len(corpus.files):
        raise RuntimeError(f"{target.name} holds {received} of {len(corpus.files)} instances")
    return {"seconds": seconds, "received": received, "peak_rss": peak}


def _send(target: Target, corpus: Media, root: Path, dest_port: int) -> dict:
    out = root / "moved"
    out.mkdir()
    storescp = start_storescp(out, dest_port, "+xa")
    try:
        seconds = time_move(target.port, corpus.study_uid, target.called)
    finally:
        storescp.terminate()
        storescp.wait(timeout=30)
    peak = tree_hwm(target.pid)
    moved = _files_in(out)
    if moved != len(corpus.files):
        raise RuntimeError(f"C-MOVE of the video delivered {moved} of {len(corpus.files)}")
    return {"seconds": seconds, "moved": moved, "peak_rss": peak}


def run(
    *,
    kinds: dict[str, int],
    backends: list[str],
    baselines: list[str],
    associations: list[int],
    runs: int,
    seed: int = 1,
    workers: int | None = None,
    video_mb: int = 300,
    us_frames: int = 30,
    cache: Path = CACHE,
    tls: bool = False,
) -> dict:
    """Every (kind, associations, receiver) `runs` times, receivers taking turns each run;
    with `tls`, each node configuration twice in each run, over plain DICOM and over DICOM
    TLS, which goes first alternating."""
    results, sends, corpus_info = [], [], {}
    for kind, count in kinds.items():
        corpus = media(kind, count, seed, video_mb=video_mb, us_frames=us_frames, cache=cache)
        corpus_info[kind] = {
            "label": KINDS[kind].label,
            "instances": count,
            "mb": round(corpus.bytes / 1e6, 1),
            "mean_kb": round(corpus.bytes / count / 1e3, 1),
            "transfer_syntax": MPEG4_HP41 if kind == "video" else "1.2.840.10008.1.2.1",
            "directory": str(corpus.directory),
        }
        for n in associations:
            if n > count:
                continue
            names = [receiver_name(r) for r in (*backends, *baselines)]
            if tls:
                names[len(backends) : len(backends)] = [
                    receiver_name(b, tls=True) for b in backends
                ]
            per: dict[str, list[dict]] = {name: [] for name in names}
            send_per: dict[str, list[dict]] = {}
            send_video = kind == "video" and n == 1
            for turn in range(runs):
                for backend in backends:
                    # over TLS too: plain first on even runs, TLS first on odd ones, so that
                    # neither always runs second (the order moved 1-association CT figures
                    # by a few percent here)
                    for secure in _transports(tls, turn):
                        result, sent = node_run(
                            backend,
                            corpus,
                            n,
                            workers=workers,
                            send_video=send_video and not secure,
                            tls=secure,
                        )
                        per[receiver_name(backend, tls=secure)].append(result)
                        if sent:
                            send_per.setdefault(receiver_name(backend), []).append(sent)
                for baseline in baselines:
                    result, sent = baseline_run(
                        baseline, corpus, n, send_video=send_video and baseline == "orthanc"
                    )
                    per[receiver_name(baseline)].append(result)
                    if sent:
                        send_per.setdefault(receiver_name(baseline), []).append(sent)
            for name, rows in per.items():
                results.append(_summary(name, kind, n, corpus, rows))
            for name, rows in send_per.items():
                seconds = statistics.median(r["seconds"] for r in rows)
                sends.append(
                    {
                        "receiver": name,
                        "kind": kind,
                        "method": "C-MOVE into DCMTK storescp (+xa), after a restart",
                        "runs_s": [round(r["seconds"], 3) for r in rows],
                        "mb_per_s": round(corpus.bytes / 1e6 / seconds, 1),
                        "peak_rss_mb": round(max(r["peak_rss"] for r in rows) / 2**20, 1),
                    }
                )
    report = {
        "seed": seed,
        "runs": runs,
        "workers": workers,
        "associations": associations,
        "corpus": corpus_info,
        "results": results,
        "video_send": sends,
    }
    if tls:
        report["tls_ratio"] = tls_ratios(report)
    return report


def _transports(tls: bool, turn: int) -> tuple[bool, ...]:
    """Whether each node run of this turn is over TLS: plain alone without `tls`, else both,
    the order alternating from one run to the next."""
    if not tls:
        return (False,)
    return (False, True) if turn % 2 == 0 else (True, False)


def tls_ratios(report: dict) -> list[dict]:
    """Each configuration's MB/s over TLS beside its MB/s over plain DICOM, in the same run."""
    ratios = []
    for secure in report["results"]:
        if not secure["receiver"].endswith(TLS_SUFFIX):
            continue
        plain_name = secure["receiver"].removesuffix(TLS_SUFFIX)
        plain = find(report, plain_name, secure["kind"], secure["associations"])
        if plain is None:
            continue
        ratios.append(
            {
                "receiver": plain_name,
                "kind": secure["kind"],
                "associations": secure["associations"],
                "plain_mb_per_s": plain["mb_per_s"],
                "tls_mb_per_s": secure["mb_per_s"],
                "plain_instances_per_s": plain["instances_per_s"],
                "tls_instances_per_s": secure["instances_per_s"],
                # the same corpus both ways: the ratio of the medians' times, unrounded MB/s
                "ratio": round(plain["seconds"] / secure["seconds"], 2),
            }
        )
    return ratios


def tls_table(report: dict) -> str:
    """TLS against plain DICOM, per configuration, kind and association count."""
    lines = [
        "| kind | assoc | receiver | plain MB/s | TLS MB/s | plain inst/s | TLS inst/s "
        "| TLS / plain |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report.get("tls_ratio", []):
        lines.append(
            f"| {r['kind']} | {r['associations']} | {r['receiver']} | {r['plain_mb_per_s']} "
            f"| {r['tls_mb_per_s']} | {r['plain_instances_per_s']} | {r['tls_instances_per_s']} "
            f"| {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def _summary(name: str, kind: str, n: int, corpus: Media, rows: list[dict]) -> dict:
    seconds = statistics.median(r["seconds"] for r in rows)
    count = len(corpus.files)
    return {
        "receiver": name,
        "kind": kind,
        "associations": n,
        "instances": count,
        "mb": round(corpus.bytes / 1e6, 1),
        "runs_s": [round(r["seconds"], 3) for r in rows],
        "received": [r["received"] for r in rows],
        "seconds": round(seconds, 3),
        "instances_per_s": round(count / seconds, 1),
        "mb_per_s": round(corpus.bytes / 1e6 / seconds, 1),
        # storescp --fork children are gone by the time it is read: one association only
        "peak_rss_mb": (
            round(max(r["peak_rss"] for r in rows) / 2**20, 1)
            if n == 1 or name.startswith("archive-node") or name == receiver_name("orthanc")
            else None
        ),
    }


def find(report: dict, receiver: str, kind: str, associations: int) -> dict | None:
    """The summary row of one receiver, kind and association count, if measured."""
    for row in report["results"]:
        if (row["receiver"], row["kind"], row["associations"]) == (receiver, kind, associations):
            return row
    return None


def table(report: dict) -> str:
    lines = [
        "| kind | assoc | receiver | instances (MB) | median s | inst/s | MB/s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        rss = "-" if r["peak_rss_mb"] is None else r["peak_rss_mb"]
        lines.append(
            f"| {r['kind']} | {r['associations']} | {r['receiver']} | {r['instances']} "
            f"({r['mb']}) | {r['seconds']} | {r['instances_per_s']} | {r['mb_per_s']} | {rss} |"
        )
    for s in report["video_send"]:
        lines.append(
            f"| {s['kind']} sent by C-MOVE | 1 | {s['receiver']} | | | | {s['mb_per_s']} "
            f"| {s['peak_rss_mb']} |"
        )
    return "\n".join(lines)


def available_baselines(wanted: list[str]) -> list[str]:
    """The baselines asked for that can run here (DCMTK storescp must be installed; Orthanc
    is installed when absent if it can be, else skipped with a line saying so)."""
    here = []
    for baseline in wanted:
        if baseline == "dcmtk" and not shutil.which("storescp"):
            continue
        if baseline == "orthanc" and orthanc_bench.executable() is None:
            continue
        here.append(baseline)
    return here


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ingest options (bench.report takes them too)."""
    parser.add_argument(
        "--kinds",
        default="sc,ct,ctstudy,us,video",
        help="which kinds: sc,ct,ctstudy,us,video (default: all)",
    )
    for kind, spec in KINDS.items():
        parser.add_argument(
            f"--{kind}", type=int, help=f"number of {spec.label} (default {spec.default_count})"
        )
    parser.add_argument("--video-mb", type=int, default=None, help="video size (default 300)")
    parser.add_argument("--us-frames", type=int, default=30, help="frames per US multiframe")
    parser.add_argument(
        "--associations",
        default="1,2",
        help="parallel associations to push with (default 1,2; 4 too with 1,2,4)",
    )
    parser.add_argument(
        "--baselines",
        default="dcmtk,pynetdicom,orthanc",
        help="dcmtk,pynetdicom,orthanc or none (default all three)",
    )
    add_workers_argument(parser)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="100 SC, 30 CT, a 200-slice study, 2 US, a 50 MB video, 1 run",
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the corpus is kept")


def ingest_options(args: argparse.Namespace) -> dict:
    """run() keyword arguments from parsed options (add_arguments, plus --runs/--seed)."""
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"unknown kinds: {', '.join(sorted(unknown))}")
    defaults = QUICK if args.quick else {k: s.default_count for k, s in KINDS.items()}
    counts = {k: getattr(args, k) if getattr(args, k) is not None else defaults[k] for k in kinds}
    baselines = [] if args.baselines == "none" else args.baselines.split(",")
    if set(baselines) - set(BASELINES):
        raise SystemExit(f"--baselines: choose from {', '.join(BASELINES)} or none")
    return {
        "kinds": {k: n for k, n in counts.items() if n > 0},
        "baselines": available_baselines(baselines),
        "associations": [int(n) for n in args.associations.split(",")],
        "seed": args.seed,
        "workers": args.workers,
        "video_mb": args.video_mb or (50 if args.quick else 300),
        "us_frames": args.us_frames,
        "cache": args.cache,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    parser.add_argument("--runs", type=int, help="runs per figure, median taken (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both", "none"], default="both"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="also measure each archive-node configuration over DICOM TLS (a TLS-only node, "
        "storescu +tls with a client certificate; throwaway certificates), in the same runs",
    )
    add_audit_argument(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if not shutil.which("storescu"):
        print("DCMTK storescu is needed: apt-get install dcmtk", file=sys.stderr)
        return 2
    backends = {"both": list(BACKENDS), "none": []}.get(args.backend, [args.backend])
    backends = with_audit(backends, args.audit)
    runs = args.runs or (1 if args.quick else 3)
    report = run(backends=backends, runs=runs, tls=args.tls, **ingest_options(args))
    print(table(report))
    if args.tls:
        print()
        print(tls_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
