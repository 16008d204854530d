"""Routes under ``/v1/sessions``: log in with an API key, ask who you are, log out.

For the web console (and ``strongroom login``/``whoami``), not the SDKs: a browser
trades its key once for a session cookie (see :mod:`strongroom.server.sessions`), and
how the cookie authenticates other requests is :mod:`.session_auth`'s.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from ..auth import Caller
from ..errors import NotFound
from ..storage import SessionRecord
from .deps import Svc, authenticate
from .schemas import sessions as schemas
from .schemas.common import COMMON_ERRORS, error_responses
from .session_auth import (
    by_session,
    cleared_cookie,
    is_https,
    refuse,
    session_caller,
    session_cookie,
)

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

_NEEDS_KEY = (
    "a session is started with an API key: send 'Authorization: Bearer <key>' "
    "(a session cannot start another)"
)


def key_caller(request: Request) -> Caller:
    """The caller of the request's API key, never of a session cookie: were a session
    able to start another, a stolen cookie would never have to end."""
    if not request.headers.get("authorization"):
        raise refuse(request, _NEEDS_KEY)
    caller = authenticate(request)
    if by_session(request):  # however authenticate() weighs a cookie sent beside the key
        raise refuse(request, _NEEDS_KEY, tenant_id=caller.tenant_id, key_id=caller.key_id)
    return caller


def current(request: Request) -> tuple[Caller, SessionRecord | None]:
    """The caller, and the session it came with: an ``Authorization`` header is the
    credential when sent, else the session cookie."""
    if not request.headers.get("authorization"):
        found = session_caller(request)
        if found is not None:
            return found.caller, found.session
    return authenticate(request), None


KeyCaller = Annotated[Caller, Depends(key_caller)]
Current = Annotated[tuple[Caller, SessionRecord | None], Depends(current)]


@router.post(
    "",
    status_code=201,
    response_model=schemas.Session,
    responses=error_responses(*COMMON_ERRORS),
    summary="Start a browser session with an API key (sets the session cookie)",
)
def start_session(
    request: Request, response: Response, caller: KeyCaller, svc: Svc
) -> dict[str, Any]:
    started = svc.sessions.start(caller)
    record = started.record
    seconds = (record.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
    cookie = session_cookie(started.token, max(0, int(seconds)), secure=is_https(request))
    response.headers.append("Set-Cookie", cookie)
    return schemas.session_out(record, caller)


@router.get(
    "/current",
    response_model=schemas.Identity,
    responses=error_responses(*COMMON_ERRORS),
    summary="Who this request acts as: its key, tenant, scopes, session",
)
def who_am_i(found: Current) -> dict[str, Any]:
    caller, session = found
    return schemas.identity_out(caller, session)


@router.delete(
    "/current",
    status_code=204,
    response_class=Response,
    responses=error_responses(*COMMON_ERRORS, 404),
    summary="Log out: end the session the request's cookie names, and clear the cookie",
)
def end_session(request: Request, found: Current, svc: Svc) -> Response:
    caller, session = found
    if session is None:
        raise NotFound(
            "no session to end: this request was authenticated by its API key (logging out "
            "is a request with the session cookie and without the key)"
        )
    svc.sessions.end(caller, session.id)
    return Response(
        status_code=204, headers={"Set-Cookie": cleared_cookie(secure=is_https(request))}
    )
