"""A local provider that issues API keys, on 127.0.0.1: what a rotation task talks to.

- ``POST /keys`` with ``Authorization: Bearer <admin token>``: issues a new key, answers
  ``{"id": n, "key": "..."}``; any other token gets 401. While ``hold`` is set, a request
  sets ``arrived`` and waits for ``release`` (so a test can kill a process mid-rotation
  without sleeping).
- ``GET /verify`` with ``Authorization: Bearer <key>``: 200 when the key was issued here,
  401 otherwise; ``reject_all`` makes every verification fail.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class KeyIssuer:
    base_url: str
    admin_token: str
    issued: list[str] = field(default_factory=list)
    verified: list[str] = field(default_factory=list)
    hold: bool = False
    reject_all: bool = False
    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def key_issuer() -> Iterator[KeyIssuer]:
    issuer = KeyIssuer("", admin_token="adm_" + secrets.token_hex(12))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _token(self) -> str:
            return self.headers.get("Authorization", "").removeprefix("Bearer ")

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path != "/keys" or self._token() != issuer.admin_token:
                self._answer(401, {"error": "bad admin token"})
                return
            if issuer.hold:
                issuer.arrived.set()
                issuer.release.wait(60)
            with issuer.lock:
                key = "sk_live_" + secrets.token_hex(16)
                issuer.issued.append(key)
                number = len(issuer.issued)
            self._answer(201, {"id": number, "key": key})

        def do_GET(self) -> None:
            token = self._token()
            with issuer.lock:
                issuer.verified.append(token)
                good = token in issuer.issued
            if self.path != "/verify" or issuer.reject_all or not good:
                self._answer(401, {"ok": False})
            else:
                self._answer(200, {"ok": True})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    issuer.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        issuer.release.set()
        server.shutdown()
        server.server_close()


def rotation_steps(issuer: KeyIssuer, target: str, admin_secret: str) -> list[dict[str, Any]]:
    """A rotation task: create a key at the provider, stage it, verify it; the verify
    step fails the run (a lookup that misses) unless the provider says 200."""
    return [
        {
            "kind": "tool_call",
            "tool": "http",
            "operation": "request",
            "secret_name": admin_secret,
            "arguments": {"url": f"{issuer.base_url}/keys", "method": "POST", "json": {}},
            "output": "created",
        },
        {"kind": "set_secret", "name": target, "value": "$ outputs.created.json.key"},
        {
            "kind": "tool_call",
            "tool": "http",
            "operation": "request",
            "secret_name": target,
            "arguments": {"url": f"{issuer.base_url}/verify"},
            "output": "check",
        },
        {
            "kind": "transform",
            "expression": '$ {"verified": True}["verified" if outputs.check.status == 200 '
            'else "the new key failed verification"]',
        },
    ]
