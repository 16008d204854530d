"""``strongroom secrets ...``: read and write secrets on a server, through the SDK.

Values go to stdout only where asked for (``get``, ``export``); progress and errors go to
stderr, and neither ever holds a value. See docs/cli.md for the whole reference.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import NOT_GIVEN
from ..exceptions import SecretAlreadyExistsError, SecretNotFoundError, StrongroomError
from ..models import Secret, SecretPolicy
from .common import (
    ClientOptions,
    ExitCode,
    api_errors,
    check_secret_name,
    client_options,
    fail,
    metadata_option,
    open_client,
    options_of,
    parse_metadata,
    say,
    warn,
)

P = ParamSpec("P")
R = TypeVar("R")


def _name_argument(ctx: click.Context, param: click.Parameter, value: str) -> str:
    return check_secret_name(value, what=(param.name or "NAME").upper())


def _stdout_console() -> Console:
    """A console for stdout; off a terminal, tables keep their natural width so that a
    pipe or a file gets whole names rather than names folded at 80 columns."""
    return Console(highlight=False) if sys.stdout.isatty() else Console(width=100_000)


def _write_stdout(text: str) -> None:
    """Write ``text`` as UTF-8 whatever the locale, so values come out byte for byte."""
    stream = sys.stdout.buffer
    stream.write(text.encode("utf-8"))
    stream.flush()


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


# -- usage policy options ------------------------------------------------------------------------
def _policy_options(func: Callable[P, R]) -> Callable[P, R]:
    """``--allow-destination``, ``--allow-tool`` and ``--use-only``, for ``set``."""
    func = click.option(
        "--use-only",
        "use_only",
        is_flag=True,
        default=None,
        help="make it use-only: tasks can use it, no API key can read its value "
        "(undoing this needs the secrets:admin scope)",
    )(func)
    func = click.option(
        "--allow-tool",
        "allow_tools",
        multiple=True,
        metavar="TOOL",
        help="only this tool (http) or tool/operation (http/request) may use it; repeatable; "
        "replaces the list",
    )(func)
    return click.option(
        "--allow-destination",
        "allow_destinations",
        multiple=True,
        metavar="HOST",
        help="tasks may send it only to HOST (api.stripe.com, api.stripe.com:443, "
        "*.stripe.com); repeatable; replaces the list",
    )(func)


def _policy_change(
    allow_destinations: tuple[str, ...],
    allow_tools: tuple[str, ...],
    use_only: bool | None,
    *,
    clear_destinations: bool = False,
    clear_tools: bool = False,
) -> dict[str, Any]:
    """The policy fields the options give (the server keeps the others)."""
    if allow_destinations and clear_destinations:
        fail("give --allow-destination or --clear-destinations, not both", ExitCode.USAGE)
    if allow_tools and clear_tools:
        fail("give --allow-tool or --clear-tools, not both", ExitCode.USAGE)
    change: dict[str, Any] = {}
    if allow_destinations or clear_destinations:
        change["allowed_destinations"] = list(allow_destinations) if allow_destinations else None
    if allow_tools or clear_tools:
        change["allowed_tools"] = list(allow_tools) if allow_tools else None
    if use_only is not None:
        change["readable"] = not use_only
    return change


def _policy_text(policy: SecretPolicy) -> str:
    """A policy in one line for a person: ``use-only; destinations: a, b; tools: http``."""
    parts = []
    if not policy.readable:
        parts.append("use-only")
    if policy.allowed_destinations is not None:
        parts.append(f"destinations: {', '.join(policy.allowed_destinations) or 'none'}")
    if policy.allowed_tools is not None:
        parts.append(f"tools: {', '.join(policy.allowed_tools) or 'none'}")
    return "; ".join(parts) or "no restrictions"


# -- the group ----------------------------------------------------------------------------------
@click.group("secrets")
@client_options(from_env=True)
@click.pass_context
def secrets(ctx: click.Context, api_key: str | None, base_url: str | None) -> None:
    """Read and write secrets on a strongroom server (through its API).

    Exit codes: 0 ok, 1 other error, 2 usage, 3 not found, 4 conflict or precondition
    failed, 5 authentication or permission, 6 cannot reach the server.
    """
    ctx.obj = ClientOptions(api_key, base_url)


# -- list, get ------------------------------------------------------------------------------------
@secrets.command("list")
@client_options(from_env=False)
@metadata_option
@click.option(
    "--limit", type=click.IntRange(min=1), metavar="N", help="at most N secrets [default: all]"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON (a list of secrets)")
@click.pass_context
@api_errors
def list_secrets(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    metadata_pairs: tuple[str, ...],
    limit: int | None,
    as_json: bool,
) -> None:
    """List secrets by name, filtered by metadata (never their values)."""
    metadata = parse_metadata(metadata_pairs) or None
    found: list[Secret] = []
    with open_client(options_of(ctx, api_key, base_url)) as client:
        page_size = min(limit, 1000) if limit else 100
        for secret in client.secrets.list_all(metadata=metadata, page_size=page_size):
            found.append(secret)
            if limit is not None and len(found) >= limit:
                break
    if as_json:
        rows = [s.model_dump(mode="json", exclude={"value"}) for s in found]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("name", "version", "description", "metadata", "updated")
    for s in found:
        table.add_row(
            s.name,
            str(s.version),
            Text(s.description or ""),  # Text: brackets in user text are not markup
            Text(_metadata_text(s.metadata)),
            s.updated_at.isoformat()[:19],
        )
    _stdout_console().print(table)


def _metadata_text(metadata: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in metadata.items()
    )


@secrets.command("get")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option(
    "--version", type=click.IntRange(min=1), metavar="N", help="this version [default: the newest]"
)
@click.option("--json", "as_json", is_flag=True, help="print the whole secret as JSON")
@click.pass_context
@api_errors
def get_secret(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    name: str,
    version: int | None,
    as_json: bool,
) -> None:
    """Print a secret's value (and a newline), or the whole secret with --json."""
    with open_client(options_of(ctx, api_key, base_url)) as client:
        secret = client.secrets.get(name, version=version)
    if as_json:
        _write_stdout(json.dumps(secret.model_dump(mode="json"), indent=2) + "\n")
    else:
        _write_stdout(secret.value + "\n")


