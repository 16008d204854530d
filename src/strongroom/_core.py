"""The sans-I/O core shared by :class:`Strongroom` and :class:`AsyncStrongroom`.

Everything that decides (what request to send, what an answer means, whether and when
to retry) lives here, in one generator per call: it yields a request or a pause and is
sent back the response or the transport error. The two clients only drive it, one with
``httpx.Client`` and ``time.sleep``, the other with ``httpx.AsyncClient`` and
``asyncio.sleep``, so their behaviour cannot drift apart. What a call sends comes from
its request builder, in ``resources/``.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx

from ._types import NOT_GIVEN, NotGiven, Timeout
from ._version import __version__
from .exceptions import (
    STATUS_ERRORS,
    APIConnectionError,
    APIError,
    APITimeoutError,
    ConflictError,
    ErrorDetail,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    StrongroomError,
)

log = logging.getLogger("strongroom.client")

T = TypeVar("T")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 2
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 60.0


@dataclass(frozen=True)
class Operation(Generic[T]):
    """One API call, before any I/O: the request to make and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # Safe to send twice: GET, PUT, DELETE, and conditional writes.
    idempotent: bool = False
    not_found: type[NotFoundError] = NotFoundError
    conflict: type[ConflictError] = ConflictError
    # This call's own timeout, instead of the client's.
    timeout: Timeout | NotGiven = NOT_GIVEN


@dataclass(frozen=True)
class ClientConfig:
    api_key: str
    base_url: str
    timeout: Timeout
    max_retries: int

    @classmethod
    def resolve(
        cls,
        api_key: str | None,
        base_url: str | None,
        timeout: Timeout | NotGiven,
        max_retries: int,
    ) -> ClientConfig:
        api_key = api_key or os.environ.get("STRONGROOM_API_KEY")
        if not api_key:
            raise StrongroomError(
                "no API key: pass api_key=... or set STRONGROOM_API_KEY "
                "(`strongroom keys create` makes one)"
            )
        base_url = base_url or os.environ.get("STRONGROOM_BASE_URL") or DEFAULT_BASE_URL
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        return cls(
            api_key=api_key,
            base_url=base_url.rstrip("/"),
            timeout=DEFAULT_TIMEOUT if isinstance(timeout, NotGiven) else timeout,
            max_retries=max_retries,
        )

    def configure(self, http: H) -> H:
        """Point an httpx client at this server, with this key and default timeout."""
        http.base_url = httpx.URL(self.base_url)
        http.headers.update(self.headers())
        http.timeout = httpx.Timeout(self.timeout)
        return http

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Accept": "application/json",
            "User-Agent": f"strongroom-python/{__version__}",
        }

    def __repr__(self) -> str:  # the API key stays out of reprs and tracebacks
        return f"ClientConfig(base_url={self.base_url!r}, timeout={self.timeout!r})"


class BaseClient(Generic[H]):
    """What both clients hold: their settings and the httpx client they send with."""

    def __init__(
        self, config: ClientConfig, http_client: H | None, new_http: Callable[[], H]
    ) -> None:
        self._config = config
        # Only an httpx client it made is this client's to close.
        self._owns_http = http_client is None
        self._http: H = config.configure(new_http() if http_client is None else http_client)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"


@dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclass(frozen=True)
class Pause:
    seconds: float


@dataclass(frozen=True)
class Done(Generic[T]):
    value: T


Step = Send | Pause
Exchange = Generator[Step, Any, T]
# What a driver sends back into an exchange: the answer, the transport error, or None.
Outcome = httpx.Response | httpx.TransportError | None


def build_request(client: httpx.Client | httpx.AsyncClient, op: Operation[Any]) -> httpx.Request:
    extensions = {}
    if not isinstance(op.timeout, NotGiven):
        extensions = {"timeout": httpx.Timeout(op.timeout).as_dict()}
    return client.build_request(
        op.method,
        op.path,
        params={k: v for k, v in (op.params or {}).items() if v is not None},
        json=op.json,
        headers=dict(op.headers),
        extensions=extensions,
    )


