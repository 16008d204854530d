"""Plumbing shared by the tools that speak HTTP (``openai`` and ``http``).

A guarded ``httpx.Client`` (egress policy on every connection, no proxies, no ``.netrc``,
no automatic redirects), body reads capped in size and in total time, and transport errors
turned into :class:`ToolError` messages that name only ``scheme://host:port``: a path or a
query string can hold a token (``/bot<token>/sendMessage``, ``?api_key=…``). Answers
parsed as JSON are bounded in depth too (:func:`parse_json`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from .base import JSON
from .context import ToolContext
from .errors import InvalidArguments, Problem, ToolError
from .transport import GuardedTransport

USER_AGENT = "strongroom-tools/1"
# How deep an upstream's JSON answer may nest. Every later stage (redaction, taint, the
# sealed step result, a later step's scope) walks the value recursively; a hostile
# upstream's ``[[[[…]]]]`` two hundred thousand deep would otherwise end the step with a
# RecursionError somewhere inside the server. Real APIs nest a dozen levels at most.
MAX_JSON_DEPTH = 64


def parse_json(raw: bytes) -> JSON:
    """``raw`` parsed as JSON; ``ValueError`` when it is not JSON or nests deeper than
    :data:`MAX_JSON_DEPTH`."""
    try:
        value: JSON = json.loads(raw)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    pending: list[tuple[JSON, int]] = [(value, 1)]
    while pending:  # a loop, not recursion: the point is to find what recursion cannot take
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ValueError("JSON nested too deeply")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return value


def origin(url: httpx.URL) -> str:
    """``scheme://host[:port]`` of ``url``: what messages may say about a destination."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}"


def parse_url(value: str, location: str) -> httpx.URL:
    """``value`` as an absolute http(s) URL, or :class:`InvalidArguments` for ``location``."""
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise InvalidArguments([Problem(location, "is not a valid URL")]) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidArguments([Problem(location, "must be an http:// or https:// URL")])
    return url


def open_client(context: ToolContext, timeout: float) -> httpx.Client:
    return httpx.Client(
        transport=GuardedTransport(context),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
        headers={"User-Agent": USER_AGENT},
    )


@contextmanager
def transport_errors(what: str, url: httpx.URL, timeout: float) -> Iterator[None]:
    """Turn httpx's errors into a ToolError about ``url``'s origin (``from None``: the
    original exception, which may quote more of the request, is not chained)."""
    try:
        yield
    except ToolError:
        raise
    except httpx.TimeoutException:
        raise ToolError(
            f"{what}: {origin(url)} did not answer within {timeout:g} s",
            code="timeout",
            retryable=True,
        ) from None
    except httpx.ConnectError:
        raise ToolError(
            f"{what}: could not connect to {origin(url)}", code="connect_failed", retryable=True
        ) from None
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
        raise ToolError(
            f"{what}: {type(exc).__name__} talking to {origin(url)}",
            code="upstream_error",
            retryable=True,
        ) from None


def read_capped(response: httpx.Response, limit: int, what: str, until: float) -> bytes:
    """The (decoded) body of a streamed ``response``: at most ``limit`` bytes, read before
    ``until`` (a ``time.monotonic()`` instant), or a ToolError."""
    too_large = ToolError(
        f"{what}: the response body is larger than {limit} bytes", code="response_too_large"
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    timeout = max(until - time.monotonic(), 0.0)
    with transport_errors(what, response.request.url, timeout):
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
            if time.monotonic() > until:
                raise ToolError(
                    f"{what}: reading the response from {origin(response.request.url)} "
                    "took too long",
                    code="timeout",
                    retryable=True,
                )
    return b"".join(chunks)
