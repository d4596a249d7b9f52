"""`conformance`: the node's DICOM Conformance Statement (PS3.2), for the configuration given."""

from __future__ import annotations

import click

from . import cli, command, get_config


@command(cli)
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the statement (markdown) to FILE instead of standard output.",
)
def conformance(output: str | None) -> None:
    """Print the DICOM Conformance Statement for this configuration (no index needed).

    It is built from the presentation contexts `serve` would accept with this configuration
    and the node's own tables; a service that is off here is not listed.
    """
    config = get_config()
    from ..net.conformance import conformance_statement  # late: --help stays fast

    text = conformance_statement(config)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as exc:
        raise click.ClickException(f"{output}: cannot write: {exc.strerror}") from None
    click.echo(f"conformance statement written to {output}", err=True)
