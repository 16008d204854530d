"""Malformed and hostile HTTP, sent to a real ``strongroom serve`` process over raw sockets
(httpx refuses to send most of it): every request gets a clear 4xx in the error envelope
and the server stays up. Where uvicorn's own parser refuses a request before the app can
see it, its plain-text 400 (or a closed connection) is the answer, and the tests say so.
The last part runs in process: error answers never quote the secret ``value`` sent.

On SQLite and PostgreSQL: PostgreSQL is the stricter store (it cannot hold NUL in text,
its versions are 32-bit), so requests that once reached it and failed are here.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.services import open_services
from strongroom.server.settings import Settings

from .conftest import BACKENDS, MASTER_KEY, MakeClient, truncate_postgres
from .support import ERROR_FIELDS, ServerProcess, canary, find_leaks, start_server

pytestmark = pytest.mark.e2e

LIMIT = 1024 * 1024  # the default body limit, which the server below keeps
UUID = "01234567-89ab-7def-8123-456789abcdef"  # well-formed, and no task or execution has it
LIST_ROUTES = ["/v1/secrets", "/v1/audit", "/v1/tasks", "/v1/executions", "/julep/secrets"]


# -- a server and a raw HTTP/1.1 client -------------------------------------------------------
@dataclass
class Hostile:
    server: ServerProcess
    key: str
    port: int
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.server.base_url,
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )


@pytest.fixture(scope="module", params=BACKENDS)
def hostile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hostile]:
    """One server per backend for the module, with a key of every scope and one secret
    (``present``). Rate limits are off: these tests send many requests, none of them about
    budgets (tests/test_rate_limits.py is)."""
    workdir: Path = tmp_path_factory.mktemp("hostile")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'strongroom.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        truncate_postgres(url)
    services = open_services(Settings(database_url=url, master_key=SecretStr(MASTER_KEY)))
    try:
        key, _ = create_api_key(services.store, services.barrier, "default")
    finally:
        services.store.close()
    env = {
        "STRONGROOM_DATABASE_URL": url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_RATE_LIMIT_PER_KEY": "off",
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "off",
        "STRONGROOM_RATE_LIMIT_AUTH_FAILURES": "off",
    }
    server = start_server(workdir, env)
    found = Hostile(server, key, int(server.base_url.rsplit(":", 1)[1]))
    try:
        created = found.client.post("/v1/secrets", json={"name": "present", "value": "v1"})
        assert created.status_code == 201, created.text
        yield found
    finally:
        found.client.close()
        server.stop()


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    head: bytes  # the status line and headers as sent

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        assert len(values) <= 1, (name, values)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def exchange(hostile: Hostile, data: bytes, *, then: list[bytes] | None = None) -> Answer | None:
    """Send ``data`` (and ``then``, piece by piece) on a new connection and read until the
    server closes it; None when it closed without answering. The requests say
    ``Connection: close``, so reading to the end is bounded by the answer, and the socket
    timeout bounds a server that would neither answer nor close."""
    with socket.create_connection(("127.0.0.1", hostile.port), timeout=10) as sock:
        try:
            sock.sendall(data)
            for piece in then or []:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (and closed) before it had everything: read that
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with unread input on its side; what came before it stands
    if not received:
        return None
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines:
        name, _, value = line.partition(":")
        headers.append((name.strip().lower(), value.strip()))
    answer = Answer(int(status_line.split()[1]), headers, body, head)
    length = answer.header("content-length")
    if length is not None:
        answer.body = body[: int(length)]
    return answer


def request(
    method: str,
    target: bytes,
    *,
    headers: bytes = b"",
    body: bytes | None = None,
    auth: str | None = None,
) -> bytes:
    """A raw HTTP/1.1 request; ``body`` gets its Content-Length unless ``headers`` frame it."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    if auth is not None:
        lines.append(b"Authorization: Bearer " + auth.encode())
    if body is not None and b"content-length" not in headers.lower():
        if b"transfer-encoding" not in headers.lower():
            lines.append(b"Content-Length: " + str(len(body)).encode())
        lines.append(b"Content-Type: application/json")
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n" + headers + b"\r\n" + (body or b"")


