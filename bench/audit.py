"""The audit trail's costs (issue 19), on SQLite and PostgreSQL:

    python -m bench.audit [query] [--records 1000000] [--patients 100000] [--queries 200]
                          [--backend sqlite|postgresql|both] [--json F]
        "who has accessed my record": an index filled with `--records` audit records spread
        over `--patients` patients, then index.audit.query(AuditFilter(patient_id, issuer))
        timed for random patients (p50/p95), `archive-node audit --patient X --issuer Y
        --json` end to end (a process each), and the plan the database chose for the question
    python -m bench.audit overhead [--rounds 5] [--backend sqlite] [--quick] [--json F]
        ingest (SC, CT; 1 and 2 associations), C-FIND and C-MOVE/C-GET of `archive-node
        serve` with the trail on and off (audit.enabled = false), the two taking turns figure
        by figure and going first in alternate rounds; medians of the rounds

The records of `query` are written straight into the tables in large transactions, not
through the node: their hashes (and prev_hash) are synthetic, not a valid chain, since what is
measured is the question, not `audit verify`. Each node's chain head is set so that the
command's own Audit Log Used record follows on. A tenth of the records touch no patient (node
activity, security alerts), a fifth touch three (C-FIND answers), the rest one study of one
patient (C-STORE, C-MOVE, C-GET); times rise with the sequence number over a year.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from archive_node.index import Index
from archive_node.index.audit_rows import RECORD_COLUMNS, AuditFilter
from archive_node.rules.audit import (
    APPLICATION_ACTIVITY,
    INSTANCES_TRANSFERRED,
    QUERY,
    SECURITY_ALERT,
)
from bench import find as find_bench
from bench import ingest as ingest_bench
from bench import retrieve as retrieve_bench
from bench.find import AUDIT_OFF, index_url_for
from bench.media import CACHE, media

NODE = "ARCHIVE"
HOSPITALS = ("UNN", "NLSH", "HST", "FIN")
ISSUERS = tuple(f"{code}-PID" for code in HOSPITALS)
AES = ("PACS_UNN", "PACS_NLSH", "MODALITY1", "VIEWER7", "RIS")
_TOUCHED_COLUMNS = ("record_id", "patient_id", "issuer", "study_uid", "instances")


# -- query: "who has accessed my record" at a million records ---------------------------------


def patient(number: int) -> tuple[str, str]:
    """PatientID and IssuerOfPatientID of synthetic patient `number`."""
    return f"P{number:08d}", ISSUERS[number % len(ISSUERS)]


def study_uid(number: int, which: int) -> str:
    return f"1.2.826.0.1.3680043.10.1437.{number}.{which}"


def _rows(first: int, last: int, patients: int, rng: random.Random) -> tuple[list, list]:
    """The records numbered first..last-1 (their id is their seq) and the rows they touch."""
    start = 1_767_225_600  # 2026-01-01 UTC; the records spread over a year
    records, touched = [], []
    for seq in range(first, last):
        moment = time.gmtime(start + seq * 31)  # a million records: 359 days
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{seq * 7919 % 1_000_000:06d}Z"
        draw = rng.random()
        ae = AES[seq % len(AES)]
        hospital = HOSPITALS[seq % len(HOSPITALS)]
        if draw < 0.1:
            kind, operation, many, action = (
                (APPLICATION_ACTIVITY, "start", 0, "E")
                if draw < 0.02
                else (SECURITY_ALERT, "association", 0, "E")
            )
        elif draw < 0.3:
            kind, operation, many, action = QUERY, "C-FIND", 3, "E"
        elif draw < 0.8:
            kind, operation, many, action = INSTANCES_TRANSFERRED, "C-STORE", 1, "C"
        else:
            kind, operation, many, action = INSTANCES_TRANSFERRED, "C-MOVE", 1, "R"
        records.append(
            (
                NODE,
                seq,
                stamp,
                kind.name,
                kind.code,
                "",
                action,
                operation,
                0,
                "",
                f"{seq // 20:032x}",
                ae,
                hospital,
                "10.0.0.7",
                "",
                "STORESCP" if operation == "C-MOVE" else "",
                '{"stored":1}' if operation == "C-STORE" else "{}",
                f"{seq - 1:064x}",  # synthetic: the query, not the chain, is measured
                f"{seq:064x}",
            )
        )
        for number in {rng.randrange(patients) for _ in range(many)}:
            pid, issuer = patient(number)
            instances = 0 if operation == "C-FIND" else rng.randint(1, 300)
            touched.append((seq, pid, issuer, study_uid(number, seq % 3), instances))
    return records, touched


def fill(index: Index, records: int, patients: int, seed: int, batch: int = 50_000) -> int:
    """Write `records` audit records of NODE's chain straight into the tables, `batch` to a
    transaction; returns the rows of audit_touched written."""
    rng = random.Random(seed)
    db = index.db
    postgres = "postgres" in type(db).__name__.lower()
    insert_record = (
        f"INSERT INTO audit_record (id, {', '.join(RECORD_COLUMNS)}) VALUES %s"
        if postgres
        else f"INSERT INTO audit_record (id, {', '.join(RECORD_COLUMNS)}) "
        f"VALUES ({', '.join('?' * (len(RECORD_COLUMNS) + 1))})"
    )
    insert_touched = (
        f"INSERT INTO audit_touched ({', '.join(_TOUCHED_COLUMNS)}) VALUES %s"
        if postgres
        else f"INSERT INTO audit_touched ({', '.join(_TOUCHED_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(_TOUCHED_COLUMNS))})"
    )
    written = 0
    for first in range(1, records + 1, batch):
        last = min(first + batch, records + 1)
        rows, touched = _rows(first, last, patients, rng)
        rows = [(seq, *row) for seq, row in zip(range(first, last), rows, strict=True)]
        with index.session(write=True):
            cursor = db.cursor()
            if postgres:
                from psycopg2.extras import execute_values

                execute_values(cursor, insert_record, rows, page_size=5000)
                execute_values(cursor, insert_touched, touched, page_size=5000)
            else:
                cursor.executemany(insert_record, rows)
                cursor.executemany(insert_touched, touched)
        written += len(touched)
    with index.session(write=True):
        db.execute_sql(
            "INSERT INTO audit_chain (node, seq, hash, pruned_seq, pruned_hash, sent_seq) "
            f"VALUES ({', '.join([db.param] * 6)})",
            (NODE, records, f"{records:064x}", 0, "0" * 64, records),
        )
        if postgres:  # the sequence behind audit_record.id, past the ids given here
            db.execute_sql(
                "SELECT setval(pg_get_serial_sequence('audit_record', 'id'), "
                "(SELECT MAX(id) FROM audit_record))"
            )
    with index.session():
        db.execute_sql("ANALYZE")
    return written


@contextlib.contextmanager
def captured_sql() -> Iterator[list[tuple[str, Any]]]:
    """The statements peewee runs meanwhile, with their parameters."""
    seen: list[tuple[str, Any]] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if isinstance(record.msg, tuple) and len(record.msg) == 2:
                seen.append(record.msg)

    logger = logging.getLogger("peewee")
    handler, level = Catch(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def explain(index: Index, question: AuditFilter) -> dict[str, Any]:
    """The statements of one question and the database's plan for the first (the records'):
    SQLite's EXPLAIN QUERY PLAN, PostgreSQL's EXPLAIN ANALYZE."""
    with captured_sql() as seen:
        index.audit.query(question)
    sql, params = seen[0]
    postgres = "postgres" in type(index.db).__name__.lower()
    with index.session():
        prefix = "EXPLAIN ANALYZE " if postgres else "EXPLAIN QUERY PLAN "
        rows = index.db.execute_sql(prefix + sql, params).fetchall()
    plan = [row[0] for row in rows] if postgres else [row[-1] for row in rows]
    return {"sql": sql, "statements": len(seen), "plan": plan}


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(statistics.quantiles(values, n=20)[-1], 2),
        "max_ms": round(max(values), 2),
    }


def time_questions(index: Index, patients: int, queries: int, seed: int) -> dict[str, Any]:
    """index.audit.query for `queries` random patients (after 5 not counted)."""
    rng = random.Random(seed + 1)
    timings, found = [], []
    for turn in range(queries + 5):
        pid, issuer = patient(rng.randrange(patients))
        started = time.perf_counter()
        records = index.audit.query(AuditFilter(patient_id=pid, issuer=issuer))
        elapsed = (time.perf_counter() - started) * 1000
        if turn >= 5:
            timings.append(elapsed)
            found.append(len(records))
    return {**_ms(timings), "mean_records": round(statistics.mean(found), 1)}


def time_command(root: Path, url: str, patients: int, runs: int, seed: int) -> dict[str, Any]:
    """`archive-node audit --patient X --issuer Y --json` as a process, `runs` times."""
    config = root / "archive-node.toml"
    config.write_text(
        f'[node]\nae_title = "{NODE}"\n[storage]\npath = "{root / "storage"}"\nmin_free_mb = 1\n'
        f'[index]\nurl = "{url}"\n[log]\nlevel = "WARNING"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVE_NODE_")}
    rng = random.Random(seed + 2)
    timings, found = [], []
    for _ in range(runs):
        pid, issuer = patient(rng.randrange(patients))
        args = [sys.executable, "-m", "archive_node", "--config", str(config), "audit"]
        args += ["--patient", pid, "--issuer", issuer, "--json"]
        started = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
        timings.append((time.perf_counter() - started) * 1000)
        found.append(len(json.loads(done.stdout)))
    # a process with nothing to ask: what the interpreter and the imports cost alone
    started = time.perf_counter()
    subprocess.run([*args[:6], "--help"], env=env, capture_output=True, check=True)
    startup = (time.perf_counter() - started) * 1000
    return {
        "runs_ms": [round(t) for t in timings],
        "p50_ms": round(statistics.median(timings)),
        "records": found,
        "help_ms": round(startup),
    }


def query_run(
    backend: str, records: int, patients: int, queries: int, commands: int, seed: int
) -> dict[str, Any]:
    """Fill a fresh index of `backend` and time the question on it."""
    with tempfile.TemporaryDirectory(prefix="archive-node-bench-audit-") as tmp:
        root = Path(tmp)
        with index_url_for(backend, root) as url:
            index = Index.open(url)
            try:
                index.init_schema()
                started = time.perf_counter()
                touched = fill(index, records, patients, seed)
                filled = time.perf_counter() - started
                pid, issuer = patient(random.Random(seed).randrange(patients))
                plan = explain(index, AuditFilter(patient_id=pid, issuer=issuer))
                questions = time_questions(index, patients, queries, seed)
            finally:
                index.close()
            command = time_command(root, url, patients, commands, seed)
    return {
        "backend": backend,
        "records": records,
        "touched_rows": touched,
        "patients": patients,
        "fill_s": round(filled, 1),
        "query": questions,
        "command": command,
        "explain": plan,
    }


def query_table(reports: list[dict[str, Any]]) -> str:
    lines = [
        "| backend | records (touched rows) | patients | query p50 / p95 / max ms | records "
        "found | `archive-node audit --patient --json` ms (`--help`) |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        q, c = r["query"], r["command"]
        lines.append(
            f"| {r['backend']} | {r['records']:,} ({r['touched_rows']:,}) | {r['patients']:,} "
            f"| {q['p50_ms']} / {q['p95_ms']} / {q['max_ms']} | {q['mean_records']} "
            f"| {c['p50_ms']} ({c['help_ms']}) |"
        )
    return "\n".join(lines)


# -- overhead: the node with the trail and without it -----------------------------------------


def _order(names: list[str], turn: int) -> list[str]:
    return names if turn % 2 == 0 else names[::-1]


def overhead(
    *,
    backend: str,
    rounds: int,
    kinds: dict[str, int],
    associations: list[int],
    studies: int,
    find_runs: int,
    instances: int,
    workers: int,
    seed: int = 1,
    cache: Path = CACHE,
) -> dict[str, Any]:
    """Each figure with the trail on and off, `rounds` times, the two one after the other
    (which goes first alternating by round): per figure and configuration, every round's
    value. Higher is better for rates (inst/s, MB/s), lower for times (ms); the cost is the
    share by which the medians' rate drops or time grows with the trail on."""
    names = [backend, backend + AUDIT_OFF]
    samples: dict[str, dict[str, list[float]]] = {}

    def add(figure: str, name: str, value: float) -> None:
        samples.setdefault(figure, {n: [] for n in names})[name].append(value)

    corpora = {
        kind: media(kind, count, seed, cache=cache) for kind, count in kinds.items() if count
    }
    for turn in range(rounds):
        for kind, corpus in corpora.items():
            unit = "inst/s" if kind == "sc" else "MB/s"
            for n in associations:
                figure = f"C-STORE {kind.upper()} x {len(corpus.files)}, {n} assoc, {unit}"
                for name in _order(names, turn):
                    result, _ = ingest_bench.node_run(
                        name, corpus, n, workers=workers, send_video=False
                    )
                    seconds = result["seconds"]
                    rate = len(corpus.files) if kind == "sc" else corpus.bytes / 1e6
                    add(figure, name, rate / seconds)
                    _say(f"round {turn + 1}: {figure}: {name} {rate / seconds:.1f}")
        for name in _order(names, turn):
            found = find_bench.run(name, studies, find_runs, seed + turn, workers=workers)
            for query, result in found["queries"].items():
                add(f"C-FIND {query} at {studies:,} studies, p50 ms", name, result["p50_ms"])
            if found.get("findscu"):
                figure = f"C-FIND large result by findscu at {studies:,} studies, responses/s"
                add(figure, name, found["findscu"]["responses_per_s"])
            _say(f"round {turn + 1}: C-FIND: {name} done")
        for name in _order(names, turn):
            retrieved = retrieve_bench.run(
                name, instances, 1, seed=seed, workers=workers, cache=cache
            )
            what = f"{instances} CT"
            add(f"C-MOVE {what}, inst/s", name, retrieved["move_instances_per_s"])
            add(f"C-GET {what}, inst/s", name, retrieved["get_instances_per_s"])
            add(
                f"C-STORE {what} by pynetdicom (retrieve's load), inst/s",
                name,
                retrieved["ingest_instances_per_s"],
            )
            _say(
                f"round {turn + 1}: C-MOVE/C-GET: {name} {retrieved['move_instances_per_s']}"
                f" / {retrieved['get_instances_per_s']}"
            )
    figures = []
    for figure, by_name in samples.items():
        on, off = (statistics.median(by_name[n]) for n in names)
        lower_is_better = figure.endswith(" ms")
        # the trail's cost as a share: rates that drop, times that grow
        cost = (on - off) / off if lower_is_better else (off - on) / off
        figures.append(
            {
                "figure": figure,
                "audit_off": round(off, 2),
                "audit_on": round(on, 2),
                "on_over_off": round(on / off, 3),
                # the same, round by round (each on beside its off), less moved by drift
                "paired_on_over_off": round(
                    statistics.median(
                        a / b for a, b in zip(by_name[names[0]], by_name[names[1]], strict=True)
                    ),
                    3,
                ),
                "cost": round(cost, 3),
                "runs_off": [round(v, 2) for v in by_name[names[1]]],
                "runs_on": [round(v, 2) for v in by_name[names[0]]],
            }
        )
    return {
        "backend": backend,
        "rounds": rounds,
        "workers": workers,
        "kinds": {k: len(c.files) for k, c in corpora.items()},
        "associations": associations,
        "studies": studies,
        "find_runs": find_runs,
        "instances": instances,
        "figures": figures,
    }


