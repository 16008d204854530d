"""What a resource (``client.secrets``, ``client.tasks``, ...) is made of, for both clients.

Each call is written once, as a request builder: a function with the call's public
signature that returns its :class:`Operation` (what to send, how to read the answer), and
does no I/O. :func:`sync_call` and :func:`async_call` turn a builder into the method of
the blocking and of the asyncio resource, which differ only in how they send it. A call
that makes several requests (``list_all``, ``rotate``, ``wait``) is a method written for
each client, over helpers they share.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, get_args
from urllib.parse import quote

from ._core import Operation

T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., object])


class SyncSender(Protocol):
    def _run(self, op: Operation[T]) -> T: ...


class AsyncSender(Protocol):
    async def _run(self, op: Operation[T]) -> T: ...


class APIResource:
    def __init_subclass__(cls) -> None:
        """Name each call's method after its attribute (``Secrets.create``), not after
        its builder (``create_secret``), for reprs and ``help()``."""
        super().__init_subclass__()
        for name, attr in vars(cls).items():
            if inspect.isfunction(attr) and hasattr(attr, "__wrapped__"):
                attr.__name__ = name
                attr.__qualname__ = f"{cls.__qualname__}.{name}"


class SyncAPIResource(APIResource):
    def __init__(self, client: SyncSender) -> None:
        self._client = client


class AsyncAPIResource(APIResource):
    def __init__(self, client: AsyncSender) -> None:
        self._client = client


def sync_call(
    build: Callable[P, Operation[T]],
) -> Callable[Concatenate[SyncAPIResource, P], T]:
    """The blocking method of the call ``build`` describes."""

    def call(self: SyncAPIResource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._client._run(build(*args, **kwargs))

    return _method_of(build, call)


def async_call(
    build: Callable[P, Operation[T]],
) -> Callable[Concatenate[AsyncAPIResource, P], Coroutine[Any, Any, T]]:
    """The asyncio method of the call ``build`` describes. A bad argument raises when the
    call is awaited, as from any coroutine."""

    async def call(self: AsyncAPIResource, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._client._run(build(*args, **kwargs))

    return _method_of(build, call)


def _method_of(build: Callable[..., Operation[Any]], call: F) -> F:
    """``call`` dressed as the method ``build`` describes, for ``help()`` and ``inspect``:
    the builder's docstring, its parameters after ``self``, and the type of the answer
    (what ``Operation[...]`` holds) as what it returns. Its class names it."""
    functools.update_wrapper(call, build)
    built = inspect.signature(build, eval_str=True)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    call.__dict__["__signature__"] = built.replace(
        parameters=[self, *built.parameters.values()],
        return_annotation=get_args(built.return_annotation)[0],
    )
    return call


def segment(value: str) -> str:
    """A name or id as one path segment: escaped, so that none can change the route."""
    return quote(value, safe="")
