"""``strongroom secrets ...``: read and write secrets on a server, through the SDK.

Values go to stdout only where asked for (``get``, ``export``); progress and errors go to
stderr, and neither ever holds a value. See docs/cli.md for the whole reference.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import NOT_GIVEN, Strongroom
from .._pages import walk
from .._types import NotGiven
from ..exceptions import ConflictError, PermissionDeniedError, StrongroomError
from ..models import BatchPutItem, Secret, SecretPolicy
from .common import (
    MAX_BATCH,
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
    read_values,
    say,
    warn,
)
from .progress import Bar, progress_bar
from .times import parse_duration, parse_time, shown

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
def _must_ask(yes: bool, doing: str) -> bool:
    """Whether to ask before ``doing``: not with --yes. Off a terminal nobody can answer,
    so --yes is required there (exit 2, before any request), never assumed."""
    if yes:
        return False
    if not _stdin_is_terminal():
        fail(f"stdin is not a terminal: pass --yes to {doing} without asking", ExitCode.USAGE)
    return True


def _listed(
    client: Strongroom,
    *,
    metadata: Mapping[str, Any] | None,
    deleted: bool = False,
    expiring_before: dt.datetime | None = None,
    page_size: int = 100,
) -> Iterator[Secret]:
    """Every secret a list answers, page after page (``list_all`` with the list's
    other filters)."""
    return walk(
        lambda offset: client.secrets.list(
            limit=page_size,
            offset=offset,
            metadata=metadata,
            deleted=deleted,
            expiring_before=expiring_before,
        )
    )


@secrets.command("list")
@client_options(from_env=False)
@metadata_option
@click.option(
    "--deleted",
    is_flag=True,
    help="list the deleted secrets instead, with when each is purged (restore brings one back)",
)
@click.option(
    "--expiring",
    metavar="DURATION",
    help="only secrets that expire within DURATION (7d, 12h), the expired ones included",
)
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
    deleted: bool,
    expiring: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List secrets by name, filtered by metadata (never their values)."""
    metadata = parse_metadata(metadata_pairs) or None
    if deleted and expiring is not None:
        fail("give --deleted or --expiring, not both", ExitCode.USAGE)
    now = dt.datetime.now(dt.UTC)
    before = None if expiring is None else now + parse_duration(expiring, "--expiring")
    found: list[Secret] = []
    with open_client(options_of(ctx, api_key, base_url)) as client:
        page_size = min(limit, MAX_BATCH) if limit else 100
        listed = _listed(
            client,
            metadata=metadata,
            deleted=deleted,
            expiring_before=before,
            page_size=page_size,
        )
        for secret in listed:
            found.append(secret)
            if limit is not None and len(found) >= limit:
                break
    if as_json:
        rows = [s.model_dump(mode="json", exclude={"value"}) for s in found]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if deleted:
        table = Table("name", "version", "deleted (UTC)", "purged after (UTC)")
        for s in found:
            table.add_row(s.name, str(s.version), shown(s.deleted_at), shown(s.purge_after))
    elif before is not None:
        table = Table("name", "version", "expires (UTC)", "")
        for s in found:
            expired = s.expires_at is not None and s.expires_at <= now
            table.add_row(s.name, str(s.version), shown(s.expires_at), "expired" if expired else "")
    else:
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


