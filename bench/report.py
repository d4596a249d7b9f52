"""Issue 6's whole benchmark (ingest, find, retrieve) as one markdown table of targets and JSON."""

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
from bench import retrieve as retrieve_bench

# Issue 6's figures, measured on the development machine (2 cores, loopback). Orthanc is not
# installed here, so its figures are only quoted; DCMTK and pynetdicom storescp are measured
# again in the same run, and their quoted figures are kept for reference in the JSON.
# Ingest: (kind, associations) -> inst/s for SC, MB/s otherwise.
ISSUE_INGEST = {
    ("sc", 1): {"dcmtk": 865, "orthanc": 542, "pynetdicom": 183},
    ("sc", 2): {"dcmtk": 1400, "orthanc": 739, "pynetdicom": 278},
    ("ct", 1): {"dcmtk": 220, "orthanc": 93, "pynetdicom": 71},
    ("ct", 2): {"dcmtk": 490, "orthanc": 160, "pynetdicom": 91},
    ("us", 1): {"dcmtk": 249, "orthanc": 180, "pynetdicom": 137},
    ("us", 2): {"dcmtk": 928, "orthanc": 284, "pynetdicom": 152},
    ("video", 1): {"dcmtk": 622, "orthanc": 74, "pynetdicom": 97},
}
ISSUE_VIDEO_RSS_MB = {"dcmtk": 318, "orthanc": 940, "pynetdicom": 967}  # 318 MB video
ISSUE_ORTHANC = {
    "find PatientID exact 20k p50 ms": 35,
    "find StudyDate range 165 hits 20k p50 ms": 172,
    "move 1000 CT inst/s": 565,
    "move 1000 CT MB/s": 297,
}
ORTHANC_LABEL = "Orthanc 1.10 (SQLite, fsync), issue's figure"

# Targets (issue 6).
LARGE_SHARE_OF_DCMTK = 0.7  # large objects: >= Orthanc MB/s and >= 70% of DCMTK storescp
SMALL_TIMES_PYNETDICOM = 2.0  # small objects, 1 association: >= 2x pynetdicom storescp
VIDEO_RSS_MB = 120
EXACT_P95_MS = 5.0
RANGE_P95_MS = 30.0
RETRIEVE_INST_PER_S = 565
EXACT_TYPES = (
    "PatientID exact",
    "AccessionNumber exact",
    "StudyInstanceUID exact",
    "PatientID exact (scope hospital)",
)
UNITS = {"sc": "inst/s", "ct": "MB/s", "us": "MB/s", "video": "MB/s"}


@dataclass
class Row:
    """One figure: archive-node's value per backend, the baselines', and how it is judged."""

    figure: str
    node: dict[str, float | None]  # backend -> value
    dcmtk: float | None = None
    pynetdicom: float | None = None
    orthanc: float | None = None
    orthanc_note: str = ""
    target: str = "-"
    met: dict[str, bool | None] = field(default_factory=dict)  # backend -> met
    shown: dict[str, str] = field(default_factory=dict)  # backend -> value as printed

    def judge(self, test: Callable[[float], bool | None]) -> Row:
        self.met = {b: (None if v is None else test(v)) for b, v in self.node.items()}
        return self


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _ratio(value: float | None, base: float | None) -> str:
    return "-" if value is None or not base else f"{value / base:.2f}"


def _what(kind: str, corpus: dict) -> str:
    """The corpus of a kind in words, e.g. CT slices of 525 KB x 300."""
    size = corpus["mean_kb"]
    each = f"{size / 1000:,.0f} MB" if size >= 1000 else f"{size:,.0f} KB"
    count = corpus["instances"]
    return f"{ingest_bench.KINDS[kind].plural} of {each}" + (f" x {count}" if count > 1 else "")