def assert_envelope(
    answer: Answer | None, status: int, code: str, location: str | None = None
) -> dict[str, Any]:
    """The contract's error envelope, with its request id in the X-Request-Id header."""
    assert answer is not None, "the server closed the connection without answering"
    assert answer.status == status, (answer.status, answer.body[:500])
    assert (answer.header("content-type") or "").startswith("application/json")
    body = answer.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert error["code"] == code, error
    assert error["message"], error
    assert error["request_id"] == answer.header("x-request-id")
    if location is not None:
        assert location in [detail["location"] for detail in error["details"]], error
    return error


def assert_refused_by_uvicorn(answer: Answer | None) -> None:
    """uvicorn's HTTP parser refused the request: the app never saw it, so the answer is
    uvicorn's plain 400 (no envelope, no request id), or a closed connection."""
    if answer is None:
        return
    assert answer.status == 400, (answer.status, answer.body[:500])
    assert answer.body == b"Invalid HTTP request received."
    assert answer.header("x-request-id") is None


def assert_alive(hostile: Hostile) -> None:
    """The server still answers, and ``present`` is still what it was."""
    assert hostile.client.get("/healthz").status_code == 200
    present = hostile.client.get("/v1/secrets/present")
    assert present.status_code == 200, present.text
    assert present.json()["value"] == "v1"