# -- set ------------------------------------------------------------------------------------------
@secrets.command("set")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.argument("value", required=False)
@click.option(
    "--from-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="read the value from FILE, byte for byte (UTF-8)",
)
@click.option("--description", help="the secret's description [default: kept]")
@metadata_option
@_policy_options
@click.pass_context
@api_errors
def set_secret(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    name: str,
    value: str | None,
    from_file: Path | None,
    description: str | None,
    metadata_pairs: tuple[str, ...],
    allow_destinations: tuple[str, ...],
    allow_tools: tuple[str, ...],
    use_only: bool | None,
) -> None:
    """Create a secret or give it a new value (a new version).

    The value comes from VALUE, from --from-file, from stdin when it is not a terminal
    (one trailing newline removed), or else from a prompt that does not echo. VALUE on the
    command line lands in shell history and `ps`: prefer the others. Description and
    metadata are kept unless given; --metadata replaces the whole metadata object. The
    policy options set those fields of the usage policy and keep the others (see
    `secrets policy`).
    """
    metadata = parse_metadata(metadata_pairs)
    policy = _policy_change(allow_destinations, allow_tools, use_only)
    secret_value = _read_value(name, value, from_file)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        secret = client.secrets.upsert(
            name,
            secret_value,
            description=NOT_GIVEN if description is None else description,
            metadata=metadata or NOT_GIVEN,
            policy=policy or NOT_GIVEN,
        )
    if secret.version == 1:
        say(f"created {secret.name} (version 1)")
    else:
        say(f"updated {secret.name} to version {secret.version}")
    if policy:
        say(f"policy of {secret.name}: {_policy_text(secret.policy)}")


