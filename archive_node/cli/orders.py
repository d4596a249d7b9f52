"""Orders from the command line: `hl7 add-sender|senders|remove-sender` (who may send HL7 v2
messages, for which hospital, from where) and `orders` (the scheduled and performed procedure
steps; `orders add` schedules one by hand, for a department without an order system)."""

from __future__ import annotations

from typing import Any

import click

from . import (
    ArchiveGroup,
    audited,
    cli,
    command,
    config_option,
    get_service,
    json_option,
    print_table,
    records,
)


def _orders() -> Any:
    service = get_service()
    service.index.check_schema()
    return service.orders


@cli.group(cls=ArchiveGroup)
def hl7() -> None:
    """HL7 v2 senders: the order and patient systems whose messages the node takes."""


@command(hl7, "add-sender")
@click.argument("facility")
@click.option("--hospital", required=True, help="Code of the hospital whose orders it sends.")
@click.option(
    "--host", required=True, help="The address (IP or name) its connections must come from."
)
def hl7_add_sender(facility: str, hospital: str, host: str) -> None:
    """Register sending facility FACILITY (MSH-4): its messages are taken at once."""
    from ..registry import check_host

    record = _orders().add_sender(facility, hospital, check_host(host))
    audited("hl7 add-sender", record)
    click.echo(f"HL7 sender {record.facility} registered for {record.hospital} from {record.host}")


@command(hl7, "senders")
@json_option
def hl7_senders(as_json: bool) -> None:
    """List the registered HL7 senders."""
    print_table(
        records(_orders().index.orders.senders()),
        ("facility", "hospital", "issuer", "host"),
        as_json,
    )


@command(hl7, "remove-sender")
@click.argument("facility")
def hl7_remove_sender(facility: str) -> None:
    """Unregister FACILITY: its messages are answered AR from now on."""
    _orders().index.orders.remove_sender(facility)
    audited("hl7 remove-sender", {"facility": facility})
    click.echo(f"HL7 sender {facility} removed")


@cli.group(cls=ArchiveGroup, invoke_without_command=True)
@click.option("--hospital", help="Only this hospital's steps.")
@click.option("--station", help="Only steps scheduled on this station AE title.")
@click.option("--date", help="Only steps scheduled on this day (YYYYMMDD).")
@click.option(
    "--status",
    help="Only steps in this state: SCHEDULED, IN PROGRESS, COMPLETED, DISCONTINUED, "
    "CANCELLED, or PERFORMED (instances of it are stored).",
)
@json_option
@config_option
@click.pass_context
def orders(
    ctx: click.Context,
    hospital: str | None,
    station: str | None,
    date: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """The scheduled procedure steps (the Modality Worklist), newest first; PERFORMED says
    whether instances of the step are stored."""
    if ctx.invoked_subcommand is not None:
        return
    steps = _orders().steps(
        hospital=hospital,
        station=station,
        date=date,
        status=status.upper() if status else None,
    )
    rows = [
        {
            "hospital": step.hospital,
            "accession": step.values["accession_number"],
            "step": step.values["step_id"],
            "modality": step.values["modality"],
            "station": step.values["station_ae"],
            "start": f"{step.values['start_date']} {step.values['start_time']}".strip(),
            "status": step.values["status"],
            "performed": "yes" if step.performed else "no",
            "patient_id": step.values["patient_id"],
            "issuer": step.values["issuer"],
            **({"study_uid": step.values["study_uid"]} if as_json else {}),
            **(
                {"patient_name": step.values["patient_name"], "source": step.values["source"]}
                if as_json
                else {}
            ),
        }
        for step in steps
    ]
    columns = (
        "hospital",
        "accession",
        "step",
        "modality",
        "station",
        "start",
        "status",
        "performed",
        "patient_id",
        "issuer",
    )
    print_table(rows, columns, as_json)


@command(orders, "add")
@click.option("--hospital", required=True, help="Code of the hospital the order belongs to.")
@click.option("--patient-id", required=True, help="The patient's ID.")
@click.option("--issuer", help="Issuer of Patient ID (default: the hospital's).")
@click.option("--name", required=True, help="Patient name, DICOM style: FAMILY^GIVEN.")
@click.option("--birth-date", default="", help="YYYYMMDD.")
@click.option("--sex", default="", type=click.Choice(["", "M", "F", "O"]), help="M, F or O.")
@click.option("--accession", required=True, help="Accession number (also the step's ID).")
@click.option("--modality", required=True, help="Modality (US, XC, ES, CT...).")
@click.option("--station", required=True, help="AE title of the device that performs it.")
@click.option("--date", required=True, help="Scheduled day, YYYYMMDD.")
@click.option("--time", default="", help="Scheduled time, HHMM.")
@click.option("--procedure", default="", help="What is to be done (free text).")
@json_option
def orders_add(
    hospital: str,
    patient_id: str,
    issuer: str | None,
    name: str,
    birth_date: str,
    sex: str,
    accession: str,
    modality: str,
    station: str,
    date: str,
    time: str,
    procedure: str,
    as_json: bool,
) -> None:
    """Schedule a step by hand: it is offered on the worklist at once."""
    step = _orders().add_step(
        hospital,
        patient_id=patient_id,
        issuer=issuer,
        name=name,
        birth_date=birth_date,
        sex=sex,
        accession=accession,
        modality=modality,
        station=station,
        date=date,
        time=time,
        procedure=procedure,
    )
    if as_json:
        import json

        click.echo(json.dumps(step, indent=2))
        return
    click.echo(
        f"scheduled {step['accession_number']} ({step['modality']}) on {step['station_ae']} "
        f"{step['start_date']} {step['start_time']}".rstrip()
        + f", Study Instance UID {step['study_uid']}"
    )
