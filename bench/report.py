"""The whole benchmark (ingest, find, retrieve) as one markdown table and JSON: the node beside
DCMTK and pynetdicom storescp and Orthanc, all measured in the same run, judged against issue 23's
targets."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from archive_node.config import SPEED_PATCHES
from bench import find as find_bench
from bench import ingest as ingest_bench
from bench import orthanc as orthanc_bench
from bench import retrieve as retrieve_bench

# Issue 23's targets, judged on figures measured in this run (Orthanc beside the node).
PG_SHARE_OF_SQLITE = 0.8  # PostgreSQL's ingest within 20% of SQLite's
TARGET_ASSOCIATIONS = (1, 2)  # ingest at or above Orthanc's with 1 and with 2 associations
RSS_MB = 120  # peak RSS on every path
EXACT_P95_MS = 5.0
RANGE_P95_MS = 30.0
RANGE_AT_STUDIES = 100_000  # the date range's target is set at this index size
LARGE_RESPONSES_PER_S = 5000
EXACT_TYPES = (
    "PatientID exact",
    "AccessionNumber exact",
    "StudyInstanceUID exact",
    "PatientID exact (scope hospital)",
)
RANGE_TYPE = "StudyDate range ~150 hits"
UNITS = {"sc": "inst/s", "ct": "MB/s", "ctstudy": "inst/s", "us": "MB/s", "video": "MB/s"}
ORTHANC = "orthanc"  # the name of Orthanc's find and retrieve reports


@dataclass
class Row:
    """One figure: archive-node's value per configuration, the others', and how it is judged.
    `lower_better` figures (milliseconds, megabytes) have their ratios turned round, so that
    every ratio above 1 is the node ahead."""

    figure: str
    node: dict[str, float | None]  # configuration -> value
    dcmtk: float | None = None
    pynetdicom: float | None = None
    orthanc: float | None = None
    orthanc_shown: str | None = None
    target: str = "-"
    met: dict[str, bool | None] = field(default_factory=dict)  # configuration -> met
    shown: dict[str, str] = field(default_factory=dict)  # configuration -> value as printed
    lower_better: bool = False

    def judge(self, test: Callable[[float], bool | None]) -> Row:
        self.met = {b: (None if v is None else test(v)) for b, v in self.node.items()}
        return self


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float | None, base: float | None, lower_better: bool = False) -> str:
    if value is None or not base:
        return "-"
    if lower_better:
        return f"{base / value:.2f}" if value else "-"
    return f"{value / base:.2f}"


def _what(kind: str, corpus: dict) -> str:
    """The corpus of a kind in words, e.g. CT slices of 525 KB x 300."""
    size = corpus["mean_kb"]
    each = f"{size / 1000:,.0f} MB" if size >= 1000 else f"{size:,.0f} KB"
    count = corpus["instances"]
    return f"{ingest_bench.KINDS[kind].plural} of {each}" + (f" x {count:,}" if count > 1 else "")


def _sqlite_twin(name: str) -> str | None:
    """The SQLite configuration a PostgreSQL one is judged against (same patches, same
    audit), or None when `name` is not a PostgreSQL configuration."""
    base, _ = find_bench.configuration(name)
    return "sqlite" + name.removeprefix("postgresql") if base == "postgresql" else None


def ingest_rows(report: dict, backends: list[str]) -> list[Row]:
    rows = []
    names = {b: ingest_bench.receiver_name(b) for b in backends}
    orthanc_name = ingest_bench.receiver_name(ORTHANC)
    for kind, corpus in report["corpus"].items():
        unit = UNITS[kind]
        key = "instances_per_s" if unit == "inst/s" else "mb_per_s"
        for n in report["associations"]:

            def value(receiver: str, n=n, kind=kind, key=key) -> float | None:
                row = ingest_bench.find(report, receiver, kind, n)
                return row[key] if row else None

            everyone = [*names.values(), *ingest_bench.BASELINE_NAMES.values()]
            if all(value(name) is None for name in everyone):
                continue
            node = {b: value(name) for b, name in names.items()}
            row = Row(
                figure=f"C-STORE {_what(kind, corpus)}, {n} assoc, {unit}",
                node=node,
                dcmtk=value(ingest_bench.receiver_name("dcmtk")),
                pynetdicom=value(ingest_bench.receiver_name("pynetdicom")),
                orthanc=value(orthanc_name),
            )
            if n in TARGET_ASSOCIATIONS:
                row.target = f">= Orthanc; PostgreSQL >= {PG_SHARE_OF_SQLITE:g}x SQLite"
                for b, v in node.items():
                    twin = _sqlite_twin(b)
                    if v is None:
                        row.met[b] = None
                    elif twin is None:
                        row.met[b] = None if row.orthanc is None else v >= row.orthanc
                    else:
                        base = node.get(twin) or value(ingest_bench.receiver_name(twin))
                        row.met[b] = None if base is None else v >= PG_SHARE_OF_SQLITE * base
            rows.append(row)
    for kind, corpus in report["corpus"].items():
        # the largest peak over every association count: storescp's --fork children are gone
        # when it is read, so its figure is of 1 association alone

        def rss(receiver: str, kind=kind) -> float | None:
            peaks = [
                r["peak_rss_mb"]
                for r in report["results"]
                if r["receiver"] == receiver and r["kind"] == kind and r["peak_rss_mb"]
            ]
            return max(peaks) if peaks else None

        rows.append(
            Row(
                figure=f"peak RSS receiving {_what(kind, corpus)} ({corpus['mb']:,.0f} MB), MB",
                node={b: rss(name) for b, name in names.items()},
                dcmtk=rss(ingest_bench.receiver_name("dcmtk")),
                pynetdicom=rss(ingest_bench.receiver_name("pynetdicom")),
                orthanc=rss(orthanc_name),
                target=f"< {RSS_MB} MB",
                lower_better=True,
            ).judge(lambda v: v < RSS_MB)
        )
    video = report["corpus"].get("video")
    if video and 1 in report["associations"]:
        sends = {s["receiver"]: s for s in report["video_send"] if s["kind"] == "video"}

        def sent(receiver: str, key: str) -> float | None:
            return sends.get(receiver, {}).get(key)

        rows.append(
            Row(
                figure="peak RSS sending the video (C-MOVE into DCMTK storescp), MB",
                node={b: sent(name, "peak_rss_mb") for b, name in names.items()},
                orthanc=sent(orthanc_name, "peak_rss_mb"),
                target=f"< {RSS_MB} MB",
                lower_better=True,
            ).judge(lambda v: v < RSS_MB)
        )
        rows.append(
            Row(
                figure="C-MOVE of the video into DCMTK storescp, MB/s",
                node={b: sent(name, "mb_per_s") for b, name in names.items()},
                orthanc=sent(orthanc_name, "mb_per_s"),
            )
        )
    return rows


def find_rows(reports: list[dict], backends: list[str]) -> list[Row]:
    rows = []
    for studies in sorted({r["studies"] for r in reports}):
        at = {r["backend"]: r for r in reports if r["studies"] == studies}
        orthanc = at.pop(ORTHANC, None)
        if not at:
            continue
        names = next(iter(at.values()))["queries"]
        for name in names:
            p50 = {b: at[b]["queries"][name]["p50_ms"] for b in at}
            p95 = {b: at[b]["queries"][name]["p95_ms"] for b in at}
            hits = next(iter(at.values()))["queries"][name]["mean_matches"]
            theirs = orthanc["queries"].get(name) if orthanc else None
            row = Row(
                figure=f"C-FIND {name} at {studies:,} studies ({hits:,.1f} hits), p50 / p95 ms",
                node={b: p50.get(b) for b in backends},
                shown={b: f"{p50[b]:.1f} / {p95[b]:.1f}" for b in at},
                lower_better=True,
            )
            if theirs:
                row.orthanc = theirs["p50_ms"]
                row.orthanc_shown = f"{theirs['p50_ms']:.1f} / {theirs['p95_ms']:.1f}"
                if abs(theirs["mean_matches"] - hits) > max(1.0, hits * 0.01):
                    row.orthanc_shown += f" ({theirs['mean_matches']:,.1f} hits)"
            limit = None
            if name in EXACT_TYPES:
                limit = EXACT_P95_MS
            elif name == RANGE_TYPE:
                limit = RANGE_P95_MS
            if limit is not None:
                row.target = f"p95 < {limit:g} ms"
                if name == RANGE_TYPE and studies != RANGE_AT_STUDIES:
                    row.target += f" (set at {RANGE_AT_STUDIES:,})"
                row.met = {b: p95[b] < limit if b in p95 else None for b in backends}
            rows.append(row)
        large = {b: r.get("findscu") for b, r in at.items() if r.get("findscu")}
        if large:
            hits = next(iter(large.values()))["responses"]
            theirs = (orthanc or {}).get("findscu")
            rows.append(
                Row(
                    figure=(
                        f"C-FIND large result ({hits:,.0f} hits) by DCMTK findscu at "
                        f"{studies:,} studies, responses/s"
                    ),
                    node={
                        b: large[b]["responses_per_s"] if b in large else None for b in backends
                    },
                    orthanc=theirs["responses_per_s"] if theirs else None,
                    target=f">= {LARGE_RESPONSES_PER_S:,} responses/s",
                ).judge(lambda v: v >= LARGE_RESPONSES_PER_S)
            )
        rows.append(
            Row(
                figure=f"peak RSS of serve through C-FIND at {studies:,} studies, MB",
                node={b: at[b].get("serve_peak_rss_mb") if b in at else None for b in backends},
                orthanc=orthanc.get("serve_peak_rss_mb") if orthanc else None,
                target=f"< {RSS_MB} MB",
                lower_better=True,
            ).judge(lambda v: v < RSS_MB)
        )
    return rows


def retrieve_rows(reports: list[dict], backends: list[str]) -> list[Row]:
    by = {r["backend"]: r for r in reports}
    orthanc = by.pop(ORTHANC, None)
    if not by:
        return []
    first = next(iter(by.values()))
    what = f"{first['instances']:,}-slice CT study ({first['mb']:,.0f} MB)"

    def node(key: str) -> dict[str, float | None]:
        return {b: by[b][key] if b in by else None for b in backends}

    def theirs(key: str) -> float | None:
        return orthanc[key] if orthanc else None

    def at_least_orthanc(key: str) -> Callable[[float], bool | None]:
        return lambda v: None if orthanc is None else v >= orthanc[key]

    return [
        Row(
            f"C-MOVE {what} by movescu into DCMTK storescp, inst/s",
            node("move_instances_per_s"),
            orthanc=theirs("move_instances_per_s"),
            target=">= Orthanc",
        ).judge(at_least_orthanc("move_instances_per_s")),
        Row(
            f"C-MOVE {what} by movescu into DCMTK storescp, MB/s",
            node("move_mb_per_s"),
            orthanc=theirs("move_mb_per_s"),
        ),
        Row(
            f"C-GET {what} by DCMTK getscu, inst/s",
            node("get_instances_per_s"),
            orthanc=theirs("get_instances_per_s"),
            target=">= Orthanc",
        ).judge(at_least_orthanc("get_instances_per_s")),
        Row(
            f"C-GET {what} by DCMTK getscu, MB/s",
            node("get_mb_per_s"),
            orthanc=theirs("get_mb_per_s"),
        ),
        Row(
            "peak RSS of serve through the retrieve runs, MB",
            node("serve_peak_rss_mb"),
            orthanc=theirs("serve_peak_rss_mb"),
            target=f"< {RSS_MB} MB",
            lower_better=True,
        ).judge(lambda v: v < RSS_MB),
    ]


def table(rows: list[Row], backends: list[str]) -> str:
    both = len(backends) > 1
    header = [
        "figure",
        *(ingest_bench.receiver_name(b) for b in backends),
        "DCMTK storescp",
        "pynetdicom storescp",
        ingest_bench.receiver_name(ORTHANC),
        "node / DCMTK",
        "node / pynetdicom",
        "node / Orthanc",
        "target",
        "met",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def per_backend(fmt: Callable[[str], str]) -> str:
        cells = [fmt(b) for b in backends]
        return " / ".join(cells) if both and any(c != "-" for c in cells) else cells[0]

    for row in rows:
        met = per_backend(
            lambda b, row=row: {True: "yes", False: "no"}.get(row.met.get(b), "-")  # type: ignore[arg-type]
        )
        cells = [
            row.figure,
            *(row.shown.get(b, _num(row.node.get(b))) for b in backends),
            _num(row.dcmtk),
            _num(row.pynetdicom),
            row.orthanc_shown or _num(row.orthanc),
            *(
                per_backend(
                    lambda b, row=row, base=base: _ratio(row.node.get(b), base, row.lower_better)
                )
                for base in (row.dcmtk, row.pynetdicom, row.orthanc)
            ),
            row.target,
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(report: dict, backends: list[str]) -> str:
    ratio = " / ".join(backends)
    options = report["options"]
    orthanc = report.get("orthanc") or {}
    lines = [
        f"Ratios and met are per configuration ({ratio}; -plain: node.fast_paths = false, "
        "pynetdicom's own code where the node's speed patches would run; -without-X: every "
        "speed patch but X; audit off: audit.enabled = false). Every ratio reads as the node's "
        "figure against the other's, above 1 when the node is ahead: throughput node / other, "
        "milliseconds and megabytes other / node. C-FIND ratios are of the p50s.",
        "Met: ingest at or above Orthanc's with 1 and 2 associations (SQLite configurations), "
        f"PostgreSQL at or above {PG_SHARE_OF_SQLITE:g}x the SQLite configuration beside it; "
        "C-MOVE and C-GET at or above Orthanc's inst/s; C-FIND p95 under the issue's limits "
        f"(the date range's is set at {RANGE_AT_STUDIES:,} studies, judged at every size); "
        f"findscu's large result >= {LARGE_RESPONSES_PER_S:,} responses/s; peak RSS < "
        f"{RSS_MB} MB.",
        "Ingest: DCMTK storescu, TCP_NODELAY=1, files in their own syntax, median of "
        f"{options.get('runs')} run(s), a fresh receiver each run; archive-node "
        "fsyncs each file and indexes it before its response; Orthanc fsyncs its files "
        "(SyncStorageArea) and indexes them in its SQLite; the storescps fsync nothing and "
        "keep no index. The CT slices come 30 to a study; the one big study is one series.",
        "C-MOVE by DCMTK movescu into DCMTK storescp, C-GET by DCMTK getscu, median of "
        f"{options.get('runs')} run(s), the node and Orthanc filled with the same study by "
        "storescu first. C-FIND by the node's pynetdicom client (one association, p50/p95 "
        f"of {options.get('find_runs')} queries a type) and DCMTK findscu (large result).",
    ]
    if orthanc.get("version"):
        find_sizes = orthanc.get("find_studies") or []
        lines.append(
            f"Orthanc {orthanc['version']} (Debian's package) is measured in this run with "
            "the same clients and corpus: a generated configuration with its own SQLite index "
            "and storage area in a temporary directory, SyncStorageArea true, no plugins or "
            "Lua, StorageCompression false, the web explorer and WebDAV off, its other options "
            "at their defaults (DicomThreadsCount 4, StorageAccessOnFind Always, synchronous "
            "C-MOVE), TCP_NODELAY=1 in its environment as in storescu's (without it DCMTK's "
            "Nagle delays cost it 40 ms a store). For C-FIND its index is filled over REST (POST "
            "/instances of a tiny file per instance row of the same synthetic corpus, 3 "
            "connections, fsync off), then it is restarted with fsync on and measured"
            + (
                f"; at {', '.join(f'{n:,}' for n in find_sizes)} studies"
                if find_sizes
                else "; not at any C-FIND size here"
            )
            + (
                f" (not above {orthanc['find_max_studies']:,}: filling it takes ~4 ms a study)"
                if any(n > orthanc["find_max_studies"] for n in options.get("studies", []))
                else ""
            )
            + "."
        )
    else:
        lines.append("Orthanc was not measured (not installed, or --orthanc off).")
    return "\n".join(f"- {line}" for line in lines)


def machine() -> dict:
    """What the figures were measured on."""
    info: dict = {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    with_text = {
        "/proc/meminfo": r"^MemTotal:\s+(\d+) kB",
        "/proc/cpuinfo": r"^model name\s*:\s*(.+)$",
    }
    for path, pattern in with_text.items():
        try:
            found = re.search(pattern, Path(path).read_text(), re.MULTILINE)
        except OSError:
            found = None
        if found and path.endswith("meminfo"):
            info["memory_mb"] = int(found.group(1)) // 1024
        elif found:
            info["cpu"] = found.group(1).strip()
    for package in ("archive-node", "pynetdicom", "pydicom", "peewee", "psycopg2-binary"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[package] = metadata.version(package)
    if shutil.which("storescp"):
        out = subprocess.run(["storescp", "--version"], capture_output=True, text=True).stdout
        found = re.search(r"v(\d+\.\d+\.\d+)", out)
        info["dcmtk"] = found.group(1) if found else out.strip().splitlines()[0]
    info["orthanc"] = orthanc_bench.version()
    try:
        import psycopg2

        with psycopg2.connect(find_bench.PG_ADMIN_URL, connect_timeout=3) as conn:
            info["postgresql"] = conn.server_version
        conn.close()
    except Exception:
        info["postgresql"] = None
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=7"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        info["commit"] = commit or None
    except OSError:
        info["commit"] = None
    return info


def _say(message: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="index"
    )
    parser.add_argument(
        "--parts", default="ingest,find,retrieve", help="which benchmarks (default all three)"
    )
    parser.add_argument("--runs", type=int, help="ingest and retrieve runs (default 3)")
    parser.add_argument(
        "--studies", default="20000,100000", help="C-FIND index sizes (default 20000,100000)"
    )
    parser.add_argument("--find-runs", type=int, help="C-FIND runs per query (default 50)")
    parser.add_argument(
        "--instances", type=int, help="C-MOVE/C-GET study size in CT slices (default 1000)"
    )
    parser.add_argument(
        "--fast-paths",
        choices=["both", "on", "off", "each"],
        default="both",
        help="node.fast_paths: both (default: on for every backend, off for the first beside "
        "it), on, off, or each (as both, and a column per speed patch left out alone)",
    )
    parser.add_argument("--seed", type=int, default=1)
    find_bench.add_audit_argument(parser)
    find_bench.add_orthanc_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write every raw result here")
    ingest_bench.add_arguments(parser)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - {"ingest", "find", "retrieve"}:
        parser.error("--parts: choose from ingest,find,retrieve")
    if args.quick:  # --quick shrinks everything, not only the ingest corpus
        runs = args.runs or 1
        studies = args.studies if args.studies != "20000,100000" else "20000"
        find_runs, instances = args.find_runs or 20, args.instances or 200
    else:
        runs, studies = args.runs or 3, args.studies
        find_runs, instances = args.find_runs or 50, args.instances or 1000
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    # configurations, each a column: the backends with the speed patches, and without them
    # (find.PLAIN) on the first backend; the patches are about pynetdicom, not the index
    first = backends[0]
    backends = {
        "on": backends,
        "off": [b + find_bench.PLAIN for b in backends],
        "both": [*backends, first + find_bench.PLAIN],
        "each": [
            *backends,
            first + find_bench.PLAIN,
            *(first + find_bench.WITHOUT + patch for patch in SPEED_PATCHES),
        ],
    }[args.fast_paths]
    backends = find_bench.with_audit(backends, args.audit)  # each beside it without the trail
    dcmtk = all(shutil.which(tool) for tool in ("storescu", "storescp", "getscu", "movescu"))
    if not dcmtk:
        _say(
            "DCMTK (storescu, storescp, getscu, movescu) not installed: ingest and retrieve "
            "skipped"
        )
        parts -= {"ingest", "retrieve"}
    with_orthanc = args.orthanc == "on" and orthanc_bench.executable() is not None
    find_sizes = [
        n
        for n in find_bench.studies_list(studies)
        if with_orthanc and find_bench.orthanc_at(args, n)
    ]
    report: dict = {
        "command": shlex.join([sys.executable, "-m", "bench.report", *(argv or sys.argv[1:])]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "options": {
            "backends": backends,
            "parts": sorted(parts),
            "runs": runs,
            "studies": find_bench.studies_list(studies),
            "find_runs": find_runs,
            "instances": instances,
            "seed": args.seed,
            "workers": args.workers,
            "fast_paths": args.fast_paths,
            "audit": args.audit,
        },
        "orthanc": (
            {
                "version": orthanc_bench.version(),
                "label": orthanc_bench.LABEL,
                "find_studies": find_sizes if "find" in parts else [],
                "find_max_studies": args.orthanc_max_studies,
                # the generated configuration, with placeholders for its directory and ports
                "config": orthanc_bench.config(
                    Path("$TMP"), 0, 0, {"BENCH": ("127.0.0.1", 0), "STORESCP": ("127.0.0.1", 0)}
                ),
            }
            if with_orthanc
            else None
        ),
    }
    rows: list[Row] = []
    errors: list[str] = report.setdefault("errors", [])

    def attempt(what: str, step: Callable[[], object]) -> object | None:
        """Run one step; a failure is reported and recorded, and the others still run."""
        _say(what)
        try:
            return step()
        except Exception as exc:
            traceback.print_exc()
            errors.append(f"{what}: {type(exc).__name__}: {exc}")
            return None

    if "ingest" in parts:
        options = ingest_bench.ingest_options(args)
        if not with_orthanc:
            options["baselines"] = [b for b in options["baselines"] if b != ORTHANC]
        ingested = attempt(
            "ingest", lambda: ingest_bench.run(backends=backends, runs=runs, **options)
        )
        if ingested:
            report["ingest"] = ingested
            rows += ingest_rows(ingested, backends)
    if "find" in parts:
        report["find"] = []
        for count in find_bench.studies_list(studies):
            for backend in backends:
                found = attempt(
                    f"find, {count:,} studies, {backend}",
                    lambda b=backend, c=count: find_bench.run(
                        b, c, find_runs, args.seed, workers=args.workers
                    ),
                )
                if found:
                    report["find"].append(found)
            if count in find_sizes:
                found = attempt(
                    f"find, {count:,} studies, Orthanc",
                    lambda c=count: orthanc_bench.find_run(c, find_runs, args.seed),
                )
                if found:
                    report["find"].append(found)
        rows += find_rows(report["find"], backends)
    if "retrieve" in parts:
        report["retrieve"] = []
        for backend in backends:
            retrieved = attempt(
                f"retrieve, {instances:,} instances, {backend}",
                lambda b=backend: retrieve_bench.run(
                    b, instances, runs, seed=args.seed, workers=args.workers, cache=args.cache
                ),
            )
            if retrieved:
                report["retrieve"].append(retrieved)
        if with_orthanc:
            retrieved = attempt(
                f"retrieve, {instances:,} instances, Orthanc",
                lambda: retrieve_bench.orthanc_run(
                    instances, runs, seed=args.seed, cache=args.cache
                ),
            )
            if retrieved:
                report["retrieve"].append(retrieved)
        rows += retrieve_rows(report["retrieve"], backends)
    text = table(rows, backends)
    report["table"] = [asdict(row) for row in rows]
    report["markdown"] = text
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(text)
    print()
    print(notes(report, backends))
    for error in errors:
        print(f"- FAILED: {error}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
