"""`archive-node audit`: ask the audit trail (who stored, queried and retrieved whose data),
verify its hash chains and prune it; every read of it is itself recorded (Audit Log Used)."""

from __future__ import annotations

import csv
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from ..auditing import local_actor
from ..errors import AuditUnavailable, InvalidInput
from ..index.audit_rows import AuditFilter
from ..rules.audit import (
    AUDIT_LOG_USED,
    EVENTS,
    OUTCOMES,
    READ,
    AuditRecord,
    Touched,
    event_kind,
    prune_before,
    timestamp,
)
from . import ArchiveGroup, cli, config_option, get_service, print_table

COLUMNS = (
    "seq",
    "time",
    "event",
    "operation",
    "ae_title",
    "hospital",
    "user",
    "address",
    "patient",
    "study",
    "instances",
    "outcome",
)


def _moment(option: str, value: str | None, *, end_of_day: bool = False) -> str:
    """An ISO date or date-time (UTC unless it says otherwise) as a record timestamp; a date
    given as --until includes that whole day."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"{option}: {value!r} is not an ISO date (2026-12-05) or date-time (2026-12-05T10:30Z)"
        ) from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    if end_of_day and len(value) == 10:
        moment += timedelta(days=1)
    return timestamp(moment)


def _event(value: str | None) -> str:
    if not value:
        return ""
    kind = event_kind(value)
    if kind is None:
        known = ", ".join(sorted(k.name for k in EVENTS.values()))
        raise InvalidInput(f"--event: {value!r} is not an audit event (known: {known})")
    return kind.name


def _rows(record: AuditRecord, patient: str) -> list[dict[str, Any]]:
    """One row per patient and study the record touched (the asked-for patient's only, when
    one was asked for); one row without them for a record that touched none."""
    touched = [t for t in record.touched if not patient or t.patient_id == patient]
    base = {
        "seq": record.seq,
        "node": record.node,
        "time": record.time,
        "event": record.event,
        "operation": record.operation,
        "ae_title": record.ae_title,
        "hospital": record.hospital,
        "user": record.user,
        "address": record.address,
        "destination": record.destination,
        "outcome": OUTCOMES.get(record.outcome, str(record.outcome))
        + (f": {record.status}" if record.status else ""),
    }
    return [
        {
            **base,
            "patient": _patient(t),
            "study": t.study_uid,
            "instances": t.instances if t.instances or t.study_uid else "",
        }
        for t in touched or [Touched()]
    ]


def _patient(touched: Touched) -> str:
    if not touched.patient_id and not touched.issuer:
        return ""
    return f"{touched.patient_id}^^^{touched.issuer}" if touched.issuer else touched.patient_id


def _json(record: AuditRecord) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "node": record.node,
        "time": record.time,
        "event": record.event,
        "event_code": record.event_code,
        "event_type": record.event_type,
        "action": record.action,
        "operation": record.operation,
        "outcome": record.outcome,
        "status": record.status,
        "ae_title": record.ae_title,
        "hospital": record.hospital,
        "address": record.address,
        "user": record.user,
        "destination": record.destination,
        "touched": [
            {
                "patient_id": t.patient_id,
                "issuer": t.issuer,
                "study_uid": t.study_uid,
                "instances": t.instances,
            }
            for t in record.touched
        ],
        "detail": record.details,
        "hash": record.hash,
    }


@cli.group(cls=ArchiveGroup, invoke_without_command=True)
@config_option
@click.option("--patient", metavar="ID", help="Records that touched this PatientID.")
@click.option("--issuer", help="With --patient: its IssuerOfPatientID.")
@click.option("--study", metavar="UID", help="Records that touched this Study Instance UID.")
@click.option("--ae", "ae_title", metavar="AET", help="Records of this calling AE.")
@click.option("--hospital", metavar="CODE", help="Records of AEs of this hospital.")
@click.option("--event", help="One event: " + ", ".join(k.name for k in EVENTS.values()) + ".")
@click.option("--since", help="From this ISO date or date-time (UTC).")
@click.option("--until", help="Before this date-time; a date includes its whole day.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="Most records shown.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@click.pass_context
def audit(
    ctx: click.Context,
    patient: str | None,
    issuer: str | None,
    study: str | None,
    ae_title: str | None,
    hospital: str | None,
    event: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    as_json: bool,
    as_csv: bool,
) -> None:
    """The audit trail, newest first: who stored, queried and retrieved which patient's
    studies, from where. `--patient ID [--issuer X]` answers "who has accessed my record"."""
    if ctx.invoked_subcommand is not None:
        return
    if as_json and as_csv:
        raise InvalidInput("--json and --csv: choose one")
    if issuer is not None and not patient:
        raise InvalidInput("--issuer needs --patient")
    question = AuditFilter(
        patient_id=patient or "",
        issuer=issuer,
        study_uid=study or "",
        ae_title=ae_title or "",
        hospital=hospital or "",
        event=_event(event),
        since=_moment("--since", since),
        until=_moment("--until", until, end_of_day=True),
        limit=limit,
    )
    service = get_service()
    service.index.check_schema()
    asked = {k: v for k, v in vars(question).items() if v not in ("", None)}
    found = service.index.audit.query(question)
    _record_use(service, "audit query", asked, patient or "", issuer or "")
    if as_json:
        click.echo(json.dumps([_json(r) for r in found], indent=2, ensure_ascii=False))
        return
    rows = [row for record in found for row in _rows(record, patient or "")]
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=[*COLUMNS, "node", "destination"])
        writer.writeheader()
        writer.writerows({k: row[k] for k in writer.fieldnames} for row in rows)
        return
    print_table(rows, COLUMNS, as_json=False)


def _record_use(
    service: Any, operation: str, detail: dict[str, Any], patient: str = "", issuer: str = ""
) -> None:
    """Reading the trail is itself recorded, before anything is shown (fail closed); a
    question's own record is not among its answers, the ones before it are."""
    touched = (Touched(patient, issuer),) if patient else ()
    try:
        service.audit.event(
            AUDIT_LOG_USED, READ, operation, local_actor(), touched=touched, detail=detail
        )
    except AuditUnavailable:
        raise AuditUnavailable(
            "the audit trail cannot record this use of it, so it is not shown"
        ) from None