def exchange(
    client: httpx.Client | httpx.AsyncClient, config: ClientConfig, op: Operation[T]
) -> Exchange[T]:
    """Send ``op``, retrying what is safe to retry, and return its parsed answer.

    Yields :class:`Send` (the driver sends the request back the ``httpx.Response``, or
    throws the ``httpx.TransportError`` in) and :class:`Pause` (the driver sleeps).
    """
    attempt = 0
    while True:
        request = build_request(client, op)
        try:
            response: httpx.Response = yield Send(request)
        except httpx.TimeoutException as exc:
            error: StrongroomError = APITimeoutError(
                f"{op.method} {op.path} got no answer in time ({type(exc).__name__})"
            )
            # A request that timed out may have been processed: resend only if safe.
            retry = op.idempotent or isinstance(exc, httpx.ConnectTimeout)
            delay = backoff(attempt) if retry else None
        except httpx.TransportError as exc:
            error = APIConnectionError(
                f"{op.method} {op.path} failed: could not reach {config.base_url} "
                f"({type(exc).__name__})"
            )
            # Nothing reached the server when the connection itself failed.
            retry = op.idempotent or isinstance(exc, httpx.ConnectError)
            delay = backoff(attempt) if retry else None
        else:
            log.debug(
                "strongroom %s %s -> %s",
                op.method,
                op.path,
                response.status_code,
                extra={"request_id": response.headers.get("x-request-id"), "attempt": attempt},
            )
            if response.is_success:
                return op.parse(response.json())
            error = error_from_response(op, response)
            delay = retry_delay(op, response, attempt)
        if delay is None or attempt >= config.max_retries:
            raise error
        attempt += 1
        yield Pause(delay)


def backoff(attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, 0.5 * 2**attempt)]."""
    return random.uniform(0, min(MAX_RETRY_DELAY, 0.5 * 2**attempt))  # noqa: S311 - not crypto


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, from either of its forms (seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


def retry_delay(op: Operation[Any], response: httpx.Response, attempt: int) -> float | None:
    """How long to wait before resending after an error answer, or None to give up."""
    status = response.status_code
    if status == 429:  # refused before any work was done: safe for every method
        return retry_after(response) if retry_after(response) is not None else backoff(attempt)
    # 507: the server's disk is full; only its operator can change that, not a retry.
    if status >= 500 and status != 507 and op.idempotent:
        after = retry_after(response)
        return after if after is not None else backoff(attempt)
    return None


def error_from_response(op: Operation[Any], response: httpx.Response) -> APIError:
    """The exception an error answer stands for, read from the contract's envelope."""
    request_id = response.headers.get("x-request-id")
    try:
        body = response.json()
        envelope = body["error"]
        code = str(envelope["code"])
        message = str(envelope.get("message") or code)
        request_id = envelope.get("request_id") or request_id
        details = [
            ErrorDetail(str(d.get("location", "")), str(d.get("message", "")))
            for d in envelope.get("details") or []
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        body = None
        code = "internal_error" if response.status_code >= 500 else f"http_{response.status_code}"
        message = f"HTTP {response.status_code} without an error envelope"
        details = []
    cls: type[APIError]
    if response.status_code == 404:
        cls = op.not_found
    elif response.status_code == 409:
        cls = op.conflict
    elif response.status_code >= 500:
        cls = InternalServerError
    else:
        cls = STATUS_ERRORS.get(response.status_code, APIError)
    error = cls(
        message,
        code=code,
        status_code=response.status_code,
        request_id=request_id,
        details=details,
        body=body,
    )
    if isinstance(error, RateLimitError):
        error.retry_after = retry_after(response)
    return error


def proceed(steps: Exchange[T], outcome: Outcome) -> Step | Done[T]:
    """The exchange's next step once ``outcome`` is known, or its result: the one move
    of the drivers (``_client.drive``, ``_async_client.drive``), which differ in I/O."""
    try:
        if isinstance(outcome, httpx.TransportError):
            return steps.throw(outcome)
        return steps.send(outcome)
    except StopIteration as done:
        return Done(done.value)