def names(hostile: Hostile) -> set[str]:
    response = hostile.client.get("/v1/secrets", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return {item["name"] for item in response.json()["items"]}


def post(hostile: Hostile, path: str, body: bytes) -> Answer | None:
    return exchange(hostile, request("POST", path.encode(), body=body, auth=hostile.key))


# -- oversized bodies -------------------------------------------------------------------------
def test_declared_oversized_body_is_413_before_it_is_sent(hostile: Hostile) -> None:
    """A Content-Length over the limit is refused on the headers alone: the server does not
    wait for (or read) ten megabytes first."""
    head = request(
        "POST",
        b"/v1/secrets",
        headers=b"Content-Type: application/json\r\nContent-Length: 10000000\r\n",
        auth=hostile.key,
    )
    error = assert_envelope(exchange(hostile, head), 413, "payload_too_large")
    assert str(LIMIT) in error["message"]
    assert_alive(hostile)


@pytest.mark.parametrize("path", ["/v1/secrets", "/v1/tasks", "/julep/secrets"])
def test_streamed_oversized_body_is_413(hostile: Hostile, path: str) -> None:
    """Chunked, so no size is declared: the body is counted as it arrives."""
    body = b'{"name": "streamed", "value": "' + b"x" * (LIMIT + 4096) + b'"}'
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    framed = [b"%x\r\n" % len(chunk) + chunk + b"\r\n" for chunk in chunks] + [b"0\r\n\r\n"]
    head = request(
        "POST",
        path.encode(),
        headers=b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n",
        auth=hostile.key,
    )
    assert_envelope(exchange(hostile, head, then=framed), 413, "payload_too_large")
    assert "streamed" not in names(hostile)
    assert_alive(hostile)


# -- JSON the parser cannot or should not take ------------------------------------------------
NESTED = [
    pytest.param("/v1/secrets", b"[" * 100_000, id="100k-open-brackets"),
    pytest.param("/v1/secrets", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, id="50k-objects"),
    pytest.param(
        "/v1/secrets",
        b'{"name": "deep", "value": "v", "metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}",
        id="metadata-5000-deep",
    ),
    pytest.param(
        "/v1/tasks",
        b'{"steps": [{"kind": "transform", "expression": ' + b"[" * 5000 + b"]" * 5000 + b"}]}",
        id="task-5000-deep",
    ),
    pytest.param(
        f"/v1/tasks/{UUID}/executions",
        b'{"input": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        id="execution-input-5000-deep",
    ),
]


@pytest.mark.parametrize(("path", "body"), NESTED)
def test_deeply_nested_json_is_refused(hostile: Hostile, path: str, body: bytes) -> None:
    assert len(body) < LIMIT  # the depth is refused, not the size
    error = assert_envelope(post(hostile, path, body), 422, "validation_error", "body")
    assert "nested too deeply" in error["message"]
    assert "deep" not in names(hostile)
    assert_alive(hostile)


def test_nesting_the_parser_takes_is_refused_or_kept_never_a_500(hostile: Hostile) -> None:
    """Nesting shallow enough to parse: the validators' own depth limit answers 422, or the
    value is stored and reads back whole."""
    for depth in (50, 300, 900):
        nested = b"[" * depth + b"]" * depth
        name = f"nested_{depth}".encode()
        body = b'{"name": "' + name + b'", "value": "v", "metadata": {"a": ' + nested + b"}}"
        answer = post(hostile, "/v1/secrets", body)
        assert answer is not None
        if answer.status == 201:
            read = hostile.client.get(f"/v1/secrets/{name.decode()}").json()
            assert json.dumps(read["metadata"]["a"], separators=(",", ":")).encode() == nested
        else:
            assert_envelope(answer, 422, "validation_error")
    assert_alive(hostile)


HUGE_NUMBERS = [
    pytest.param(
        "/v1/secrets", b'{"name": "n", "value": "v", "metadata": {"a": 1e400}}', id="1e400"
    ),
    pytest.param(
        "/v1/secrets", b'{"name": "n", "value": "v", "metadata": {"a": -1e999}}', id="-1e999"
    ),
    pytest.param("/v1/secrets", b'{"name": "n", "value": "v", "metadata": {"a": NaN}}', id="NaN"),
    pytest.param(
        "/v1/secrets", b'{"name": "n", "value": "v", "metadata": {"a": Infinity}}', id="Infinity"
    ),
    pytest.param(
        "/v1/secrets",
        b'{"name": "n", "value": "v", "metadata": {"a": ' + b"9" * 5000 + b"}}",
        id="5000-digit-int",
    ),
    pytest.param(
        "/v1/secrets/present",
        b'{"value": "v2", "expected_version": ' + b"9" * 5000 + b"}",
        id="5000-digit-version",
    ),
    pytest.param(
        "/v1/tasks", b'{"steps": [{"kind": "transform", "expression": 1e400}]}', id="task"
    ),
    pytest.param(f"/v1/tasks/{UUID}/executions", b'{"input": [1, -1e400]}', id="input"),
]


@pytest.mark.parametrize(("path", "body"), HUGE_NUMBERS)
def test_numbers_out_of_range_are_refused_not_turned_into_null(
    hostile: Hostile, path: str, body: bytes
) -> None:
    """Python reads 1e400 as infinity and NaN as NaN, which would be stored and come back as
    null (a silent change), and refuses integers of more than 4300 digits outright."""
    method = "PATCH" if path == "/v1/secrets/present" else "POST"
    answer = exchange(hostile, request(method, path.encode(), body=body, auth=hostile.key))
    assert_envelope(answer, 422, "validation_error")
    assert "n" not in names(hostile)
    assert_alive(hostile)


def test_large_integers_within_range_are_kept_exactly(hostile: Hostile) -> None:
    big = 2**200 + 1
    body = json.dumps({"name": "bigint", "value": "v", "metadata": {"n": big}}).encode()
    answer = post(hostile, "/v1/secrets", body)
    assert answer is not None
    assert answer.status == 201, answer.body
    assert hostile.client.get("/v1/secrets/bigint").json()["metadata"] == {"n": big}


# -- bytes that are not text ------------------------------------------------------------------
def test_invalid_utf8_in_the_body_is_refused(hostile: Hostile) -> None:
    body = b'{"name": "latin", "value": "caf\xe9 \xff\xfe"}'
    assert_envelope(post(hostile, "/v1/secrets", body), 422, "validation_error", "body")
    assert "latin" not in names(hostile)


@pytest.mark.parametrize(
    ("body", "location"),
    [
        (b'{"name": "s", "value": "\\ud800"}', "body.value"),
        (b'{"name": "s", "value": "v", "description": "\\udfff"}', "body.description"),
        (b'{"name": "s", "value": "v", "metadata": {"\\ud800": 1}}', "body.metadata"),
    ],
)
def test_unpaired_surrogate_escapes_are_refused(
    hostile: Hostile, body: bytes, location: str
) -> None:
    """Valid JSON, but ``\\ud800`` alone is no character: it could not be stored as UTF-8."""
    assert_envelope(post(hostile, "/v1/secrets", body), 422, "validation_error", location)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/tasks", b'{"name": "\\ud800", "steps": [{"kind": "transform", "expression": 1}]}'),
        ("/v1/tasks", b'{"steps": [{"kind": "transform", "expression": "\\udc00"}]}'),
        (f"/v1/tasks/{UUID}/executions", b'{"input": {"\\ud800": "x"}}'),
    ],
)
def test_unpaired_surrogate_escapes_in_tasks_are_refused(
    hostile: Hostile, path: str, body: bytes
) -> None:
    """These once reached the database and failed there (a 500)."""
    assert_envelope(post(hostile, path, body), 422, "validation_error")
    assert hostile.client.get("/v1/tasks").json()["items"] == []


