"""`studies`, `commitments`, `config` and `config check`: what is stored, committed, configured."""

from __future__ import annotations

import json
import os

import click

from ..config import (
    CONFIG_ENV,
    INDEX_URL_ENV,
    check_config_file,
    effective_toml,
    example_toml,
)
from ..rules.commitment import FAILURE_WORDS, CommitmentResult
from . import (
    ArchiveGroup,
    cli,
    command,
    config_option,
    get_config,
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
    rows = []
    for r in service.index.commitments.listing(state=state, limit=limit):
        result = CommitmentResult.from_json(r.result) if r.result is not None else None
        rows.append(
            {
                "transaction_uid": r.transaction_uid,
                "requester": r.requester,
                "instances": len(json.loads(r.references)),
                "state": r.state,
                "attempts": r.attempts,
                "created_at": r.created_at,
                # None until decided; then the committed count and each failure
                "committed": len(result.committed) if result else None,
                "failed": len(result.failed) if result else None,
                "failures": [
                    {
                        "sop_class_uid": f.sop_class_uid,
                        "sop_instance_uid": f.sop_instance_uid,
                        "failure_reason": f"0x{f.reason:04X}",
                        "reason": FAILURE_WORDS.get(f.reason, "failure"),
                    }
                    for f in result.failed
                ]
                if result
                else None,
                "delivered_at": r.delivered_at,
                "last_error": r.last_error,
            }
        )
    columns = [
        "transaction_uid",
        "requester",
        "instances",
        "failed",
        "state",
        "attempts",
        "created_at",
    ]
    if as_json:
        columns += ["committed", "failures", "delivered_at", "last_error"]
    print_table(rows, columns, as_json)


@cli.group("config", cls=ArchiveGroup, invoke_without_command=True)
@config_option
@click.pass_context
def config_group(ctx: click.Context) -> None:
    """Print every configuration key with its help and the value in effect: the --config
    file's (or $ARCHIVE_NODE_CONFIG's; index.url's password masked), else the defaults (an
    example file). `config check` lists every problem of a file."""
    if ctx.invoked_subcommand is not None:
        return
    if _config_path(ctx) is None and not os.environ.get(INDEX_URL_ENV):
        click.echo(example_toml(), nl=False)
        return
    click.echo(effective_toml(get_config()), nl=False)


@command(config_group, "check")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.pass_context
def config_check(ctx: click.Context, file: str | None) -> None:
    """Check a config file (FILE, else --config or $ARCHIVE_NODE_CONFIG): every problem it
    has, one a line, and exit 1; else print "ok: FILE"."""
    path = file or _config_path(ctx)
    if path is None:
        raise click.ClickException("config check: give a FILE, --config FILE or $" + CONFIG_ENV)
    problems = check_config_file(path)
    for problem in problems:
        click.echo(problem)
    if problems:
        ctx.exit(1)
    click.echo(f"ok: {path}")


def _config_path(ctx: click.Context) -> str | None:
    """The config file this command was given (--config, before or after the command), or
    $ARCHIVE_NODE_CONFIG's."""
    return ctx.meta.get("archive_node.config_path") or os.environ.get(CONFIG_ENV) or None
