"""Authentication by the browser session cookie, and its guard against cross-site requests.

Its own module, importing nothing of ``deps.py``, so that ``deps.authenticate`` can call
:func:`authenticate_session` without an import circle; a session's key is admitted as a
header's is (``callers.admit``).

Cross-site request forgery: a browser attaches the cookie to any request to this server,
a forged one from another site included (``SameSite=Strict`` stops most, not a sibling
subdomain). So a cookie-authenticated request that may change something (any method but
GET and HEAD) must carry ``X-Strongroom-CSRF: 1``: a page of another origin cannot add a
custom header without a CORS preflight, and this server answers no preflight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import Request

from .. import trail
from ..auth import Caller
from ..errors import Forbidden, Unauthorized
from ..logs import request_id_var
from ..sessions import SessionRefused
from ..storage import ApiKeyRecord, SessionRecord
from ..trail import Action, Actor
from . import callers
from .callers import admit

COOKIE = "strongroom_session"
CSRF_HEADER = "X-Strongroom-CSRF"
SAFE_METHODS = frozenset({"GET", "HEAD"})
# secrets.token_urlsafe(32): anything else is no token, refused before any look-up.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")
_FOUND = "strongroom_session"  # request.state: the session this request was authenticated by


@dataclass(frozen=True, slots=True)
class SessionCaller:
    """A request's caller, authenticated by a session, and that session."""

    caller: Caller
    session: SessionRecord


def authenticate_session(request: Request) -> Caller | None:
    """The caller of the request's session cookie; None when it sends none.

    A cookie that opens no session (unknown, logged out, expired, its key revoked or
    expired) is a 401 that also clears the cookie; a cookie-authenticated request other
    than GET or HEAD without ``X-Strongroom-CSRF: 1`` is a 403. Both are audited.
    Calling it again for the same request answers the same without a second look-up.
    """
    found = session_caller(request)
    return found.caller if found else None


def session_caller(request: Request) -> SessionCaller | None:
    """:func:`authenticate_session`, with the session it found."""
    done: SessionCaller | None = getattr(request.state, _FOUND, None)
    if done is not None:
        return done
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    if not _TOKEN.fullmatch(token):
        raise refuse(request, "the session cookie is malformed: log in again", clear=True)
    try:
        active = callers.services_of(request).sessions.check(token)
    except SessionRefused as refused:
        raise refuse(
            request,
            refused.reason,
            tenant_id=refused.tenant_id,
            key_id=refused.key_id,
            clear=True,
        ) from None
    if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
        raise _cross_site(request, active.key)
    caller = admit(request, active.key)
    found = SessionCaller(caller, active.record)
    setattr(request.state, _FOUND, found)
    return found


def by_session(request: Request) -> bool:
    """Whether this request has been authenticated by a session cookie."""
    return getattr(request.state, _FOUND, None) is not None


# -- the cookie -------------------------------------------------------------------------------
def is_https(request: Request) -> bool:
    """Whether the client reached us over TLS (as a trusted proxy says, when one is set)."""
    return request.url.scheme == "https"


def session_cookie(token: str, max_age: int, *, secure: bool) -> str:
    """The ``Set-Cookie`` value that hands a browser its session: out of reach of scripts
    (HttpOnly), never sent by another site's request (SameSite=Strict), for every path."""
    flags = f"Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={token}; {flags}" + ("; Secure" if secure else "")


def cleared_cookie(*, secure: bool) -> str:
    """The ``Set-Cookie`` value that makes a browser forget its session cookie."""
    return session_cookie("", 0, secure=secure)


# -- refusals: as deps.py words and audits them ----------------------------------------------
def refuse(
    request: Request,
    reason: str,
    *,
    tenant_id: str | None = None,
    key_id: str | None = None,
    clear: bool = False,
) -> Unauthorized:
    """A 401 as every failed authentication is (``callers.refuse``); with ``clear``, the
    answer also clears the session cookie (it can open nothing)."""
    headers = {"Set-Cookie": cleared_cookie(secure=is_https(request))} if clear else None
    return callers.refuse(request, reason, tenant_id=tenant_id, key_id=key_id, headers=headers)


def _cross_site(request: Request, key: ApiKeyRecord) -> Forbidden:
    """A cookie-authenticated change without the CSRF header: audited, and not counted as
    a failed authentication (the victim's browser sends it, not the attacker's)."""
    reason = (
        f"a request authenticated by the session cookie must send '{CSRF_HEADER}: 1' "
        f"unless it is {' or '.join(sorted(SAFE_METHODS))} (a guard against cross-site "
        "request forgery)"
    )
    actor = Actor(
        key.tenant_id, key.id, request_id_var.get(), callers.client_addr(request), key.name
    )
    trail.record_alone(
        callers.services_of(request).store,
        trail.event(actor, Action.AUTHENTICATE, "forbidden", detail=reason),
    )
    return Forbidden(reason)
