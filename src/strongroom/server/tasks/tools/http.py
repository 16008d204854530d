"""``http``/``request``: one HTTP request to a public URL.

Arguments:

- ``url`` (required): an absolute ``http://`` or ``https://`` URL.
- ``method``: ``GET`` (default), ``HEAD``, ``POST``, ``PUT``, ``PATCH``, ``DELETE`` or
  ``OPTIONS``, in any case.
- ``headers``: an object of header name to string (numbers are written out).
- ``params``: an object of query parameters, each a string, number, boolean (``true``/
  ``false``) or a list of those (the name repeated); added to the URL's own query.
- ``json`` (any JSON value, sent with ``Content-Type: application/json``) or ``body`` (a
  string, sent as UTF-8 as is), not both.
- ``timeout``: seconds, default 30, at most 120; bounds the whole exchange.
- ``follow_redirects``: default ``false`` (the 3xx answer is the result). When ``true``, up
  to 5 redirects are followed, each through the egress guard; when a redirect leaves the
  original site (another host, or a downgrade from https), the headers the step set and
  the credential are dropped, so a redirect cannot carry a key elsewhere.

``secret_name`` sends ``Authorization: Bearer <credential>``, unless the step sets an
``Authorization`` header itself.

Result: ``{"status": int, "headers": {lower-case name: value}, <body>}``. ``headers``
holds every response header except ``Set-Cookie`` (a session the step did not ask to keep);
repeated headers are joined with ``", "``. The body is exactly one of ``"json"`` (the
parsed value, for a JSON content type that parses), ``"text"`` (the body decoded with its
charset, UTF-8 by default) or ``"base64"`` (bytes that are not text). A status of 4xx or
5xx is a result, not an error: the step decides what it means. A body over
``max_response_bytes`` (1 MiB by default) is an error (``response_too_large``), since a cut
JSON or text body would mislead later steps.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx

from ..expressions import is_expression
from .base import JSON, Arg, Operation, Tool
from .context import ToolContext
from .errors import InvalidArguments, Problem, ToolError
from .webclient import open_client, parse_json, parse_url, read_capped, transport_errors

WHAT = "http request"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 120.0
MAX_REDIRECTS = 5

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SCALAR = Arg(("string", "integer", "number", "boolean"))

ARGUMENTS = Arg(
    ("object",),
    fields={
        "method": Arg(("string",), choices=METHODS),
        "url": Arg(("string",), required=True),
        "headers": Arg(("object",), values=Arg(("string", "integer", "number"))),
        "params": Arg(("object",), values=Arg((*_SCALAR.kinds, "array"), values=_SCALAR)),
        "json": Arg(),
        "body": Arg(("string",)),
        "timeout": Arg(("number",), minimum=0.01, maximum=MAX_TIMEOUT),
        "follow_redirects": Arg(("boolean",)),
    },
)


def _cross_check(arguments: Mapping[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    if "json" in arguments and "body" in arguments:
        problems.append(Problem("arguments.body", "give either json or body, not both"))
    url = arguments.get("url")
    if isinstance(url, str) and not is_expression(url):
        try:
            parse_url(url, "arguments.url")
        except InvalidArguments as exc:
            problems += exc.problems
    headers = arguments.get("headers")
    for name, value in headers.items() if isinstance(headers, Mapping) else ():
        where = f"arguments.headers.{name}"
        if not _TOKEN.match(name):
            problems.append(Problem(where, "is not a valid header name"))
        elif isinstance(value, str) and any(c in value for c in "\r\n\0"):
            problems.append(Problem(where, "must not contain line breaks or NUL"))
    return problems


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _query(params: Mapping[str, Any]) -> list[tuple[str, str | int | float | bool | None]]:
    pairs: list[tuple[str, str | int | float | bool | None]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((name, _text(item)))
    return pairs


def _same_site(start: httpx.URL, target: httpx.URL) -> bool:
    """Whether headers meant for ``start`` may go to ``target`` (same origin, or the same
    host upgraded to https on its default port)."""
    if start.host != target.host:
        return False
    same_origin = start.scheme == target.scheme and start.port == target.port
    return same_origin or (target.scheme == "https" and target.port is None)


def _send(
    client: httpx.Client,
    request: httpx.Request,
    follow: bool,
    own_headers: set[str],
    timeout: float,
) -> httpx.Response:
    start = request.url
    for _ in range(MAX_REDIRECTS + 1):
        with transport_errors(WHAT, request.url, timeout):
            response = client.send(request, stream=True)
        following = response.next_request
        if not follow or following is None:
            return response
        response.close()
        if not _same_site(start, following.url):
            for name in own_headers:
                following.headers.pop(name, None)
        request = following
    raise ToolError(f"{WHAT}: more than {MAX_REDIRECTS} redirects", code="upstream_error")


def _body(response: httpx.Response, raw: bytes) -> dict[str, JSON]:
    mime = response.headers.get("content-type", "").partition(";")[0].strip().lower()
    if mime == "application/json" or mime.endswith("+json"):
        try:
            parsed = parse_json(raw)
        except ValueError:  # not JSON after all, or nested too deep: the text stands
            pass
        else:
            return {"json": parsed}
    try:
        return {"text": raw.decode(response.encoding or "utf-8")}
    except (UnicodeDecodeError, LookupError):
        return {"base64": base64.b64encode(raw).decode("ascii")}


def _result(response: httpx.Response, raw: bytes) -> JSON:
    headers: dict[str, JSON] = {}
    for name, value in response.headers.multi_items():
        name = name.lower()
        if name == "set-cookie":
            continue
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return {"status": response.status_code, "headers": headers, **_body(response, raw)}


def request(arguments: dict[str, Any], credential: str | None, context: ToolContext) -> JSON:
    """Send the request; the result is ``{"status", "headers", "json" | "text" | "base64"}``."""
    url = parse_url(arguments["url"], "arguments.url")
    method = str(arguments.get("method", "GET")).upper()
    timeout = context.time_left(float(arguments.get("timeout", DEFAULT_TIMEOUT)))
    headers = {name: _text(value) for name, value in arguments.get("headers", {}).items()}
    if credential and not any(name.lower() == "authorization" for name in headers):
        headers["Authorization"] = f"Bearer {credential}"
    content: bytes | None = None
    if "json" in arguments:
        content = json.dumps(arguments["json"]).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif "body" in arguments:
        content = arguments["body"].encode()
    until = time.monotonic() + timeout
    with open_client(context, timeout) as client:
        with transport_errors(WHAT, url, timeout):
            query = _query(arguments.get("params", {}))
            target = url.copy_merge_params(query) if query else url
            built = client.build_request(method, target, headers=headers, content=content)
        own = {name.lower() for name in headers} - {"host"}
        response = _send(client, built, bool(arguments.get("follow_redirects")), own, timeout)
        try:
            raw = read_capped(response, context.config.max_response_bytes, WHAT, until)
        finally:
            response.close()
    return _result(response, raw)


# A bare secret as the URL (a webhook URL is its own credential) or as a header value
# authorises the request; see Operation.credentials. The URL is also where the request
# goes, and upstreams quote their own paths (404 pages, redirects): echoed.
TOOL = Tool.of(
    "http",
    Operation(
        "request",
        ARGUMENTS,
        request,
        _cross_check,
        credentials=("url", "headers.*"),
        echoed=("url",),
    ),
)