def ingest_rows(report: dict, backends: list[str]) -> list[Row]:
    rows = []
    names = {b: ingest_bench.receiver_name(b) for b in backends}
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
            quoted = ISSUE_INGEST.get((kind, min(n, 2)), {})
            row = Row(
                figure=f"C-STORE {_what(kind, corpus)}, {n} assoc, {unit}",
                node={b: value(name) for b, name in names.items()},
                dcmtk=value(ingest_bench.receiver_name("dcmtk")),
                pynetdicom=value(ingest_bench.receiver_name("pynetdicom")),
                orthanc=quoted.get("orthanc"),
                orthanc_note="" if n <= 2 else " (2 assoc)",
            )
            if kind == "sc" and n == 1:
                row.target = f">= {SMALL_TIMES_PYNETDICOM:g}x pynetdicom"
                row.judge(
                    lambda v, r=row: (
                        None
                        if r.pynetdicom is None
                        else v >= SMALL_TIMES_PYNETDICOM * r.pynetdicom
                    )
                )
            elif kind != "sc":
                row.target = f">= Orthanc and >= {LARGE_SHARE_OF_DCMTK:.0%} DCMTK"
                row.judge(
                    lambda v, r=row: (
                        v >= (r.orthanc or 0)
                        and (r.dcmtk is None or v >= LARGE_SHARE_OF_DCMTK * r.dcmtk)
                    )
                )
            rows.append(row)
    video = report["corpus"].get("video")
    if video and 1 in report["associations"]:
        kind, corpus = "video", video

        def rss(receiver: str, kind=kind) -> float | None:
            row = ingest_bench.find(report, receiver, kind, 1)
            return row["peak_rss_mb"] if row else None

        rows.append(
            Row(
                figure=f"peak RSS receiving the video ({corpus['mb']:,.0f} MB), MB",
                node={b: rss(name) for b, name in names.items()},
                dcmtk=rss(ingest_bench.receiver_name("dcmtk")),
                pynetdicom=rss(ingest_bench.receiver_name("pynetdicom")),
                orthanc=ISSUE_VIDEO_RSS_MB["orthanc"],
                target=f"< {VIDEO_RSS_MB} MB",
            ).judge(lambda v: v < VIDEO_RSS_MB)
        )
        sends = {s["receiver"]: s for s in report["video_send"] if s["kind"] == kind}
        rows.append(
            Row(
                figure="peak RSS sending the video (C-MOVE into DCMTK storescp), MB",
                node={b: sends.get(name, {}).get("peak_rss_mb") for b, name in names.items()},
                target=f"< {VIDEO_RSS_MB} MB",
            ).judge(lambda v: v < VIDEO_RSS_MB)
        )
        rows.append(
            Row(
                figure="C-MOVE of the video into DCMTK storescp, MB/s",
                node={b: sends.get(name, {}).get("mb_per_s") for b, name in names.items()},
            )
        )
    return rows


def find_rows(reports: list[dict], backends: list[str]) -> list[Row]:
    rows = []
    for studies in sorted({r["studies"] for r in reports}):
        by_backend = {r["backend"]: r for r in reports if r["studies"] == studies}
        names = next(iter(by_backend.values()))["queries"]
        for name in names:
            p50 = {b: by_backend[b]["queries"][name]["p50_ms"] for b in by_backend}
            p95 = {b: by_backend[b]["queries"][name]["p95_ms"] for b in by_backend}
            hits = next(iter(by_backend.values()))["queries"][name]["mean_matches"]
            row = Row(
                figure=f"C-FIND {name} at {studies:,} studies ({hits:,.1f} hits), p50 / p95 ms",
                node={b: p50.get(b) for b in backends},
                shown={b: f"{p50[b]:.1f} / {p95[b]:.1f}" for b in by_backend},
            )
            if studies == 20_000 and name == "PatientID exact":
                row.orthanc = ISSUE_ORTHANC["find PatientID exact 20k p50 ms"]
                row.orthanc_note = " (p50)"
            if studies == 20_000 and name == "StudyDate range ~150 hits":
                row.orthanc = ISSUE_ORTHANC["find StudyDate range 165 hits 20k p50 ms"]
                row.orthanc_note = " (p50, 165 hits)"
            if name in EXACT_TYPES:
                row.target = f"p95 < {EXACT_P95_MS:g} ms"
                row.met = {b: p95[b] < EXACT_P95_MS if b in p95 else None for b in backends}
            elif name == "StudyDate range ~150 hits":
                row.target = f"p95 < {RANGE_P95_MS:g} ms"
                row.met = {b: p95[b] < RANGE_P95_MS if b in p95 else None for b in backends}
            rows.append(row)
        large = {b: r.get("findscu") for b, r in by_backend.items() if r.get("findscu")}
        if large:
            hits = next(iter(large.values()))["responses"]
            rows.append(
                Row(
                    figure=(
                        f"C-FIND large result ({hits:,.0f} hits) by DCMTK findscu at "
                        f"{studies:,} studies, responses/s"
                    ),
                    node={
                        b: large[b]["responses_per_s"] if b in large else None for b in backends
                    },
                )
            )
    return rows