@pytest.mark.parametrize(
    ("target", "location"),
    [
        (b"/v1/secrets/%FF%FE", "path.name"),
        (b"/v1/secrets/caf%C3%A9", "path.name"),
        (b"/v1/audit?secret=%FF", "query.secret"),
        (b"/v1/secrets?metadata=%7B%22a%22%3A%22%5Cud800%22%7D", "query.metadata"),
    ],
)
def test_percent_encoded_non_text_in_path_and_query_is_a_validation_error(
    hostile: Hostile, target: bytes, location: str
) -> None:
    answer = exchange(hostile, request("GET", target, auth=hostile.key))
    assert_envelope(answer, 422, "validation_error", location)


@pytest.mark.parametrize(
    "target",
    [
        b"/v1/secrets/\xff",  # raw, not percent-encoded: not a valid request target
        b"/v1/audit?secret=\xff\xfe",
        b"/v1/secrets/a\x00b",
        b"/v1/secrets?limit=1\x00",
    ],
)
def test_raw_non_ascii_and_nul_in_the_request_line_are_refused_by_uvicorn(
    hostile: Hostile, target: bytes
) -> None:
    assert_refused_by_uvicorn(exchange(hostile, request("GET", target, auth=hostile.key)))
    assert_alive(hostile)


# -- NUL characters ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "location"),
    [
        (b"/v1/secrets/a%00b", "path.name"),
        (b"/v1/audit?secret=a%00", "query.secret"),
        (b"/v1/tasks/%00", "path.task_id"),
        (b"/v1/executions/%00", "path.execution_id"),
        (b"/v1/executions/%00/steps", "path.execution_id"),
        (b"/v1/executions?task_id=x%00", "query.task_id"),
    ],
)
def test_nul_in_path_and_query_is_a_validation_error(
    hostile: Hostile, target: bytes, location: str
) -> None:
    """PostgreSQL cannot compare text holding NUL (these were 500s there)."""
    answer = exchange(hostile, request("GET", target, auth=hostile.key))
    assert_envelope(answer, 422, "validation_error", location)


