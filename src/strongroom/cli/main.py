"""Entry point of the ``strongroom`` command: a click group of command families."""

from __future__ import annotations

import click

from .. import __version__
from .audit import audit
from .backup import backup, restore
from .keys import keys
from .login import login, logout, whoami
from .master_key import master_key
from .run import run
from .secrets import secrets
from .server_commands import migrate, serve, worker
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
cli.add_command(backup)
cli.add_command(restore)
cli.add_command(keys)
cli.add_command(master_key)
cli.add_command(login)
cli.add_command(logout)
cli.add_command(whoami)
cli.add_command(secrets)
cli.add_command(run)
cli.add_command(tasks)
cli.add_command(audit)


def main() -> None:
    cli()
