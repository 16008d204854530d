"""What the client commands share: exit codes, error reporting, the client options.

The client commands (``secrets ...``, ``run``) talk to a server through the SDK only, so
this module imports nothing of the server: they work with ``strongroom[cli]`` alone.

Which server and key a command uses, first found first: ``--api-key``/``--base-url``,
``STRONGROOM_API_KEY``/``STRONGROOM_BASE_URL``, then the profile ``--profile`` or
``STRONGROOM_PROFILE`` names (else ``default``) in the config file ``strongroom login``
writes (:mod:`.profiles`). A profile's key goes only to its own server.
"""

from __future__ import annotations

import enum
import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final, NoReturn, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from .. import Strongroom
from .._names import NAME_MAX, name_problem
from ..exceptions import (
    APIConnectionError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    StrongroomError,
)
from . import profiles

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# Names or items in one batch request: the server's limit (more is a 422).
MAX_BATCH: Final = 1000


err = Console(stderr=True, soft_wrap=True, highlight=False)


class ExitCode(enum.IntEnum):
    """Exit codes of the client commands, so that scripts can tell failures apart."""

    OK = 0
    ERROR = 1  # anything else: a 5xx, a value the server refused, a partial import
    USAGE = 2  # bad options or input (click uses 2 for its usage errors too)
    NOT_FOUND = 3  # 404: no such secret (or version)
    CONFLICT = 4  # 409 the name is taken, 412 the secret changed meanwhile
    AUTH = 5  # no API key, 401 a key refused, 403 a key without the scope
    UNREACHABLE = 6  # no answer from the server: refused, DNS, timeout


def exit_code_for(error: StrongroomError) -> ExitCode:
    """The exit code that stands for ``error``."""
    if isinstance(error, APIConnectionError):
        return ExitCode.UNREACHABLE
    if isinstance(error, AuthenticationError | PermissionDeniedError):
        return ExitCode.AUTH
    if isinstance(error, NotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(error, ConflictError | PreconditionFailedError):
        return ExitCode.CONFLICT
    return ExitCode.ERROR


def say(message: str) -> None:
    """One line of progress on stderr (stdout is kept for what scripts read)."""
    err.print(escape(message))


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}")


def fail(message: str, code: int = ExitCode.ERROR) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``.

    The message is escaped: server messages hold brackets (``[request_id=...]``) that
    rich would otherwise take for markup and drop.
    """
    err.print(f"[bold red]error:[/] {escape(one_line(message))}")
    sys.exit(int(code))


def one_line(text: str) -> str:
    return " ".join(text.split())


def api_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn an error of the SDK into one line on stderr and its exit code.

    ``str(error)`` is safe to print: the server never puts a value in a message and the
    SDK never adds request bodies.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except StrongroomError as exc:
            fail(str(exc), exit_code_for(exc))

    return wrapper


# -- the client options ---------------------------------------------------------------------
PROFILE_ENV = "STRONGROOM_PROFILE"
_PROFILE_CHOSEN = "strongroom.profile"  # click's ctx.meta, shared by a group and its commands


@dataclass(frozen=True)
class ClientOptions:
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    profile: str | None = None  # the profile these came from, once resolved from one

    def merged(self, api_key: str | None, base_url: str | None) -> ClientOptions:
        """These options, overridden by those given to a subcommand."""
        return ClientOptions(api_key or self.api_key, base_url or self.base_url)


def _choose_profile(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Keep ``--profile`` where :func:`chosen_profile` finds it: a subcommand's, parsed
    after its group's, wins over it."""
    if value:
        problem = profiles.profile_name_problem(value)
        if problem:
            raise click.BadParameter(problem, ctx=ctx, param=param)
        ctx.meta[_PROFILE_CHOSEN] = value


def profile_option(*, from_env: bool) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``--profile NAME``: the saved login (``strongroom login``) to use."""
    return click.option(
        "--profile",
        metavar="NAME",
        envvar=PROFILE_ENV if from_env else None,
        show_envvar=from_env,
        expose_value=False,
        callback=_choose_profile,
        help="the saved login (`strongroom login`) to use when no key is given "
        f"[default: {profiles.DEFAULT_PROFILE}]",
    )


def client_options(*, from_env: bool) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``--api-key``, ``--base-url`` and ``--profile``.

    With ``from_env`` they default to ``STRONGROOM_API_KEY``, ``STRONGROOM_BASE_URL`` and
    ``STRONGROOM_PROFILE`` (the ``secrets`` group and ``run``); without, they are the
    per-subcommand spelling (``secrets list --api-key K``) that overrides the group's.
    """

    key_default = "" if from_env else " [default: STRONGROOM_API_KEY]"
    url_default = "http://127.0.0.1:8000" if from_env else "STRONGROOM_BASE_URL"

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        key = click.option(
            "--api-key",
            metavar="KEY",
            envvar="STRONGROOM_API_KEY" if from_env else None,
            show_envvar=from_env,
            help=f"API key; the variable is safer, options show in `ps`{key_default}",
        )
        url = click.option(
            "--base-url",
            metavar="URL",
            envvar="STRONGROOM_BASE_URL" if from_env else None,
            show_envvar=from_env,
            help=f"server address [default: {url_default}]",
        )
        return key(url(profile_option(from_env=from_env)(func)))

    return decorate