@pytest.mark.parametrize(
    ("path", "body", "location"),
    [
        (
            "/v1/secrets",
            b'{"name": "s", "value": "v", "description": "a\\u0000b"}',
            "body.description",
        ),
        (
            "/julep/secrets",
            b'{"name": "s", "value": "v", "description": "\\u0000"}',
            "body.description",
        ),
        (
            "/v1/tasks",
            b'{"name": "t\\u0000", "steps": [{"kind": "transform", "expression": 1}]}',
            "body.name",
        ),
        (
            "/v1/tasks",
            b'{"task": {"description": "\\u0000", '
            b'"steps": [{"kind": "transform", "expression": 1}]}}',
            "body.task.description",
        ),
    ],
)
def test_nul_in_text_stored_as_a_column_is_refused(
    hostile: Hostile, path: str, body: bytes, location: str
) -> None:
    assert_envelope(post(hostile, path, body), 422, "validation_error", location)
    assert "s" not in names(hostile)


def test_nul_in_values_and_json_documents_is_kept(hostile: Hostile) -> None:
    """Values are ciphertext, and metadata, steps and inputs are stored as JSON text (where
    NUL is the escape ``\\u0000``): NUL in them is data like any other character."""
    body = json.dumps(
        {"name": "with_nul", "value": "a\x00b", "metadata": {"k\x00": "v\x00"}}
    ).encode()
    answer = post(hostile, "/v1/secrets", body)
    assert answer is not None
    assert answer.status == 201, answer.body
    read = hostile.client.get("/v1/secrets/with_nul").json()
    assert (read["value"], read["metadata"]) == ("a\x00b", {"k\x00": "v\x00"})


# -- headers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-Id: abc\rX-Evil: 1\r\n",  # bare CR
        b"X-Request-Id: abc\nX-Evil: 1\r\n",  # bare LF
        b"X-Request-Id: abc\r\n X-Evil: 1\r\n",  # obsolete line folding
        b"X-Request-Id: a\x00b\r\n",
        b"X-Evil\r\n",  # no colon
        b"X-Evil : 1\r\n",  # space before the colon
    ],
)
def test_malformed_header_lines_are_refused_by_uvicorn(hostile: Hostile, header: bytes) -> None:
    answer = exchange(hostile, request("GET", b"/v1/secrets", headers=header, auth=hostile.key))
    assert_refused_by_uvicorn(answer)
    if answer is not None:
        assert b"x-evil" not in answer.head.lower()


@pytest.mark.parametrize(
    "offered",
    [
        b"abc%0d%0aX-Evil:%201",  # CR LF, percent-encoded
        b"abc\\r\\nX-Evil: 1",  # CR LF, backslash-escaped
        "req-caf\u00e9".encode("latin-1"),  # a byte that is not ASCII
        b"x" * 129,  # longer than the 128 characters kept
        b"a b",
    ],
)
def test_an_x_request_id_that_could_inject_is_replaced(hostile: Hostile, offered: bytes) -> None:
    """The server echoes a client's X-Request-Id only when it is 1-128 of
    ``[A-Za-z0-9._:-]``: anything else is replaced with one of its own, so no header, line
    break or byte the client chose reaches the answer's head."""
    header = b"X-Request-Id: " + offered + b"\r\n"
    answer = exchange(
        hostile, request("GET", b"/v1/secrets/ghost", headers=header, auth=hostile.key)
    )
    error = assert_envelope(answer, 404, "not_found")
    assert answer is not None
    assert b"x-evil" not in answer.head.lower()
    assert answer.header("x-request-id") == error["request_id"]
    assert error["request_id"].startswith("req_")
    assert offered not in answer.head


