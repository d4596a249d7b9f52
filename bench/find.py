"""C-FIND latency of a real `archive-node serve` over a large synthetic index, per query type,
on SQLite and PostgreSQL: python -m bench.find --studies 100000 [--backend sqlite|postgresql]."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shlex
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT

from archive_node.config import SPEED_PATCHES
from archive_node.index import Index
from archive_node.net.association import set_tcp_nodelay
from archive_node.net.client import client_ae, echo
from bench.certificates import BenchPki
from bench.corpus import DAYS, FIRST_DAY, Corpus, populate

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK's switch for Nagle's algorithm
PG_ADMIN_URL = os.environ.get("ARCHIVE_NODE_BENCH_PG_URL", "postgresql://postgres@127.0.0.1/test")
RETURN_KEYS = (
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedInstances",
)


def query_types(corpus: Corpus, rng: random.Random) -> dict[str, Callable[[], dict[str, str]]]:
    """Each query type draws fresh values per run, so no run repeats the last one's cache."""
    from datetime import timedelta

    def day(offset: int = 0) -> str:
        return (FIRST_DAY + timedelta(days=offset)).strftime("%Y%m%d")

    def week() -> dict[str, str]:
        start = rng.randrange(DAYS - 7)
        return {"StudyDate": f"{day(start)}-{day(start + 6)}"}

    return {
        "PatientID exact": lambda: {
            "PatientID": corpus.patient_id(rng.randrange(corpus.patients))
        },
        "AccessionNumber exact": lambda: {
            "AccessionNumber": corpus.accession(rng.randrange(corpus.studies))
        },
        "StudyInstanceUID exact": lambda: {
            "StudyInstanceUID": corpus.study_uid(rng.randrange(corpus.studies))
        },
        "StudyDate one week": week,
        "PatientName prefix + date": lambda: {
            "PatientName": rng.choice(["HANS*", "ØDEG*", "JOHAN*", "BERG*"]),
            **week(),
        },
        "ModalitiesInStudy + one day": lambda: {
            "ModalitiesInStudy": rng.choice(["US", "XC", "ES"]),
            "StudyDate": day(rng.randrange(DAYS)),
        },
        # as many days as hold ~150 studies at this size (a month at 20,000, 6 days at 100,000)
        "StudyDate range ~150 hits": lambda: date_range(corpus, RANGE_HITS, rng),
        # Orthanc's series query: relational (PS3.4 C.4.1.2.2), on the series.modality index
        SERIES_BY_MODALITY: lambda: {"QueryRetrieveLevel": "SERIES", "Modality": RARE_MODALITY},
    }


SERIES_BY_MODALITY = "SERIES by Modality ~150 hits, no StudyInstanceUID"
RARE_MODALITY = "MG"  # given to about RANGE_HITS series by mark_rare_modality
SERIES_RETURN_KEYS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "NumberOfSeriesRelatedInstances",
)