def overhead_table(report: dict[str, Any]) -> str:
    lines = [
        "| figure | audit off | audit on | on / off | on / off by round | cost of the trail |",
        "|---|---|---|---|---|---|",
    ]
    for f in report["figures"]:
        lines.append(
            f"| {f['figure']} | {f['audit_off']:,.1f} | {f['audit_on']:,.1f} "
            f"| {f['on_over_off']:.3f} | {f['paired_on_over_off']:.3f} | {f['cost']:+.1%} |"
        )
    return "\n".join(lines)


def _say(message: str) -> None:
    print(f"[bench audit] {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    what = argv.pop(0) if argv and argv[0] in ("query", "overhead") else "query"
    parser = argparse.ArgumentParser(prog=f"bench.audit {what}", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    if what == "query":
        parser.add_argument("--records", type=int, default=1_000_000)
        parser.add_argument("--patients", type=int, default=100_000)
        parser.add_argument("--queries", type=int, default=200, help="questions timed")
        parser.add_argument("--commands", type=int, default=3, help="`archive-node audit` runs")
        parser.add_argument(
            "--backend", choices=["sqlite", "postgresql", "both"], default="both", help="index"
        )
        args = parser.parse_args(argv)
        backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
        reports = []
        for backend in backends:
            _say(f"{args.records:,} records, {backend}")
            reports.append(
                query_run(
                    backend, args.records, args.patients, args.queries, args.commands, args.seed
                )
            )
        print(query_table(reports))
        for r in reports:
            print(f"\n{r['backend']}: {r['explain']['sql']}")
            print("\n".join(f"    {line}" for line in r["explain"]["plan"]))
        if args.json:
            args.json.write_text(json.dumps(reports, indent=2))
        return 0
    parser.add_argument("--rounds", type=int, default=5, help="runs of each figure, medians")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--sc", type=int, help="secondary captures (default 1000)")
    parser.add_argument("--ct", type=int, help="CT slices (default 300)")
    parser.add_argument("--associations", default="1,2")
    parser.add_argument("--studies", type=int, help="C-FIND index size (default 20000)")
    parser.add_argument("--find-runs", type=int, help="C-FIND queries per type (default 30)")
    parser.add_argument("--instances", type=int, help="C-MOVE/C-GET study (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="archive-node serve --workers")
    parser.add_argument(
        "--quick", action="store_true", help="100 SC, 30 CT, 2,000 studies, 200 CT, 2 rounds"
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the corpus is kept")
    args = parser.parse_args(argv)
    quick = args.quick
    report = overhead(
        backend=args.backend,
        rounds=args.rounds if args.rounds != 5 or not quick else 2,
        kinds={
            "sc": args.sc if args.sc is not None else (100 if quick else 1000),
            "ct": args.ct if args.ct is not None else (30 if quick else 300),
        },
        associations=[int(n) for n in args.associations.split(",")],
        studies=args.studies or (2000 if quick else 20_000),
        find_runs=args.find_runs or (10 if quick else 30),
        instances=args.instances or (200 if quick else 1000),
        workers=args.workers,
        seed=args.seed,
        cache=args.cache,
    )
    print(overhead_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