def test_a_safe_x_request_id_is_echoed_once(hostile: Hostile) -> None:
    header = b"X-Request-Id: client.chosen-id:42\r\n"
    answer = exchange(
        hostile, request("GET", b"/v1/secrets/ghost", headers=header, auth=hostile.key)
    )
    error = assert_envelope(answer, 404, "not_found")
    assert error["request_id"] == "client.chosen-id:42"


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 5\r\nContent-Length: 50\r\n",  # conflicting
        b"Content-Length: 32\r\nContent-Length: 32\r\n",  # repeated
        b"Content-Length: 32, 32\r\n",
        b"Content-Length: -1\r\n",
        b"Content-Length: abc\r\n",
        b"Content-Length: 3.2e1\r\n",
        b"Content-Length: 32\r\nTransfer-Encoding: chunked\r\n",  # the smuggling classic
        b"Transfer-Encoding: chunked, identity\r\n",
    ],
)
def test_ambiguous_body_framing_is_refused_by_uvicorn(hostile: Hostile, framing: bytes) -> None:
    """No framing a proxy and this server could read two ways gets through: the request is
    refused before the app, and a request hidden after it is never run."""
    body = b'{"name": "framed", "value": "v"}'
    assert len(body) == 32
    smuggled = request("DELETE", b"/v1/secrets/present", auth=hostile.key)
    head = request("POST", b"/v1/secrets", headers=framing, auth=hostile.key)
    assert_refused_by_uvicorn(exchange(hostile, head + body + smuggled))
    assert "framed" not in names(hostile)
    assert_alive(hostile)  # present was not deleted


def test_oversized_headers_are_refused_with_431_and_never_quoted(hostile: Hostile) -> None:
    """uvicorn's parser (httptools) sets no limit on header size; the app refuses headers
    over 32 KiB in all with 431 in the envelope, whichever header carries the bulk: an
    extra header, the Authorization header, or the X-Request-Id the server echoes."""
    big = b"a" * (1024 * 1024)
    for header in (b"X-Big: ", b"Authorization: Bearer ", b"X-Request-Id: "):
        answer = exchange(hostile, request("GET", b"/v1/secrets", headers=header + big + b"\r\n"))
        error = assert_envelope(answer, 431, "headers_too_large")
        assert answer is not None
        assert len(answer.body) < 4096
        assert "aaaaaaaaaaaaaaaa" not in error["message"]
        assert error["request_id"].startswith("req_")
    # Just under the limit is an ordinary request.
    fits = b"X-Fits: " + b"a" * (30 * 1024) + b"\r\n"
    answer = exchange(hostile, request("GET", b"/v1/secrets", headers=fits, auth=hostile.key))
    assert answer is not None
    assert answer.status == 200, answer.status
    assert_alive(hostile)


@pytest.mark.parametrize(
    "if_match",
    [
        '"\u00b2"'.encode("latin-1"),  # str.isdigit() says yes, int() says no (was a 500)
        b'"' + b"1" * 5000 + b'"',  # more digits than int() converts (was a 500)
        b'"' + b"0" * 5000 + b'"',  # version 0
        b'"1", "2"',
        b"*",
    ],
)
def test_an_if_match_that_is_no_version_is_a_validation_error(
    hostile: Hostile, if_match: bytes
) -> None:
    header = b"If-Match: " + if_match + b"\r\n"
    answer = exchange(
        hostile,
        request(
            "PATCH",
            b"/v1/secrets/present",
            headers=header,
            body=b'{"value": "v2"}',
            auth=hostile.key,
        ),
    )
    assert_envelope(answer, 422, "validation_error", "header.if-match")
    assert_alive(hostile)


# -- request targets --------------------------------------------------------------------------
def test_a_100_kb_path_is_refused_by_uvicorn(hostile: Hostile) -> None:
    """httptools parses URLs of at most 64 KiB; past that uvicorn answers 400 itself."""
    for target in (b"/v1/secrets/" + b"a" * 100_000, b"/v1/" + b"a" * 100_000):
        assert_refused_by_uvicorn(exchange(hostile, request("GET", target, auth=hostile.key)))
    assert_alive(hostile)


