"""Correcting mistakes from the command line: `patient update|merge`, `study move|delete`,
`series delete`, `instance delete`, `reject`, `restore`, `hospital update --issuer` and
`lifecycle run`. Each says what it changed (or, with --dry-run, would change), and is recorded
with the operating system user, the reason and the values before and after."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from ..errors import InvalidInput
from ..rules.corrections import Change
from ..rules.rejection import REJECTION_CODES
from . import ArchiveGroup, cli, command, get_service, json_option

reason_option = click.option(
    "--reason", required=True, help="Why (recorded in the audit trail with your user name)."
)
dry_run_option = click.option(
    "--dry-run", is_flag=True, help="Show what would change, and change nothing."
)
issuer_option = click.option(
    "--issuer", help="Issuer of Patient ID (may be left out when the PatientID is unambiguous)."
)


def _corrections() -> Any:
    service = get_service()
    service.index.check_schema()
    return service.corrections


def _show(change: Change, dry_run: bool, as_json: bool = False) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "kind": change.kind,
                    "summary": change.summary,
                    "before": change.before,
                    "after": change.after,
                    "instances": change.instances,
                    "studies": sorted({t.study_uid for t in change.touched if t.study_uid}),
                    "dry_run": dry_run,
                },
                indent=2,
            )
        )
        return
    click.echo(("would change (dry run, nothing changed): " if dry_run else "") + change.summary)
    for key in sorted(set(change.before) | set(change.after)):
        before, after = change.before.get(key), change.after.get(key)
        if before != after:
            click.echo(f"  {key}: {_text(before)} -> {_text(after)}")


def _text(value: Any) -> str:
    if value is None or value == "":
        return "(empty)"
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return str(value)


def _run(
    make: Callable[[Any, Any], Change], reason: str, dry_run: bool, as_json: bool = False
) -> None:
    corrections = _corrections()
    frame = corrections.frame(reason, dry_run=dry_run)
    _show(make(corrections, frame), dry_run, as_json)


# -- patients -----------------------------------------------------------------------------------


@cli.group(cls=ArchiveGroup)
def patient() -> None:
    """Correct a patient's demographics, or merge two records of one person."""


