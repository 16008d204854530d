"""Entry point of the ``strongroom`` command: a click group of command families."""

from __future__ import annotations

import click

from .. import __version__
from .run import run
from .secrets import secrets
from .server_commands import keys, master_key, migrate, serve, worker
from .tasks import tasks


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="strongroom")
def cli() -> None:
    """strongroom: a self-hosted secrets service for automation.

    Server settings come from STRONGROOM_* environment variables (see the README).
    """


cli.add_command(serve)
cli.add_command(worker)
cli.add_command(migrate)
cli.add_command(keys)
cli.add_command(master_key)
cli.add_command(secrets)
cli.add_command(run)
cli.add_command(tasks)


def main() -> None:
    cli()