def test_a_60_kb_path_reaches_the_app_and_is_refused_there(hostile: Hostile) -> None:
    long = b"a" * 60_000
    answer = exchange(hostile, request("GET", b"/v1/secrets/" + long, auth=hostile.key))
    error = assert_envelope(answer, 422, "validation_error", "path.name")
    assert "longer than 128" in error["message"]
    answer = exchange(hostile, request("DELETE", b"/v1/secrets/" + long, auth=hostile.key))
    assert_envelope(answer, 422, "validation_error", "path.name")
    answer = exchange(hostile, request("GET", b"/v1/" + long, auth=hostile.key))
    assert_envelope(answer, 404, "not_found")
    answer = exchange(hostile, request("GET", b"/v1/tasks/" + long, auth=hostile.key))
    assert_envelope(answer, 404, "not_found")


BAD_LIMITS = ["0", "-1", "1001", "9" * 30, "9" * 5000, "abc", "1e3", "1.5", "", "0x10"]
BAD_OFFSETS = ["-1", "1000000001", "9" * 30, "abc", "0.5", ""]


@pytest.mark.parametrize("route", LIST_ROUTES)
def test_bad_paging_on_every_list_route_is_a_validation_error(hostile: Hostile, route: str) -> None:
    for value in BAD_LIMITS:
        response = hostile.client.get(route, params={"limit": value})
        assert response.status_code == 422, (value, response.text)
        assert "query.limit" in [d["location"] for d in response.json()["error"]["details"]]
    for value in BAD_OFFSETS:
        response = hostile.client.get(route, params={"offset": value})
        assert response.status_code == 422, (value, response.text)
        assert "query.offset" in [d["location"] for d in response.json()["error"]["details"]]
    # the bounds themselves are fine
    assert hostile.client.get(route, params={"limit": 1000, "offset": 10**9}).status_code == 200


def test_the_versions_list_has_no_paging_and_ignores_paging_parameters(hostile: Hostile) -> None:
    """A secret has few versions, all listed at once; like any unknown query parameter,
    limit and offset are not read there."""
    response = hostile.client.get("/v1/secrets/present/versions", params={"limit": "-1"})
    assert response.status_code == 200, response.text
    assert [item["version"] for item in response.json()["items"]] == [1]


@pytest.mark.parametrize(
    "version", ["0", "-1", "2147483648", str(10**20), "9" * 5000, "abc", "1.5", ""]
)
def test_a_version_out_of_range_is_a_validation_error(hostile: Hostile, version: str) -> None:
    """Versions are 32-bit integers in the database; PostgreSQL failed on a larger one (a
    500), SQLite on one past 64 bits."""
    response = hostile.client.get("/v1/secrets/present", params={"version": version})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["location"] == "query.version"


def test_the_largest_version_is_looked_up(hostile: Hostile) -> None:
    response = hostile.client.get("/v1/secrets/present", params={"version": 2**31 - 1})
    assert response.status_code == 404, response.text


@pytest.mark.parametrize(
    "query",
    [
        {"metadata": json.dumps({"a": "x" * 20_000})},  # larger than any stored metadata
        {"metadata": json.dumps({f"k{i}": i for i in range(65)})},  # more keys than allowed
        {f"metadata[k{i}]": "v" for i in range(65)},
        {"metadata": '{"a": 1e400}'},
        {"metadata": "[" * 10_000},
        {"metadata": "not json"},
    ],
    ids=["20kb", "65-keys", "65-bracket-keys", "1e400", "nested", "not-json"],
)
def test_a_metadata_filter_no_metadata_could_match_is_a_validation_error(
    hostile: Hostile, query: dict[str, str]
) -> None:
    response = hostile.client.get("/v1/secrets", params=query)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["location"] == "query.metadata"