def retrieve_rows(reports: list[dict], backends: list[str]) -> list[Row]:
    if not reports:
        return []
    by = {r["backend"]: r for r in reports}
    first = reports[0]
    what = f"{first['instances']:,}-instance CT study ({first['mb']:,.0f} MB)"

    def node(key: str) -> dict[str, float | None]:
        return {b: by[b][key] if b in by else None for b in backends}

    rows = [
        Row(
            f"C-MOVE {what} into DCMTK storescp, inst/s",
            node("move_instances_per_s"),
            orthanc=ISSUE_ORTHANC["move 1000 CT inst/s"],
            target=f">= {RETRIEVE_INST_PER_S} inst/s",
        ).judge(lambda v: v >= RETRIEVE_INST_PER_S),
        Row(
            f"C-MOVE {what} into DCMTK storescp, MB/s",
            node("move_mb_per_s"),
            orthanc=ISSUE_ORTHANC["move 1000 CT MB/s"],
        ),
        Row(
            f"C-GET {what} by DCMTK getscu, inst/s",
            node("get_instances_per_s"),
            target=f">= {RETRIEVE_INST_PER_S} inst/s",
        ).judge(lambda v: v >= RETRIEVE_INST_PER_S),
        Row(f"C-GET {what} by DCMTK getscu, MB/s", node("get_mb_per_s")),
        Row("peak RSS of serve through the retrieve runs, MB", node("serve_peak_rss_mb")),
    ]
    return rows


def table(rows: list[Row], backends: list[str]) -> str:
    both = len(backends) > 1
    header = [
        "figure",
        *(ingest_bench.receiver_name(b) for b in backends),
        "DCMTK storescp",
        "pynetdicom storescp",
        "Orthanc (issue)",
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
        orthanc = "-" if row.orthanc is None else f"{_num(row.orthanc)}{row.orthanc_note}"
        cells = [
            row.figure,
            *(row.shown.get(b, _num(row.node.get(b))) for b in backends),
            _num(row.dcmtk),
            _num(row.pynetdicom),
            orthanc,
            per_backend(lambda b, row=row: _ratio(row.node.get(b), row.dcmtk)),
            per_backend(lambda b, row=row: _ratio(row.node.get(b), row.pynetdicom)),
            per_backend(lambda b, row=row: _ratio(row.node.get(b), row.orthanc)),
            row.target,
            met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(report: dict, backends: list[str]) -> str:
    ratio = " / ".join(backends)
    lines = [
        f"Ratios and met are per configuration ({ratio}; -plain: node.fast_paths = false, "
        "pynetdicom's own code where the node's speed patches would run; -without-X: every "
        "speed patch but X; audit off: audit.enabled = false). DCMTK and pynetdicom "
        "storescp are measured in this run; Orthanc's figures are quoted from the issue (not "
        "installed here).",
        "Ingest: DCMTK storescu, TCP_NODELAY=1, files in their own syntax, median of "
        f"{report['options'].get('runs')} run(s), a fresh receiver each run; archive-node "
        "fsyncs each file, the storescps do not and keep no index.",
    ]
    if any(n > 2 for n in report.get("ingest", {}).get("associations", [])):
        lines.append("Orthanc's parallel ingest figures were measured with 2 associations.")
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
    dcmtk = all(shutil.which(tool) for tool in ("storescu", "storescp", "getscu"))
    if not dcmtk:
        _say("DCMTK (storescu, storescp, getscu) not installed: ingest and retrieve skipped")
        parts -= {"ingest", "retrieve"}
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
        "issue_figures": {
            "ingest": {f"{k} {n} assoc": v for (k, n), v in ISSUE_INGEST.items()},
            "video_rss_mb": ISSUE_VIDEO_RSS_MB,
            "orthanc": ISSUE_ORTHANC,
            "orthanc_label": ORTHANC_LABEL,
        },
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
        rows += find_rows(report["find"], backends)
    if "retrieve" in parts:
        report["retrieve"] = []
        for backend in backends:
            retrieved = attempt(
                f"retrieve, {instances:,} instances, {backend}",
                lambda b=backend: retrieve_bench.run(
                    b, instances, runs, seed=args.seed, workers=args.workers
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
