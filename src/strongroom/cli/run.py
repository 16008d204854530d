"""``strongroom run``: start a command with secrets in its environment.

The secrets are fetched first, then this process *becomes* the command
(``os.execvpe``), rather than spawning it and waiting:

- the command's exit status is this process's, signals (Ctrl-C, ``kill``, a CI runner's
  SIGTERM) reach it directly, and stdin/stdout/stderr are simply its own, with no
  forwarding code to get wrong;
- no Python process lingers holding the values in memory while the command runs.

The cost is that nothing runs after the command (there is nothing to clean up). If the
command cannot be started the exit code is 127 (not found) or 126 (not executable), as a
shell's. Nothing of the values is printed.
"""

from __future__ import annotations

import os
import sys

import click

from .common import (
    ClientOptions,
    ExitCode,
    api_errors,
    client_options,
    fail,
    is_name,
    metadata_option,
    open_client,
    parse_metadata,
)

ENV_NAME_HELP = "letters, digits and underscores, not starting with a digit"


def parse_mappings(specs: tuple[str, ...]) -> dict[str, str]:
    """``--secret`` values (``NAME`` or ``ENVNAME=NAME``) as {env var: secret name}."""
    mapping: dict[str, str] = {}
    for spec in specs:
        env_name, sep, secret_name = spec.partition("=")
        if not sep:
            secret_name = env_name
        if not is_name(secret_name):
            raise click.BadParameter(f"{secret_name!r} is not a secret name", param_hint="--secret")
        if not is_name(env_name):
            raise click.BadParameter(
                f"{env_name!r} is not a variable name ({ENV_NAME_HELP})", param_hint="--secret"
            )
        if env_name in mapping and mapping[env_name] != secret_name:
            raise click.BadParameter(f"{env_name} is given twice", param_hint="--secret")
        mapping[env_name] = secret_name
    return mapping


@click.command(
    "run",
    context_settings={"allow_interspersed_args": False},
    short_help="Run a command with secrets in its environment.",
)
@client_options(from_env=True)
@click.option(
    "--secret",
    "secret_specs",
    multiple=True,
    metavar="[ENVNAME=]NAME",
    help="add secret NAME as $NAME, or as $ENVNAME (repeatable)",
)
@click.option("--all", "all_secrets", is_flag=True, help="add every secret (of the filter)")
@metadata_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@api_errors
def run(
    api_key: str | None,
    base_url: str | None,
    secret_specs: tuple[str, ...],
    all_secrets: bool,
    metadata_pairs: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Run COMMAND with secrets added to its environment, as variables named like them.

    \b
        strongroom run --secret DATABASE_URL -- ./migrate.sh
        strongroom run --secret PGPASSWORD=prod_db_password -- psql
        strongroom run --metadata environment=production -- python app.py

    --metadata (alone, or with --all) adds every secret whose metadata matches. Secrets
    override variables of the same name already set. COMMAND replaces this process, so
    its exit code, signals and standard streams are its own; 127 if it is not found.
    """
    mapping = parse_mappings(secret_specs)
    metadata = parse_metadata(metadata_pairs)
    if not (mapping or all_secrets or metadata):
        raise click.UsageError("choose secrets with --secret, --all or --metadata")

    environment = dict(os.environ)
    with open_client(ClientOptions(api_key, base_url)) as client:
        if all_secrets or metadata:
            for secret in client.secrets.list_all(metadata=metadata or None):
                mapping.setdefault(secret.name, secret.name)
        values: dict[str, str] = {}  # a secret given two variable names is read once
        for env_name, secret_name in mapping.items():
            if secret_name not in values:
                values[secret_name] = client.secrets.get(secret_name).value
            if "\0" in values[secret_name]:
                fail(
                    f"the value of {secret_name} holds a NUL character, which an environment "
                    "variable cannot",
                    ExitCode.ERROR,
                )
            environment[env_name] = values[secret_name]

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], list(command), environment)  # noqa: S606 - the user's command
    except FileNotFoundError:
        fail(f"command not found: {command[0]}", 127)
    except PermissionError:
        fail(f"command not executable: {command[0]}", 126)
    except OSError as exc:
        fail(f"cannot run {command[0]}: {exc.strerror}", 126)
