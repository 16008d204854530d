"""``strongroom login``, ``logout`` and ``whoami``: save an API key once, use it after.

``login`` checks the key against the server before saving it (with the server) as a
profile in the user's config file (:mod:`.profiles`), so that later commands need neither
``STRONGROOM_API_KEY`` nor ``--api-key``. The key is read without echo and never printed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from typing import Any

import click

from .. import Strongroom
from .._core import DEFAULT_BASE_URL, Operation
from ..exceptions import StrongroomError
from . import profiles
from .common import (
    PROFILE_ENV,
    ClientOptions,
    ExitCode,
    api_errors,
    client_options,
    fail,
    open_client,
    resolve_options,
    say,
)


@dataclass(frozen=True)
class Identity:
    """Who a key is, as ``GET /v1/sessions/current`` says."""

    key_id: str
    key_name: str | None
    tenant_name: str
    scopes: tuple[str, ...]
    expires_at: str | None

    @classmethod
    def of(cls, body: Any) -> Identity:
        return cls(
            key_id=str(body["key_id"]),
            key_name=body.get("key_name"),
            tenant_name=str(body["tenant_name"]),
            scopes=tuple(body.get("scopes") or ()),
            expires_at=body.get("expires_at"),
        )

    def describe(self) -> str:
        named = f" ({self.key_name})" if self.key_name else ""
        return f"key {self.key_id}{named} of tenant {self.tenant_name!r}"


# The CLI's own call, not an SDK one: the route serves the web console and these commands.
WHO_AM_I = Operation("GET", "/v1/sessions/current", Identity.of, idempotent=True)


def _who(client: Strongroom) -> Identity:
    return client._run(WHO_AM_I)


def _profile_name(name: str | None) -> str:
    name = name or profiles.DEFAULT_PROFILE
    problem = profiles.profile_name_problem(name)
    if problem:
        raise click.BadParameter(problem, param_hint="--profile")
    return name


def _read_key(from_stdin: bool) -> str:
    """The key, from stdin when asked or when stdin is no terminal, else from a prompt that
    does not echo it."""
    if from_stdin or not sys.stdin.isatty():
        key = sys.stdin.readline().strip()
        if not key:
            fail("no API key on stdin", ExitCode.USAGE)
    else:
        key = click.prompt("API key", hide_input=True, err=True).strip()
    if not (key.isascii() and key.isprintable()) or " " in key:
        fail("that is not an API key (they look like sr_...)", ExitCode.USAGE)
    return key


profile_to_save = click.option(
    "--profile",
    metavar="NAME",
    envvar=PROFILE_ENV,
    show_envvar=True,
    help=f"the profile [default: {profiles.DEFAULT_PROFILE}]",
)


@click.command("login")
@profile_to_save
@click.option(
    "--base-url",
    metavar="URL",
    envvar="STRONGROOM_BASE_URL",
    show_envvar=True,
    help=f"the server [default: the profile's, else {DEFAULT_BASE_URL}]",
)
@click.option("--key-stdin", is_flag=True, help="read the key from stdin, even on a terminal")
@api_errors
def login(profile: str | None, base_url: str | None, key_stdin: bool) -> None:
    """Check an API key against the server and save both as a profile.

    The key is asked for without echo (or read from stdin when it is not a terminal, or
    with --key-stdin), checked with the server, and saved with the server's address in
    the config file ($XDG_CONFIG_HOME/strongroom/config.toml, mode 0600). Commands then
    use it when no --api-key or STRONGROOM_API_KEY is given.
    """
    name = _profile_name(profile)
    path = profiles.config_path()
    try:
        previous = profiles.load_profile(name, path)
    except profiles.ConfigError as exc:
        fail(str(exc), ExitCode.AUTH)
    url = (base_url or (previous.base_url if previous else "") or DEFAULT_BASE_URL).rstrip("/")
    key = _read_key(key_stdin)
    try:
        client = Strongroom(api_key=key, base_url=url)
    except StrongroomError as exc:  # a base URL httpx cannot use
        fail(str(exc), ExitCode.USAGE)
    with client:
        identity = _who(client)
    try:
        profiles.save_profile(name, profiles.Profile(url, key), path)
    except profiles.ConfigError as exc:
        fail(str(exc))
    say(f"logged in to {url} as {identity.describe()}")
    say(f"saved as profile {name!r} in {path} (mode 0600)")


@click.command("logout")
@profile_to_save
def logout(profile: str | None) -> None:
    """Forget a saved profile (the key itself stays valid until it is revoked)."""
    name = _profile_name(profile)
    path = profiles.config_path()
    try:
        removed = profiles.remove_profile(name, path)
    except profiles.ConfigError as exc:
        fail(str(exc), ExitCode.AUTH)
    if removed:
        say(f"removed profile {name!r} from {path}; the key still works until it is revoked")
    else:
        say(f"no profile {name!r} in {path}: nothing to remove")


@click.command("whoami")
@client_options(from_env=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@api_errors
def whoami(api_key: str | None, base_url: str | None, as_json: bool) -> None:
    """Say which key, tenant and server commands use (never the key itself)."""
    options = resolve_options(ClientOptions(api_key, base_url))
    with open_client(options) as client:
        identity = _who(client)
        server = client.base_url
    source = f"profile {options.profile!r}" if options.profile else "the key given"
    if as_json:
        answer = {**asdict(identity), "base_url": server, "profile": options.profile}
        answer["scopes"] = list(identity.scopes)
        click.echo(json.dumps(answer, indent=2))
        return
    click.echo(f"{identity.describe()} at {server} ({source})")
    click.echo(f"scopes: {', '.join(identity.scopes) or 'none'}")
    click.echo(f"expires: {identity.expires_at or 'never'}")