# -- policy ---------------------------------------------------------------------------------------
@secrets.command("policy")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option(
    "--allow-destination",
    "allow_destinations",
    multiple=True,
    metavar="HOST",
    help="tasks may send it only to HOST (api.stripe.com, api.stripe.com:443, "
    "*.stripe.com); repeatable; replaces the list",
)
@click.option(
    "--clear-destinations", is_flag=True, help="no destination restriction (needs secrets:admin)"
)
@click.option(
    "--allow-tool",
    "allow_tools",
    multiple=True,
    metavar="TOOL",
    help="only this tool (http) or tool/operation (http/request) may use it; repeatable; "
    "replaces the list",
)
@click.option("--clear-tools", is_flag=True, help="no tool restriction (needs secrets:admin)")
@click.option(
    "--use-only/--readable",
    "use_only",
    default=None,
    help="use-only: tasks can use it, no API key can read its value; --readable undoes "
    "that (needs secrets:admin)",
)
@click.option("--json", "as_json", is_flag=True, help="print the policy as JSON")
@click.pass_context
@api_errors
def secret_policy(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    name: str,
    allow_destinations: tuple[str, ...],
    clear_destinations: bool,
    allow_tools: tuple[str, ...],
    clear_tools: bool,
    use_only: bool | None,
    as_json: bool,
) -> None:
    """Show or change a secret's usage policy, leaving its value alone.

    Only the fields given change. Without options, prints the policy. Tightening needs
    the secrets:write scope; loosening (--readable, --clear-*, a wider list) needs
    secrets:admin as well (exit 5 without it, and nothing changes).
    """
    change = _policy_change(
        allow_destinations,
        allow_tools,
        use_only,
        clear_destinations=clear_destinations,
        clear_tools=clear_tools,
    )
    with open_client(options_of(ctx, api_key, base_url)) as client:
        if change:
            policy = client.secrets.update(name, policy=change).policy
            say(f"policy of {name} changed")
        else:  # the list shows a policy without reading the value (a use-only one too)
            found = next(
                (s for s in client.secrets.list_all(page_size=1000) if s.name == name), None
            )
            if found is None:
                fail(f"secret {name!r} does not exist", ExitCode.NOT_FOUND)
            policy = found.policy
    if as_json:
        click.echo(json.dumps(policy.model_dump(mode="json"), indent=2))
    else:
        click.echo(f"{name}: {_policy_text(policy)}")


def _read_value(name: str, value: str | None, from_file: Path | None) -> str:
    """The new value, from wherever it was given; says on stderr which, never what."""
    if value is not None and from_file is not None:
        fail("give the value as VALUE or with --from-file, not both", ExitCode.USAGE)
    if value is not None:
        say("value taken from the command line (shell history keeps it; stdin avoids that)")
    elif from_file is not None:
        try:
            value = from_file.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            fail(f"{from_file} is not UTF-8 text", ExitCode.USAGE)
        except OSError as exc:
            fail(f"cannot read {from_file}: {exc.strerror}", ExitCode.USAGE)
        say(f"value read from {from_file}")
    elif not _stdin_is_terminal():
        try:
            value = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            fail("stdin is not UTF-8 text", ExitCode.USAGE)
        value = value.removesuffix("\r\n") if value.endswith("\r\n") else value.removesuffix("\n")
        say("value read from stdin")
    else:
        value = click.prompt(f"Value of {name}", hide_input=True, err=True)
        say("value read from the prompt")
    if not value:
        fail("the value is empty; secrets cannot be empty", ExitCode.USAGE)
    return value


# -- delete, rename -------------------------------------------------------------------------------
@secrets.command("delete")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@api_errors
def delete_secret(
    ctx: click.Context, api_key: str | None, base_url: str | None, name: str, yes: bool
) -> None:
    """Delete a secret and all its versions (asks first, unless --yes).

    Off a terminal nobody can answer, so --yes is required there.
    """
    if not yes:
        if not _stdin_is_terminal():
            fail("stdin is not a terminal: pass --yes to delete without asking", ExitCode.USAGE)
        click.confirm(f"Delete secret {name} and all its versions?", abort=True, err=True)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        deleted = client.secrets.delete(name)
    say(f"deleted {deleted.name}")


@secrets.command("rename")
@client_options(from_env=False)
@click.argument("old", callback=_name_argument)
@click.argument("new", callback=_name_argument)
@click.pass_context
@api_errors
def rename_secret(
    ctx: click.Context, api_key: str | None, base_url: str | None, old: str, new: str
) -> None:
    """Rename a secret, atomically; its versions come along (4 if NEW is taken)."""
    with open_client(options_of(ctx, api_key, base_url)) as client:
        renamed = client.secrets.update(old, new_name=new)
    say(f"renamed {old} to {renamed.name}")


# -- import, export -------------------------------------------------------------------------------
FORMATS = click.Choice(["env", "json"])


