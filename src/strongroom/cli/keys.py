"""``strongroom keys ...``: issue, list, change, rotate and revoke API keys.

``create``, ``list`` and ``revoke`` come in two forms:

- through the API (the SDK's ``client.keys``), as the key a command uses (option,
  ``STRONGROOM_API_KEY`` or a saved login; see :mod:`.common`) may: keys of its own
  tenant, no more powerful than itself. This needs the ``keys:admin`` scope, and only the
  client (``strongroom[cli]``).
- on the server's database, with the server's settings and master key, as on the server's
  own machine to make the first key: keys of any tenant. This is the form of
  ``server_commands.py``.

Which form, first found first: ``--tenant`` or ``--database`` asks for the database; a
key or server given (``--api-key``, ``--base-url``, their variables) or a profile named
(``--profile``, ``STRONGROOM_PROFILE``) asks for the API; then a saved default login
(``strongroom login``) means the API, and nothing at all the database. ``show``,
``update`` and ``rotate`` are API calls only.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar, cast

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._types import NOT_GIVEN, NotGiven
from ..models import ApiKey, CreatedApiKey, KeyRule, KeyScope
from . import profiles
from .common import (
    ClientOptions,
    ExitCode,
    api_errors,
    chosen_profile,
    client_options,
    fail,
    open_client,
    options_of,
    parse_metadata,
    say,
)
from .server_commands import (
    create_key_in_database,
    list_keys_in_database,
    revoke_key_in_database,
)
from .times import parse_duration, parse_time, shown

P = ParamSpec("P")
R = TypeVar("R")

SCOPES = ("secrets:read", "secrets:write", "secrets:admin", "tasks:run", "audit:read")
SCOPE_HELP = ", ".join((*SCOPES, "keys:admin", "*"))


def _stdout() -> Console:
    """Off a terminal, tables keep their natural width (whole ids in a pipe or a file)."""
    return Console(highlight=False) if sys.stdout.isatty() else Console(width=100_000)


# -- which form ---------------------------------------------------------------------------------
def _default_login_saved() -> bool:
    try:
        return profiles.load_profile(profiles.DEFAULT_PROFILE, profiles.config_path()) is not None
    except profiles.ConfigError:
        return True  # the API form, which says what is wrong with the file


def _through_api(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    *,
    database: bool,
    tenant: str | None = None,
) -> bool:
    """Whether this command goes through the API (True) or to the database (False)."""
    if database or tenant:
        if api_key or base_url:
            fail(
                "--tenant and --database work on the server's database; --api-key and "
                "--base-url on its API: give one or the other",
                ExitCode.USAGE,
            )
        return False
    given = options_of(ctx, api_key, base_url)
    if given.api_key or given.base_url or chosen_profile():
        return True
    return _default_login_saved()


def _need_server() -> None:
    """Fail, saying what either form needs, when the database form cannot run here."""
    try:
        from ..server import settings  # noqa: F401
    except ImportError:
        fail(
            "no API key to use (give --api-key, set STRONGROOM_API_KEY, or run `strongroom "
            "login`), and the server is not installed for working on its database "
            "(pip install 'strongroom[server]')",
            ExitCode.AUTH,
        )


database_option = click.option(
    "--database",
    is_flag=True,
    help="work on the server's database (its STRONGROOM_* settings), not through the API",
)


# -- the options that say what a key may do -----------------------------------------------------
def _power_options(func: Callable[P, R]) -> Callable[P, R]:
    """``--name``, ``--scope``, ``--names``, ``--where``, ``--expires-in``, ``--expires-at``."""
    for option in reversed(
        [
            click.option("--name", "label", metavar="NAME", help="a label to recognise the key by"),
            click.option(
                "--scope",
                "scopes",
                multiple=True,
                metavar="SCOPE",
                help=f"what the key may do: {SCOPE_HELP} (repeatable)",
            ),
            click.option(
                "--names",
                "names",
                multiple=True,
                metavar="GLOB",
                help="only secrets whose name matches GLOB (ci_*: * any run, ? one "
                "character); repeatable, any may match",
            ),
            click.option(
                "--where",
                "wheres",
                multiple=True,
                metavar="KEY=VALUE",
                help="only secrets whose metadata has KEY=VALUE; repeatable, all must hold",
            ),
            click.option(
                "--expires-in",
                metavar="DURATION",
                help="expire this long from now: 30d, 12h, 90m, 2w, 1h30m",
            ),
            click.option(
                "--expires-at",
                metavar="TIME",
                help="expire at TIME: 2027-01-01T00:00:00Z (RFC 3339 with a zone) or 2027-01-01",
            ),
        ]
    ):
        func = option(func)
    return func


def _check_scopes(scopes: tuple[str, ...]) -> list[KeyScope]:
    """The scopes as the SDK takes them; an unknown one is a usage error (exit 2)."""
    known = (*SCOPES, "keys:admin", "*")
    for scope in scopes:
        if scope not in known:
            raise click.BadParameter(
                f"unknown scope {scope!r} (known: {SCOPE_HELP})", param_hint="--scope"
            )
    return [cast(KeyScope, scope) for scope in dict.fromkeys(scopes)]


def _rule(names: tuple[str, ...], wheres: tuple[str, ...]) -> KeyRule | None:
    """The rule of ``--names`` and ``--where``, or None when neither was given."""
    if not names and not wheres:
        return None
    return KeyRule(names=list(names), metadata=dict(parse_metadata(wheres, "--where")))


def _expiry(expires_in: str | None, expires_at: str | None) -> dt.datetime | None:
    """The expiry ``--expires-in`` or ``--expires-at`` gives, or None when neither did."""
    if expires_in and expires_at:
        fail("give --expires-in or --expires-at, not both", ExitCode.USAGE)
    if expires_in:
        length = parse_duration(expires_in, "--expires-in")
        if not length:
            raise click.BadParameter("a key must live longer than 0", param_hint="--expires-in")
        return dt.datetime.now(dt.UTC) + length
    if expires_at:
        return parse_time(expires_at, "--expires-at")
    return None


# -- showing keys -------------------------------------------------------------------------------
def rule_text(rule: KeyRule | None) -> str:
    """A rule in a few words: ``every secret``, ``ci_*, deploy_*``, ``ci_* where env=ci``."""
    if rule is None:
        return "every secret"
    names = ", ".join(rule.names) or "any name"
    if not rule.metadata:
        return names
    where = ", ".join(
        f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in rule.metadata.items()
    )
    return f"{names} where {where}"


def _summary(key: ApiKey) -> str:
    name = f" ({key.name})" if key.name else ""
    expiry = f"expires {shown(key.expires_at)} UTC" if key.expires_at else "never expires"
    return (
        f"API key {key.id}{name} with scopes {', '.join(key.scopes)}; "
        f"reaches {rule_text(key.rule)}; {expiry}"
    )


def _show_new(created: CreatedApiKey, quiet: bool, as_json: bool, verb: str = "Created") -> None:
    """A new key: only the key with ``-q``, JSON with ``--json``, else a sentence and the
    key on a line of its own; all on stdout, as the database form prints it."""
    if quiet:
        click.echo(created.key)
    elif as_json:
        click.echo(json.dumps(created.model_dump(mode="json"), indent=2, ensure_ascii=False))
    else:
        click.echo(f"{verb} {_summary(created)}.\nIt is shown only now:\n\n    {created.key}\n")


def _key_rows(key: ApiKey) -> list[tuple[str, str]]:
    return [
        ("id", key.id),
        ("name", key.name or ""),
        ("key", key.hint),
        ("scopes", " ".join(key.scopes)),
        ("reaches", rule_text(key.rule)),
        ("created", shown(key.created_at)),
        ("created by", key.created_by or "a shell (`strongroom keys create --tenant`)"),
        ("expires", shown(key.expires_at) or "never"),
        ("last used", shown(key.last_used_at) or "never"),
        ("revoked", shown(key.revoked_at)),
    ]


def _show_key(key: ApiKey, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(key.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    table = Table("field", "value", show_header=False)
    for field, value in _key_rows(key):
        table.add_row(field, Text(value))  # Text: a name's brackets are not markup
    _stdout().print(table)


# -- the group ----------------------------------------------------------------------------------
@click.group("keys")
@client_options(from_env=True)
@click.pass_context
def keys(ctx: click.Context, api_key: str | None, base_url: str | None) -> None:
    """Issue, list, change, rotate and revoke API keys.

    Through the API (needs keys:admin) when a key is given or saved (`strongroom login`);
    on the server's database with --tenant or --database, or when no key is configured
    at all (how the first key is made). show, update and rotate are API calls only.
    """
    ctx.obj = ClientOptions(api_key, base_url)


@keys.command("create")
@client_options(from_env=False)
@click.option(
    "--tenant",
    metavar="TENANT",
    help="the database form: the tenant the key acts for (created if new)",
)
@database_option
@_power_options
@click.option("--quiet", "-q", is_flag=True, help="print only the key")
@click.option("--json", "as_json", is_flag=True, help="print the new key as JSON (key included)")
@click.pass_context
@api_errors
def create_key(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    tenant: str | None,
    database: bool,
    label: str | None,
    scopes: tuple[str, ...],
    names: tuple[str, ...],
    wheres: tuple[str, ...],
    expires_in: str | None,
    expires_at: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Create an API key; it is printed once and stored only as a hash.

    Through the API, scopes, rule (--names, --where) and expiry left out are the calling
    key's own, and given they may only narrow them. On the database (--tenant), no scope
    means every scope, no rule every secret, no expiry never.
    """
    expiry = _expiry(expires_in, expires_at)
    if not _through_api(ctx, api_key, base_url, database=database, tenant=tenant):
        if not tenant:
            fail(
                "no API key is configured for the API (give --api-key, set STRONGROOM_API_KEY "
                "or run `strongroom login`), and on the database (the server's own machine) "
                "give --tenant: the tenant the key acts for",
                ExitCode.USAGE,
            )
        if as_json:
            fail("--json is for the API form; the database form prints the key", ExitCode.USAGE)
        _need_server()
        create_key_in_database(
            tenant, label, scopes, quiet, names=names, wheres=wheres, expires_at=expiry
        )
        return
    wanted = _check_scopes(scopes)
    rule = _rule(names, wheres)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        created = client.keys.create(
            name=label if label is not None else NOT_GIVEN,
            scopes=wanted or NOT_GIVEN,
            rule=rule if rule is not None else NOT_GIVEN,
            expires_at=expiry if expiry is not None else NOT_GIVEN,
        )
    _show_new(created, quiet, as_json)


