"""From a found API key to the request's :class:`Caller`, and every refusal of one.

Shared by the two ways a request authenticates: the ``Authorization`` header
(``deps.authenticate``) and the browser session cookie (``session_auth``), so that both
refuse, count, audit and admit a key alike.
"""

from __future__ import annotations

import datetime as dt
import logging

from fastapi import Request

from .. import trail
from ..auth import Caller
from ..errors import RateLimited, Unauthorized
from ..logs import request_id_var
from ..ratelimit import RateLimiter, Refusal
from ..services import Services
from ..storage import ApiKeyRecord
from ..trail import Action, Actor
from .schemas.common import rfc3339

log = logging.getLogger("strongroom.api")


def services_of(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def limiter_of(request: Request) -> RateLimiter:
    found: RateLimiter = request.app.state.limiter
    return found


def too_many(refusal: Refusal) -> RateLimited:
    return RateLimited(
        f"{refusal.message}; retry in {refusal.retry_after} s",
        headers={"Retry-After": str(refusal.retry_after)},
    )


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def refuse(
    request: Request,
    reason: str,
    *,
    tenant_id: str | None = None,
    key_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> Unauthorized:
    """A 401, counted against the client's address and audited like every failed
    authentication; ``headers`` go with the answer (a session cookie cleared)."""
    limiter_of(request).authentication_failed(client_addr(request) or "")
    actor = Actor(tenant_id, key_id, request_id_var.get(), client_addr(request))
    trail.record_alone(
        services_of(request).store,
        trail.event(actor, Action.AUTHENTICATE, "unauthorized", detail=reason),
    )
    return Unauthorized(
        reason, headers={"WWW-Authenticate": 'Bearer realm="strongroom"', **(headers or {})}
    )


def admit(request: Request, record: ApiKeyRecord) -> Caller:
    """The caller of a found key (by its header or a session's), or 401 when the key is
    revoked or expired; counts the request against the key's budget."""
    now = dt.datetime.now(dt.UTC)
    if record.revoked_at is not None:
        raise refuse(
            request, "API key has been revoked", tenant_id=record.tenant_id, key_id=record.id
        )
    if record.expired(now):
        assert record.expires_at is not None
        raise refuse(
            request,
            f"API key expired at {rfc3339(record.expires_at)}",
            tenant_id=record.tenant_id,
            key_id=record.id,
        )
    refusal = limiter_of(request).key_request(record.id)
    if refusal is not None:
        raise too_many(refusal)
    _note_use(services_of(request), record, now)
    return Caller(
        tenant_id=record.tenant_id,
        tenant_name=record.tenant_name,
        key_id=record.id,
        scopes=record.scopes,
        request_id=request_id_var.get(),
        client_addr=client_addr(request),
        key_name=record.name,
        rule=record.rule,
        expires_at=record.expires_at,
    )


# A key's ``last_used_at`` is exact to this much: a write per request would double the
# writes of a read-heavy workload, so a use is written only when the stored one is older.
LAST_USED_RESOLUTION = dt.timedelta(minutes=1)


def _note_use(running: Services, record: ApiKeyRecord, now: dt.datetime) -> None:
    if record.last_used_at is not None and now - record.last_used_at < LAST_USED_RESOLUTION:
        return
    try:
        with running.store.write() as tx:
            tx.apikeys.touch(record.id, now)
    except Exception:  # the request is owed its answer; a missed use time is not worth one
        log.warning("could not record the use of an API key", exc_info=True)
