"""The admin command line: parse, call the service or registry, print; errors are one line."""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from .. import __version__, logs
from ..config import Config, example_toml, load_config
from ..errors import ArchiveError, AuditUnavailable, InvalidInput
from ..index import AERecord
from ..registry import bound_certificates
from ..rules.access import SCOPES
from ..rules.tls import DEFAULT_TLS_MODE, TLS_MODES, format_fingerprint

log = logging.getLogger("archive_node")

DEMO_HOSPITAL = ("DEMO", "Demo Hospital")
DEMO_AES = (
    # title, allow, port, description
    ("DEMO_US", "echo,store", None, "Demo ultrasound machine (pushes)"),
    ("DEMO_WS", "echo,store,find,move,get", 11113, "Demo workstation (queries and retrieves)"),
)


class ArchiveGroup(click.Group):
    """A group whose domain errors print as one line and exit 1, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ArchiveError as exc:
            raise click.ClickException(str(exc)) from None


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.meta["archive_node.config_path"] = value


config_option = click.option(
    "--config",
    "-c",
    metavar="FILE",
    expose_value=False,
    is_eager=True,
    callback=_remember_config,
    type=click.Path(dir_okay=False),
    help="TOML config file (default: $ARCHIVE_NODE_CONFIG, else built-in defaults).",
)


def qr_options(command: Callable) -> Callable:
    """--level and --model of a C-FIND or C-MOVE."""
    command = click.option(
        "--model",
        type=click.Choice(["study", "patient"]),
        default="study",
        show_default=True,
        help="Study Root or Patient Root.",
    )(command)
    return click.option(
        "--level",
        type=click.Choice(["PATIENT", "STUDY", "SERIES", "IMAGE"], case_sensitive=False),
        default="STUDY",
        show_default=True,
        help="Query/Retrieve Level.",
    )(command)


tls_flag = click.option(
    "--tls",
    "use_tls",
    is_flag=True,
    help="Call over DICOM TLS with the node's [tls] certificate (the default when node.port "
    "is 0).",
)


def remote_options(command: Callable) -> Callable:
    """--called-aet, --host, --port and --tls of the node to call (default: this one)."""
    for option in (
        tls_flag,
        click.option("--port", type=int, help="Port to call (default: node.port, or tls.port)."),
        click.option("--host", help="Address to call (default: this node)."),
        click.option("--called-aet", help="AE title to call (default: node.ae_title)."),
    ):
        command = option(command)
    return command


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON instead of a table."
)


def command(group: click.Group, name: str | None = None, **kwargs: Any) -> Callable:
    """A subcommand that also takes --config, so it may stand anywhere on the line."""

    def decorate(func: Callable) -> click.Command:
        return group.command(name, **kwargs)(config_option(func))

    return decorate


def get_config() -> Config:
    ctx = click.get_current_context()
    if "archive_node.config" not in ctx.meta:
        ctx.meta["archive_node.config"] = load_config(ctx.meta.get("archive_node.config_path"))
    return ctx.meta["archive_node.config"]


def get_service():
    """The archive service for this command (imported late: --help stays fast)."""
    ctx = click.get_current_context()
    if "archive_node.service" not in ctx.meta:
        from ..service import ArchiveService

        config = get_config()
        setup_logging(config)
        service = ArchiveService.from_config(config)
        ctx.call_on_close(service.index.close)
        ctx.meta["archive_node.service"] = service
    return ctx.meta["archive_node.service"]


def get_registry():
    service = get_service()
    service.index.check_schema()
    return service.registry


def audited(operation: str, change: Any) -> None:
    """Record a registry change with the operating system user who made it (a Security
    Alert of type Security Configuration). Raises AuditUnavailable, naming what was done."""
    from ..auditing import local_actor

    detail = dict(change) if isinstance(change, dict) else dataclasses.asdict(change)
    try:
        get_service().audit.admin_change(local_actor(), operation, detail)
    except AuditUnavailable:
        raise AuditUnavailable(
            f"{operation} is done, but its audit record could not be written"
        ) from None


def setup_logging(config: Config) -> None:
    logs.setup_logging(config.log.level, config.log.pynetdicom_level)


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(list(rows), indent=2, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    cells = [[("" if row.get(c) is None else str(row[c])) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    click.echo(
        "  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()
    )
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def records(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(item) for item in items]


@click.group(cls=ArchiveGroup, context_settings={"help_option_names": ["-h", "--help"]})
@config_option
@click.version_option(__version__, prog_name="archive-node")
def cli() -> None:
    """archive-node: a regional DICOM archive node.

    Receives studies by C-STORE from registered AEs, keeps them in a filesystem store and
    indexes them in SQLite or PostgreSQL. Hospitals and their AEs form the allowlist.
    """


@command(cli)
@click.option(
    "--demo",
    is_flag=True,
    help="Also register hospital DEMO with AEs DEMO_US and DEMO_WS on 127.0.0.1.",
)
def init(demo: bool) -> None:
    """Create the index schema and the store, or upgrade an older schema in place."""
    service = get_service()
    service.storage.create()
    before, after = service.index.init_schema()
    if before is None:
        click.echo(f"created index schema version {after}")
    elif before != after:
        click.echo(f"upgraded index schema from version {before} to {after}")
    else:
        click.echo(f"index schema version {after} is current")
    click.echo(f"store at {service.storage.root}")
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
    type=click.IntRange(1, 64),
    help="Override node.workers: processes sharing the port, one core each.",
)
def serve(bind: str | None, port: int | None, tls_port: int | None, workers: int | None) -> None:
    """Run the node until SIGTERM or SIGINT (running associations get a grace period);
    SIGHUP re-reads the TLS certificate, key and CAs."""
    # until the server installs its handler, a SIGHUP (a `systemctl reload` just after the
    # start) must not end the node: the files it is about to read are the new ones anyway
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from ..net.server import ArchiveServer
    from ..net.supervisor import Supervisor

    service = get_service()
    config = service.config
    if not config.storage.fsync:
        log.warning("storage.fsync is off: acknowledged instances may be lost on power failure")
    if config.storage.min_free_mb == 0:
        log.warning("storage.min_free_mb is 0: a full disk fails stores mid-transfer")
    workers = workers or config.node.workers
    if workers == 1:
        ArchiveServer(service).serve_forever(bind, port, tls_port=tls_port)
    else:
        sys.exit(Supervisor(service, workers).run(bind, port, tls_port))


# -- hospitals ---------------------------------------------------------------------------------


@cli.group(cls=ArchiveGroup)
def hospital() -> None:
    """Register, list and remove hospitals (health enterprises)."""


placeholder_option = click.option(
    "--placeholder-ids",
    metavar="ID,ID",
    help="PatientIDs its departments give unidentified patients (UNKNOWN,000000): each such "
    "study is a patient of its own, as without a PatientID. Empty clears.",
)


def _placeholders(record: Any) -> str:
    ids = ",".join(record.placeholder_ids)
    return f", placeholder IDs {ids}" if ids else ""


@command(hospital, "add")
@click.argument("code")
@click.option("--name", required=True, help="Human-readable name.")
@click.option("--issuer", help="Issuer of Patient ID of its patient identifiers (default: CODE).")
@placeholder_option
def hospital_add(code: str, name: str, issuer: str | None, placeholder_ids: str | None) -> None:
    """Register hospital CODE."""
    record = get_registry().add_hospital(code, name, issuer, placeholder_ids)
    audited("hospital add", record)
    click.echo(
        f"added hospital {record.code} ({record.name}), issuer {record.issuer}"
        + _placeholders(record)
    )


@command(hospital, "update")
@click.argument("code")
@click.option("--name", help="New human-readable name.")
@placeholder_option
@click.option(
    "--issuer",
    help="Correct its Issuer of Patient ID: its patients are relabelled (the old identifiers "
    "still find them). Needs --reason.",
)
@click.option(
    "--merge",
    is_flag=True,
    help="With --issuer: merge a patient into the one the new issuer already has.",
)
@click.option("--reason", help="Why (needed with --issuer; recorded in the audit trail).")
@click.option("--dry-run", is_flag=True, help="With --issuer: show what would change.")
def hospital_update(
    code: str,
    name: str | None,
    placeholder_ids: str | None,
    issuer: str | None,
    merge: bool,
    reason: str | None,
    dry_run: bool,
) -> None:
    """Change hospital CODE's name or placeholder IDs, or correct its issuer."""
    if issuer is not None:
        from .corrections import change_issuer

        change_issuer(code, issuer, merge, reason, dry_run)
        if name is None and placeholder_ids is None:
            return
    elif merge or dry_run:
        raise InvalidInput("--merge and --dry-run go with --issuer")
    record = get_registry().update_hospital(code, name=name, placeholder_ids=placeholder_ids)
    audited("hospital update", record)
    click.echo(
        f"updated hospital {record.code} ({record.name}), issuer {record.issuer}"
        + (_placeholders(record) or ", no placeholder IDs")
    )


