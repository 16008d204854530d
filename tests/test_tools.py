"""The tools task steps call (openai, database, http) and the egress guard in front of them.

Real I/O, only on 127.0.0.1: a recording HTTP upstream in a thread, the PostgreSQL of the
test session, SQLite files in a temporary directory, and a fake PostgreSQL server that
asks for a password and keeps what it is sent.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpcore
import psycopg
import pytest

from strongroom.server.tasks.tools import (
    REGISTRY,
    AllToolSettings,
    EgressPolicy,
    EgressRefused,
    InvalidArguments,
    ToolConfig,
    ToolContext,
    ToolError,
)
from strongroom.server.tasks.tools.database import DatabaseSettings
from strongroom.server.tasks.tools.openai import OpenAISettings
from strongroom.server.tasks.tools.transport import GuardedBackend

from .support import free_port

LOCAL = EgressPolicy.parse("127.0.0.1,localhost")


def context(
    policy: EgressPolicy = LOCAL, **config: Any
) -> ToolContext:  # a context that may reach 127.0.0.1 unless told otherwise
    return ToolContext(ToolConfig(egress=policy, **config))


def call(
    tool: str, operation: str, arguments: dict[str, Any], credential: str | None = None, **kw: Any
) -> Any:
    return REGISTRY.call(tool, operation, arguments, credential, kw.pop("ctx", None) or context())


def locations(problems: list[Any]) -> list[str]:
    return [p.location for p in problems]


# -- a recording HTTP upstream -------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str  # with the query string
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    wait: threading.Event | None = None  # answer only once this is set (or after 5 s)
    declare_length: bool = True


class Upstream:
    """An HTTP server on 127.0.0.1 that records requests and answers as told per path."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.replies: dict[str, Reply] = {}
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                upstream.seen.append(Seen(self.command, self.path, headers, body))
                reply = upstream.replies.get(self.path.partition("?")[0], Reply(body={"ok": 1}))
                if reply.wait is not None:
                    reply.wait.wait(5)
                payload = reply.body
                content_type = "application/octet-stream"
                if not isinstance(payload, bytes):
                    payload, content_type = json.dumps(payload).encode(), "application/json"
                self.send_response(reply.status)
                headers_out = {"Content-Type": content_type, **reply.headers}
                for name, value in headers_out.items():
                    self.send_header(name, value)
                if reply.declare_length:
                    self.send_header("Content-Length", str(len(payload)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        for reply in self.replies.values():
            if reply.wait is not None:
                reply.wait.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    try:
        yield server
    finally:
        server.close()


# -- validation ----------------------------------------------------------------------------


def test_unknown_tool_and_operation_are_problems() -> None:
    assert locations(REGISTRY.validate("shell", "run", {})) == ["tool"]
    problems = REGISTRY.validate("openai", "complete", {})
    assert locations(problems) == ["operation"]
    assert "chat" in problems[0].message


def test_one_problem_per_bad_argument_with_its_location() -> None:
    problems = REGISTRY.validate(
        "database",
        "query",
        {
            "params": "not a list",
            "connection": {"host": "db", "port": True, "colour": "blue"},
            "max_rows": 10**6,
            "read_only": "yes",
        },
    )
    assert sorted(locations(problems)) == [
        "arguments.connection.colour",
        "arguments.connection.port",
        "arguments.max_rows",
        "arguments.params",
        "arguments.read_only",
    ]
    by_location = {p.location: p.message for p in problems}
    assert by_location["arguments.max_rows"] == "must be at most 10000"
    assert by_location["arguments.connection.port"] == "must be an integer or a string"


def test_the_guides_steps_validate_with_expressions_standing_for_any_value() -> None:
    assert (
        REGISTRY.validate(
            "openai",
            "chat",
            {"model": "gpt-4", "messages": [{"role": "user", "content": "What's the weather?"}]},
        )
        == []
    )
    guide_database = {
        "query": "SELECT * FROM users",
        "connection": {
            "host": "$ secrets.db_host",
            "user": "$ secrets.db_username",
            "password": "$ secrets.db_password",
            "database": "$ secrets.db_name",
        },
    }
    assert REGISTRY.validate("database", "query", guide_database) == []
    assert REGISTRY.validate("database", "query", {"query": "$ inputs", "max_rows": "$ 5"}) == []
    assert REGISTRY.validate("http", "request", {"url": "$ outputs.api_url", "json": "$ _"}) == []


def test_a_database_step_without_a_query_is_a_connection_check() -> None:
    # the guide's "Working with Async/Await" step has no arguments at all
    assert REGISTRY.validate("database", "query", None) == []
    assert REGISTRY.validate("database", "query", {"connection": {"url": "$ inputs"}}) == []


def test_openai_argument_problems() -> None:
    problems = REGISTRY.validate(
        "openai",
        "chat",
        {
            "messages": [{"content": "hi"}, "hello"],
            "temperature": 3,
            "max_tokens": 1.5,
            "stream": True,
            "base_url": "ftp://example.com",
            "logprobs": True,  # passes through unchecked
        },
    )
    assert sorted(locations(problems)) == [
        "arguments.max_tokens",
        "arguments.messages[0].role",
        "arguments.messages[1]",
        "arguments.model",
        "arguments.temperature",
    ]
    # cross-argument checks run once the types fit
    problems = REGISTRY.validate(
        "openai",
        "chat",
        {"model": "m", "messages": [], "stream": True, "base_url": "ftp://example.com"},
    )
    assert sorted(locations(problems)) == [
        "arguments.base_url",
        "arguments.messages",
        "arguments.stream",
    ]


def test_http_argument_problems() -> None:
    problems = REGISTRY.validate(
        "http",
        "request",
        {"url": "https://example.com", "method": "FETCH", "headers": {"X-A": ["x"]}},
    )
    assert sorted(locations(problems)) == ["arguments.headers.X-A", "arguments.method"]
    problems = REGISTRY.validate(
        "http",
        "request",
        {
            "url": "file:///etc/passwd",
            "json": {},
            "body": "x",
            "headers": {"Bad Name": "x", "X-Ok": "a\r\nInjected: 1"},
        },
    )
    assert sorted(locations(problems)) == [
        "arguments.body",
        "arguments.headers.Bad Name",
        "arguments.headers.X-Ok",
        "arguments.url",
    ]
    assert REGISTRY.validate("http", "request", {"url": "https://x.test", "method": "post"}) == []


def test_database_connection_url_problems() -> None:
    problems = REGISTRY.validate(
        "database",
        "query",
        {"query": "SELECT 1", "connection": {"url": "mysql://h/db", "host": "h"}},
    )
    assert sorted(locations(problems)) == ["arguments.connection", "arguments.connection.url"]


def test_evaluated_arguments_are_checked_again_without_repeating_values() -> None:
    with pytest.raises(InvalidArguments) as caught:
        call("database", "query", {"query": 42, "connection": {"host": "h", "user": "u"}})
    assert [p.location for p in caught.value.problems] == ["arguments.query"]
    assert caught.value.code == "invalid_arguments"
    with pytest.raises(InvalidArguments) as caught:
        call(
            "http",
            "request",
            {"url": "http://127.0.0.1:9/", "headers": {"X-Token": "tok-value\r\nX: 1"}},
        )
    assert "tok-value" not in str(caught.value)
    assert "arguments.headers.X-Token" in str(caught.value)


# -- egress --------------------------------------------------------------------------------

REFUSED_HOSTS = [
    ("127.0.0.1", "loopback"),
    ("localhost", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("[::1]", "loopback"),
    ("[fc00::1]", "unique-local"),
    ("[fd00:ec2::254]", "unique-local"),
    ("[fe80::1]", "link-local"),
    ("[::ffff:127.0.0.1]", "loopback"),
    ("[64:ff9b::a00:1]", "private"),
    ("0.0.0.0", "unspecified"),  # noqa: S104
    ("224.0.0.1", "multicast"),
    ("100.64.0.1", "non-public"),
]


@pytest.mark.parametrize(("host", "kind"), REFUSED_HOSTS)
def test_non_public_destinations_are_refused_before_any_connection(
    upstream: Upstream, monkeypatch: pytest.MonkeyPatch, host: str, kind: str
) -> None:
    def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    with pytest.raises(EgressRefused) as caught:
        call("http", "request", {"url": upstream.url("/x", host=host)}, ctx=context(EgressPolicy()))
    message = str(caught.value)
    assert host.strip("[]") in message
    assert f"{kind} address" in message
    assert "allow it with STRONGROOM_EGRESS_ALLOW" in message
    assert caught.value.code == "egress_refused"
    assert upstream.seen == []


def test_a_name_is_refused_for_what_it_resolves_to() -> None:
    with pytest.raises(EgressRefused, match=r"localhost resolves to a loopback address \("):
        EgressPolicy().resolve("localhost", 80)


def test_a_name_with_one_private_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"rebind.test": ["10.0.0.7"], "mixed.test": ["93.184.216.34", "192.168.0.9"]}

    def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        family = socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(EgressRefused, match=r"rebind.test resolves to a private address"):
        EgressPolicy().resolve("rebind.test", 443)
    with pytest.raises(EgressRefused, match=r"\(192.168.0.9\)"):
        EgressPolicy().resolve("mixed.test", 443)
    assert EgressPolicy.parse("192.168.0.0/16").resolve("mixed.test", 443) == [
        "93.184.216.34",
        "192.168.0.9",
    ]


def test_the_backend_connects_to_the_checked_address_not_the_name_again() -> None:
    class Recording(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self.calls: list[tuple[str, int]] = []

        def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
            self.calls.append((host, port))
            raise httpcore.ConnectError("recorded")

    inner = Recording()
    backend = GuardedBackend(context(EgressPolicy.parse("localhost")), inner)
    with pytest.raises(httpcore.ConnectError):
        backend.connect_tcp("localhost", 8080)
    assert inner.calls
    assert all(ipaddress.ip_address(host).is_loopback for host, _ in inner.calls)
    with pytest.raises(EgressRefused):
        GuardedBackend(context(EgressPolicy()), inner).connect_tcp("10.0.0.1", 80)
    with pytest.raises(EgressRefused):
        GuardedBackend(context(), inner).connect_unix_socket("/var/run/docker.sock")
    assert len(inner.calls) == 1 or all(h != "10.0.0.1" for h, _ in inner.calls)


def test_the_allow_list_lets_local_destinations_through(upstream: Upstream) -> None:
    for host in ("127.0.0.1", "localhost"):
        result = call("http", "request", {"url": upstream.url("/a", host=host)})
        assert result["status"] == 200
    assert [s.path for s in upstream.seen] == ["/a", "/a"]


def test_cidr_entries_allow_ranges(upstream: Upstream) -> None:
    wide = EgressPolicy.parse(" 127.0.0.0/8 , 10.0.0.0/8,fd00::/8 ")
    assert call("http", "request", {"url": upstream.url()}, ctx=context(wide))["status"] == 200
    assert wide.resolve("10.200.0.1", 80) == ["10.200.0.1"]
    assert wide.resolve("fd12::1", 80) == ["fd12::1"]
    with pytest.raises(EgressRefused):
        EgressPolicy.parse("10.2.0.0/16").resolve("10.1.0.1", 80)
    assert EgressPolicy().resolve("93.184.216.34", 443) == ["93.184.216.34"]  # public: fine


def test_bad_allow_list_entries_are_rejected() -> None:
    for bad in ("10.0.0.0/33", "exa mple.com", "http://x"):
        with pytest.raises(ValueError, match="STRONGROOM_EGRESS_ALLOW"):
            EgressPolicy.parse(bad)
    policy = EgressPolicy.parse("Internal.Example.COM., 10.0.0.1")
    assert policy.allowed_hosts == {"internal.example.com"}
    assert EgressPolicy.parse("") == EgressPolicy() == EgressPolicy.parse(None)


# -- openai --------------------------------------------------------------------------------

CHAT_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-4",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Sunny."}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}


def openai_context(upstream: Upstream, **config: Any) -> ToolContext:
    settings = OpenAISettings(openai_base_url=upstream.url("/v1"))
    return context(tool_settings=(settings,), **config)


def test_openai_chat_sends_the_key_and_body_and_parses_the_answer(upstream: Upstream) -> None:
    upstream.replies["/v1/chat/completions"] = Reply(body=CHAT_ANSWER)
    arguments = {
        "model": "gpt-4",
        "messages": [{"role": "user", "content": "What's the weather like?"}],
        "temperature": 0.2,
        "max_tokens": 50,
        "timeout": 5,
    }
    result = call("openai", "chat", arguments, "sk-test-key-123", ctx=openai_context(upstream))
    assert result == {"content": "Sunny.", "response": CHAT_ANSWER}
    [seen] = upstream.seen
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == "Bearer sk-test-key-123"
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body) == {
        "model": "gpt-4",
        "messages": [{"role": "user", "content": "What's the weather like?"}],
        "temperature": 0.2,
        "max_tokens": 50,
    }


