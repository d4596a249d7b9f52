"""`hospital` and `ae`: the allowlist of hospitals and their AE titles."""

from __future__ import annotations

from typing import Any

import click

from ..errors import InvalidInput
from ..index import AERecord
from ..registry import bound_certificates
from ..rules.access import SCOPES
from ..rules.tls import DEFAULT_TLS_MODE, TLS_MODES, format_fingerprint
from . import (
    ArchiveGroup,
    audited,
    cli,
    command,
    get_registry,
    json_option,
    print_table,
    records,
)

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
    "--host",
    default="",
    help="Where its associations must come from: an IP address, a name, or a range "
    "(10.20.4.0/24, fd00:1::/64); empty = any.",
)
@click.option(
    "--port",
    type=int,
    help="Where it listens (only for a retrieve destination or commitment call-backs; needs "
    "one address in --host, not a range).",
)
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
@click.option("--host", help="New source address, name or range (10.20.4.0/24); '' = any.")
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