@audit.command("verify")
@config_option
def audit_verify() -> None:
    """Walk every node's hash chain; name each changed, removed or inserted record by its
    sequence number. Exit 1 on any break."""
    service = get_service()
    service.index.check_schema()
    results = service.audit.verify()
    _record_use(service, "audit verify", {"nodes": sorted(results)})
    if not results:
        click.echo("the audit trail is empty")
        return
    broken = False
    for node, (count, breaks) in sorted(results.items()):
        if breaks:
            broken = True
            click.echo(f"{node}: {count} record(s), {len(breaks)} break(s):")
            for line in breaks:
                click.echo(f"  {line}")
        else:
            click.echo(f"{node}: {count} record(s), chain intact")
    if broken:
        sys.exit(1)


@audit.command("prune")
@config_option
@click.option(
    "--days",
    type=click.IntRange(1),
    help="Keep this many whole days (default: audit.retain_days).",
)
def audit_prune(days: int | None) -> None:
    """Remove this node's records older than audit.retain_days (or --days), leaving a
    checkpoint record so that `audit verify` still holds; records not yet exported stay."""
    service = get_service()
    service.index.check_schema()
    days = days or service.config.audit.retain_days
    if not days:
        raise InvalidInput("audit.retain_days is 0 (keep forever): give --days N")
    before = prune_before(days)
    record = service.audit.prune(before, local_actor())
    if record is None:
        click.echo(f"no records of {service.audit.node} before {before}")
        return
    click.echo(
        f"pruned {record.details['records']} record(s) of {service.audit.node} before "
        f"{before}; checkpoint is record {record.seq}"
    )


__all__ = ["audit"]
