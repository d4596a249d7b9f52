"""`echo`, `send`, `find` and `move`: the node as a DICOM client, of itself or of its peers."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click

from ..config import Config
from . import (
    cli,
    command,
    get_config,
    get_registry,
    json_option,
    print_table,
    qr_options,
    records,
    remote_options,
    tls_flag,
)

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
    from ..net.client import echo_response

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
    answer = echo_response(
        host,
        port,
        calling=calling_aet or config.node.ae_title,
        called=aet,
        fast_paths=config.node.fast_paths,
        tls=tls,
    )
    click.echo(
        f"C-ECHO {aet} at {host}:{port}{' over TLS' if tls else ''}: "
        f"status 0x{answer.status:04X} {answer.comment}".rstrip()
    )
    if answer.status != 0:
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
    """-k KEYWORD[=VALUE] options as a dict; a ClickException names an unknown keyword, or one
    given twice (the later would silently replace the earlier: a match value lost)."""
    from pydicom.datadict import tag_for_keyword

    wanted: dict[str, str] = {}
    for item in items:
        keyword, equals, value = item.partition("=")
        if tag_for_keyword(keyword.strip()) is None:
            raise click.ClickException(f"-k {item}: {keyword.strip()!r} is not a DICOM keyword")
        if need_values and not equals:
            raise click.ClickException(f"-k {item}: give a value (KEYWORD=VALUE)")
        if keyword.strip() in wanted:
            raise click.ClickException(
                f"-k {item}: {keyword.strip()} is given twice (one -k per keyword)"
            )
        wanted[keyword.strip()] = value
    return wanted


def _text(value: Any) -> Any:
    from pydicom.multival import MultiValue

    if isinstance(value, MultiValue | list):
        return "\\".join(str(v) for v in value)
    return value if isinstance(value, int | float) else str(value)
