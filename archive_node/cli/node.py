"""`init`, `serve`, `verify`, `reindex` and `import`: the node's own index and store."""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

import click

from ..errors import AuditUnavailable
from . import (
    DEMO_AES,
    DEMO_HOSPITAL,
    cli,
    command,
    get_service,
    json_option,
    log,
    print_table,
    records,
)


@command(cli)
@click.option(
    "--demo",
    is_flag=True,
    help="Also register hospital DEMO with AEs DEMO_US and DEMO_WS on 127.0.0.1.",
)
def init(demo: bool) -> None:
    """Create the index schema and the store, or upgrade an older schema in place."""
    from ..integrity import pairing

    service = get_service(create_index=True)
    service.storage.create()
    before, after = service.index.init_schema()
    if before is None:
        click.echo(f"created index schema version {after}")
    elif before != after:
        click.echo(f"upgraded index schema from version {before} to {after}")
    else:
        click.echo(f"index schema version {after} is current")
    click.echo(f"store at {service.storage.root}")
    # after the schema: `reindex`, which a refusal here may name, needs it
    click.echo(f"store identity {pairing.claim(service.storage, service.index)}")
    if demo:
        _register_demo(service.registry)


def _register_demo(registry) -> None:
    code, name = DEMO_HOSPITAL
    if code not in {h.code for h in registry.list_hospitals()}:
        registry.add_hospital(code, name)
        click.echo(f"registered hospital {code}")
    existing = {ae.ae_title for ae in registry.list_aes()}
    for title, allow, port, description in DEMO_AES:
        if title not in existing:
            registry.add_ae(
                title, code, host="127.0.0.1", port=port, allow=allow, description=description
            )
            click.echo(f"registered AE {title} ({allow}) for 127.0.0.1")


@command(cli)
@click.option("--bind", help="Override node.bind.")
@click.option("--port", type=int, help="Override node.port.")
@click.option("--tls-port", type=int, help="Override tls.port.")
@click.option(
    "--workers",
    type=click.IntRange(0, 64),
    help="Override node.workers: processes sharing the port, one core each (0: one per core).",
)
def serve(bind: str | None, port: int | None, tls_port: int | None, workers: int | None) -> None:
    """Run the node until SIGTERM or SIGINT (running associations get a grace period);
    SIGHUP re-reads the TLS certificate, key and CAs."""
    # until the server installs its handler, a SIGHUP (a `systemctl reload` just after the
    # start) must not end the node: the files it is about to read are the new ones anyway
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from ..integrity import pairing
    from ..net.server import ArchiveServer
    from ..net.sizing import worker_count
    from ..net.supervisor import Supervisor

    service = get_service()
    config = service.config
    service.index.check_schema()
    identity = pairing.check(service.storage, service.index, writing=True)
    service.storage.expect_identity(identity)  # taken over meanwhile: nothing more is stored
    if identity is None:
        log.warning(
            "index %s and store %s have no store identity: run `archive-node init` to record it",
            service.index.name,
            service.storage.root,
        )
    if not config.storage.fsync:
        log.warning("storage.fsync is off: acknowledged instances may be lost on power failure")
    if config.storage.min_free_mb == 0:
        log.warning("storage.min_free_mb is 0: a full disk fails stores mid-transfer")
    workers = worker_count(config.node.workers if workers is None else workers)
    if workers > 1:
        _warn_limits_per_worker(service, workers)
    if workers == 1:
        ArchiveServer(service).serve_forever(bind, port, tls_port=tls_port)
    else:
        sys.exit(Supervisor(service, workers).run(bind, port, tls_port))


def _warn_limits_per_worker(service, workers: int) -> None:
    """Each worker counts a peer's associations apart (net/admission.py): say so when a
    limit of a peer is set."""
    limited = sum(1 for ae in service.registry.list_aes() if ae.max_associations)
    if limited or service.config.node.max_associations_per_address:
        log.warning(
            "%d workers: each counts associations apart, so a peer may hold up to %d times "
            "node.max_associations_per_address and its AE's --max-associations (%d AE(s) "
            "have one)",
            workers,
            workers,
            limited,
        )


# -- integrity -----------------------------------------------------------------------------------