@secrets.command("import")
@client_options(from_env=False)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@click.option(
    "--overwrite", is_flag=True, help="give existing secrets the file's value (a new version)"
)
@click.option(
    "--format", "fmt", type=FORMATS, default="env", show_default=True, help="FILE's format"
)
@click.pass_context
@api_errors
def import_secrets(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    file: str,
    overwrite: bool,
    fmt: str,
) -> None:
    """Create a secret for each entry of a .env file (or `-` for stdin).

    Entries with a name that is not a secret name, without a value, or that cannot be
    parsed are reported and skipped, and the command then exits 1. Existing secrets are
    kept (and the command exits 4) unless --overwrite. Values are literal: ${VAR} is not
    expanded.
    """
    from .envfile import parse_env, parse_json

    text = _read_text(file)
    parsed = parse_env(text) if fmt == "env" else parse_json(text)
    for problem in parsed.problems:
        warn(f"{file}: {problem}")
    for repeat in parsed.repeated:
        warn(f"{file}: {repeat}")

    created = replaced = 0
    kept: list[str] = []
    with open_client(options_of(ctx, api_key, base_url)) as client:
        try:
            for name, value in parsed.values.items():
                if overwrite:
                    secret = client.secrets.upsert(name, value)
                    if secret.version == 1:
                        created += 1
                    else:
                        replaced += 1
                    continue
                try:
                    client.secrets.create(name, value)
                except SecretAlreadyExistsError:
                    kept.append(name)
                else:
                    created += 1
        except StrongroomError:
            say(f"stopped after {created + replaced} of {len(parsed.values)} entries")
            raise
    if kept:
        warn(f"kept {len(kept)} existing secrets (--overwrite replaces them): {', '.join(kept)}")
    skipped = len(parsed.problems)
    say(f"imported {created + replaced}: {created} created, {replaced} replaced; {skipped} skipped")
    if skipped:
        sys.exit(ExitCode.ERROR)
    if kept:
        sys.exit(ExitCode.CONFLICT)


def _read_text(file: str) -> str:
    """FILE (or stdin for ``-``) decoded as python-dotenv reads a file."""
    from .envfile import decode

    try:
        stdin = sys.stdin.buffer
        return decode(stdin.read() if file == "-" else Path(file).read_bytes())
    except UnicodeDecodeError:
        fail(f"{file} is not UTF-8 text", ExitCode.USAGE)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror}", ExitCode.USAGE)


@secrets.command("export")
@client_options(from_env=False)
@click.option("--format", "fmt", type=FORMATS, default="env", show_default=True)
@metadata_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
    help="write to FILE (mode 0600, replaced atomically) [default: stdout]",
)
@click.pass_context
@api_errors
def export_secrets(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    fmt: str,
    metadata_pairs: tuple[str, ...],
    output: str | None,
) -> None:
    """Write secrets with their values as a .env file or a JSON object.

    `import` reads either back exactly. A value the .env format cannot carry exactly is
    refused (exit 1) rather than written wrong: --format json carries any value.
    """
    from .envfile import UnrepresentableError, render_env, render_json

    metadata = parse_metadata(metadata_pairs) or None
    values: dict[str, str] = {}
    with open_client(options_of(ctx, api_key, base_url)) as client:
        listed = list(client.secrets.list_all(metadata=metadata))
        # A use-only secret answers every value read with 403: leave it out, by name.
        use_only = [s.name for s in listed if not s.policy.readable]
        if use_only:
            warn(
                f"left out {len(use_only)} use-only secrets (tasks can use them, no key can "
                f"read them): {', '.join(use_only)}"
            )
        names = [s.name for s in listed if s.policy.readable]
        for name in names:
            try:
                values[name] = client.secrets.get(name).value
            except SecretNotFoundError:
                warn(f"{name} was deleted during the export; left out")
    try:
        text = render_env(values) if fmt == "env" else render_json(values)
    except UnrepresentableError as exc:
        fail(f"{exc}; --format json carries any value", ExitCode.ERROR)
    if output is None or output == "-":
        _write_stdout(text)
        say(f"exported {len(values)} secrets")
        return
    _write_private(Path(output), text)
    say(f"exported {len(values)} secrets to {output} (mode 0600)")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 from the first byte, atomically: a
    temporary file (``mkstemp`` makes it 0600) in the same directory, then a rename."""
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        Path(temp).unlink(missing_ok=True)
        fail(f"cannot write {path}: {exc.strerror}")