@command(hospital, "list")
@json_option
def hospital_list(as_json: bool) -> None:
    """List hospitals with their AE and study counts and placeholder IDs."""
    rows = records(get_registry().list_hospitals())
    if not as_json:
        for row in rows:
            row["placeholder_ids"] = ",".join(row["placeholder_ids"])
    columns = ["code", "name", "issuer", "ae_count", "study_count", "placeholder_ids"]
    print_table(rows, columns, as_json)


@command(hospital, "remove")
@click.argument("code")
def hospital_remove(code: str) -> None:
    """Remove hospital CODE (refused while AEs or studies refer to it)."""
    get_registry().remove_hospital(code)
    audited("hospital remove", {"code": code})
    click.echo(f"removed hospital {code}")


# -- application entities ----------------------------------------------------------------------


@cli.group(cls=ArchiveGroup)
def ae() -> None:
    """Register, change, list and remove the AEs allowed to connect (the allowlist)."""


def _port(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"port {value!r} is not a number") from None


def _max_associations(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput(f"--max-associations {value!r} is not a whole number") from None


fingerprint_option = click.option(
    "--certificate-fingerprint",
    "fingerprints",
    multiple=True,
    metavar="SHA256:..",
    help="Bind the client certificate with this SHA-256 fingerprint (as `openssl x509 -noout "
    "-fingerprint -sha256` prints it); repeatable.",
)
certificate_option = click.option(
    "--certificate",
    "certificates",
    multiple=True,
    metavar="FILE",
    help="Bind the client certificate in this PEM file (its fingerprint is kept); repeatable.",
)


@command(ae, "add")
@click.argument("aet")
@click.option("--hospital", required=True, help="Code of the hospital it belongs to.")
@click.option(
    "--host", default="", help="Address its associations must come from (IP or name); empty = any."
)
@click.option("--port", type=int, help="Where it listens (needed only as a retrieve destination).")
@click.option(
    "--allow",
    default="echo,store",
    show_default=True,
    help="Comma list of echo,store,find,move,get,worklist.",
)
@click.option(
    "--scope",
    type=click.Choice(SCOPES),
    default="region",
    show_default=True,
    help="hospital: sees only its hospital's studies; region: sees all.",
)
@click.option("--description", default="", help="Free text (department, device).")
@click.option(
    "--max-associations",
    metavar="N",
    help="Associations it may hold at once (N >= 1); default: no limit of its own.",
)
@click.option(
    "--tls",
    type=click.Choice(TLS_MODES),
    default=DEFAULT_TLS_MODE,
    show_default=True,
    help="required: it connects, and is called, over TLS only; off: over plain DICOM only; "
    "optional: connects either way, called over plain DICOM.",
)
@fingerprint_option
@certificate_option
def ae_add(
    aet: str,
    hospital: str,
    host: str,
    port: int | None,
    allow: str,
    scope: str,
    description: str,
    max_associations: str | None,
    tls: str,
    fingerprints: tuple[str, ...],
    certificates: tuple[str, ...],
) -> None:
    """Register AET for a hospital; it may connect from the next association on."""
    record = get_registry().add_ae(
        aet,
        hospital,
        host=host,
        port=port,
        allow=allow,
        scope=scope,
        description=description,
        max_associations=_max_associations(max_associations),
        tls=tls,
        certificates=bound_certificates(fingerprints, certificates),
    )
    audited("ae add", record)
    click.echo(
        f"added AE {record.ae_title} of {record.hospital}: allow {record.allow}, "
        f"scope {record.scope}, host {record.host or 'any'}"
        + _limit_text(record.max_associations)
        + _tls_text(record)
    )


def _limit_text(limit: int | None) -> str:
    return f", at most {limit} association(s) at once" if limit is not None else ""


def _tls_text(record: AERecord) -> str:
    """Its TLS mode and bound certificates, when not the default (optional, none)."""
    if record.tls == DEFAULT_TLS_MODE and not record.certificates:
        return ""
    bound = ", ".join(format_fingerprint(f) for f in record.certificates)
    return f", TLS {record.tls}" + (f", certificate {bound}" if bound else "")


@command(ae, "update")
@click.argument("aet")
@click.option("--hospital", help="Move it to another hospital.")
@click.option("--host", help="New source address ('' = any).")
@click.option("--port", help="New listening port ('' = none).")
@click.option("--allow", help="New comma list of echo,store,find,move,get,worklist.")
@click.option("--scope", type=click.Choice(SCOPES), help="New scope: hospital or region.")
@click.option("--description", help="New free text.")
@click.option(
    "--enable/--disable",
    "enabled",
    default=None,
    help="A disabled AE is rejected like an unknown one.",
)
@click.option(
    "--max-associations",
    metavar="N",
    help="Associations it may hold at once (N >= 1); 0 clears it (no limit of its own).",
)
@click.option("--tls", type=click.Choice(TLS_MODES), help="New TLS mode.")
@fingerprint_option
@certificate_option
@click.option(
    "--no-certificate",
    is_flag=True,
    help="Unbind its certificates (it is then known by its title, address and CA only).",
)
def ae_update(
    aet: str,
    hospital: str | None,
    host: str | None,
    port: str | None,
    allow: str | None,
    scope: str | None,
    description: str | None,
    enabled: bool | None,
    max_associations: str | None,
    tls: str | None,
    fingerprints: tuple[str, ...],
    certificates: tuple[str, ...],
    no_certificate: bool,
) -> None:
    """Change a registered AE; takes effect for its next association. Certificates given
    replace the bound ones: give the old and the new one while a device changes over."""
    if no_certificate and (fingerprints or certificates):
        raise InvalidInput("--no-certificate with certificates to bind: give one or the other")
    bound: tuple[str, ...] | None = None
    if no_certificate:
        bound = ()
    elif fingerprints or certificates:
        bound = bound_certificates(fingerprints, certificates)
    record = get_registry().update_ae(
        aet,
        hospital=hospital,
        host=host,
        port=_port(port),
        clear_port=port == "",
        allow=allow,
        scope=scope,
        description=description,
        enabled=enabled,
        max_associations=_max_associations(max_associations),
        tls=tls,
        certificates=bound,
    )
    audited("ae update", record)
    click.echo(
        f"updated AE {record.ae_title} of {record.hospital}: allow {record.allow}, "
        f"scope {record.scope}, host {record.host or 'any'}, "
        f"{'enabled' if record.enabled else 'disabled'}"
        + _limit_text(record.max_associations)
        + _tls_text(record)
    )


@command(ae, "list")
@click.option("--hospital", help="Only this hospital's AEs.")
@json_option
def ae_list(hospital: str | None, as_json: bool) -> None:
    """List registered AEs."""
    rows = records(get_registry().list_aes(hospital))
    for row in rows:  # as openssl prints them; the table shows the first bytes of each
        full = [format_fingerprint(f) for f in row["certificates"]]
        row["certificates"] = full if as_json else " ".join(f[:30] + "..." for f in full)
    print_table(
        rows,
        [
            "ae_title",
            "hospital",
            "host",
            "port",
            "allow",
            "scope",
            "enabled",
            "max_associations",
            "tls",
            "certificates",
            "description",
        ],
        as_json,
    )


@command(ae, "remove")
@click.argument("aet")
def ae_remove(aet: str) -> None:
    """Remove AET from the allowlist; its next association is rejected."""
    get_registry().remove_ae(aet)
    audited("ae remove", {"ae_title": aet})
    click.echo(f"removed AE {aet}")


# -- what is stored ------------------------------------------------------------------------------


@command(cli)
@click.option("--patient-id", help="Only this PatientID (any issuer).")
@click.option("--hospital", help="Only studies received from this hospital.")
@json_option
def studies(patient_id: str | None, hospital: str | None, as_json: bool) -> None:
    """List stored studies with their series and instance counts and sizes."""
    service = get_service()
    service.index.check_schema()
    rows = records(service.index.instances.studies(patient_id=patient_id, hospital=hospital))
    print_table(
        rows,
        [
            "study_uid",
            "patient_id",
            "issuer",
            "study_date",
            "hospital",
            "modalities",
            "series_count",
            "instance_count",
            "total_size",
        ],
        as_json,
    )


@command(cli)
@click.option(
    "--state",
    type=click.Choice(["pending", "delivered", "abandoned"]),
    help="Only requests in this state (pending: the report is still to be delivered).",
)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
@json_option
def commitments(state: str | None, limit: int, as_json: bool) -> None:
    """List Storage Commitment requests, newest first, and whether their reports went out."""
    service = get_service()
    service.index.check_schema()
    rows = [
        {
            "transaction_uid": r.transaction_uid,
            "requester": r.requester,
            "instances": len(json.loads(r.references)),
            "state": r.state,
            "attempts": r.attempts,
            "created_at": r.created_at,
            "delivered_at": r.delivered_at,
            "last_error": r.last_error,
        }
        for r in service.index.commitments.listing(state=state, limit=limit)
    ]
    columns = ["transaction_uid", "requester", "instances", "state", "attempts", "created_at"]
    print_table(rows, [*columns, "delivered_at", "last_error"] if as_json else columns, as_json)


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
@json_option
def reindex(default_hospital: str | None, as_json: bool) -> None:
    """Rebuild or repair the index from the stored files alone (after `init` on a new
    database); safe to run again or after an interruption; exit status 1 when a file was left
    out."""
    from .. import integrity

    service = get_service()
    report = integrity.reindex(
        service.storage,
        service.index,
        default_hospital=default_hospital,
        progress=_progress(as_json),
        corrections=service.corrections,
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(
            f"{report.files} files in the store: {report.indexed} indexed, "
            f"{report.already_indexed} already indexed, {len(report.problems)} problem(s) "
            f"({report.seconds:.1f} s)"
        )
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


# -- network clients -----------------------------------------------------------------------------


def _node_address(config: Config) -> str:
    return "127.0.0.1" if config.node.bind in ("", "0.0.0.0", "::") else config.node.bind


def _this_node(config: Config, use_tls: bool, port: int | None) -> tuple[int, Any]:
    """The port to call this node on, and the TLS to call it with (None: plain): TLS when
    asked, or when the node has no plain port."""
    if not (use_tls or config.node.port == 0):
        return port or config.node.port, None
    from ..net.tls import TlsCredentials

    if not config.tls.configured:
        raise click.ClickException("--tls: tls.certificate, tls.private_key, tls.ca_certificates")
    context = TlsCredentials(config.tls).client_context(lambda _presented: None)
    return port or config.tls.port, context


@command(cli)
@click.argument("aet")
@click.option("--calling-aet", help="Our AE title on this association (default: node.ae_title).")
@click.option("--host", help="Address to call (default: the registry's, or this node's).")
@click.option("--port", type=int, help="Port to call (default: the registry's, or this node's).")
@tls_flag
def echo(
    aet: str, calling_aet: str | None, host: str | None, port: int | None, use_tls: bool
) -> None:
    """C-ECHO a registered AE as the node calls it (over TLS, checked by its certificate, when
    it has --tls required), or this node itself when AET is node.ae_title."""
    from ..net.client import echo as send_echo

    config = get_config()
    if aet == config.node.ae_title:
        host = host or _node_address(config)
        port, tls = _this_node(config, use_tls, port)
    else:
        registry = get_registry()
        record = registry.peer(aet)
        if record is None:
            raise click.ClickException(f"no AE {aet}")
        host = host or record.host
        port = port or record.port
        if not host or not port:
            raise click.ClickException(f"AE {aet} has no registered host and port to call")
        if use_tls and record.tls != "required":
            record = dataclasses.replace(record, tls="required")
        from ..net.tls import TlsCredentials, tls_args_for

        called = tls_args_for(TlsCredentials(config.tls), record, registry.certificate_owner)
        tls = called[0] if called else None
    code = send_echo(
        host,
        port,
        calling=calling_aet or config.node.ae_title,
        called=aet,
        fast_paths=config.node.fast_paths,
        tls=tls,
    )
    click.echo(f"C-ECHO {aet} at {host}:{port}{' over TLS' if tls else ''}: status 0x{code:04X}")
    if code != 0:
        sys.exit(1)


@command(cli)
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--calling-aet", required=True, help="The registered AE title to send as.")
@remote_options
@json_option
def send(
    paths: tuple[str, ...],
    calling_aet: str,
    called_aet: str | None,
    host: str | None,
    port: int | None,
    use_tls: bool,
    as_json: bool,
) -> None:
    """C-STORE DICOM files (directories are walked), streamed in their own transfer syntax."""
    from ..net.client import send_files

    config = get_config()
    port, tls = _this_node(config, use_tls, port)
    results = send_files(
        paths,
        host or _node_address(config),
        port,
        calling=calling_aet,
        called=called_aet or config.node.ae_title,
        fast_paths=config.node.fast_paths,
        tls=tls,
    )
    failed = [
        r for r in results if r.status is None or r.status >= 0xA000 or 0x0100 <= r.status < 0x0300
    ]
    if as_json:
        click.echo(json.dumps(records(results), indent=2))
    else:
        for r in results:
            shown = f"0x{r.status:04X}" if r.status is not None else "not sent"
            click.echo(f"{shown}  {r.path}  {r.sop_instance_uid}  {r.error}".rstrip())
        click.echo(f"{len(results) - len(failed)} of {len(results)} stored")
    if failed or not results:
        sys.exit(1)


@command(cli)
@click.option("--calling-aet", required=True, help="The registered AE title to query as.")
@qr_options
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    metavar="KEYWORD[=VALUE]",
    help="A key to match (with a value) or to return (without); repeatable.",
)
@remote_options
@json_option
def find(
    calling_aet: str,
    level: str,
    model: str,
    keys: tuple[str, ...],
    called_aet: str | None,
    host: str | None,
    port: int | None,
    use_tls: bool,
    as_json: bool,
) -> None:
    """C-FIND, e.g. -k PatientID=P1 -k StudyDate=20240101- -k ModalitiesInStudy (prints names
    and IDs to the terminal: it is a query tool)."""
    from ..net.client import find as send_find

    config = get_config()
    wanted = _keys(keys)
    port, tls = _this_node(config, use_tls, port)
    try:
        result = send_find(
            host or _node_address(config),
            port,
            calling=calling_aet,
            called=called_aet or config.node.ae_title,
            level=level.upper(),
            keys=wanted,
            model=model,
            character_set="ISO_IR 192",
            fast_paths=config.node.fast_paths,
            tls=tls,
        )
    except ValueError as exc:  # pydicom refusing a value, e.g. -k SeriesNumber=abc
        raise click.ClickException(f"-k: {exc}") from None
    rows = [
        {e.keyword: _text(e.value) for e in m if e.keyword != "SpecificCharacterSet"}
        for m in result.matches
    ]
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["QueryRetrieveLevel"]
    print_table(rows, columns, as_json)
    shown = "none" if result.status is None else f"0x{result.status:04X}"
    click.echo(f"{len(rows)} match(es), status {shown} {result.comment}".rstrip(), err=True)
    if result.undecodable:
        click.echo(f"{result.undecodable} answer(s) could not be decoded: not shown", err=True)
    if result.status != 0 or result.undecodable:
        sys.exit(1)


@command(cli)
@click.option("--calling-aet", required=True, help="The registered AE title to ask as.")
@click.option("--destination", required=True, help="The registered AE title to send to.")
@qr_options
@click.option(
    "-k",
    "--key",
    "keys",
    multiple=True,
    required=True,
    metavar="KEYWORD=VALUE",
    help="A unique key naming what to move, e.g. StudyInstanceUID=1.2.3; repeatable.",
)
@remote_options
@json_option
def move(
    calling_aet: str,
    destination: str,
    level: str,
    model: str,
    keys: tuple[str, ...],
    called_aet: str | None,
    host: str | None,
    port: int | None,
    use_tls: bool,
    as_json: bool,
) -> None:
    """C-MOVE studies, series or instances to a registered AE, e.g. --destination UNN_WS
    -k StudyInstanceUID=1.2.3 (the node sends to the address the registry holds)."""
    from ..net.client import move as send_move

    config = get_config()
    wanted = _keys(keys, need_values=True)
    port, tls = _this_node(config, use_tls, port)
    try:
        result = send_move(
            host or _node_address(config),
            port,
            calling=calling_aet,
            called=called_aet or config.node.ae_title,
            destination=destination,
            level=level.upper(),
            keys=wanted,
            model=model,
            fast_paths=config.node.fast_paths,
            tls=tls,
        )
    except ValueError as exc:
        raise click.ClickException(f"-k: {exc}") from None
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(result), indent=2))
    else:
        shown = "none" if result.status is None else f"0x{result.status:04X}"
        click.echo(
            f"C-MOVE to {destination}: status {shown}, {result.completed} completed, "
            f"{result.failed} failed, {result.warning} warning {result.comment}".rstrip()
        )
        for uid in result.failed_uids:
            click.echo(f"failed: {uid}")
    if result.status != 0:
        sys.exit(1)


def _keys(items: tuple[str, ...], *, need_values: bool = False) -> dict[str, str]:
    """-k KEYWORD[=VALUE] options as a dict; a ClickException names an unknown keyword."""
    from pydicom.datadict import tag_for_keyword

    wanted: dict[str, str] = {}
    for item in items:
        keyword, equals, value = item.partition("=")
        if tag_for_keyword(keyword.strip()) is None:
            raise click.ClickException(f"-k {item}: {keyword.strip()!r} is not a DICOM keyword")
        if need_values and not equals:
            raise click.ClickException(f"-k {item}: give a value (KEYWORD=VALUE)")
        wanted[keyword.strip()] = value
    return wanted


def _text(value: Any) -> Any:
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return value if isinstance(value, int | float) else str(value)


@command(cli, "config")
def show_config() -> None:
    """Print every configuration key with its help and default (an example file)."""
    click.echo(example_toml(), nl=False)


def main() -> None:
    cli(prog_name="archive-node")


from . import audit as _audit_commands  # noqa: E402, F401  # registers `archive-node audit`
from . import corrections as _correction_commands  # noqa: E402, F401  # patient, study, reject
from . import orders as _order_commands  # noqa: E402, F401  # hl7, orders
