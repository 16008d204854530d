"""ASGI middleware: request ids, the request log, last-resort 500s, HSTS over TLS, the
per-address request budget and the body size limit.

Written against raw ASGI rather than Starlette's BaseHTTPMiddleware, which buffers and
re-wraps every response; these only look at headers and count bytes.
"""

from __future__ import annotations

import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import HeadersTooLarge, PayloadTooLarge
from ..ids import new_request_id
from ..logs import request_id_var
from ..metrics import Metrics
from ..ratelimit import RateLimiter
from .deps import too_many
from .errors import error_response, unexpected_error

log = logging.getLogger("strongroom.request")

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
HSTS = (b"strict-transport-security", b"max-age=31536000")


def _route_of(scope: Scope) -> str | None:
    """The route template a request matched (``/v1/secrets/{name}``), never its path: a
    value pasted into a URL by mistake must not reach the log. None when nothing matched.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else None


class RequestContext:
    """Give each request an id, log it when it ends, and turn a crash into a JSON 500;
    over HTTPS, add Strict-Transport-Security to every answer."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _CLIENT_REQUEST_ID.fullmatch(offered) else new_request_id()
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                extra = [(b"x-request-id", request_id.encode())]
                if scope.get("path", "").startswith("/v1/"):
                    # API answers may hold plaintext or metadata: no cache keeps them.
                    extra.append((b"cache-control", b"no-store"))
                if scope.get("scheme") == "https":
                    # Reached over TLS (ours, or a trusted proxy's): browsers keep to
                    # HTTPS for a year, so no later visit starts in clear text.
                    extra.append(HSTS)
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if response_started:
                raise
            await unexpected_error(exc)(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_of(scope)
            log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": (scope.get("client") or ("", 0))[0],
                },
            )
            if self.metrics is not None:
                self.metrics.observe_request(str(scope.get("method")), route, status, seconds)
            request_id_var.reset(token)


MAX_HEADER_BYTES = 32 * 1024


class HeaderLimit:
    """Refuse requests whose headers add up to more than ``MAX_HEADER_BYTES`` with 431.

    uvicorn's parser (httptools) takes headers of any size; 32 KiB is what common proxies
    allow (nginx's default buffers) and far more than an API request needs.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_HEADER_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            size = sum(len(name) + len(value) for name, value in scope.get("headers") or [])
            if size > self.max_bytes:
                error = HeadersTooLarge(
                    f"request headers are larger than the limit of {self.max_bytes} bytes"
                )
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, declared or streamed.

    Starlette's own limiter answers in plain text; this one answers with the error
    envelope the contract promises for every error.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers") or []:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._error()
            return message

        await self.app(scope, counting_receive, send)

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than the limit of {self.max_bytes} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(self._error())(scope, receive, send)


class AddressLimit:
    """Refuse API requests with 429 when their client address is over its budget, or in
    the penalty box for failed authentication, before any body is read or key looked up.

    ``/healthz``, ``/readyz`` and the OpenAPI document are not counted: monitors and
    tooling poll them.
    """

    def __init__(self, app: ASGIApp, limiter: RateLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith(("/v1/", "/julep/")):
            address = (scope.get("client") or ("", 0))[0]
            # Awaited: with the budgets in Redis, the round trip must not block the loop.
            refusal = await self.limiter.address_request_async(address)
            if refusal is not None:
                await error_response(too_many(refusal))(scope, receive, send)
                return
        await self.app(scope, receive, send)