def mark_rare_modality(index: Index, corpus: Corpus, hits: int = 150) -> None:
    """Make about `hits` series, spread evenly over the index, of RARE_MODALITY (which the
    corpus never draws), so that a SERIES query on Modality alone has a result of the size
    the other types' are measured at, whatever the index's size."""
    from archive_node.index.tables import Series

    step = max(1, corpus.series // hits)
    with index.session(write=True):
        ids = [pk for (pk,) in Series.select(Series.id).order_by(Series.id).tuples()][::step]
        Series.update(modality=RARE_MODALITY).where(Series.id.in_(ids)).execute()


RANGE_HITS = 150  # the StudyDate range target: ~150 matches in < 30 ms
LARGE_HITS = 5000  # the large result DCMTK findscu receives


def date_range(corpus: Corpus, hits: int, rng: random.Random | None = None) -> dict[str, str]:
    """A StudyDate range of as many days as hold about `hits` of the corpus's studies (their
    dates are uniform over DAYS days), starting on a random day (the first day without rng)."""
    from datetime import timedelta

    width = min(DAYS, max(1, round(hits * DAYS / corpus.studies)))
    start = rng.randrange(DAYS - width + 1) if rng else 0
    first, last = (FIRST_DAY + timedelta(days=d) for d in (start, start + width - 1))
    return {"StudyDate": f"{first:%Y%m%d}-{last:%Y%m%d}"}


# The same draws, asked by an AE with scope hospital (its hospital's studies only).
SCOPED_TYPES = (
    "PatientID exact",
    "StudyDate one week",
    "ModalitiesInStudy + one day",
    SERIES_BY_MODALITY,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Whether some socket listens on TCP `port` (Linux /proc/net; True when unreadable).
    Asked instead of connecting: a connection closed before its A-ASSOCIATE-RQ holds up
    `archive-node serve`'s shutdown for the whole ACSE timeout."""
    try:
        tables = [Path(f"/proc/net/{name}").read_text() for name in ("tcp", "tcp6")]
    except OSError:
        return True
    for table in tables:
        for line in table.splitlines()[1:]:
            # sl local_address rem_address st ...: "0100007F:2B67", state 0A is LISTEN
            fields = line.split()
            if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":
                return True
    return False


def wait_until_answering(
    proc: subprocess.Popen,
    port: int,
    calling: str,
    called: str,
    timeout: float = 30,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Poll until the server `proc` listens on `port`, then until it answers a C-ECHO (a
    failed association costs a tenth of a second), over TLS with the `tls` context if given.
    Raises when it dies first."""
    deadline = time.monotonic() + timeout
    failure: Exception | None = None
    while True:
        try:
            if listening(port) and (
                echo("127.0.0.1", port, calling=calling, called=called, timeout=5, tls=tls) == 0
            ):
                return
        except Exception as exc:  # not yet
            failure = exc
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError(f"{shlex.join(proc.args)} did not answer on {port}") from failure
        time.sleep(0.02)


# The AEs the find benchmark registers: a region-wide one and one of scope hospital.
FIND_AES = (
    ["BENCH", "--hospital", "UNN", "--host", "127.0.0.1", "--allow", "echo,find"],
    [
        "BENCH_H",
        "--hospital",
        "UNN",
        "--host",
        "127.0.0.1",
        "--allow",
        "find",
        "--scope",
        "hospital",
    ],
)


# A configuration of the node measured: its index backend, then "-plain" when it runs without
# its speed patches (node.fast_paths = false), or "-without-<patch>" without that one alone,
# then "-audit-off" when it keeps no audit trail (audit.enabled = false): "sqlite",
# "postgresql", "sqlite-plain", "sqlite-without-reactor", "sqlite-audit-off".
PLAIN = "-plain"
WITHOUT = "-without-"
AUDIT_OFF = "-audit-off"
AUDIT_MODES = ("on", "off", "both")


def audited(name: str) -> bool:
    """Whether the configuration keeps the audit trail (audit.enabled, on by default)."""
    return not name.endswith(AUDIT_OFF)


def with_audit(names: list[str], mode: str) -> list[str]:
    """The configurations `names` with the audit trail on, off, or both (each beside the
    other, audit on first)."""
    if mode == "on":
        return list(names)
    if mode == "off":
        return [name + AUDIT_OFF for name in names]
    return [each for name in names for each in (name, name + AUDIT_OFF)]


def configuration(name: str) -> tuple[str, bool | tuple[str, ...]]:
    """(backend, node.fast_paths) of a configuration name."""
    name = name.removesuffix(AUDIT_OFF)
    if name.endswith(PLAIN):
        return name.removesuffix(PLAIN), False
    if WITHOUT in name:
        backend, left_out = name.split(WITHOUT, 1)
        if left_out not in SPEED_PATCHES:
            raise ValueError(f"{name}: no speed patch {left_out} ({', '.join(SPEED_PATCHES)})")
        return backend, tuple(p for p in SPEED_PATCHES if p != left_out)
    return name, True


def configuration_label(name: str) -> str:
    """How a configuration is named in the report."""
    backend, fast_paths = configuration(name)
    audit = "" if audited(name) else ", audit off"
    if fast_paths is True:
        return f"archive-node {backend}{audit}"
    if fast_paths is False:
        return f"archive-node {backend}, fast paths off{audit}"
    left_out = name.removesuffix(AUDIT_OFF).split(WITHOUT, 1)[1]
    return f"archive-node {backend} without {left_out}{audit}"


def _toml(value: bool | tuple[str, ...]) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "[" + ", ".join(f'"{name}"' for name in value) + "]"


@contextlib.contextmanager
def serving(
    root: Path,
    index_url: str,
    aes=FIND_AES,
    *,
    workers: int | None = None,
    prepare: bool = True,
    fast_paths: bool | tuple[str, ...] = True,
    tls: BenchPki | None = None,
    audit: bool = True,
) -> Iterator[subprocess.Popen]:
    """Run `archive-node serve` on a free port with this index and these AEs (`ae add`
    arguments; the first must have `echo`); yield the process (its port is `.port`).
    `workers` passes `--workers` (None: the node's own node.workers); `prepare=False` serves
    an index already initialised and holding the AEs (a restart); `fast_paths` is
    node.fast_paths. With `tls`, the node speaks DICOM TLS only (node.port = 0, the free port
    is tls.port, with these certificates) and the first AE is probed over TLS with the PKI's
    client certificate. `audit` is audit.enabled."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_NODE_")}
    config = root / "archive-node.toml"
    cli = [sys.executable, "-m", "archive_node", "--config", str(config)]
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        config.write_text(
            f'[node]\nbind = "127.0.0.1"\nport = {0 if tls else port}\n'
            f"fast_paths = {_toml(fast_paths)}\n"
            f'[storage]\npath = "{root / "storage"}"\nmin_free_mb = 1\n'
            f'[index]\nurl = "{index_url}"\n[query]\nmax_results = 10000\n'
            f'[log]\nlevel = "WARNING"\n[audit]\nenabled = {str(audit).lower()}\n'
            # its metrics endpoint on, as in service, on a port of its own (not 9110: another
            # node on this machine may hold it)
            f'[metrics]\nbind = "127.0.0.1"\nport = {free_port()}\n'
            + (tls.node_config(port) if tls else "")
        )
        if prepare and attempt == 0:
            subprocess.run([*cli, "init"], check=True, capture_output=True, env=env)
            for args in aes:
                subprocess.run(
                    [*cli, "ae", "add", *args], check=True, capture_output=True, env=env
                )
        serve = [*cli, "serve", *(["--workers", str(workers)] if workers is not None else [])]
        proc = subprocess.Popen(serve, env=env, stdout=subprocess.DEVNULL)
        proc.port = port  # type: ignore[attr-defined]
        try:
            probe = tls.client_context() if tls else None
            wait_until_answering(proc, port, aes[0][0], "ARCHIVE", tls=probe)
        except RuntimeError:
            exited = proc.poll() is not None
            _stop_process(proc)
            if exited and attempt + 1 < START_ATTEMPTS:
                continue  # gone at its start: most likely its free port was taken meanwhile
            raise
        break
    try:
        yield proc
    finally:
        _stop_process(proc)


# free_port() lets the port go before the server binds it: on a machine where other programs
# open ports all the time, one of them may take it first (seen here, with other test runs).
# A server that exits at its start is started again on another port, this many times in all.
START_ATTEMPTS = 3


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=30)


def measure(
    port: int,
    corpus: Corpus,
    runs: int,
    seed: int,
    *,
    called: str = "ARCHIVE",
    scoped: bool = True,
) -> dict[str, dict[str, float]]:
    """p50/p95 milliseconds and mean matches of each query type, one association per AE;
    with `scoped`, the SCOPED_TYPES again as BENCH_H (an AE of scope hospital)."""
    types = query_types(corpus, random.Random(seed))
    results = _measure(port, "BENCH", types, runs, called)
    if not scoped:
        return results
    scoped_types = {name: draw for name, draw in types.items() if name in SCOPED_TYPES}
    for name, result in _measure(port, "BENCH_H", scoped_types, runs, called).items():
        results[f"{name} (scope hospital)"] = result
    return results


def _measure(
    port: int,
    calling: str,
    types: dict[str, Callable[[], dict[str, str]]],
    runs: int,
    called: str = "ARCHIVE",
) -> dict[str, dict[str, float]]:
    # the node's own speed patches serve the client, in either mode of the node: the
    # client does not poll, so the figure is the node's
    ae = client_ae(calling, 30.0, fast_paths=True)
    ae.add_requested_context(STUDY_ROOT)
    assoc = ae.associate(
        "127.0.0.1", port, ae_title=called, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)]
    )
    assert assoc.is_established, f"the node refused the benchmark's association as {calling}"
    results = {}
    try:
        for name, draw in types.items():
            timings, counts = [], []
            for _ in range(runs + 3):  # the first three warm the caches and are dropped
                keys = draw()
                identifier = Dataset()
                identifier.QueryRetrieveLevel = keys.pop("QueryRetrieveLevel", "STUDY")
                if identifier.QueryRetrieveLevel == "STUDY":
                    identifier.StudyInstanceUID = ""
                returned = RETURN_KEYS if identifier.QueryRetrieveLevel == "STUDY" else ()
                for keyword in returned or SERIES_RETURN_KEYS:
                    setattr(identifier, keyword, "")
                for keyword, value in keys.items():
                    setattr(identifier, keyword, value)
                started = time.perf_counter()
                matches, final = 0, None
                for rsp, _ in assoc.send_c_find(identifier, STUDY_ROOT):
                    if rsp.Status in (0xFF00, 0xFF01):
                        matches += 1
                    else:
                        final = rsp.Status
                elapsed = (time.perf_counter() - started) * 1000
                assert final == 0, f"{name}: final status 0x{final:04X}"
                timings.append(elapsed)
                counts.append(matches)
            timings, counts = timings[3:], counts[3:]
            results[name] = {
                "p50_ms": statistics.median(timings),
                "p95_ms": statistics.quantiles(timings, n=20)[-1],
                "mean_matches": statistics.mean(counts),
            }
    finally:
        assoc.release()
    return results


