"""Request dependencies every route shares: the services, the caller behind the API key (or
the session cookie standing for one), and the common parameters (``Auth``, ``Svc``,
``Limit``, ``Offset``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from ..apikeys import format_problem
from ..auth import Caller
from ..errors import ValidationFailed
from ..services import Services
from .callers import admit, refuse, services_of, too_many
from .session_auth import authenticate_session

__all__ = ["Auth", "Limit", "Offset", "Svc", "authenticate", "known_query_only", "too_many"]


async def services(request: Request) -> Services:
    """The app's services, as a dependency. ``async`` on purpose: it does no I/O, and
    FastAPI would run a plain ``def`` dependency on the threadpool, one more hop per
    request."""
    return services_of(request)


def authenticate(request: Request) -> Caller:
    """The caller an ``Authorization: Bearer <key>`` header names, or 401."""
    header = request.headers.get("authorization")
    if not header:
        # No key sent: a browser's session cookie may stand for one. With a header, the
        # header is the credential and a cookie beside it is ignored.
        caller = authenticate_session(request)
        if caller is not None:
            return caller
        raise refuse(request, "missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise refuse(request, "the Authorization header must be 'Bearer <key>'")
    problem = format_problem(key)
    if problem is not None:
        raise refuse(request, problem)
    running = services_of(request)
    key_hash = running.barrier.hash_api_key(key)
    with running.store.read() as tx:
        record = tx.apikeys.by_hash(key_hash)
    if record is None:
        raise refuse(request, "API key is not recognised")
    return admit(request, record)


def _query_names(dependant: Dependant) -> frozenset[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return frozenset(names)


def known_query_only(request: Request) -> None:
    """422 for a query parameter the route does not take, as for an unknown body field: a
    mistyped filter (``?secert=x``) must not quietly answer everything."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names(route.dependant)
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise ValidationFailed.at(
            f"query.{unknown[0]}",
            f"unknown query parameter {unknown[0]!r}; this route takes: "
            + (", ".join(sorted(allowed)) or "none"),
        )


# The parameters routes share, declared once.
Auth = Annotated[Caller, Depends(authenticate)]
Svc = Annotated[Services, Depends(services)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
