"""The SDK's transport behaviour: retries, timeouts and request shapes.

Retries and timeouts run against a scripted HTTP upstream on 127.0.0.1; task and
execution calls, whose server side is not part of this module, against httpx's mock
transport, checking the exact requests sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

import strongroom
import strongroom._core as core
from strongroom import AsyncStrongroom, Strongroom
from strongroom.exceptions import (
    APIConnectionError,
    APITimeoutError,
    InternalServerError,
    RateLimitError,
    WaitTimeoutError,
)

from .support import free_port
from .test_sdk import Synced

REAL_BACKOFF = core.backoff

SECRET = {
    "id": "0193",
    "name": "k",
    "description": None,
    "metadata": {},
    "value": "ENCRYPTED",
    "version": 1,
    "created_at": "2026-11-28T14:33:00.123456Z",
    "updated_at": "2026-11-28T14:33:00.123456Z",
}


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=lambda: SECRET)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # the upstream is slow: what a timeout is for


class Upstream:
    """A scripted server: answers each request with the next reply, records requests."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                upstream.requests.append((self.command, self.path, dict(self.headers), body))
                reply = upstream.replies.pop(0) if upstream.replies else Reply()
                if reply.delay:
                    time.sleep(reply.delay)
                payload = json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    for name, value in {
                        "content-type": "application/json",
                        **reply.headers,
                    }.items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _no_backoff_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decisions are under test here, not the waiting; backoff() has its own test."""
    monkeypatch.setattr(core, "backoff", lambda attempt: 0.0)


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    loop = asyncio.new_event_loop()
    made: list[Any] = []

    def make(base_url: str, **options: Any) -> Any:
        if request.param == "sync":
            client = Strongroom(api_key="sr_test", base_url=base_url, **options)
            made.append(client.close)
            return client
        async_client = AsyncStrongroom(api_key="sr_test", base_url=base_url, **options)
        made.append(lambda: loop.run_until_complete(async_client.close()))
        return Synced(async_client, loop)

    yield make
    for close in made:
        close()
    loop.close()


def error(status: int, code: str, headers: dict[str, str] | None = None) -> Reply:
    body = {"error": {"code": code, "message": code, "request_id": "req_1", "details": []}}
    return Reply(status, body, headers or {})


def test_idempotent_call_is_retried_after_a_5xx(upstream: Upstream, connect: Any) -> None:
    upstream.replies = [error(503, "unavailable", {"retry-after": "0"}), Reply()]
    assert connect(upstream.url).secrets.get("k").name == "k"
    assert [r[0] for r in upstream.requests] == ["GET", "GET"]


def test_a_full_disk_is_not_retried(upstream: Upstream, connect: Any) -> None:
    """507: only the server's operator can free space; retrying would only wait."""
    upstream.replies = [error(507, "insufficient_storage"), Reply()]
    with pytest.raises(InternalServerError) as caught:
        connect(upstream.url).secrets.get("k")
    assert caught.value.code == "insufficient_storage"
    assert len(upstream.requests) == 1


def test_create_is_not_retried_after_a_5xx(upstream: Upstream, connect: Any) -> None:
    upstream.replies = [error(500, "internal_error"), Reply()]
    with pytest.raises(InternalServerError) as caught:
        connect(upstream.url).secrets.create("k", "v")
    assert caught.value.request_id == "req_1"
    assert len(upstream.requests) == 1


def test_429_is_retried_for_any_method_honouring_retry_after(
    upstream: Upstream, connect: Any
) -> None:
    upstream.replies = [error(429, "rate_limited", {"retry-after": "0"}), Reply(201)]
    assert connect(upstream.url).secrets.create("k", "v").name == "k"
    assert [r[0] for r in upstream.requests] == ["POST", "POST"]
    assert json.loads(upstream.requests[1][3]) == {"name": "k", "value": "v"}


def test_conditional_update_is_retried_after_a_5xx(upstream: Upstream, connect: Any) -> None:
    upstream.replies = [error(502, "internal_error"), Reply()]
    connect(upstream.url).secrets.update("k", value="v", expected_version=1)
    assert len(upstream.requests) == 2


def test_retries_stop_at_max_retries_with_the_last_error(upstream: Upstream, connect: Any) -> None:
    upstream.replies = [error(429, "rate_limited", {"retry-after": "0"})] * 5
    with pytest.raises(RateLimitError) as caught:
        connect(upstream.url, max_retries=3).secrets.list()
    assert caught.value.retry_after == 0.0
    assert len(upstream.requests) == 4
    upstream.requests.clear()
    upstream.replies = [error(503, "unavailable")] * 2
    with pytest.raises(InternalServerError):
        connect(upstream.url, max_retries=0).secrets.list()
    assert len(upstream.requests) == 1


