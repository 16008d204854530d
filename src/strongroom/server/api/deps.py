"""Request dependencies every route shares: the services, the caller behind the API key, and
the common parameters (``Auth``, ``Svc``, ``Limit``, ``Offset``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from .. import trail
from ..apikeys import format_problem
from ..auth import Caller
from ..errors import RateLimited, Unauthorized
from ..logs import request_id_var
from ..ratelimit import RateLimiter, Refusal
from ..services import Services
from ..trail import Action, Actor


def services_of(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def services(request: Request) -> Services:
    """The app's services, as a dependency. ``async`` on purpose: it does no I/O, and
    FastAPI would run a plain ``def`` dependency on the threadpool, one more hop per
    request."""
    return services_of(request)


def limiter_of(request: Request) -> RateLimiter:
    found: RateLimiter = request.app.state.limiter
    return found


def too_many(refusal: Refusal) -> RateLimited:
    return RateLimited(
        f"{refusal.message}; retry in {refusal.retry_after} s",
        headers={"Retry-After": str(refusal.retry_after)},
    )


def _client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def _refuse(
    request: Request, reason: str, *, tenant_id: str | None = None, key_id: str | None = None
) -> Unauthorized:
    limiter_of(request).authentication_failed(_client_addr(request) or "")
    actor = Actor(tenant_id, key_id, request_id_var.get(), _client_addr(request))
    trail.record_alone(
        services_of(request).store,
        trail.event(actor, Action.AUTHENTICATE, "unauthorized", detail=reason),
    )
    return Unauthorized(reason, headers={"WWW-Authenticate": 'Bearer realm="strongroom"'})


def authenticate(request: Request) -> Caller:
    """The caller an ``Authorization: Bearer <key>`` header names, or 401."""
    header = request.headers.get("authorization")
    if not header:
        raise _refuse(request, "missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise _refuse(request, "the Authorization header must be 'Bearer <key>'")
    problem = format_problem(key)
    if problem is not None:
        raise _refuse(request, problem)
    running = services_of(request)
    key_hash = running.barrier.hash_api_key(key)
    with running.store.read() as tx:
        record = tx.apikeys.by_hash(key_hash)
    if record is None:
        raise _refuse(request, "API key is not recognised")
    if record.revoked_at is not None:
        raise _refuse(
            request, "API key has been revoked", tenant_id=record.tenant_id, key_id=record.id
        )
    refusal = limiter_of(request).key_request(record.id)
    if refusal is not None:
        raise too_many(refusal)
    return Caller(
        tenant_id=record.tenant_id,
        tenant_name=record.tenant_name,
        key_id=record.id,
        scopes=record.scopes,
        request_id=request_id_var.get(),
        client_addr=_client_addr(request),
    )


# The parameters routes share, declared once.
Auth = Annotated[Caller, Depends(authenticate)]
Svc = Annotated[Services, Depends(services)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=1_000_000_000)]