class _ProgressBar:
    """progress.Progress (verify, reindex, import) drawn as a click progress bar on stderr;
    none for a task smaller than `smallest` (a bar that flashes by tells nothing)."""

    def __init__(self, smallest: int = 0) -> None:
        self._bar: Any = None
        self._smallest = smallest

    def begin(self, label: str, total: int) -> None:
        if total < self._smallest:
            return
        self._bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
        self._bar.__enter__()

    def advance(self, amount: int) -> None:
        if self._bar is not None:
            self._bar.update(amount)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def _progress(as_json: bool, smallest: int = 0) -> _ProgressBar | None:
    """A bar only for a person watching: stderr a terminal, and no --json."""
    return _ProgressBar(smallest) if not as_json and sys.stderr.isatty() else None


def _print_problems(problems: Sequence[Any]) -> None:
    if problems:
        print_table(records(problems), ["kind", "path", "sop_instance_uid", "detail"], False)


@command(cli)
@click.option("--hospital", metavar="CODE", help="Only the instances this hospital's AEs sent.")
@click.option("--study", "study_uid", metavar="UID", help="Only this study.")
@click.option(
    "--since",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Only instances received on or after this day (YYYY-MM-DD, UTC).",
)
@click.option(
    "--until",
    type=click.DateTime(["%Y-%m-%d"]),
    help="Only instances received on or before this day (YYYY-MM-DD, UTC).",
)
@click.option(
    "--deep",
    is_flag=True,
    help="Also check each file's whole DICOM encoding, as C-STORE does at receipt (finds "
    "malformed files kept before that check).",
)
@json_option
def verify(
    hospital: str | None,
    study_uid: str | None,
    since: Any,
    until: Any,
    deep: bool,
    as_json: bool,
) -> None:
    """Re-read stored files and check them against the index (size, SHA-256), and look for
    files the index lacks; exit status 1 when anything is wrong."""
    from .. import integrity

    service = get_service()
    scope = integrity.Scope(
        hospital=hospital,
        study_uid=study_uid,
        since=since.date() if since else None,
        until=until.date() if until else None,
    )
    report = integrity.verify(
        service.storage, service.index, scope, deep=deep, progress=_progress(as_json)
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        rate = report.bytes / 1e6 / report.seconds if report.seconds else 0.0
        found = f"{len(report.problems)} problem(s)" if report.problems else "no problems"
        click.echo(
            f"checked {report.checked} files, {report.bytes / 1e6:.1f} MB in "
            f"{report.seconds:.1f} s ({rate:.1f} MB/s): {found}"
        )
        _print_problems(report.problems)
    _audit_run(
        "verify",
        {"checked": report.checked, "problems": len(report.problems), "deep": deep},
        report.ok,
    )
    if not report.ok:
        sys.exit(1)


def _audit_run(operation: str, detail: dict[str, Any], ok: bool) -> None:
    """A verify or reindex run: a Security Alert of type Local Service Operation. Raises
    AuditUnavailable."""
    from ..auditing import local_actor
    from ..rules.audit import (
        EXECUTE,
        LOCAL_SERVICE_OPERATION,
        MINOR_FAILURE,
        SECURITY_ALERT,
        SUCCESS,
    )

    try:
        get_service().audit.event(
            SECURITY_ALERT,
            EXECUTE,
            operation,
            local_actor(),
            outcome=SUCCESS if ok else MINOR_FAILURE,
            event_type=LOCAL_SERVICE_OPERATION,
            detail=detail,
        )
    except AuditUnavailable:
        raise AuditUnavailable(
            f"{operation} ran, but its audit record could not be written"
        ) from None


@command(cli)
@click.option(
    "--default-hospital",
    metavar="CODE",
    help="Index files that do not record their sender under this registered hospital.",
)
@click.option(
    "--adopt-store",
    is_flag=True,
    help="Take over a store that belongs to another index, when that index is lost: the "
    "store gets a new identity, and the other index is refused from then on.",
)
@json_option
def reindex(default_hospital: str | None, adopt_store: bool, as_json: bool) -> None:
    """Rebuild or repair the index from the stored files alone (after `init` on a new
    database); safe to run again or after an interruption; exit status 1 when a file was left
    out."""
    from .. import integrity

    service = get_service(create_index=True)
    report = integrity.reindex(
        service.storage,
        service.index,
        default_hospital=default_hospital,
        progress=_progress(as_json),
        corrections=service.corrections,
        adopt_store=adopt_store,
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(
            f"{report.files} files in the store: {report.indexed} indexed, "
            f"{report.already_indexed} already indexed, {len(report.problems)} problem(s) "
            f"({report.seconds:.1f} s)"
        )
        if report.adopted_store:
            click.echo(f"index adopted the store (store identity {report.store_identity})")
        for code in report.hospitals_created:
            click.echo(f"created hospital {code} (named after its code; register its AEs)")
        if report.corrections_replayed or report.corrections_skipped:
            click.echo(
                f"corrections journal: {report.corrections_replayed} correction(s) made again, "
                f"{len(report.corrections_skipped)} no longer applicable"
            )
            for skipped in report.corrections_skipped:
                click.echo(f"  skipped: {skipped}")
        _print_problems(report.problems)
    _audit_run(
        "reindex",
        {"files": report.files, "indexed": report.indexed, "problems": len(report.problems)},
        report.ok,
    )
    if not report.ok:
        sys.exit(1)


# -- media import --------------------------------------------------------------------------------

LARGE_FILE = 32 * 1024 * 1024  # import draws a progress bar for files from this size


@command(cli, "import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--hospital", required=True, metavar="CODE", help="The hospital the files come from."
)
@click.option("--patient-id", required=True, metavar="ID", help="Patient ID (required).")
@click.option("--issuer", help="Issuer of Patient ID (default: the hospital's issuer).")
@click.option("--patient-name", default="", metavar="NAME", help="e.g. Family^Given.")
@click.option("--birth-date", default="", metavar="YYYYMMDD")
@click.option("--sex", type=click.Choice(["M", "F", "O"]), default=None)
@click.option("--study-uid", metavar="UID", help="Add to this study (new or stored).")
@click.option(
    "--accession",
    metavar="NUMBER",
    help="Add to the patient's study with this Accession Number (new if none).",
)
@click.option("--study-description", default="", metavar="TEXT")
@click.option("--series-description", default="", metavar="TEXT")
@click.option("--body-part", default="", metavar="TEXT", help="Body Part Examined, e.g. ARM.")
@click.option("--operator", default="", metavar="NAME", help="Who took the photo or video.")
@json_option
def import_media(
    paths: tuple[str, ...],
    hospital: str,
    patient_id: str,
    issuer: str | None,
    patient_name: str,
    birth_date: str,
    sex: str | None,
    study_uid: str | None,
    accession: str | None,
    study_description: str,
    series_description: str,
    body_part: str,
    operator: str,
    as_json: bool,
) -> None:
    """Import JPEG photos, MP4 videos (H.264, HEVC) and PDFs for one patient as one study:
    each kept unchanged inside a DICOM instance, stored as a C-STORE from HOSPITAL would be."""
    from pathlib import Path

    from ..importing.importer import Importer, ImportRequest

    request = ImportRequest(
        paths=[Path(p) for p in paths],
        hospital=hospital,
        patient_id=patient_id,
        issuer=issuer,
        patient_name=patient_name,
        birth_date=birth_date,
        sex=sex or "",
        study_uid=study_uid,
        accession_number=accession,
        study_description=study_description,
        series_description=series_description,
        body_part=body_part.upper(),
        operator=operator,
    )
    service = get_service()
    report = Importer(service, progress=_progress(as_json, LARGE_FILE)).run(request)
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report), indent=2))
    else:
        made = "new study" if report.new_study else "study"
        click.echo(f"{made} {report.study_instance_uid} (hospital {report.hospital})")
        rows = [
            {**dataclasses.asdict(f), "bytes": f.stored_bytes, "status": _shown(f)}
            for f in report.files
        ]
        columns = ["path", "kind", "series_instance_uid", "sop_instance_uid", "bytes", "status"]
        print_table(rows, columns, False)
        for f in report.files:
            for warning in f.warnings:
                click.echo(f"warning: {f.path}: {warning}", err=True)
    if not report.complete:
        sys.exit(1)


def _shown(item: Any) -> str:
    return f"{item.status}: {item.detail}" if item.detail else item.status
