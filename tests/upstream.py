"""A local OpenAI-compatible upstream on 127.0.0.1 that records what it receives.

``POST <prefix>/chat/completions`` answers a Chat Completions object whose content is
``reply`` (or, when the last message starts with ``echo:``, that message). The prefix
chooses a behaviour, so one task can hold steps that behave differently:

- ``/blocking/...``: sets ``arrived`` and answers only once ``release`` is set (events, so
  a test can kill a server mid-step without sleeping);
- ``/fail/...``: answers 400 quoting the last message, as some APIs quote a bad request;
- anything else: answers at once.

Every request is kept in ``seen`` (path, headers, JSON body), in arrival order.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "Sunny and 21 degrees in Paris."


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Upstream:
    base_url: str
    seen: list[Request] = field(default_factory=list)
    reply: str = DEFAULT_REPLY
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)

    def paths(self) -> list[str]:
        return [r.path for r in self.seen]

    def raw(self) -> bytes:
        """Everything received, to search for what should (not) have arrived."""
        return b"\n".join(
            json.dumps({"path": r.path, "headers": r.headers, "body": r.body}).encode()
            for r in self.seen
        )


def _last_message(body: Any) -> str:
    try:
        content = body["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    return content if isinstance(content, str) else ""


@contextmanager
def openai_upstream() -> Iterator[Upstream]:
    lock = threading.Lock()
    state: list[Upstream] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            upstream = state[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with lock:
                headers = {k.lower(): v for k, v in self.headers.items()}
                upstream.seen.append(Request(self.path, headers, body))
            if self.path.startswith("/blocking/"):
                upstream.arrived.set()
                upstream.release.wait(60)
            message = _last_message(body)
            if self.path.startswith("/fail/"):
                status = 400
                answer: dict[str, Any] = {
                    "error": {"message": f"cannot use {message}", "type": "invalid_request"}
                }
            else:
                status = 200
                content = message if message.startswith("echo:") else upstream.reply
                answer = {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "model": body.get("model") if isinstance(body, dict) else None,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
                }
            payload = json.dumps(answer).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the caller was killed while we waited

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.append(Upstream(f"http://127.0.0.1:{server.server_address[1]}/v1"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        state[0].release.set()
        server.shutdown()
        server.server_close()


def at(upstream: Upstream, prefix: str) -> str:
    """The base URL that makes the upstream behave as ``prefix`` says (``blocking``…)."""
    return upstream.base_url.replace("/v1", f"/{prefix}/v1")


def blocking_chat_step(upstream: Upstream) -> dict[str, Any]:
    """A task step that calls ``upstream``'s ``/blocking/`` chat: it waits there until the
    test sets ``release`` (and ``arrived`` says it got there)."""
    return {
        "kind": "tool_call",
        "tool": "openai",
        "operation": "chat",
        "arguments": {
            "model": "m",
            "base_url": at(upstream, "blocking"),
            "messages": [{"role": "user", "content": "hello"}],
        },
    }