def time_findscu(
    port: int, corpus: Corpus, runs: int, hits: int = LARGE_HITS, *, called: str = "ARCHIVE"
) -> dict:
    """Responses per second of a large result (a StudyDate range of about `hits` studies)
    received by DCMTK findscu, a process per query: the median of `runs` after one warm-up."""
    keys = {**{k: "" for k in RETURN_KEYS}, **date_range(corpus, hits)}
    args = [
        *("findscu", "-S", "-v", "-aet", "BENCH", "-aec", called),
        *("-k", "QueryRetrieveLevel=STUDY"),
        *(arg for keyword, value in keys.items() for arg in ("-k", f"{keyword}={value}")),
        *("127.0.0.1", str(port)),
    ]
    timings, counts = [], []
    for _ in range(runs + 1):
        started = time.perf_counter()
        done = subprocess.run(args, env=DCMTK_ENV, capture_output=True, check=True)
        timings.append(time.perf_counter() - started)
        output = done.stdout + done.stderr
        assert b"Received Final Find Response (Success)" in output, output[-500:]
        counts.append(len(re.findall(rb"Find Response: \d+ \(Pending\)", output)))
    timings, counts = timings[1:], counts[1:]
    seconds = statistics.median(timings)
    return {
        "query": keys["StudyDate"],
        "responses": statistics.median(counts),
        "seconds": round(seconds, 3),
        "responses_per_s": round(statistics.median(counts) / seconds, 1),
    }


