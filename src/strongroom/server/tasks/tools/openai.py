"""``openai``/``chat``: one request to an OpenAI-compatible Chat Completions endpoint.

Arguments: ``model`` and ``messages`` (required), ``base_url`` (default: the server's
``STRONGROOM_OPENAI_BASE_URL``, itself defaulting to ``https://api.openai.com/v1``),
``timeout`` in seconds (default 120, at most 600), and any other Chat Completions
parameter (``temperature``, ``max_tokens``, ``tools``, ``response_format``…), sent as
given; the common ones are type-checked. ``stream: true`` is refused: a step's result is
one value.

The request is ``POST {base_url}/chat/completions`` with the JSON body and, when the step
has a ``secret_name``, ``Authorization: Bearer <credential>`` (without one, no
``Authorization`` header: local servers such as Ollama need none). It goes through the
egress guard, follows no redirect, and reads at most ``max_response_bytes``.

Result: ``{"content": <the first choice's message content, or null>, "response": <the
parsed JSON answer, unchanged>}`` so that later steps can say ``_['content']`` and still
reach ``usage``, ``tool_calls`` or other choices under ``response``.

Errors: an answer that is not 2xx becomes a ToolError with ``code="upstream_error"``, the
status, and the upstream error's ``type`` and ``code``. The upstream's message is quoted
only for 400, 404 and 422, which describe the request, never for 401 or 403, whose
message can quote part of the key. 408, 409, 429 and 5xx are ``retryable``, with the
``Retry-After`` seconds when sent. Timeouts, refused connections and non-JSON answers
are ToolErrors too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import Field

from ..expressions import is_expression
from .base import JSON, Arg, Operation, Tool
from .config import ToolSettings
from .context import ToolContext
from .errors import InvalidArguments, Problem, ToolError, scrub
from .webclient import (
    open_client,
    origin,
    parse_json,
    parse_url,
    read_capped,
    transport_errors,
)

WHAT = "openai chat"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_TIMEOUT = 120.0
MAX_TIMEOUT = 600.0
_QUOTED_STATUSES = (400, 404, 422)
_RETRYABLE_STATUSES = (408, 409, 429)


class OpenAISettings(ToolSettings):
    """Where ``openai``/``chat`` goes when a step names no ``base_url``."""

    openai_base_url: str = Field(
        DEFAULT_BASE_URL, description="where openai/chat steps send requests"
    )


_MESSAGE = Arg(
    ("object",),
    open=True,
    fields={
        "role": Arg(("string",), required=True),
        "content": Arg(("string", "array", "null")),
        "name": Arg(("string",)),
        "tool_calls": Arg(("array",)),
        "tool_call_id": Arg(("string",)),
    },
)

ARGUMENTS = Arg(
    ("object",),
    open=True,  # any other Chat Completions parameter passes through
    fields={
        "model": Arg(("string",), required=True),
        "messages": Arg(("array",), required=True, values=_MESSAGE),
        "base_url": Arg(("string",)),
        "timeout": Arg(("number",), minimum=0.01, maximum=MAX_TIMEOUT),
        "stream": Arg(("boolean",)),
        "temperature": Arg(("number",), minimum=0, maximum=2),
        "top_p": Arg(("number",), minimum=0, maximum=1),
        "max_tokens": Arg(("integer",), minimum=1),
        "max_completion_tokens": Arg(("integer",), minimum=1),
        "n": Arg(("integer",), minimum=1, maximum=128),
        "stop": Arg(("string", "array")),
        "presence_penalty": Arg(("number",), minimum=-2, maximum=2),
        "frequency_penalty": Arg(("number",), minimum=-2, maximum=2),
        "seed": Arg(("integer",)),
        "user": Arg(("string",)),
        "response_format": Arg(("object",)),
        "tools": Arg(("array",)),
        "tool_choice": Arg(("string", "object")),
    },
)


def _cross_check(arguments: Mapping[str, Any]) -> list[Problem]:
    problems = []
    if arguments.get("stream") is True:
        problems.append(Problem("arguments.stream", "streaming is not supported"))
    if arguments.get("messages") == []:
        problems.append(Problem("arguments.messages", "must not be empty"))
    base = arguments.get("base_url")
    if isinstance(base, str) and not is_expression(base):
        try:
            _endpoint(base)
        except InvalidArguments as exc:
            problems += exc.problems
    return problems


def _endpoint(base: str) -> httpx.URL:
    url = parse_url(base, "arguments.base_url")
    return url.copy_with(path=url.path.rstrip("/") + "/chat/completions")


def _parsed(raw: bytes) -> JSON:
    try:
        return parse_json(raw)
    except ValueError:
        return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def _upstream_error(response: httpx.Response, data: JSON, credential: str | None) -> ToolError:
    status = response.status_code
    facts = [f"HTTP {status}"]
    quoted = ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        for key in ("type", "code"):
            value = error.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                facts.append(f"{key} {scrub(str(value)[:80], credential)}")
        message = error.get("message")
        if status in _QUOTED_STATUSES and isinstance(message, str):
            quoted = ": " + scrub(message[:300], credential)
    return ToolError(
        f"{WHAT}: {origin(response.request.url)} answered {', '.join(facts)}{quoted}",
        code="upstream_error",
        status=status,
        retryable=status in _RETRYABLE_STATUSES or status >= 500,
        retry_after=_retry_after(response),
    )


def _first_content(data: Mapping[str, JSON]) -> JSON:
    choices = data.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        message = choices[0].get("message")
        if isinstance(message, dict):
            return message.get("content")
    return None


def chat(arguments: dict[str, Any], credential: str | None, context: ToolContext) -> JSON:
    """Send the Chat Completions request; the result is ``{"content", "response"}``."""
    timeout = context.time_left(float(arguments.pop("timeout", DEFAULT_TIMEOUT)))
    default_base = context.config.settings(OpenAISettings).openai_base_url
    url = _endpoint(arguments.pop("base_url", None) or default_base)
    headers = {"Accept": "application/json"}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    until = time.monotonic() + timeout
    with open_client(context, timeout) as client, transport_errors(WHAT, url, timeout):
        request = client.build_request("POST", url, json=arguments, headers=headers)
        response = client.send(request, stream=True)
        try:
            raw = read_capped(response, context.config.max_response_bytes, WHAT, until)
        finally:
            response.close()
    data = _parsed(raw)
    if not 200 <= response.status_code < 300:
        raise _upstream_error(response, data, credential)
    if not isinstance(data, dict):
        raise ToolError(
            f"{WHAT}: {origin(url)} answered HTTP {response.status_code} "
            "with a body that is not a JSON object",
            code="upstream_error",
            status=response.status_code,
        )
    return {"content": _first_content(data), "response": data}


TOOL = Tool.of("openai", Operation("chat", ARGUMENTS, chat, _cross_check), settings=OpenAISettings)