def options_of(ctx: click.Context, api_key: str | None, base_url: str | None) -> ClientOptions:
    """The group's client options (if any) overridden by the subcommand's."""
    group = ctx.find_object(ClientOptions) or ClientOptions()
    return group.merged(api_key, base_url)


def chosen_profile() -> str | None:
    """The profile asked for by ``--profile`` or ``STRONGROOM_PROFILE``; None: none was."""
    ctx = click.get_current_context(silent=True)
    chosen = ctx.meta.get(_PROFILE_CHOSEN) if ctx is not None else None
    return chosen or os.environ.get(PROFILE_ENV) or None


def _same_server(one: str, other: str) -> bool:
    return one.rstrip("/") == other.rstrip("/")


def resolve_options(options: ClientOptions) -> ClientOptions:
    """The key and server to use: those given (options, then variables), else a profile's.

    A profile's key is sent only to the profile's own server: with another server given,
    the command fails rather than hand the key to it.
    """
    if options.profile:
        return options  # resolved already
    chosen = chosen_profile()
    if options.api_key:
        if chosen:
            warn(
                "the API key given (--api-key or STRONGROOM_API_KEY) is used, "
                f"not profile {chosen!r}"
            )
        return options
    name = chosen or profiles.DEFAULT_PROFILE
    path = profiles.config_path()
    try:
        found = profiles.load_profile(name, path)
    except profiles.ConfigError as exc:
        fail(str(exc), ExitCode.AUTH)
    if found is None:
        if chosen:
            fail(
                f"no API key: there is no profile {name!r} in {path} "
                f"(`strongroom login --profile {name}` saves one)",
                ExitCode.AUTH,
            )
        fail(
            "no API key: run `strongroom login`, or set STRONGROOM_API_KEY (or give --api-key)",
            ExitCode.AUTH,
        )
    if options.base_url and not _same_server(options.base_url, found.base_url):
        fail(
            f"no API key for {options.base_url}: profile {name!r} holds one for "
            f"{found.base_url} only, and is not sent elsewhere (log in to that server with "
            "`strongroom login --base-url URL --profile NAME`, or give its key)",
            ExitCode.AUTH,
        )
    return ClientOptions(found.api_key, found.base_url, profile=name)


@contextmanager
def open_client(options: ClientOptions) -> Iterator[Strongroom]:
    """A client of the chosen server (see :func:`resolve_options`); no API key at all is
    an authentication failure."""
    resolved = resolve_options(options)
    try:
        client = Strongroom(api_key=resolved.api_key, base_url=resolved.base_url)
    except StrongroomError as exc:
        fail(str(exc), ExitCode.AUTH)
    with client:
        yield client


# -- small parsers ----------------------------------------------------------------------------
def is_name(name: str) -> bool:
    return name_problem(name) is None


def check_secret_name(name: str, what: str = "NAME") -> str:
    """Refuse a bad name before asking the server (exit 2 rather than a 422)."""
    if not is_name(name):
        raise click.BadParameter(
            f"{name!r} is not a secret name: letters, digits and underscores, not starting "
            f"with a digit, at most {NAME_MAX} characters",
            param_hint=what,
        )
    return name


def parse_metadata(pairs: tuple[str, ...], option: str = "--metadata") -> dict[str, str]:
    """``KEY=VALUE`` pairs (split at the first ``=``) into a dict of strings."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        if key in metadata:
            raise click.BadParameter(f"{key!r} is given twice", param_hint=option)
        metadata[key] = value
    return metadata


metadata_option = click.option(
    "--metadata",
    "metadata_pairs",
    multiple=True,
    metavar="KEY=VALUE",
    help="metadata KEY=VALUE (repeatable)",
)


# -- batch reads ------------------------------------------------------------------------------
def chunks(items: Sequence[T], size: int = MAX_BATCH) -> Iterator[Sequence[T]]:
    """``items`` in consecutive runs of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class ReadValues:
    """What :func:`read_values` found: ``values`` by name, and ``missed``, each name read
    without a value with the error code its own get would answer (``not_found``,
    ``forbidden``, ``expired``, ``internal_error``)."""

    values: dict[str, str] = field(default_factory=dict)
    missed: dict[str, str] = field(default_factory=dict)


def read_values(
    client: Strongroom, names: Sequence[str], on_read: Callable[[int], object] | None = None
) -> ReadValues:
    """The current values of ``names``, a batch read per 1,000 names instead of a read per
    name (and a rate-limit token per name). ``on_read(n)`` is told of each ``n`` read.

    A batch whose values come to more than the server returns at once (413) is read in
    halves: the list gives no sizes to plan with, and a refused batch records no read.
    """
    found = ReadValues()
    unique = list(dict.fromkeys(names))
    for chunk in chunks(unique):
        _read_batch(client, chunk, found, on_read)
    return found


def _read_batch(
    client: Strongroom,
    names: Sequence[str],
    found: ReadValues,
    on_read: Callable[[int], object] | None,
) -> None:
    try:
        answer = client.secrets.batch_get(names)
    except PayloadTooLargeError:
        if len(names) == 1:
            raise
        half = len(names) // 2
        _read_batch(client, names[:half], found, on_read)
        _read_batch(client, names[half:], found, on_read)
        return
    found.values.update(answer.values())
    found.missed.update((error.name, error.code) for error in answer.errors)
    if on_read is not None:
        on_read(len(names))
