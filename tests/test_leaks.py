"""Secret values never leave the server except as the answer to a GET of that secret.

Canary values go in through every secrets route of a real server process, good requests
and bad ones; then every response, the server's log and stdout, and every byte the
database holds (SQLite's files, or every row of every PostgreSQL table) are searched for
the canaries in each spelling a leak could take.
"""

from __future__ import annotations

import base64
import json
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from strongroom.server.logs import JSONFormatter
from strongroom.server.services import Services

from .conftest import IssueKey
from .support import ServerProcess, canary, encodings, find_leaks, postgres_rows


class Recorder:
    """Sends requests and keeps every answer (headers and body) to search afterwards."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.answers: list[tuple[str, bytes]] = []

    def send(
        self, method: str, url: str, expect: int, *, reveals: str | None = None, **kwargs: object
    ) -> httpx.Response:
        response = self.client.request(method, url, **kwargs)  # type: ignore[arg-type]
        label = f"{method} {url} -> {response.status_code}"
        assert response.status_code == expect, f"{label}: {response.text[:300]}"
        body = response.content
        if reveals is not None:
            # The one place a value may appear: the `value` of a successful GET, once.
            assert response.json()["value"] == reveals, label
            assert response.headers["cache-control"] == "no-store", label
            spelled = json.dumps(reveals).encode()
            assert body.count(spelled) == 1, label
            body = body.replace(spelled, b'"[the revealed value]"')
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode()
        self.answers.append((label, headers + b"\n\n" + body))
        return response

    def leaks(self, value: str) -> list[str]:
        return [
            f"{label}: {found}"
            for label, answer in self.answers
            if (found := find_leaks(value, answer))
        ]


def database_bytes(database_url: str, workdir: Path) -> bytes:
    """Everything the database holds: SQLite's files as raw bytes, or each PostgreSQL row."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        files = sorted(path.parent.glob(path.name + "*"))
        assert path in files
        return b"".join(f.read_bytes() for f in files)
    return postgres_rows(database_url)