@command(patient, "update")
@click.argument("patient_id")
@issuer_option
@click.option("--name", help="New PatientName (Family^Given).")
@click.option("--birth-date", metavar="YYYYMMDD", help="New birth date ('' clears it).")
@click.option("--sex", help="New sex: M, F or O ('' clears it).")
@reason_option
@dry_run_option
@json_option
def patient_update(
    patient_id: str,
    issuer: str | None,
    name: str | None,
    birth_date: str | None,
    sex: str | None,
    reason: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Fix the demographics of patient PATIENT_ID, in every study of theirs."""
    _run(
        lambda c, frame: c.update_patient(
            patient_id, issuer, name=name, birth_date=birth_date, sex=sex, frame=frame
        ),
        reason,
        dry_run,
        as_json,
    )


@command(patient, "merge")
@click.argument("patient_id")
@issuer_option
@click.option("--into", "into_id", required=True, metavar="ID", help="The surviving PatientID.")
@click.option("--into-issuer", help="The surviving patient's issuer.")
@reason_option
@dry_run_option
@json_option
def patient_merge(
    patient_id: str,
    issuer: str | None,
    into_id: str,
    into_issuer: str | None,
    reason: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Merge patient PATIENT_ID into another record of the same person: their studies move
    over, and a query for either ID finds them under the surviving one."""
    _run(
        lambda c, frame: c.merge_patients(patient_id, issuer, into_id, into_issuer, frame=frame),
        reason,
        dry_run,
        as_json,
    )


# -- studies, series, instances -----------------------------------------------------------------


@cli.group(cls=ArchiveGroup)
def study() -> None:
    """Move a study to the right patient, or delete it."""


@command(study, "move")
@click.argument("study_uid")
@click.option("--to-patient", required=True, metavar="ID", help="The right patient's ID.")
@issuer_option
@click.option("--name", help="Create the patient, unknown so far, with this name.")
@click.option("--birth-date", metavar="YYYYMMDD", help="With --name: the birth date.")
@click.option("--sex", help="With --name: M, F or O.")
@reason_option
@dry_run_option
@json_option
def study_move(
    study_uid: str,
    to_patient: str,
    issuer: str | None,
    name: str | None,
    birth_date: str | None,
    sex: str | None,
    reason: str,
    dry_run: bool,
    as_json: bool,
) -> None:
    """File study STUDY_UID under the right patient (the stored files stay as received; what
    leaves the node carries the correction)."""
    _run(
        lambda c, frame: c.move_study(
            study_uid.strip(),
            to_patient,
            issuer,
            name=name,
            birth_date=birth_date,
            sex=sex,
            frame=frame,
        ),
        reason,
        dry_run,
        as_json,
    )


def _delete_command(group: click.Group, level: str) -> None:
    @command(group, "delete")
    @click.argument("uid")
    @reason_option
    @dry_run_option
    @json_option
    def delete(uid: str, reason: str, dry_run: bool, as_json: bool) -> None:
        _run(lambda c, frame: c.delete(level, uid, frame=frame), reason, dry_run, as_json)

    delete.help = (
        f"Delete {level} UID: its files and index rows are removed (for good; `reject` "
        "hides instead)."
    )


_delete_command(study, "study")


@cli.group(cls=ArchiveGroup)
def series() -> None:
    """Delete a series."""


_delete_command(series, "series")


@cli.group(cls=ArchiveGroup)
def instance() -> None:
    """Delete an instance."""


_delete_command(instance, "instance")


# -- rejection (IHE IOCM) ------------------------------------------------------------------------


@command(cli, "reject")
@click.argument("uids", nargs=-1, required=True)
@click.option(
    "--code",
    required=True,
    type=click.Choice(sorted(REJECTION_CODES)),
    help="PS3.16 CID 7010 rejection titles: "
    + "; ".join(f"{code} {meaning}" for code, meaning in sorted(REJECTION_CODES.items()))
    + ". 113038 and 113039 are deleted after lifecycle.delete_rejected_after days.",
)
@reason_option
@dry_run_option
@json_option
def reject(uids: tuple[str, ...], code: str, reason: str, dry_run: bool, as_json: bool) -> None:
    """Reject instances (SOP Instance UIDs; a series or study UID rejects all it holds): they
    disappear from queries, retrieves and Storage Commitment, and a resend is refused."""
    _run(lambda c, frame: c.reject(list(uids), code, frame=frame), reason, dry_run, as_json)


@command(cli, "restore")
@click.argument("uids", nargs=-1, required=True)
@reason_option
@dry_run_option
@json_option
def restore(uids: tuple[str, ...], reason: str, dry_run: bool, as_json: bool) -> None:
    """Undo the rejection of instances (or of a series' or study's) not yet deleted."""
    _run(lambda c, frame: c.restore(list(uids), frame=frame), reason, dry_run, as_json)


@cli.group(cls=ArchiveGroup)
def lifecycle() -> None:
    """Delete rejected instances that are due (a running node does it every minute)."""


@command(lifecycle, "run")
@json_option
def lifecycle_run(as_json: bool) -> None:
    """Delete now the rejected instances due for deletion (113038, 113039 after
    lifecycle.delete_rejected_after days)."""
    changes = _corrections().run_lifecycle()
    deleted = sum(change.instances for change in changes)
    if as_json:
        click.echo(json.dumps({"deleted": deleted}))
    else:
        click.echo(f"{deleted} rejected instance(s) deleted" if deleted else "nothing due")


def change_issuer(code: str, issuer: str, merge: bool, reason: str | None, dry_run: bool) -> None:
    """`hospital update --issuer` (cli/__init__.py): relabel the hospital's patients."""
    if reason is None:
        raise InvalidInput("--issuer needs --reason: say why, for the audit trail")
    _run(lambda c, frame: c.change_issuer(code, issuer, merge=merge, frame=frame), reason, dry_run)