@secrets.command("versions")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option("--json", "as_json", is_flag=True, help="print JSON (a list of versions)")
@click.pass_context
@api_errors
def secret_versions(
    ctx: click.Context, api_key: str | None, base_url: str | None, name: str, as_json: bool
) -> None:
    """List a secret's versions, newest first, never their values.

    `get NAME --version N` reads one; `rollback NAME --to N` makes one current again.
    """
    with open_client(options_of(ctx, api_key, base_url)) as client:
        found = client.secrets.versions(name).items
    if as_json:
        click.echo(json.dumps([v.model_dump(mode="json") for v in found], indent=2))
        return
    table = Table("version", "created_at (UTC)", "created_by")
    for version in found:
        table.add_row(str(version.version), shown(version.created_at), version.created_by or "")
    _stdout_console().print(table)


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
@click.option(
    "--expires-in",
    metavar="DURATION",
    help="reads fail (410) DURATION from now: 30d, 12h, 1h30m [default: the expiry is kept]",
)
@click.option(
    "--expires-at",
    metavar="TIME",
    help="reads fail (410) after TIME: 2026-11-28T09:00:00Z, or a date (midnight UTC)",
)
@click.option("--no-expiry", is_flag=True, help="remove the secret's expiry")
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
    expires_in: str | None,
    expires_at: str | None,
    no_expiry: bool,
) -> None:
    """Create a secret or give it a new value (a new version).

    The value comes from VALUE, from --from-file, from stdin when it is not a terminal
    (one trailing newline removed), or else from a prompt that does not echo. VALUE on the
    command line lands in shell history and `ps`: prefer the others. Description and
    metadata are kept unless given; --metadata replaces the whole metadata object. The
    policy options set those fields of the usage policy and keep the others (see
    `secrets policy`). After its expiry (--expires-in, --expires-at) reads of the secret
    fail with 410, except by a key with secrets:admin; the expiry is kept unless given
    or removed (--no-expiry).
    """
    metadata = parse_metadata(metadata_pairs)
    policy = _policy_change(allow_destinations, allow_tools, use_only)
    expiry = _expiry(expires_in, expires_at, no_expiry)
    secret_value = _read_value(name, value, from_file)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        secret = client.secrets.upsert(
            name,
            secret_value,
            description=NOT_GIVEN if description is None else description,
            metadata=metadata or NOT_GIVEN,
            policy=policy or NOT_GIVEN,
            expires_at=expiry,
        )
    if secret.version == 1:
        say(f"created {secret.name} (version 1)")
    else:
        say(f"updated {secret.name} to version {secret.version}")
    if policy:
        say(f"policy of {secret.name}: {_policy_text(secret.policy)}")
    if not isinstance(expiry, NotGiven):
        when = (
            f"expires at {shown(secret.expires_at)} UTC" if secret.expires_at else "never expires"
        )
        say(f"{secret.name} {when}")


def _expiry(
    expires_in: str | None, expires_at: str | None, no_expiry: bool
) -> dt.datetime | NotGiven | None:
    """The expiry the options give: a time, None to remove it, or NOT_GIVEN to keep it."""
    given = [
        option
        for option, value in (
            ("--expires-in", expires_in),
            ("--expires-at", expires_at),
            ("--no-expiry", no_expiry or None),
        )
        if value is not None
    ]
    if len(given) > 1:
        fail(f"give one of {', '.join(given)}, not several", ExitCode.USAGE)
    if expires_in is not None:
        duration = parse_duration(expires_in, "--expires-in")
        if not duration:
            raise click.BadParameter("the expiry must be in the future", param_hint="--expires-in")
        return dt.datetime.now(dt.UTC) + duration
    if expires_at is not None:
        return parse_time(expires_at, "--expires-at")
    return None if no_expiry else NOT_GIVEN


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


# -- delete, restore, purge, rollback, rename ----------------------------------------------------
@secrets.command("delete")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@api_errors
def delete_secret(
    ctx: click.Context, api_key: str | None, base_url: str | None, name: str, yes: bool
) -> None:
    """Delete a secret (asks first, unless --yes): restorable until the server's recovery
    window ends (STRONGROOM_SECRET_RECOVERY_DAYS, 7 by default), then purged.

    Meanwhile it is invisible and its name stays taken; `restore` brings it back with
    every version, `purge` destroys it at once. Off a terminal nobody can answer, so
    --yes is required there.
    """
    if _must_ask(yes, "delete"):
        question = f"Delete secret {name}? (restorable until the recovery window ends)"
        click.confirm(question, abort=True, err=True)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        deleted = client.secrets.delete(name)
    if deleted.purge_after is None:  # a server without a recovery window
        say(f"deleted {deleted.name} and purged it: every version is destroyed")
    else:
        say(
            f"deleted {deleted.name}; it can be restored until {shown(deleted.purge_after)} "
            f"UTC (`strongroom secrets restore {deleted.name}`)"
        )


@secrets.command("restore")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.pass_context
@api_errors
def restore_secret(
    ctx: click.Context, api_key: str | None, base_url: str | None, name: str
) -> None:
    """Bring a deleted secret back, every version with it, before it is purged.

    `list --deleted` shows which can be. Exit 4 when another secret has taken the name
    meanwhile (rename that one first).
    """
    with open_client(options_of(ctx, api_key, base_url)) as client:
        secret = client.secrets.restore(name)
    say(f"restored {secret.name} (version {secret.version})")


