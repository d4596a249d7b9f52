"""The admin command line: parse, call the service or registry, print; errors are one line."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from .. import __version__, logs
from ..config import Config, load_config
from ..errors import ArchiveError, AuditUnavailable

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


def get_service(*, create_index: bool = False):
    """The archive service for this command (imported late: --help stays fast).

    Only `init` and `reindex` pass `create_index`: every other command opens an index that
    exists, and a SQLite one that does not is an error naming it, never a new empty file.
    """
    ctx = click.get_current_context()
    if "archive_node.service" not in ctx.meta:
        from ..service import ArchiveService

        config = get_config()
        setup_logging(config)
        service = ArchiveService.from_config(config, create_index=create_index)
        ctx.call_on_close(service.index.release)
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
    logs.setup_logging(config.log.level, config.log.pynetdicom_level, config.log.format)


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


def main() -> None:
    cli(prog_name="archive-node")


from . import allowlist as _allowlist_commands  # noqa: E402, F401  # hospital, ae
from . import audit as _audit_commands  # noqa: E402, F401  # registers `archive-node audit`
from . import conformance as _conformance_commands  # noqa: E402, F401  # conformance
from . import corrections as _correction_commands  # noqa: E402, F401  # patient, study, reject
from . import inspect as _inspect_commands  # noqa: E402, F401  # studies, commitments, config
from . import network as _network_commands  # noqa: E402, F401  # echo, send, find, move
from . import node as _node_commands  # noqa: E402, F401  # init, serve, verify, reindex, import
from . import orders as _order_commands  # noqa: E402, F401  # hl7, orders