def test_openai_base_url_argument_and_no_key(upstream: Upstream) -> None:
    upstream.replies["/other/chat/completions"] = Reply(body={"choices": []})
    result = call(
        "openai",
        "chat",
        {"model": "m", "messages": [{"role": "user"}], "base_url": upstream.url("/other/")},
    )
    assert result == {"content": None, "response": {"choices": []}}
    assert "authorization" not in upstream.seen[0].headers


@pytest.mark.parametrize(
    ("status", "error", "expect", "retryable"),
    [
        (
            401,
            {
                "message": "Incorrect API key provided: sk-tes***123.",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            },
            "answered HTTP 401, type invalid_request_error, code invalid_api_key",
            False,
        ),
        (
            429,
            {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"},
            "answered HTTP 429, type requests, code rate_limit_exceeded",
            True,
        ),
        (
            400,
            {"message": "Invalid value for 'temperature'.", "type": "invalid_request_error"},
            "answered HTTP 400, type invalid_request_error: Invalid value for 'temperature'.",
            False,
        ),
        (503, None, "answered HTTP 503", True),
    ],
)
def test_openai_upstream_errors_become_tool_errors(
    upstream: Upstream, status: int, error: dict[str, str] | None, expect: str, retryable: bool
) -> None:
    body: Any = {"error": error} if error else b"<html>unavailable</html>"
    upstream.replies["/v1/chat/completions"] = Reply(status, body, {"Retry-After": "7"})
    with pytest.raises(ToolError) as caught:
        call(
            "openai",
            "chat",
            {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            "sk-test-key-123",
            ctx=openai_context(upstream),
        )
    failure = caught.value
    assert expect in str(failure)
    assert (failure.code, failure.status, failure.retryable) == (
        "upstream_error",
        status,
        retryable,
    )
    assert failure.retry_after == 7.0
    assert "sk-tes" not in str(failure)
    assert "Bearer" not in str(failure)
    assert failure.to_dict() == {
        "code": "upstream_error",
        "message": str(failure),
        "status": status,
    }


def test_openai_answer_that_is_not_json_is_an_error(upstream: Upstream) -> None:
    upstream.replies["/v1/chat/completions"] = Reply(200, b"not json")
    with pytest.raises(ToolError, match="not a JSON object"):
        call(
            "openai",
            "chat",
            {"model": "m", "messages": [{"role": "user"}]},
            ctx=openai_context(upstream),
        )


def test_openai_timeout(upstream: Upstream) -> None:
    upstream.replies["/v1/chat/completions"] = Reply(body=CHAT_ANSWER, wait=threading.Event())
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        call(
            "openai",
            "chat",
            {"model": "m", "messages": [{"role": "user"}], "timeout": 0.2},
            "sk-test-key-123",
            ctx=openai_context(upstream),
        )
    assert time.monotonic() - started < 3
    assert (caught.value.code, caught.value.retryable) == ("timeout", True)
    assert f"http://127.0.0.1:{upstream.port} did not answer within 0.2 s" in str(caught.value)


def test_a_passed_deadline_stops_the_call_before_it_starts(upstream: Upstream) -> None:
    expired = ToolContext(ToolConfig(egress=LOCAL), deadline=time.monotonic() - 1)
    with pytest.raises(ToolError, match="ran out of time"):
        call("http", "request", {"url": upstream.url()}, ctx=expired)
    assert upstream.seen == []


# -- http ----------------------------------------------------------------------------------


def test_http_methods_params_json_body_and_headers(upstream: Upstream) -> None:
    url = upstream.url("/items?fixed=1")
    call(
        "http", "request", {"url": url, "params": {"q": "a b", "n": 2, "on": True, "t": ["x", "y"]}}
    )
    call("http", "request", {"method": "post", "url": url, "json": {"name": "n", "tags": [1]}})
    call(
        "http",
        "request",
        {"method": "PUT", "url": url, "body": "plain text", "headers": {"Content-Type": "text/x"}},
    )
    call("http", "request", {"method": "PATCH", "url": url, "json": None})
    call("http", "request", {"method": "DELETE", "url": url, "headers": {"X-Count": 3}})
    head = call("http", "request", {"method": "HEAD", "url": url})
    get, post, put, patch, delete, _ = upstream.seen
    assert get.method == "GET"
    assert get.path == "/items?fixed=1&q=a+b&n=2&on=true&t=x&t=y"
    assert (post.method, json.loads(post.body)) == ("POST", {"name": "n", "tags": [1]})
    assert post.headers["content-type"] == "application/json"
    assert (put.body, put.headers["content-type"]) == (b"plain text", "text/x")
    assert (patch.method, patch.body) == ("PATCH", b"null")
    assert (delete.method, delete.headers["x-count"]) == ("DELETE", "3")
    assert head["status"] == 200
    assert head["text"] == ""


def test_http_credential_is_a_bearer_token_unless_the_step_sets_authorization(
    upstream: Upstream,
) -> None:
    call("http", "request", {"url": upstream.url()}, "tok-1234")
    call(
        "http",
        "request",
        {"url": upstream.url(), "headers": {"authorization": "Basic eA=="}},
        "tok",
    )
    assert upstream.seen[0].headers["authorization"] == "Bearer tok-1234"
    assert upstream.seen[1].headers["authorization"] == "Basic eA=="


def test_http_result_shapes(upstream: Upstream) -> None:
    upstream.replies["/json"] = Reply(
        404, {"error": "missing"}, {"Set-Cookie": "session=abc", "X-Trace": "t1"}
    )
    upstream.replies["/text"] = Reply(
        200, "héllo".encode("latin-1"), {"Content-Type": "text/plain; charset=latin-1"}
    )
    upstream.replies["/bytes"] = Reply(200, b"\xff\xfe\x00\x01")
    got = call("http", "request", {"url": upstream.url("/json")})
    assert got["status"] == 404
    assert got["json"] == {"error": "missing"}
    assert got["headers"]["x-trace"] == "t1"
    assert "set-cookie" not in got["headers"]
    assert call("http", "request", {"url": upstream.url("/text")})["text"] == "héllo"
    assert call("http", "request", {"url": upstream.url("/bytes")})["base64"] == "//4AAQ=="


@pytest.mark.parametrize("declare_length", [True, False])
def test_http_body_cap(upstream: Upstream, declare_length: bool) -> None:
    upstream.replies["/big"] = Reply(200, b"x" * 5000, declare_length=declare_length)
    upstream.replies["/small"] = Reply(200, b"x" * 1000, declare_length=declare_length)
    small = context(max_response_bytes=1000)
    assert call("http", "request", {"url": upstream.url("/small")}, ctx=small)["text"] == "x" * 1000
    with pytest.raises(ToolError, match="larger than 1000 bytes") as caught:
        call("http", "request", {"url": upstream.url("/big")}, ctx=small)
    assert caught.value.code == "response_too_large"


def test_redirects_are_not_followed_unless_asked(upstream: Upstream) -> None:
    upstream.replies["/from"] = Reply(302, b"", {"Location": "/to"})
    got = call("http", "request", {"url": upstream.url("/from")})
    assert (got["status"], got["headers"]["location"]) == (302, "/to")
    got = call(
        "http",
        "request",
        {"url": upstream.url("/from"), "follow_redirects": True, "headers": {"X-Key": "k-1"}},
        "tok-1234",
    )
    assert got["status"] == 200
    assert [s.path for s in upstream.seen] == ["/from", "/from", "/to"]
    # same site: the step's headers and the credential go along
    assert upstream.seen[2].headers["x-key"] == "k-1"
    assert upstream.seen[2].headers["authorization"] == "Bearer tok-1234"


def test_a_redirect_to_another_site_drops_the_steps_headers_and_credential(
    upstream: Upstream,
) -> None:
    upstream.replies["/from"] = Reply(307, b"", {"Location": upstream.url("/to", host="localhost")})
    call(
        "http",
        "request",
        {"url": upstream.url("/from"), "follow_redirects": True, "headers": {"X-Key": "k-1"}},
        "tok-1234",
    )
    first, second = upstream.seen
    assert first.headers["x-key"] == "k-1"
    assert second.path == "/to"
    assert "x-key" not in second.headers
    assert "authorization" not in second.headers


@pytest.mark.parametrize(
    "target",
    ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fd00:ec2::254]/"],
)
def test_a_redirect_to_a_refused_host_is_refused(upstream: Upstream, target: str) -> None:
    upstream.replies["/from"] = Reply(302, b"", {"Location": target})
    only_ip = context(EgressPolicy.parse("127.0.0.1"))
    with pytest.raises(EgressRefused):
        call(
            "http",
            "request",
            {"url": upstream.url("/from"), "follow_redirects": True},
            ctx=only_ip,
        )
    assert [s.path for s in upstream.seen] == ["/from"]


def test_http_errors_name_only_the_origin() -> None:
    port = free_port()  # nothing listens there any more
    url = f"http://127.0.0.1:{port}/bot-secret-path/send?api_key=query-secret"
    with pytest.raises(ToolError) as caught:
        call("http", "request", {"url": url}, "tok-1234")
    message = str(caught.value)
    assert message == f"http request: could not connect to http://127.0.0.1:{port}"
    assert (caught.value.code, caught.value.retryable) == ("connect_failed", True)


# -- database: PostgreSQL ------------------------------------------------------------------


@dataclass(frozen=True)
class Pg:
    url: str
    host: str
    port: int
    user: str
    database: str

    def fields(self, **changes: Any) -> dict[str, Any]:
        fields = {"host": self.host, "port": self.port, "user": self.user}
        return {**fields, "database": self.database, **changes}


@pytest.fixture(scope="module")
def pg(postgres_database: str) -> Iterator[Pg]:
    """The session database, with a small table of this module's own (dropped after)."""
    parts = urlsplit(postgres_database)
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE tool_people (id int PRIMARY KEY, name text, born date,"
            " balance numeric, photo bytea, tags jsonb, seen timestamptz)"
        )
        conn.execute(
            "INSERT INTO tool_people SELECT n, 'person ' || n, date '2000-01-01' + n,"
            " n * 1.25, '\\x00ff'::bytea, jsonb_build_object('n', n),"
            " timestamptz '2024-05-01 12:00:00+00' FROM generate_series(1, 5) AS n"
        )
        conn.execute("CREATE SEQUENCE tool_seq")
    try:
        yield Pg(
            postgres_database,
            parts.hostname or "127.0.0.1",
            parts.port or 5432,
            parts.username or "postgres",
            parts.path.lstrip("/"),
        )
    finally:
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS tool_people")
            conn.execute("DROP SEQUENCE IF EXISTS tool_seq")


FIRST_ROW = [1, "person 1", "2000-01-02", "1.25", "AP8=", {"n": 1}, "2024-05-01T12:00:00+00:00"]


def test_postgres_query_with_connection_fields(pg: Pg) -> None:
    got = call(
        "database",
        "query",
        {"query": "SELECT * FROM tool_people ORDER BY id", "connection": pg.fields()},
    )
    assert got["columns"] == ["id", "name", "born", "balance", "photo", "tags", "seen"]
    assert got["rows"][0] == FIRST_ROW
    assert (got["row_count"], got["truncated"]) == (5, False)
    json.dumps(got)  # every value is JSON


def test_postgres_query_with_a_url_and_with_the_credential_as_url(pg: Pg) -> None:
    query = {"query": "SELECT id FROM tool_people WHERE id = 1"}
    assert call("database", "query", {**query, "connection": {"url": pg.url}})["rows"] == [[1]]
    assert call("database", "query", query, pg.url)["rows"] == [[1]]


def test_postgres_without_a_query_checks_the_connection_the_credential_names(pg: Pg) -> None:
    # the guide's step: only a secret_name, whose value is the database's URL
    got = call("database", "query", {}, pg.url)
    assert (got["columns"], got["rows"], got["row_count"]) == (["?column?"], [[1]], 1)
    with pytest.raises(InvalidArguments, match="connection"):
        call("database", "query", {}, "complex-password-123")  # a password, and no host


def test_postgres_credential_is_the_password_when_the_connection_has_none(pg: Pg) -> None:
    # trust auth accepts any password: what is sent is checked with the fake server below
    got = call(
        "database", "query", {"query": "SELECT 1 AS one", "connection": pg.fields()}, "pw-1234"
    )
    assert got["rows"] == [[1]]


def test_postgres_params_are_bound_not_formatted(pg: Pg) -> None:
    sneaky = "1 OR 1=1"
    by_position = call(
        "database",
        "query",
        {
            "query": "SELECT name FROM tool_people WHERE id = %s OR name = %s",
            "params": [2, sneaky],
            "connection": pg.fields(),
        },
    )
    assert by_position["rows"] == [["person 2"]]
    by_name = call(
        "database",
        "query",
        {
            "query": "SELECT %(doc)s::jsonb ->> 'k' AS k, 'a%%' AS pct",
            "params": {"doc": {"k": "v"}},
            "connection": pg.fields(),
        },
    )
    assert by_name["rows"] == [["v", "a%"]]
    no_params = call(
        "database", "query", {"query": "SELECT 'a%' AS pct", "connection": pg.fields()}
    )
    assert no_params["rows"] == [["a%"]]


def test_postgres_max_rows_truncates(pg: Pg) -> None:
    got = call(
        "database",
        "query",
        {
            "query": "SELECT generate_series(1, 100000) AS n",
            "max_rows": 3,
            "connection": pg.fields(),
        },
    )
    assert got == {"columns": ["n"], "rows": [[1], [2], [3]], "row_count": 3, "truncated": True}
    empty = call(
        "database", "query", {"query": "SELECT 1 AS a WHERE false", "connection": pg.fields()}
    )
    assert empty == {"columns": ["a"], "rows": [], "row_count": 0, "truncated": False}


def test_postgres_statement_timeout_fails_fast(pg: Pg) -> None:
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        call(
            "database",
            "query",
            {"query": "SELECT pg_sleep(5)", "timeout": 0.2, "connection": pg.fields()},
        )
    assert time.monotonic() - started < 3
    assert str(caught.value) == "database: the query did not finish within 0.2 s"
    assert caught.value.code == "timeout"


def test_postgres_is_read_only_unless_told(pg: Pg) -> None:
    insert = "INSERT INTO tool_people (id, name) VALUES (%s, 'new')"
    with pytest.raises(ToolError, match=r"must return rows .* set read_only: false"):
        call("database", "query", {"query": insert, "params": [10], "connection": pg.fields()})
    with pytest.raises(ToolError, match=r"read-only transaction .*set read_only: false"):
        call(
            "database", "query", {"query": "SELECT nextval('tool_seq')", "connection": pg.fields()}
        )
    written = call(
        "database",
        "query",
        {"query": insert, "params": [10], "read_only": False, "connection": pg.fields()},
    )
    assert written == {"columns": [], "rows": [], "row_count": 1, "truncated": False}
    returned = call(
        "database",
        "query",
        {
            "query": "DELETE FROM tool_people WHERE id >= %s RETURNING id",
            "params": [10],
            "read_only": False,
            "connection": pg.fields(),
        },
    )
    assert returned["rows"] == [[10]]
    count = call(
        "database",
        "query",
        {"query": "SELECT count(*) FROM tool_people", "connection": pg.fields()},
    )
    assert count["rows"] == [[5]]


def test_postgres_refuses_several_statements(pg: Pg) -> None:
    for read_only in (True, False):
        with pytest.raises(ToolError, match="multiple commands"):
            call(
                "database",
                "query",
                {
                    "query": "SELECT 1; COMMIT; DROP TABLE tool_people",
                    "read_only": read_only,
                    "connection": pg.fields(),
                },
            )


def test_postgres_errors_carry_the_database_message(pg: Pg) -> None:
    with pytest.raises(
        ToolError, match=r'relation "no_such_table" does not exist \(SQLSTATE 42P01\)'
    ):
        call(
            "database", "query", {"query": "SELECT * FROM no_such_table", "connection": pg.fields()}
        )
    with pytest.raises(ToolError, match="invalid input syntax for type integer") as caught:
        call(
            "database",
            "query",
            {"query": "SELECT %s::int", "params": ["param-secret"], "connection": pg.fields()},
        )
    assert "param-secret" not in str(caught.value)
    with pytest.raises(ToolError, match="syntax error"):
        call("database", "query", {"query": "SELECT FROM WHERE", "connection": pg.fields()})


@pytest.mark.parametrize("where", ["fields", "url", "credential"])
def test_connection_errors_never_show_the_password(pg: Pg, where: str) -> None:
    password = "hunter2-very-secret"
    arguments: dict[str, Any] = {"query": "SELECT 1"}
    credential = None
    if where == "fields":
        arguments["connection"] = pg.fields(database="no_such_db", password=password)
    elif where == "url":
        url = f"postgresql://{pg.user}:{password}@{pg.host}:{pg.port}/no_such_db"
        arguments["connection"] = {"url": url}
    else:
        arguments["connection"] = pg.fields(database="no_such_db")
        credential = password
    with pytest.raises(ToolError) as caught:
        call("database", "query", arguments, credential)
    message = str(caught.value)
    assert 'database "no_such_db" does not exist' in message
    assert password not in message
    assert caught.value.code == "connect_failed"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_postgres_destinations_go_through_the_egress_guard(pg: Pg) -> None:
    with pytest.raises(EgressRefused, match="loopback"):
        call(
            "database",
            "query",
            {"query": "SELECT 1", "connection": pg.fields()},
            ctx=context(EgressPolicy()),
        )
    with pytest.raises(EgressRefused, match="only network hosts"):
        call(
            "database",
            "query",
            {"query": "SELECT 1", "connection": pg.fields(host="/var/run/postgresql")},
        )
    with pytest.raises(InvalidArguments, match="query parameter host is not supported"):
        call(
            "database",
            "query",
            {"query": "SELECT 1", "connection": {"url": f"{pg.url}?host=/var/run/postgresql"}},
        )


def test_a_credential_url_and_a_connection_destination_conflict(pg: Pg) -> None:
    with pytest.raises(InvalidArguments, match="the secret_name value is a database URL"):
        call("database", "query", {"query": "SELECT 1", "connection": pg.fields()}, pg.url)
    with pytest.raises(InvalidArguments, match=r"arguments.connection: is required"):
        call("database", "query", {"query": "SELECT 1"}, "just-a-password")


# -- database: what libpq sends ------------------------------------------------------------


class FakePostgres:
    """Accepts one connection, asks for a cleartext password and keeps what arrives."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        fake = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock = self.request
                sock.settimeout(5)
                try:
                    while True:
                        length, code = struct.unpack("!ii", self._exactly(8))
                        if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                            sock.sendall(b"N")
                            continue
                        fake.received.append(self._exactly(length - 8))  # startup
                        break
                    sock.sendall(b"R" + struct.pack("!ii", 8, 3))  # cleartext password, please
                    kind = self._exactly(1)
                    (size,) = struct.unpack("!i", self._exactly(4))
                    fake.received.append(kind + self._exactly(size - 4))
                    error = b"SFATAL\x00C28P01\x00Mfake server says no\x00\x00"
                    sock.sendall(b"E" + struct.pack("!i", len(error) + 4) + error)
                except (OSError, ConnectionError, struct.error):
                    pass

            def _exactly(self, count: int) -> bytes:
                data = b""
                while len(data) < count:
                    chunk = self.request.recv(count - len(data))
                    if not chunk:
                        raise ConnectionError("closed")
                    data += chunk
                return data

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_postgres() -> Iterator[FakePostgres]:
    fake = FakePostgres()
    try:
        yield fake
    finally:
        fake.close()


def test_the_credential_is_what_libpq_sends_as_password(fake_postgres: FakePostgres) -> None:
    connection = {"host": "127.0.0.1", "port": fake_postgres.port, "user": "app"}
    with pytest.raises(ToolError, match="fake server says no") as caught:
        call("database", "query", {"query": "SELECT 1", "connection": connection}, "cred-pass-1234")
    assert fake_postgres.received[-1] == b"pcred-pass-1234\x00"
    assert "cred-pass-1234" not in str(caught.value)


def test_the_servers_own_pgpassword_is_never_sent(
    fake_postgres: FakePostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", "server-own-password")
    connection = {"host": "127.0.0.1", "port": str(fake_postgres.port), "user": "app"}
    with pytest.raises(ToolError):
        call("database", "query", {"query": "SELECT 1", "connection": connection})
    assert not any(b"server-own-password" in part for part in fake_postgres.received)


# -- database: SQLite ----------------------------------------------------------------------


TENANT = "acme"


@pytest.fixture
def sqlite_dir(tmp_path: Path) -> Path:
    """The tool SQLite directory; tenant ``acme``'s ``people.db`` is in ``acme/``."""
    import sqlite3

    folder = tmp_path / "tool-sqlite"
    (folder / TENANT).mkdir(parents=True)
    with sqlite3.connect(folder / TENANT / "people.db") as conn:
        conn.execute(
            "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, photo BLOB, score REAL)"
        )
        conn.executemany(
            "INSERT INTO people VALUES (?, ?, ?, ?)",
            [(n, f"person {n}", b"\x00\xff", n / 2) for n in range(1, 6)],
        )
    conn.close()
    return folder


def sqlite_context(sqlite_dir: Path, tenant: str | None = TENANT, **config: Any) -> ToolContext:
    settings = DatabaseSettings(tool_sqlite_dir=sqlite_dir)
    return ToolContext(ToolConfig(tool_settings=(settings,), **config), tenant=tenant)


def lite(sqlite_dir: Path, **arguments: Any) -> Any:
    arguments.setdefault("connection", {"url": "sqlite:///people.db"})
    return call("database", "query", arguments, ctx=sqlite_context(sqlite_dir))


def test_sqlite_query_shapes(sqlite_dir: Path) -> None:
    got = lite(sqlite_dir, query="SELECT * FROM people ORDER BY id", max_rows=2)
    assert got == {
        "columns": ["id", "name", "photo", "score"],
        "rows": [[1, "person 1", "AP8=", 0.5], [2, "person 2", "AP8=", 1.0]],
        "row_count": 2,
        "truncated": True,
    }
    by_position = lite(sqlite_dir, query="SELECT name FROM people WHERE id = ?", params=[3])
    assert by_position["rows"] == [["person 3"]]
    by_name = lite(
        sqlite_dir,
        query="SELECT json_extract(:doc, '$.k') AS k",
        params={"doc": {"k": "v"}},
        connection={"url": "sqlite:///./people.db"},
    )
    assert by_name["rows"] == [["v"]]


def test_sqlite_url_as_credential(sqlite_dir: Path) -> None:
    got = call(
        "database",
        "query",
        {"query": "SELECT count(*) AS n FROM people"},
        "sqlite:///people.db",
        ctx=sqlite_context(sqlite_dir),
    )
    assert got["rows"] == [[5]]


def test_sqlite_timeout_interrupts_an_expensive_query(sqlite_dir: Path) -> None:
    endless = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 1000000000)"
        " SELECT sum(x) FROM c"
    )
    started = time.monotonic()
    with pytest.raises(ToolError) as caught:
        lite(sqlite_dir, query=endless, timeout=0.2)
    assert time.monotonic() - started < 3
    assert (str(caught.value), caught.value.code) == (
        "database: the query did not finish within 0.2 s",
        "timeout",
    )