def test_connection_refused_is_retried_then_raised(connect: Any) -> None:
    client = connect(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(APIConnectionError) as caught:
        client.secrets.list()
    assert caught.value.code == "connection_error"
    assert not isinstance(caught.value, APITimeoutError)


def test_per_call_timeout(upstream: Upstream, connect: Any) -> None:
    upstream.replies = [Reply(delay=2.0)]
    client = connect(upstream.url, max_retries=0)
    with pytest.raises(APITimeoutError) as caught:
        client.secrets.get("k", timeout=0.2)
    assert caught.value.code == "timeout"


def test_client_timeout_and_no_retry_of_a_create_that_timed_out(
    upstream: Upstream, connect: Any
) -> None:
    upstream.replies = [Reply(delay=2.0), Reply()]
    with pytest.raises(APITimeoutError):
        connect(upstream.url, timeout=0.2).secrets.create("k", "v")
    assert len(upstream.requests) == 1, "the create may have landed: it is not resent"


def test_requests_carry_the_key_and_user_agent(upstream: Upstream, connect: Any) -> None:
    connect(upstream.url).secrets.get("na me/x", version=3)
    method, path, headers, _ = upstream.requests[0]
    assert (method, path) == ("GET", "/v1/secrets/na%20me%2Fx?version=3")
    assert headers["Authorization"] == "Bearer sr_test"
    assert headers["User-Agent"] == f"strongroom-python/{strongroom.__version__}"


# -- retry decisions, unit by unit --------------------------------------------------------------
def test_backoff_is_jittered_and_capped() -> None:
    for attempt in range(8):
        delays = [REAL_BACKOFF(attempt) for _ in range(50)]
        assert all(0 <= d <= min(core.MAX_RETRY_DELAY, 0.5 * 2**attempt) for d in delays)
        assert len(set(delays)) > 1, "full jitter spreads clients out"


def test_retry_after_in_seconds_and_as_a_date() -> None:
    def answer(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": value})

    assert core.retry_after(answer("3")) == 3.0
    assert core.retry_after(answer("9999")) == core.MAX_RETRY_AFTER
    soon = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= (core.retry_after(answer(soon)) or 0) <= 5.0
    assert core.retry_after(answer("soon")) is None


# -- tasks and executions: the requests sent ----------------------------------------------------
TASK = {
    "id": "task_1",
    "name": None,
    "description": None,
    "steps": [{"kind": "transform", "expression": "$ 1 + 1"}],
    "created_at": "2026-11-28T14:33:00Z",
    "updated_at": "2026-11-28T14:33:00Z",
}


def execution(status: str) -> dict[str, Any]:
    return {
        "id": "exe_1",
        "task_id": "task_1",
        "status": status,
        "input": None,
        "output": 2 if status == "succeeded" else None,
        "error": None,
        "created_at": "2026-11-28T14:33:00Z",
        "updated_at": "2026-11-28T14:33:01Z",
    }


class Recorder:
    """A mock transport that records requests and answers from a route table."""

    def __init__(self, routes: dict[tuple[str, str], list[Any]]) -> None:
        self.routes = routes
        self.seen: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        key = (request.method, request.url.path)
        self.seen.append((request.method, str(request.url.raw_path, "ascii"), body))
        answers = self.routes[key]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        return httpx.Response(200, json=answer)


@pytest.fixture(params=["sync", "async"])
def mocked(request: pytest.FixtureRequest) -> Iterator[Callable[[Recorder], Any]]:
    loop = asyncio.new_event_loop()

    def make(recorder: Recorder) -> Any:
        transport = httpx.MockTransport(recorder)
        if request.param == "sync":
            return Strongroom(api_key="sr_t", http_client=httpx.Client(transport=transport))
        client = httpx.AsyncClient(transport=transport)
        return Synced(AsyncStrongroom(api_key="sr_t", http_client=client), loop)

    yield make
    loop.close()


def test_task_calls_send_the_contracts_requests(mocked: Any) -> None:
    steps = [{"kind": "transform", "expression": "$ 1 + 1"}]
    recorder = Recorder(
        {
            ("POST", "/v1/tasks"): [TASK],
            ("GET", "/v1/tasks"): [{"items": [TASK], "limit": 5, "offset": 0, "has_more": False}],
            ("GET", "/v1/tasks/task_1"): [TASK],
            ("DELETE", "/v1/tasks/task_1"): [{"id": "task_1"}],
            ("POST", "/v1/tasks/task_1/executions"): [execution("queued")],
        }
    )
    client = mocked(recorder)
    task = client.tasks.create(task={"steps": steps})
    assert task.id == "task_1"
    client.tasks.create(steps=steps, name="two")
    assert client.tasks.list(limit=5).items[0].id == "task_1"
    assert client.tasks.get("task_1").steps == steps
    client.tasks.delete("task_1")
    queued = client.tasks.execute(task_id="task_1", input={"query": "weather"})
    assert queued.status == "queued"
    client.tasks.execute("task_1")
    assert recorder.seen == [
        ("POST", "/v1/tasks", {"task": {"steps": steps}}),
        ("POST", "/v1/tasks", {"task": {"steps": steps, "name": "two"}}),
        ("GET", "/v1/tasks?limit=5", None),
        ("GET", "/v1/tasks/task_1", None),
        ("DELETE", "/v1/tasks/task_1", None),
        ("POST", "/v1/tasks/task_1/executions", {"input": {"query": "weather"}}),
        ("POST", "/v1/tasks/task_1/executions", {}),
    ]
    with pytest.raises(TypeError):
        client.tasks.create(task={"steps": steps}, steps=steps)


def test_execution_calls_and_wait(mocked: Any) -> None:
    step = {"index": 0, "kind": "transform", "status": "succeeded", "output": 2, "error": None}
    recorder = Recorder(
        {
            ("GET", "/v1/executions/exe_1"): [
                execution("queued"),
                execution("running"),
                execution("succeeded"),
            ],
            ("GET", "/v1/executions"): [{"items": [execution("queued")]}],
            ("GET", "/v1/executions/exe_1/steps"): [{"items": [step]}],
            ("POST", "/v1/executions/exe_1/cancel"): [execution("cancelled")],
        }
    )
    client = mocked(recorder)
    done = client.executions.wait("exe_1", timeout=30)
    assert done.status == "succeeded"
    assert done.output == 2
    assert len([s for s in recorder.seen if s[1] == "/v1/executions/exe_1"]) == 3
    assert client.executions.list(task_id="task_1").items[0].status == "queued"
    assert client.executions.steps("exe_1").items[0].output == 2
    assert client.executions.cancel("exe_1").status == "cancelled"
    assert ("GET", "/v1/executions?task_id=task_1", None) in recorder.seen


def test_wait_gives_up_after_its_timeout(mocked: Any) -> None:
    client = mocked(Recorder({("GET", "/v1/executions/exe_1"): [execution("running")]}))
    with pytest.raises(WaitTimeoutError, match="still running"):
        client.executions.wait("exe_1", timeout=0.3)


@pytest.mark.e2e
def test_the_client_imports_without_the_server_or_cli_libraries() -> None:
    """``pip install strongroom`` brings only httpx and pydantic: nothing else may load."""
    program = """
import importlib.abc, sys
FORBIDDEN = ("fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "cryptography",
             "psycopg", "click", "rich", "pydantic_settings")
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"blocked: {name}")
        return None
sys.meta_path.insert(0, Block())
import strongroom
client = strongroom.Strongroom(api_key="sr_x")
async_client = strongroom.AsyncJulep(api_key="sr_x")
client.close()
assert not [m for m in sys.modules if m.startswith("strongroom.server")]
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_every_status_maps_to_its_error_class(upstream: Upstream, connect: Any) -> None:
    from strongroom import exceptions as ex

    expected = {
        401: ex.AuthenticationError,
        403: ex.PermissionDeniedError,
        405: ex.MethodNotAllowedError,
        412: ex.PreconditionFailedError,
        413: ex.PayloadTooLargeError,
        422: ex.ValidationError,
        500: ex.InternalServerError,
    }
    client = connect(upstream.url, max_retries=0)
    for status, cls in expected.items():
        upstream.replies = [error(status, f"code_{status}")]
        with pytest.raises(cls) as caught:
            client.secrets.create("k", "v")
        assert (caught.value.status_code, caught.value.code) == (status, f"code_{status}")
    upstream.replies = [Reply(502, body="<html>bad gateway</html>")]
    with pytest.raises(ex.InternalServerError) as bare:
        client.secrets.create("k", "v")
    assert bare.value.code == "internal_error"


def test_the_client_logs_neither_the_key_nor_values(
    upstream: Upstream, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    value = "value-that-must-not-be-logged"
    upstream.replies = [Reply(201), Reply(body={**SECRET, "value": value})]
    with caplog.at_level("DEBUG"):
        client = connect(upstream.url)
        client.secrets.create("k", value)
        assert client.secrets.get("k").value == value
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    assert "strongroom" in caplog.text, "the calls are logged at DEBUG"
    assert "sr_test" not in logged
    assert value not in logged