# -- in process: error answers never quote the value ------------------------------------------
def bad_requests(value: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Requests that fail, each carrying ``value`` as the secret value."""
    json_body = {"content-type": "application/json"}
    return [
        ("POST", "/v1/secrets", {"json": {"name": "bad name", "value": value}}),
        ("POST", "/v1/secrets", {"json": {"name": value, "value": value}}),
        ("POST", "/v1/secrets", {"json": {"name": "ok", "value": value, "extra": value}}),
        ("POST", "/v1/secrets", {"json": {"name": "ok", "value": value, "metadata": value}}),
        ("POST", "/v1/secrets", {"json": {"name": "ok", "value": value, "description": 7}}),
        ("POST", "/v1/secrets", {"json": {"name": "ok", "value": [value]}}),
        ("POST", "/v1/secrets", {"json": {"name": "ok", "value": {"v": value}}}),
        ("POST", "/v1/secrets", {"json": {"name": "ok", "value": value * 3000}}),
        ("POST", "/v1/secrets", {"json": {"name": "taken", "value": value}}),
        (
            "POST",
            "/v1/secrets",
            {"content": f'{{"name": "ok", "value": "{value}'.encode(), "headers": json_body},
        ),
        (
            "POST",
            "/v1/secrets",
            {"content": f'{{"value": "{value}", "name": 1}}'.encode(), "headers": json_body},
        ),
        ("POST", "/v1/secrets", {"content": f'["{value}"]'.encode(), "headers": json_body}),
        (
            "POST",
            "/v1/secrets",
            {
                "content": f'{{"name": "ok", "value": "{value}\udc80"}}'.encode(
                    "utf-8", "surrogateescape"
                ),
                "headers": json_body,
            },
        ),
        ("PATCH", "/v1/secrets/ghost", {"json": {"value": value}}),
        ("PATCH", "/v1/secrets/taken", {"json": {"value": value, "expected_version": 9}}),
        ("PATCH", "/v1/secrets/taken", {"json": {"value": value}, "headers": {"If-Match": "x"}}),
        ("PATCH", "/v1/secrets/taken", {"json": {"value": value, "new_name": "bad name"}}),
        ("PUT", "/v1/secrets/taken", {"json": {"value": value, "unknown": 1}}),
        ("PUT", "/v1/secrets/1bad", {"json": {"value": value}}),
        ("POST", "/julep/secrets", {"json": {"name": "taken", "value": value}}),
        ("PUT", "/julep/secrets/not-an-id", {"json": {"name": "ok", "value": value}}),
        ("PUT", f"/julep/secrets/{UUID}", {"json": {"name": "ok", "value": value}}),
        ("DELETE", "/v1/secrets", {"json": {"value": value}}),
        ("POST", "/v1/nowhere", {"json": {"value": value}}),
    ]


def test_error_answers_never_quote_the_value(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    api = make_client()
    api.post("/v1/secrets", json={"name": "taken", "value": "v"}).raise_for_status()
    value = canary("sent")
    caplog.set_level(logging.DEBUG)
    for method, path, kwargs in bad_requests(value):
        response = api.request(method, path, **kwargs)
        assert 400 <= response.status_code < 500, (method, path, response.text)
        assert set(response.json()) == {"error"}, response.text
        assert find_leaks(value, response.content) == [], (method, path, response.text)
        assert find_leaks(value, str(response.headers).encode()) == []
    assert find_leaks(value, caplog.text.encode()) == []
    assert api.get("/v1/secrets/taken").json()["value"] == "v"


def test_error_answers_of_unauthenticated_requests_never_quote_the_value(
    app: FastAPI, make_client: MakeClient
) -> None:
    """Refused before the body is read: no key, a bad key, a key without the scope."""
    value = canary("sent")
    with TestClient(app) as anonymous:
        for client in (
            anonymous,
            make_client(key="sr_" + "x" * 40),
            make_client(scopes=("secrets:read",)),
        ):
            response = client.post("/v1/secrets", json={"name": "ok", "value": value})
            assert response.status_code in (401, 403), response.text
            assert find_leaks(value, response.content) == []
