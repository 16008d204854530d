"""What the client commands share: exit codes, error reporting, the client options.

The client commands (``secrets ...``, ``run``) talk to a server through the SDK only, so
this module imports nothing of the server: they work with ``strongroom[cli]`` alone.
"""

from __future__ import annotations

import enum
import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn, ParamSpec, TypeVar

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
    PermissionDeniedError,
    PreconditionFailedError,
    StrongroomError,
)

P = ParamSpec("P")
R = TypeVar("R")


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
@dataclass(frozen=True)
class ClientOptions:
    api_key: str | None = None
    base_url: str | None = None

    def merged(self, api_key: str | None, base_url: str | None) -> ClientOptions:
        """These options, overridden by those given to a subcommand."""
        return ClientOptions(api_key or self.api_key, base_url or self.base_url)


def client_options(*, from_env: bool) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """``--api-key`` and ``--base-url``.

    With ``from_env`` they default to ``STRONGROOM_API_KEY`` and ``STRONGROOM_BASE_URL``
    (the ``secrets`` group and ``run``); without, they are the per-subcommand spelling
    (``secrets list --api-key K``) that overrides the group's.
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
        return key(url(func))

    return decorate


def options_of(ctx: click.Context, api_key: str | None, base_url: str | None) -> ClientOptions:
    """The group's client options (if any) overridden by the subcommand's."""
    group = ctx.find_object(ClientOptions) or ClientOptions()
    return group.merged(api_key, base_url)


@contextmanager
def open_client(options: ClientOptions) -> Iterator[Strongroom]:
    """A client of the chosen server; no API key at all is an authentication failure."""
    try:
        client = Strongroom(api_key=options.api_key, base_url=options.base_url)
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