def test_sqlite_is_read_only_unless_told(sqlite_dir: Path) -> None:
    insert = "INSERT INTO people (id, name) VALUES (?, 'new')"
    with pytest.raises(ToolError, match=r"readonly database .*set read_only: false"):
        lite(sqlite_dir, query=insert, params=[9])
    assert lite(sqlite_dir, query=insert, params=[9], read_only=False)["row_count"] == 1
    returned = lite(
        sqlite_dir, query="DELETE FROM people WHERE id = 9 RETURNING id", read_only=False
    )
    assert returned["rows"] == [[9]]
    assert lite(sqlite_dir, query="SELECT count(*) FROM people")["rows"] == [[5]]


def test_sqlite_files_stay_inside_the_configured_directory(
    sqlite_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.db"
    outside.touch()
    for url in ("sqlite:///../../outside.db", "sqlite:///../outside.db"):
        with pytest.raises(ToolError, match="inside the tenant's directory") as caught:
            lite(sqlite_dir, query="SELECT 1", connection={"url": url})
        assert caught.value.code == "not_allowed"
    with pytest.raises(ToolError, match="must be relative to the tenant's directory"):
        lite(sqlite_dir, query="SELECT 1", connection={"url": f"sqlite:///{outside}"})
    with pytest.raises(ToolError, match="SQLite is turned off"):
        call(
            "database", "query", {"query": "SELECT 1", "connection": {"url": "sqlite:///people.db"}}
        )
    with pytest.raises(ToolError, match="it must exist"):
        lite(sqlite_dir, query="SELECT 1", connection={"url": "sqlite:///typo.db"}, read_only=False)
    assert not (sqlite_dir / TENANT / "typo.db").exists()


def test_sqlite_refuses_attach_vacuum_into_and_pragma_writes(sqlite_dir: Path) -> None:
    home = sqlite_dir / TENANT
    for statement in (
        f"ATTACH DATABASE '{home / 'other.db'}' AS other",
        f"VACUUM INTO '{home / 'copy.db'}'",
        "PRAGMA query_only = OFF",
    ):
        with pytest.raises(ToolError, match=r"(not authorized|authorization denied) \(ATTACH"):
            lite(sqlite_dir, query=statement)
    assert sorted(p.name for p in home.iterdir()) == ["people.db"]
    info = lite(sqlite_dir, query="PRAGMA table_info(people)")
    assert [row[1] for row in info["rows"]] == ["id", "name", "photo", "score"]


def test_sqlite_errors(sqlite_dir: Path) -> None:
    with pytest.raises(ToolError, match="database: no such table: nope"):
        lite(sqlite_dir, query="SELECT * FROM nope")
    with pytest.raises(ToolError, match="one statement"):
        lite(sqlite_dir, query="SELECT 1; SELECT 2")


# -- the registry as the engine sees it ----------------------------------------------------


def test_registry_names_and_unknown_calls() -> None:
    assert REGISTRY.names == ("database", "http", "openai")
    with pytest.raises(ToolError, match="no such tool"):
        REGISTRY.call("shell", "run", {}, None, ToolContext())
    with pytest.raises(ToolError, match="no operation"):
        REGISTRY.call("http", "get", {}, None, ToolContext())


def test_every_tool_settings_class_is_a_server_setting() -> None:
    """A tool's settings reach the server only through ``AllToolSettings``' bases: one left
    out would silently run with its defaults."""
    assert REGISTRY.settings == (OpenAISettings, DatabaseSettings)
    for kind in REGISTRY.settings:
        assert issubclass(AllToolSettings, kind)


def test_a_tool_without_configured_settings_gets_its_defaults() -> None:
    config = ToolConfig(tool_settings=(DatabaseSettings(tool_sqlite_dir=Path("x")),))
    assert config.settings(OpenAISettings).openai_base_url == "https://api.openai.com/v1"
    assert config.settings(DatabaseSettings).tool_sqlite_dir == Path("x")
    assert ToolConfig().settings(DatabaseSettings).tool_sqlite_dir is None


# -- the database tool's answer is bounded as it is fetched -------------------------------------
@pytest.mark.parametrize("rows", [1, 500])
def test_sqlite_rows_over_the_result_limit_are_refused_not_held(
    sqlite_dir: Path, rows: int
) -> None:
    """One huge value is refused by SQLite itself (it may not build it); many small rows
    are refused as soon as they add up to more than the limit."""
    query = (
        "SELECT randomblob(10000000), randomblob(10000000)"
        if rows == 1
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)"
        " SELECT printf('%.200c', 'x') FROM n"
    )
    ctx = sqlite_context(sqlite_dir, max_response_bytes=50_000)
    with pytest.raises(ToolError) as refused:
        call(
            "database",
            "query",
            {"query": query, "connection": {"url": "sqlite:///people.db"}},
            ctx=ctx,
        )
    assert refused.value.code == "response_too_large"
    assert "STRONGROOM_TASK_MAX_RESULT_BYTES" in refused.value.message


def test_postgres_rows_over_the_result_limit_are_refused(pg: Pg) -> None:
    ctx = ToolContext(ToolConfig(egress=EgressPolicy.parse("127.0.0.1"), max_response_bytes=50_000))
    for read_only in (True, False):
        with pytest.raises(ToolError) as refused:
            call(
                "database",
                "query",
                {
                    "query": "SELECT repeat('x', 1000) FROM generate_series(1, 1000)",
                    "connection": pg.fields(),
                    "read_only": read_only,
                },
                ctx=ctx,
            )
        assert refused.value.code == "response_too_large"
    small = call(
        "database",
        "query",
        {"query": "SELECT repeat('x', 10) FROM generate_series(1, 3)", "connection": pg.fields()},
        ctx=ctx,
    )
    assert small["rows"] == [["x" * 10]] * 3