@keys.command("list")
@client_options(from_env=False)
@click.option("--tenant", metavar="TENANT", help="the database form: only this tenant's keys")
@database_option
@click.option(
    "--include-revoked", is_flag=True, help="list revoked keys too (the database form always does)"
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@api_errors
def list_keys(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    tenant: str | None,
    database: bool,
    include_revoked: bool,
    as_json: bool,
) -> None:
    """List API keys, oldest first (never the keys themselves).

    Through the API: the keys of the calling key's tenant that it may manage (none more
    powerful than itself). On the database: every tenant's, or --tenant's.
    """
    if not _through_api(ctx, api_key, base_url, database=database, tenant=tenant):
        _need_server()
        list_keys_in_database(tenant, as_json)
        return
    with open_client(options_of(ctx, api_key, base_url)) as client:
        found = list(client.keys.list_all(include_revoked=include_revoked, page_size=1000))
    if as_json:
        rows = [k.model_dump(mode="json") for k in found]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    columns = ["id", "name", "key", "scopes", "reaches", "expires", "last used", "created"]
    table = Table(*columns, *(["revoked"] if include_revoked else []))
    for k in found:
        row: list[str | Text] = [
            k.id,
            Text(k.name or ""),
            k.hint,
            " ".join(k.scopes),
            Text(rule_text(k.rule)),
            shown(k.expires_at) or "never",
            shown(k.last_used_at) or "never",
            shown(k.created_at),
        ]
        table.add_row(*row, *([shown(k.revoked_at)] if include_revoked else []))
    _stdout().print(table)


@keys.command("show")
@client_options(from_env=False)
@click.argument("key_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.pass_context
@api_errors
def show_key(
    ctx: click.Context, api_key: str | None, base_url: str | None, key_id: str, as_json: bool
) -> None:
    """Show one API key: its scopes, reach, expiry and last use (never the key)."""
    with open_client(options_of(ctx, api_key, base_url)) as client:
        key = client.keys.get(key_id)
    _show_key(key, as_json)


@keys.command("update")
@client_options(from_env=False)
@click.argument("key_id", metavar="ID")
@_power_options
@click.option("--clear-name", is_flag=True, help="remove the key's name")
@click.option(
    "--clear-rule", is_flag=True, help="let the key reach every secret (no --names, --where)"
)
@click.option("--clear-expiry", is_flag=True, help="let the key never expire")
@click.option("--json", "as_json", is_flag=True, help="print the key as changed, as JSON")
@click.pass_context
@api_errors
def update_key(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    key_id: str,
    label: str | None,
    scopes: tuple[str, ...],
    names: tuple[str, ...],
    wheres: tuple[str, ...],
    expires_in: str | None,
    expires_at: str | None,
    clear_name: bool,
    clear_rule: bool,
    clear_expiry: bool,
    as_json: bool,
) -> None:
    """Change an API key's name, scopes, rule or expiry; the rest is kept.

    --scope replaces the scopes, and --names with --where replace the whole rule. The key
    as changed must stay within the calling key's power: a key may narrow itself, and
    widen only keys narrower than itself, up to its own power (exit 5 otherwise).
    """
    if label is not None and clear_name:
        fail("give --name or --clear-name, not both", ExitCode.USAGE)
    if (names or wheres) and clear_rule:
        fail("give --names/--where or --clear-rule, not both", ExitCode.USAGE)
    if (expires_in or expires_at) and clear_expiry:
        fail("give --expires-in/--expires-at or --clear-expiry, not both", ExitCode.USAGE)
    expiry = _expiry(expires_in, expires_at)
    wanted = _check_scopes(scopes)
    rule = _rule(names, wheres)
    if not (label or wanted or rule or expiry or clear_name or clear_rule or clear_expiry):
        fail(
            "nothing to change: give --name, --scope, --names, --where or an expiry option",
            ExitCode.USAGE,
        )
    name: str | NotGiven | None = None if clear_name else (label or NOT_GIVEN)
    new_rule: KeyRule | NotGiven | None = None if clear_rule else (rule or NOT_GIVEN)
    new_expiry: dt.datetime | NotGiven | None = None if clear_expiry else (expiry or NOT_GIVEN)
    with open_client(options_of(ctx, api_key, base_url)) as client:
        changed = client.keys.update(
            key_id, name=name, scopes=wanted or NOT_GIVEN, rule=new_rule, expires_at=new_expiry
        )
    say(f"updated API key {changed.id}")
    _show_key(changed, as_json)


@keys.command("rotate")
@client_options(from_env=False)
@click.argument("key_id", metavar="ID")
@click.option(
    "--grace",
    metavar="DURATION",
    help="how long the old key keeps working: 1h, 7d (at most 30d) [default: 0, revoked at once]",
)
@click.option("--quiet", "-q", is_flag=True, help="print only the new key")
@click.option("--json", "as_json", is_flag=True, help="print the new key and the old as JSON")
@click.pass_context
@api_errors
def rotate_key(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    key_id: str,
    grace: str | None,
    quiet: bool,
    as_json: bool,
) -> None:
    """Replace an API key by a new one with its name, scopes, rule and expiry.

    The new key is printed once. The old one keeps working for --grace (time to deploy
    the new one), or stops at once without.
    """
    seconds = int(parse_duration(grace, "--grace").total_seconds()) if grace else None
    with open_client(options_of(ctx, api_key, base_url)) as client:
        rotated = client.keys.rotate(key_id, grace_seconds=seconds)
    if as_json:
        click.echo(json.dumps(rotated.model_dump(mode="json"), indent=2, ensure_ascii=False))
        return
    _show_new(rotated.new, quiet, False, verb=f"Rotated API key {key_id}; the new one is")
    old = rotated.old
    if old.revoked_at is not None:
        say(f"the old key {old.id} is revoked")
    else:
        say(f"the old key {old.id} works until {shown(old.expires_at)} UTC")


@keys.command("revoke")
@client_options(from_env=False)
@click.argument("key_id", metavar="ID")
@database_option
@click.pass_context
@api_errors
def revoke_key(
    ctx: click.Context, api_key: str | None, base_url: str | None, key_id: str, database: bool
) -> None:
    """Revoke an API key by id; it stops working at once."""
    if not _through_api(ctx, api_key, base_url, database=database):
        _need_server()
        revoke_key_in_database(key_id)
        return
    with open_client(options_of(ctx, api_key, base_url)) as client:
        revoked = client.keys.revoke(key_id)
    say(f"revoked API key {revoked.id} (since {shown(revoked.revoked_at)} UTC)")