@pytest.fixture
def recorder(server: ServerProcess, issue_key: IssueKey) -> Iterator[Recorder]:
    headers = {"Authorization": f"Bearer {issue_key()}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        yield Recorder(client)


def test_canaries_appear_nowhere_but_in_the_get_answer(
    server: ServerProcess,
    recorder: Recorder,
    issue_key: IssueKey,
    database_url: str,
    services: Services,
) -> None:
    c = {
        label: canary(label)
        for label in (
            "created",
            "updated",
            "put_new",
            "put_replaced",
            "renamed_value",
            "conflict",
            "bad_name",
            "extra_field",
            "as_list",
            "as_object",
            "too_long",
            "bad_json",
            "surrogate",
            "oversized",
            "oversized_streamed",
            "missing",
            "precondition",
            "rename_conflict",
            "put_bad_name",
            "no_key",
            "forbidden",
            "api_key",
        )
    }
    r = recorder
    send = r.send

    # Good requests on every route.
    send("POST", "/v1/secrets", 201, json={"name": "alpha", "value": c["created"]})
    send(
        "POST",
        "/v1/secrets",
        201,
        json={"name": "beta", "value": c["renamed_value"], "metadata": {"env": "prod"}},
    )
    send("GET", "/v1/secrets", 200)
    send("GET", "/v1/secrets", 200, params={"metadata": '{"env": "prod"}'})
    send("GET", "/v1/secrets", 200, params={"metadata[env]": "prod"})
    send("GET", "/v1/secrets/alpha", 200, reveals=c["created"])
    send("PATCH", "/v1/secrets/alpha", 200, json={"value": c["updated"], "description": "d"})
    send("GET", "/v1/secrets/alpha", 200, reveals=c["updated"])
    send("GET", "/v1/secrets/alpha?version=1", 200, reveals=c["created"])
    send("GET", "/v1/secrets/alpha?version=2", 200, reveals=c["updated"])
    send("PATCH", "/v1/secrets/beta", 200, json={"new_name": "gamma"})
    send("GET", "/v1/secrets/gamma", 200, reveals=c["renamed_value"])
    send("PUT", "/v1/secrets/delta", 201, json={"value": c["put_new"]})
    send("PUT", "/v1/secrets/delta", 200, json={"value": c["put_replaced"]})
    send("GET", "/v1/secrets/delta", 200, reveals=c["put_replaced"])
    send("GET", "/v1/secrets/delta/versions", 200)
    send("GET", "/v1/secrets/alpha/versions", 200)
    send("DELETE", "/v1/secrets/delta", 200)
    send("GET", "/v1/audit", 200)
    send("GET", "/v1/audit", 200, params={"secret": "alpha"})

    # Bad requests carrying a canary.
    send("POST", "/v1/secrets", 409, json={"name": "alpha", "value": c["conflict"]})
    send("POST", "/v1/secrets", 422, json={"name": "1 bad name", "value": c["bad_name"]})
    send(
        "POST",
        "/v1/secrets",
        422,
        json={"name": "eps", "value": "x", "vaule": c["extra_field"]},
    )
    send("POST", "/v1/secrets", 422, json={"name": "eps", "value": [c["as_list"]]})
    send("POST", "/v1/secrets", 422, json={"name": "eps", "value": {"v": c["as_object"]}})
    send("POST", "/v1/secrets", 422, json={"name": "eps", "value": c["too_long"] * 3000})
    send(
        "POST",
        "/v1/secrets",
        422,
        content=b'{"name": "eps", "value": "' + c["bad_json"].encode() + b'"',
        headers={"content-type": "application/json"},
    )
    send(
        "POST",
        "/v1/secrets",
        422,
        content=b'{"name": "eps", "value": "' + c["surrogate"].encode() + b'\\ud800"}',
        headers={"content-type": "application/json"},
    )
    oversized = json.dumps({"name": "eps", "value": c["oversized"] + "x" * 1_100_000}).encode()
    send("POST", "/v1/secrets", 413, content=oversized)
    streamed = json.dumps({"name": "eps", "value": c["oversized_streamed"] * 40_000}).encode()
    send(
        "POST",
        "/v1/secrets",
        413,
        content=iter([streamed[i : i + 65536] for i in range(0, len(streamed), 65536)]),
    )
    send("PATCH", "/v1/secrets/nope", 404, json={"value": c["missing"]})
    send(
        "PATCH",
        "/v1/secrets/alpha",
        412,
        json={"value": c["precondition"], "expected_version": 1},
    )
    send(
        "PATCH",
        "/v1/secrets/alpha",
        409,
        json={"value": c["rename_conflict"], "new_name": "gamma"},
    )
    send("PUT", "/v1/secrets/9bad", 422, json={"value": c["put_bad_name"]})
    send("GET", "/v1/secrets/nope", 404)
    send("GET", "/v1/secrets/alpha?version=9", 404)
    send("DELETE", "/v1/secrets/delta", 404)
    send(
        "POST",
        "/v1/secrets",
        401,
        json={"name": "eps", "value": c["no_key"]},
        headers={"Authorization": ""},
    )
    send(
        "POST",
        "/v1/secrets",
        401,
        json={"name": "eps", "value": "x"},
        headers={"Authorization": f"Bearer sr_{c['api_key']}"},
    )
    reader = {"Authorization": f"Bearer {issue_key(scopes=('secrets:read',))}"}
    send(
        "POST",
        "/v1/secrets",
        403,
        json={"name": "eps", "value": c["forbidden"]},
        headers=reader,
    )
    # The refused changes changed nothing.
    send("GET", "/v1/secrets/alpha", 200, reveals=c["updated"])

    audit = send("GET", "/v1/audit", 200, params={"limit": 1000}).json()["items"]
    reads = [(e["secret_name"], e["outcome"]) for e in audit if e["action"] == "secret.read"]
    assert reads.count(("alpha", "success")) == 5
    assert ("gamma", "success") in reads
    assert ("delta", "success") in reads
    assert ("nope", "not_found") in reads

    # uvicorn shuts down gracefully, then re-raises the SIGTERM it was stopped with.
    assert server.stop() in (0, -signal.SIGTERM), server.log()
    assert "Application shutdown complete" in server.log()
    # Every store handle is closed, so SQLite's files are what a backup would copy.
    services.store.close()
    log, stdout = server.log().encode(), server.stdout().encode()
    assert b'"route": "/v1/secrets/{name}"' in log  # the request log was written
    stored = database_bytes(database_url, server.log_path.parent)
    assert b"alpha" in stored

    leaks = {}
    for label, value in c.items():
        found = [*r.leaks(value)]
        found += [f"server log: {x}" for x in find_leaks(value, log)]
        found += [f"server stdout: {x}" for x in find_leaks(value, stdout)]
        found += [f"database: {x}" for x in find_leaks(value, stored)]
        if found:
            leaks[label] = found
    assert leaks == {}


def test_the_search_would_find_a_leak() -> None:
    """``find_leaks`` sees the spellings these tests rely on, inside longer text."""
    value = canary()
    for name, spelled in encodings(value).items():
        assert find_leaks(value, b"prefix " + spelled + b" suffix"), name
    for shift in range(3):
        text = base64.b64encode(b"x" * shift + value.encode() + b"tail")
        assert f"base64_{shift}" in find_leaks(value, text)


# -- the 422 handler --------------------------------------------------------------------------
def formatted_logs(caplog: pytest.LogCaptureFixture) -> bytes:
    formatter = JSONFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records).encode()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/secrets", lambda v: {"name": "x", "value": [v]}),
        ("POST", "/v1/secrets", lambda v: {"name": "x", "value": {"nested": [v, 1]}}),
        ("POST", "/v1/secrets", lambda v: {"name": "x", "value": v * 3000}),
        ("POST", "/v1/secrets", lambda v: {"name": "x", "value": v, "description": v * 40}),
        ("POST", "/v1/secrets", lambda v: {"name": v, "value": v}),
        ("POST", "/v1/secrets", lambda v: {"name": "x", "value": v, "metadata": v}),
        ("POST", "/v1/secrets", lambda v: {"name": "x", "value": v, "unknown": v}),
        ("POST", "/v1/secrets", lambda v: v),
        ("POST", "/v1/secrets", lambda v: [v]),
        ("PATCH", "/v1/secrets/x", lambda v: {"value": [v]}),
        ("PATCH", "/v1/secrets/x", lambda v: {"new_name": v, "expected_version": v}),
        ("PATCH", "/v1/secrets/x", lambda v: {"value": v * 3000}),
        ("PUT", "/v1/secrets/x", lambda v: {"value": {"v": v}}),
        ("PUT", "/v1/secrets/x", lambda v: {"value": v * 3000}),
        ("PUT", "/v1/secrets/x", lambda v: {"value": v, "expected_version": v}),
    ],
)
def test_validation_errors_never_echo_the_input(
    api: TestClient,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    body: object,
) -> None:
    caplog.set_level(logging.DEBUG)
    value = canary("echo")
    response = api.request(method, path, json=body(value))  # type: ignore[operator]
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["details"], error
    assert all(d["location"].startswith("body") for d in error["details"])
    assert find_leaks(value, response.content) == []
    assert find_leaks(value, formatted_logs(caplog)) == []


def test_query_validation_errors_never_echo_the_input(api: TestClient) -> None:
    value = canary("query")
    for url in (
        f"/v1/secrets/x?version={value}",
        f"/v1/secrets?limit={value}",
        f"/v1/audit?action={value}",
    ):
        response = api.get(url)
        assert response.status_code == 422, response.text
        assert find_leaks(value, response.content) == [], url


def test_an_answer_that_fails_validation_is_logged_without_its_content(
    api: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug that makes an answer invalid must not copy the answer (a value) into the log."""
    from strongroom.server.api import secrets as routes

    value = canary()
    assert api.post("/v1/secrets", json={"name": "broken", "value": value}).status_code == 201
    original = routes.secret_out

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {**original(*args, **kwargs), "created_at": "not a time"}

    monkeypatch.setattr(routes, "secret_out", broken)
    with caplog.at_level("DEBUG"):
        answer = api.get("/v1/secrets/broken")
    assert answer.status_code == 500
    assert "failed validation" in caplog.text
    logged = (caplog.text + "".join(str(vars(r)) for r in caplog.records)).encode()
    assert find_leaks(value, logged) == []
    assert find_leaks(value, answer.content) == []