@contextlib.contextmanager
def index_url_for(name: str, root: Path) -> Iterator[str]:
    """A fresh index of the configuration's backend."""
    backend, _ = configuration(name)
    if backend == "sqlite":
        yield f"sqlite:///{root}/index.sqlite3"
        return
    import psycopg2

    name = f"archive_node_bench_{os.getpid()}"
    admin = psycopg2.connect(PG_ADMIN_URL)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def run(backend: str, studies: int, runs: int, seed: int, *, workers: int | None = None) -> dict:
    """C-FIND timings of the configuration `backend` (see configuration())."""
    from bench.retrieve import tree_hwm  # bench.retrieve imports this module

    base, fast_paths = configuration(backend)
    with tempfile.TemporaryDirectory(prefix="archive-node-bench-") as tmp:
        root = Path(tmp)
        with index_url_for(backend, root) as url:
            index = Index.open(url)
            index.init_schema()
            started = time.perf_counter()
            corpus = populate(index, studies, seed=seed)
            mark_rare_modality(index, corpus)
            if base == "postgresql":
                with index.session():
                    index.db.execute_sql("ANALYZE")
            populated = time.perf_counter() - started
            index.close()
            with serving(
                root, url, workers=workers, fast_paths=fast_paths, audit=audited(backend)
            ) as node:
                results = measure(node.port, corpus, runs, seed)
                findscu = (
                    time_findscu(node.port, corpus, max(3, runs // 10))
                    if shutil.which("findscu")
                    else None
                )
                peak = tree_hwm(node.pid)
    return {
        "backend": backend,
        "studies": corpus.studies,
        "patients": corpus.patients,
        "series": corpus.series,
        "instances": corpus.instances,
        "populate_s": round(populated, 1),
        "queries": results,
        "findscu": findscu,
        "serve_peak_rss_mb": round(peak / 2**20, 1),
    }


def table(reports: list[dict]) -> str:
    lines = [
        "| backend | studies | query | p50 ms | p95 ms | mean matches |",
        "|---|---|---|---|---|---|",
    ]
    for report in reports:
        for name, r in report["queries"].items():
            lines.append(
                f"| {report['backend']} | {report['studies']:,} | {name} | {r['p50_ms']:.1f} "
                f"| {r['p95_ms']:.1f} | {r['mean_matches']:.1f} |"
            )
        large = report.get("findscu")
        if large:
            lines.append(
                f"| {report['backend']} | {report['studies']:,} | large result by findscu "
                f"({large['responses_per_s']:,.0f} responses/s) | {large['seconds'] * 1000:.0f} "
                f"| | {large['responses']:.0f} |"
            )
    return "\n".join(lines)


def add_audit_argument(parser: argparse.ArgumentParser) -> None:
    """--audit on|off|both: the node with its audit trail (the default), without it
    (audit.enabled = false), or each beside the other."""
    parser.add_argument(
        "--audit",
        choices=AUDIT_MODES,
        default="on",
        help="the node's audit trail: on (default), off (audit.enabled = false), or both, "
        "each configuration beside the other",
    )


def add_workers_argument(parser: argparse.ArgumentParser) -> None:
    """--workers N: passed to `archive-node serve`; by default none is, and the node runs
    as many workers as its node.workers says."""
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="archive-node serve --workers (default: not passed, node.workers decides)",
    )


def add_orthanc_arguments(parser: argparse.ArgumentParser) -> None:
    """--orthanc on|off and --orthanc-max-studies N (C-FIND of Orthanc up to N studies)."""
    parser.add_argument(
        "--orthanc",
        choices=["on", "off"],
        default="on",
        help="measure Orthanc beside the node (when installed or installable; default on)",
    )
    parser.add_argument(
        "--orthanc-max-studies",
        type=int,
        default=100_000,
        help="C-FIND of Orthanc only at index sizes up to this (filling it takes ~4 ms a "
        "study; default 100000)",
    )


def orthanc_at(args: argparse.Namespace, studies: int) -> bool:
    """Whether Orthanc's C-FIND is measured at this index size."""
    if args.orthanc != "on" or studies > args.orthanc_max_studies:
        return False
    from bench import orthanc

    return orthanc.executable() is not None


def studies_list(text: str) -> list[int]:
    """Parse "20000,100000" (or "20_000") into [20000, 100000]."""
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--studies", default="100000", help="studies in the index; a list runs each (20000,100000)"
    )
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="index"
    )
    add_workers_argument(parser)
    add_audit_argument(parser)
    add_orthanc_arguments(parser)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    reports = []
    for studies in studies_list(args.studies):
        for b in with_audit(backends, args.audit):
            reports.append(run(b, studies, args.runs, args.seed, workers=args.workers))
        if orthanc_at(args, studies):
            from bench import orthanc

            reports.append(orthanc.find_run(studies, args.runs, args.seed))
    print(table(reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