@secrets.command("rotation")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option("--every", metavar="DURATION", help="how often: 30d, 12h, 1h30m (1m to 3650d)")
@click.option("--task", "task_id", metavar="TASK_ID", help="the task that makes the new value")
@click.option("--off", is_flag=True, help="end the secret's scheduled rotation")
@click.option("--now", is_flag=True, help="make its rotation due now (the scheduler runs it)")
@click.option("--json", "as_json", is_flag=True, help="print the rotation as JSON")
@click.pass_context
@api_errors
def secret_rotation(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    name: str,
    every: str | None,
    task_id: str | None,
    off: bool,
    now: bool,
    as_json: bool,
) -> None:
    """Show or set a secret's scheduled rotation: a task run every DURATION, for the
    key that sets it, whose set_secret step gives the secret its new value.

    Without options it prints the policy and when the next and last rotations are.
    `--every D --task ID` sets it (the key needs tasks:run), `--off` ends it, `--now`
    makes it due at the scheduler's next look. See docs/lifecycle.md.
    """
    if off and (every or task_id):
        fail("give --off, or --every with --task, not both", ExitCode.USAGE)
    if bool(every) != bool(task_id):
        fail("--every and --task go together", ExitCode.USAGE)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        if off:
            client.secrets.update(name, rotation=None)
        elif every and task_id:
            client.secrets.update(name, rotation={"every": every, "task_id": task_id})
        secret = client.secrets.rotate_now(name) if now else _one_listed(client, name)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "rotation": None if secret.rotation is None else secret.rotation.model_dump(),
                    "next_rotation_at": _iso(secret.next_rotation_at),
                    "last_rotated_at": _iso(secret.last_rotated_at),
                },
                indent=2,
            )
        )
        return
    if secret.rotation is None:
        say(f"{secret.name}: no scheduled rotation")
        return
    last = shown(secret.last_rotated_at) or "never"
    say(
        f"{secret.name}: rotated every {secret.rotation.every} by task {secret.rotation.task_id}; "
        f"next {shown(secret.next_rotation_at)} UTC, last {last}"
    )


def _one_listed(client: Strongroom, name: str) -> Secret:
    """The secret as the list shows it: showing its rotation reads no value (which would
    be an audited read, and refused for a use-only secret)."""
    listed = _listed(client, metadata=None, page_size=MAX_BATCH)
    found = next((secret for secret in listed if secret.name == name), None)
    if found is None:
        fail(f"secret {name!r} does not exist", ExitCode.NOT_FOUND)
    return found


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat()


@secrets.command("purge")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@api_errors
def purge_secret(
    ctx: click.Context, api_key: str | None, base_url: str | None, name: str, yes: bool
) -> None:
    """Destroy a secret and every version of it now, deleted or not: nothing can restore
    it (asks first, unless --yes).

    Needs a key with the secrets:admin scope (exit 5 without it, and nothing changes).
    """
    if _must_ask(yes, "purge"):
        question = f"Purge secret {name}? Every version is destroyed and cannot be restored"
        click.confirm(question, abort=True, err=True)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        purged = client.secrets.purge(name)
    say(f"purged {purged.name}: every version is destroyed")


@secrets.command("rollback")
@client_options(from_env=False)
@click.argument("name", callback=_name_argument)
@click.option(
    "--to",
    "to",
    type=click.IntRange(min=1),
    required=True,
    metavar="N",
    help="the version whose value becomes current again",
)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
@click.pass_context
@api_errors
def rollback_secret(
    ctx: click.Context, api_key: str | None, base_url: str | None, name: str, to: int, yes: bool
) -> None:
    """Make version N's value current again, as a new version (asks first, unless --yes).

    The value never leaves the server. When it is the current value already, nothing
    changes and the command says "no change". Exit 4 if the secret changed while asking.
    """
    ask = _must_ask(yes, "roll back")
    with open_client(options_of(ctx, api_key, base_url)) as client:
        current = _current_version(client, name, to)
        if ask:
            now = f" (now version {current})" if current is not None else ""
            question = f"Make version {to}'s value of {name} current again{now}?"
            click.confirm(question, abort=True, err=True)
        # Conditional on the version seen: a change meanwhile is a 412, not overwritten.
        secret = client.secrets.rollback(name, to, expected_version=current)
    if current is not None and secret.version == current:
        say(f"no change: version {to}'s value is {name}'s current one (version {current})")
    else:
        say(f"rolled {name} back to version {to}'s value: now version {secret.version}")


def _current_version(client: Strongroom, name: str, to: int) -> int | None:
    """The secret's current version, checking that version ``to`` exists; None when this
    key may not list versions (secrets:write alone may still roll back)."""
    try:
        found = client.secrets.versions(name).items
    except PermissionDeniedError:
        return None
    if to not in {v.version for v in found}:
        fail(f"secret {name!r} has no version {to}", ExitCode.NOT_FOUND)
    return found[0].version if found else None


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


# A batch request's JSON at most, in bytes: under the server's default body limit
# (STRONGROOM_MAX_BODY_BYTES, 1 MiB) with room for the rest of the request.
MAX_REQUEST_BYTES: Final = 900_000
_ENVELOPE_BYTES: Final = len(json.dumps({"secrets": [], "dry_run": False}))


