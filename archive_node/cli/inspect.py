"""`studies`, `commitments` and `config`: what is stored, committed and configured."""

from __future__ import annotations

import json

import click

from ..config import example_toml
from . import (
    cli,
    command,
    get_service,
    json_option,
    print_table,
    records,
)

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


@command(cli, "config")
def show_config() -> None:
    """Print every configuration key with its help and default (an example file)."""
    click.echo(example_toml(), nl=False)