def import_requests(
    items: Sequence[BatchPutItem],
    *,
    max_items: int = MAX_BATCH,
    max_bytes: int = MAX_REQUEST_BYTES,
) -> list[list[BatchPutItem]]:
    """``items`` cut, in order, into batch requests of at most ``max_items`` items and
    about ``max_bytes`` of JSON each (an item larger than that goes alone).

    Measured with ``json.dumps``'s defaults, which escape non-ASCII as ``\\uXXXX``: never
    shorter than the UTF-8 JSON the SDK sends, so a request is never larger than measured.
    """
    requests: list[list[BatchPutItem]] = []
    batch: list[BatchPutItem] = []
    size = _ENVELOPE_BYTES
    for item in items:
        item_bytes = len(json.dumps(item)) + 2  # and the ", " before the next
        if batch and (len(batch) >= max_items or size + item_bytes > max_bytes):
            requests.append(batch)
            batch, size = [], _ENVELOPE_BYTES
        batch.append(item)
        size += item_bytes
    if batch:
        requests.append(batch)
    return requests


@dataclass
class ImportPlan:
    """What an import does to each of its names, decided by a dry run on the server.

    ``change`` is what --overwrite replaces; without it those are ``kept``. The server
    says ``updated`` (never ``unchanged``) for a value this key may not read, so such a
    secret counts as changed, or kept: whether it equals the file's is not told.
    """

    create: list[str] = field(default_factory=list)
    change: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # held by a deleted secret: left out

    @property
    def to_write(self) -> list[str]:
        return self.create + self.change


def plan_import(
    client: Strongroom, values: Mapping[str, str], *, overwrite: bool, bar: Bar | None = None
) -> ImportPlan:
    """Dry-run ``values`` as batch writes and sort the names by the answers; nothing is
    written. A name held by a deleted secret (a 409 for its whole batch) is left out."""
    items = _items(values, list(values))
    plan = ImportPlan()
    try:
        statuses = _dry_run(client, items, bar)
    except ConflictError:
        held = _held_by_deleted(client, values)
        if not held:
            raise  # taken some other way (out of this key's reach): the server's words
        plan.deleted = [name for name in values if name in held]
        items = [item for item in items if item["name"] not in held]
        statuses = _dry_run(client, items, bar) if items else {}
    for name in values:
        status = statuses.get(name)
        if status == "created":
            plan.create.append(name)
        elif status == "unchanged":
            plan.unchanged.append(name)
        elif status == "updated":
            (plan.change if overwrite else plan.kept).append(name)
    return plan


def _items(values: Mapping[str, str], names: Sequence[str]) -> list[BatchPutItem]:
    return [{"name": name, "value": values[name]} for name in names]


def _dry_run(client: Strongroom, items: Sequence[BatchPutItem], bar: Bar | None) -> dict[str, str]:
    statuses: dict[str, str] = {}
    if bar is not None:
        bar.update(completed=0, total=len(items), description="checking")
    for batch in import_requests(items):
        answer = client.secrets.batch_put(batch, dry_run=True)
        statuses.update((item.name, item.status) for item in answer.items)
        if bar is not None:
            bar.advance(len(batch))
    return statuses


def _held_by_deleted(client: Strongroom, names: Mapping[str, str]) -> set[str]:
    """Which of ``names`` deleted secrets hold; none when this key may not list them."""
    try:
        deleted = _listed(client, metadata=None, deleted=True, page_size=MAX_BATCH)
        return {secret.name for secret in deleted if secret.name in names}
    except StrongroomError:
        return set()


@dataclass
class Imported:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def write_import(
    client: Strongroom, values: Mapping[str, str], names: Sequence[str], bar: Bar | None = None
) -> Imported:
    """Write ``names``' values in batch requests, each all-or-nothing; as the server
    answered (a secret another client made meanwhile is ``replaced``)."""
    items = _items(values, names)
    done = Imported()
    written = 0
    if bar is not None:
        bar.update(completed=0, total=len(items), description="importing")
    try:
        for batch in import_requests(items):
            answer = client.secrets.batch_put(batch)
            for item in answer.items:
                if item.status == "created":
                    done.created.append(item.name)
                elif item.status == "updated":
                    done.replaced.append(item.name)
                else:
                    done.unchanged.append(item.name)
            written += len(batch)
            if bar is not None:
                bar.advance(len(batch))
    except StrongroomError:
        say(
            f"stopped after {written} of {len(items)} secrets; the request that failed "
            "changed nothing"
        )
        raise
    return done


@secrets.command("import")
@client_options(from_env=False)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=str))
@click.option(
    "--overwrite", is_flag=True, help="give existing secrets the file's value (a new version)"
)
@click.option(
    "--format", "fmt", type=FORMATS, default="env", show_default=True, help="FILE's format"
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="print which secrets would be added, changed, unchanged or skipped; change nothing",
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
    dry_run: bool,
) -> None:
    """Create a secret for each entry of a .env file (or `-` for stdin).

    Entries with a name that is not a secret name, without a value, or that cannot be
    parsed are reported and skipped, and the command then exits 1. Existing secrets with
    another value are kept (and the command exits 4) unless --overwrite; those with the
    file's value already are unchanged (no new version). A name held by a deleted secret
    is skipped (exit 4): restore or purge it first. Values are literal: ${VAR} is not
    expanded.

    Secrets go 1,000 (or about 900 KB) to a request. Each request is all-or-nothing, the
    whole import is not: when it takes several, the command says so first, and a failed
    request leaves the earlier ones' secrets imported. --dry-run prints the plan (names,
    never values) to stdout, exits as the import would, and changes nothing.
    """
    from .envfile import parse_env, parse_json

    text = _read_text(file)
    parsed = parse_env(text) if fmt == "env" else parse_json(text)
    for problem in parsed.problems:
        warn(f"{file}: {problem}")
    for repeat in parsed.repeated:
        warn(f"{file}: {repeat}")

    values = parsed.values
    done = Imported()
    with (
        open_client(options_of(ctx, api_key, base_url)) as client,
        progress_bar("checking", total=len(values)) as bar,
    ):
        plan = ImportPlan()
        if values:
            plan = plan_import(client, values, overwrite=overwrite, bar=bar)
        requests = len(import_requests(_items(values, plan.to_write)))
        if requests > 1:
            say(
                f"the import {'would take' if dry_run else 'takes'} {requests} requests; "
                "each is all-or-nothing, the import as a whole is not"
            )
        if not dry_run and plan.to_write:
            done = write_import(client, values, plan.to_write, bar)
    skipped = len(parsed.problems)
    if dry_run:
        _print_plan(plan, skipped)
    else:
        _report_import(plan, done, skipped)
    if skipped:
        sys.exit(ExitCode.ERROR)
    if plan.kept or plan.deleted:
        sys.exit(ExitCode.CONFLICT)


def _report_import(plan: ImportPlan, done: Imported, skipped: int) -> None:
    if plan.kept:
        warn(
            f"kept {len(plan.kept)} existing secrets (--overwrite replaces them): "
            f"{', '.join(plan.kept)}"
        )
    if plan.deleted:
        warn(
            f"left out {len(plan.deleted)} names held by deleted secrets (restore or purge "
            f"them first): {', '.join(plan.deleted)}"
        )
    imported = len(done.created) + len(done.replaced)
    unchanged = len(plan.unchanged) + len(done.unchanged)
    say(
        f"imported {imported}: {len(done.created)} created, {len(done.replaced)} replaced; "
        f"{skipped} skipped; {unchanged} unchanged"
    )


def _print_plan(plan: ImportPlan, invalid: int) -> None:
    """The dry run's answer on stdout: how many and which names, never a value."""

    def line(label: str, names: Sequence[str]) -> None:
        click.echo(f"{label} {len(names)}" + (f": {', '.join(names)}" if names else ""))

    click.echo("dry run: nothing was changed")
    line("add", plan.create)
    line("change", plan.change)
    line("unchanged", plan.unchanged)
    line("skip (existing; --overwrite replaces them)", plan.kept)
    line("skip (deleted; restore or purge them first)", plan.deleted)
    click.echo(f"skip (cannot be imported, see above) {invalid}")


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
        listed = list(client.secrets.list_all(metadata=metadata, page_size=MAX_BATCH))
        # A use-only secret answers every value read with 403: leave it out, by name.
        use_only = [s.name for s in listed if not s.policy.readable]
        if use_only:
            warn(
                f"left out {len(use_only)} use-only secrets (tasks can use them, no key can "
                f"read them): {', '.join(use_only)}"
            )
        names = [s.name for s in listed if s.policy.readable]
        with progress_bar("exporting", total=len(names)) as bar:
            found = read_values(client, names, on_read=bar.advance)
        for name in names:
            if name in found.values:
                values[name] = found.values[name]
            elif found.missed.get(name) == "not_found":
                warn(f"{name} was deleted during the export; left out")
            else:  # expired, refused, unreadable: the error a read of it alone gives
                values[name] = client.secrets.get(name).value
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
