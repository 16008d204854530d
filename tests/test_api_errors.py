"""Every error leaves as the contract's envelope, framework errors included; request ids,
caching headers, ``/healthz`` and ``/openapi.json``. In process, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom.server.services import Services
from strongroom.server.storage import StorageUnavailable

from .conftest import ClientWith
from .support import assert_error, canary, find_leaks

LIMIT = 1024  # the smallest body limit the settings allow
JSON = {"content-type": "application/json"}


@pytest.fixture
def limited(client_with: ClientWith) -> TestClient:
    """A client of an app that takes request bodies of at most 1 KiB."""
    return client_with(max_body_bytes=LIMIT)


def names(api: TestClient) -> list[str]:
    response = api.get("/v1/secrets")
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


# -- the envelope on every kind of error ------------------------------------------------------
# (id, method, path, request keyword arguments, status, code)
ERRORS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("unknown-route", "GET", "/v1/nothing_here", {}, 404, "not_found"),
    ("unknown-secret", "GET", "/v1/secrets/ghost", {}, 404, "not_found"),
    ("wrong-method", "DELETE", "/v1/secrets", {}, 405, "method_not_allowed"),
    (
        "bad-body",
        "POST",
        "/v1/secrets",
        {"json": {"name": "bad name", "value": ""}},
        422,
        "validation_error",
    ),
    ("bad-query", "GET", "/v1/secrets?limit=0", {}, 422, "validation_error"),
    ("bad-path", "GET", "/v1/secrets/1x", {}, 422, "validation_error"),
    (
        "not-json",
        "POST",
        "/v1/secrets",
        {"content": b"{", "headers": JSON},
        422,
        "validation_error",
    ),
    ("no-key", "GET", "/v1/secrets", {"headers": {"Authorization": ""}}, 401, "unauthorized"),
    (
        "bad-key",
        "GET",
        "/v1/secrets",
        {"headers": {"Authorization": "Bearer x"}},
        401,
        "unauthorized",
    ),
    ("conflict", "POST", "/v1/secrets", {"json": {"name": "taken", "value": "v"}}, 409, "conflict"),
    (
        "stale-version",
        "PATCH",
        "/v1/secrets/taken",
        {"json": {"value": "x", "expected_version": 3}},
        412,
        "precondition_failed",
    ),
    ("too-large", "POST", "/v1/secrets", {"content": b"x" * (LIMIT + 1)}, 413, "payload_too_large"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [e[1:] for e in ERRORS],
    ids=[e[0] for e in ERRORS],
)
def test_every_error_is_the_envelope_with_the_request_id(
    limited: TestClient, method: str, path: str, kwargs: dict[str, Any], status: int, code: str
) -> None:
    limited.post("/v1/secrets", json={"name": "taken", "value": "v"}).raise_for_status()
    response = limited.request(method, path, **kwargs)
    assert_error(response, status, code)
    assert re.fullmatch(r"req_[0-9a-f]{24}", response.headers["x-request-id"])
    if path.startswith("/v1/"):
        assert response.headers["cache-control"] == "no-store"
    # a request id the client sends is kept, in the header and in the envelope
    headers = {**kwargs.get("headers", {}), "X-Request-Id": "client-chosen.id:42"}
    response = limited.request(method, path, **{**kwargs, "headers": headers})
    error = assert_error(response, status, code)
    assert error["request_id"] == "client-chosen.id:42"


@pytest.mark.parametrize("offered", ["has space", "x" * 129, "semi;colon", 'quote"d'])
def test_an_unsafe_client_request_id_is_replaced(api: TestClient, offered: str) -> None:
    response = api.get("/v1/secrets/ghost", headers={"X-Request-Id": offered})
    error = assert_error(response, 404, "not_found")
    assert response.headers["x-request-id"] != offered
    assert re.fullmatch(r"req_[0-9a-f]{24}", response.headers["x-request-id"])
    assert error["request_id"] == response.headers["x-request-id"]


def test_each_request_gets_its_own_id(api: TestClient) -> None:
    api.post("/v1/secrets", json={"name": "s", "value": "v"}).raise_for_status()
    responses = [
        api.get("/v1/secrets"),
        api.get("/v1/secrets/s"),
        api.get("/v1/secrets/s/versions"),
        api.get("/v1/secrets/nope"),
        api.get("/healthz"),
        api.get("/v1/audit"),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == len(ids)


# -- framework errors -------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/v1/nothing", "/v1/secrets/a/b/c", "/v2/secrets", "/"])
def test_unknown_route_is_not_found(api: TestClient, path: str) -> None:
    error = assert_error(api.get(path), 404, "not_found")
    assert error["message"].startswith("no route for GET")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/{}", 404), ("GET", "/v1/secrets/a/{}", 404), ("POST", "/v1/secrets/{}", 405)],
)
def test_not_found_and_not_allowed_do_not_repeat_the_path(
    api: TestClient, method: str, path: str, status: int
) -> None:
    """A path may hold anything a client pasted into it, a secret too: not echoed back."""
    value = canary("path")
    response = api.request(method, path.format(value))
    assert_error(response, status, "not_found" if status == 404 else "method_not_allowed")
    answer = response.content + str(response.headers).encode()
    assert find_leaks(value, answer) == []


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/v1/secrets", "GET, POST"),
        ("PUT", "/v1/secrets", "GET, POST"),
        ("POST", "/v1/secrets/some_name", "DELETE, GET, PATCH, PUT"),
        ("POST", "/v1/secrets/some_name/versions", "GET"),
        ("DELETE", "/v1/audit", "GET"),
        ("POST", "/healthz", "GET"),
    ],
)
def test_wrong_method_is_405_with_every_allowed_method(
    api: TestClient, method: str, path: str, allowed: str
) -> None:
    response = api.request(method, path, json={})
    error = assert_error(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed
    assert allowed in error["message"]


@pytest.mark.parametrize(
    "content",
    [b"{", b"{'name': 'x'}", b'{"name": "x", "value": "v"', b"name=x&value=v", b"\x00"],
)
def test_invalid_json_body_is_a_validation_error_at_body(api: TestClient, content: bytes) -> None:
    response = api.post("/v1/secrets", content=content, headers=JSON)
    error = assert_error(response, 422, "validation_error", "body")
    assert [d["location"] for d in error["details"]] == ["body"]
    assert names(api) == []


def test_body_that_is_not_utf8_is_a_validation_error(api: TestClient) -> None:
    content = b'{"name": "latin", "value": "caf\xe9"}'
    response = api.post("/v1/secrets", content=content, headers=JSON)
    assert_error(response, 422, "validation_error", "body")
    assert names(api) == []


@pytest.mark.parametrize("content", [b"[1, 2]", b'"a string"', b"42", b"true"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/secrets"), ("PATCH", "/v1/secrets/existing"), ("PUT", "/v1/secrets/existing")],
)
def test_json_body_that_is_not_an_object_is_refused(
    api: TestClient, method: str, path: str, content: bytes
) -> None:
    api.post("/v1/secrets", json={"name": "existing", "value": "v"}).raise_for_status()
    response = api.request(method, path, content=content, headers=JSON)
    error = assert_error(response, 422, "validation_error", "body")
    assert "JSON object" in error["message"]
    assert api.get("/v1/secrets/existing").json()["version"] == 1


@pytest.mark.parametrize("content", [b"", b"null"])
def test_missing_body_is_refused(api: TestClient, content: bytes) -> None:
    response = api.post("/v1/secrets", content=content, headers=JSON)
    assert_error(response, 422, "validation_error", "body")


def test_body_without_content_type_is_read_as_json(api: TestClient) -> None:
    response = api.post("/v1/secrets", content=b'{"name": "untyped", "value": "v"}')
    assert response.status_code == 201, response.text
    assert api.get("/v1/secrets/untyped").json()["value"] == "v"


# -- body size limit --------------------------------------------------------------------------
def big_body(size: int) -> bytes:
    """A valid create body of exactly ``size`` bytes."""
    head, tail = b'{"name": "big", "value": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/secrets"), ("PATCH", "/v1/secrets/big"), ("PUT", "/v1/secrets/big")],
)
def test_body_over_the_limit_is_413_by_content_length(
    limited: TestClient, method: str, path: str
) -> None:
    response = limited.request(method, path, content=big_body(LIMIT + 1), headers=JSON)
    error = assert_error(response, 413, "payload_too_large")
    assert str(LIMIT) in error["message"]
    assert names(limited) == []


def test_body_at_the_limit_is_accepted(limited: TestClient) -> None:
    response = limited.post("/v1/secrets", content=big_body(LIMIT), headers=JSON)
    assert response.status_code == 201, response.text


def test_streamed_body_over_the_limit_is_413(limited: TestClient) -> None:
    body = big_body(LIMIT * 3)
    chunks = iter([body[i : i + 256] for i in range(0, len(body), 256)])
    response = limited.post("/v1/secrets", content=chunks, headers=JSON)
    assert "content-length" not in response.request.headers  # sent chunked, size unknown
    error = assert_error(response, 413, "payload_too_large")
    assert str(LIMIT) in error["message"]
    assert names(limited) == []


def test_streamed_body_under_the_limit_is_accepted(limited: TestClient) -> None:
    body = big_body(LIMIT - 10)
    response = limited.post("/v1/secrets", content=iter([body[:100], body[100:]]), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.status_code == 201, response.text


def test_default_body_limit_is_1_mib(api: TestClient) -> None:
    response = api.post("/v1/secrets", content=big_body(1024 * 1024 + 1), headers=JSON)
    assert_error(response, 413, "payload_too_large")


# -- server-side failures ---------------------------------------------------------------------
def test_unexpected_failure_is_a_500_without_trace_or_secret(
    api: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = canary()
    api.post("/v1/secrets", json={"name": "fragile", "value": value}).raise_for_status()

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom while holding {value}")

    monkeypatch.setattr(services.secrets, "get", explode)
    response = api.get("/v1/secrets/fragile")
    error = assert_error(response, 500, "internal_error")
    assert error["details"] == []
    assert value not in response.text
    assert "boom" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


def test_database_outage_is_503_with_retry_after(
    api: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down(*args: Any, **kwargs: Any) -> Any:
        raise StorageUnavailable("connection refused")

    monkeypatch.setattr(services.store, "ping", down)
    monkeypatch.setattr(services.store, "read", down)
    for response in (api.get("/healthz"), api.get("/v1/secrets")):
        error = assert_error(response, 503, "unavailable")
        assert response.headers["retry-after"] == "1"
        assert "connection refused" not in error["message"]


# -- /healthz and /openapi.json ---------------------------------------------------------------
def test_healthz_needs_no_key(app: FastAPI) -> None:
    with TestClient(app) as anonymous:
        response = anonymous.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok"}
        assert response.headers["x-request-id"]
        # while the API itself does
        assert_error(anonymous.get("/v1/secrets"), 401, "unauthorized")


def test_openapi_lists_every_route_with_its_schemas(app: FastAPI) -> None:
    with TestClient(app) as anonymous:
        response = anonymous.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    assert {path: sorted(ops) for path, ops in paths.items()} == {
        "/healthz": ["get"],
        "/readyz": ["get"],
        "/v1/secrets": ["get", "post"],
        "/v1/secrets/{name}": ["delete", "get", "patch", "put"],
        "/v1/secrets/{name}/versions": ["get"],
        "/v1/secrets/{name}/restore": ["post"],
        "/v1/secrets/{name}/rollback": ["post"],
        "/v1/secrets/{name}/rotate": ["post"],
        "/v1/secrets:batchGet": ["post"],
        "/v1/secrets:batch": ["put"],
        "/v1/audit": ["get"],
        "/v1/keys": ["get", "post"],
        "/v1/keys/{key_id}": ["delete", "get", "patch"],
        "/v1/keys/{key_id}/rotate": ["post"],
        "/v1/sessions": ["post"],
        "/v1/sessions/current": ["delete", "get"],
        "/v1/tasks": ["get", "post"],
        "/v1/tasks/{task_id}": ["delete", "get"],
        "/v1/tasks/{task_id}/executions": ["post"],
        "/v1/executions": ["get"],
        "/v1/executions/{execution_id}": ["get"],
        "/v1/executions/{execution_id}/steps": ["get"],
        "/v1/executions/{execution_id}/cancel": ["post"],
        "/julep/secrets": ["get", "post"],
        "/julep/secrets/{secret_id}": ["delete", "put"],
    }
    schemas = spec["components"]["schemas"]

    def ref(path: str, method: str, status: str) -> str:
        content = paths[path][method]["responses"][status]["content"]
        return str(content["application/json"]["schema"]["$ref"]).rsplit("/", 1)[-1]

    assert ref("/v1/secrets", "post", "201") == "Secret"
    assert ref("/v1/secrets", "get", "200") == "SecretList"
    assert ref("/v1/secrets/{name}", "get", "200") == "Secret"
    assert ref("/v1/secrets/{name}", "patch", "200") == "Secret"
    assert ref("/v1/secrets/{name}", "put", "200") == "Secret"
    assert ref("/v1/secrets/{name}", "put", "201") == "Secret"
    assert ref("/v1/secrets/{name}", "delete", "200") == "DeletedSecret"
    assert ref("/v1/secrets/{name}/versions", "get", "200") == "SecretVersionList"
    assert ref("/v1/audit", "get", "200") == "AuditList"
    assert ref("/v1/keys", "post", "201") == "KeyCreated"
    assert ref("/v1/keys/{key_id}/rotate", "post", "201") == "KeyRotated"
    assert ref("/healthz", "get", "200") == "Health"
    assert ref("/v1/tasks", "post", "201") == "CreatedTask"
    assert ref("/v1/tasks/{task_id}/executions", "post", "201") == "Execution"
    assert ref("/v1/executions/{execution_id}/steps", "get", "200") == "ExecutionStepList"

    secret = schemas["Secret"]
    assert set(secret["properties"]) == {
        "id",
        "name",
        "description",
        "metadata",
        "value",
        "version",
        "created_at",
        "updated_at",
        "policy",
        "expires_at",
        "rotation",
        "last_rotated_at",
        "next_rotation_at",
        "deleted_at",
        "purge_after",
    }
    assert secret["properties"]["version"]["type"] == "integer"
    assert secret["properties"]["created_at"]["type"] == "string"
    assert set(schemas["DeletedSecret"]["properties"]) == {
        "id",
        "name",
        "deleted_at",
        "purge_after",
    }
    assert set(schemas["SecretList"]["properties"]) == {"items", "limit", "offset", "has_more"}
    version = schemas["SecretVersion"]["properties"]
    assert set(version) == {"version", "created_at", "created_by"}
    assert set(schemas["SecretCreate"]["properties"]) == {
        "name",
        "value",
        "description",
        "metadata",
        "policy",
        "expires_at",
        "rotation",
    }
    assert set(schemas["SecretUpdate"]["properties"]) == {
        "value",
        "description",
        "metadata",
        "new_name",
        "expected_version",
        "policy",
        "expires_at",
        "rotation",
    }
    envelope = schemas["ErrorEnvelope"]
    assert set(envelope["properties"]) == {"error"}
    assert set(schemas["ErrorBody"]["properties"]) == {"code", "message", "request_id", "details"}

    # every operation under /v1 documents its errors as the envelope, 401 and 422 included
    for path, operations in paths.items():
        if not path.startswith("/v1/"):
            continue
        for method in operations:
            for status in ("401", "403", "422"):
                assert ref(path, method, status) == "ErrorEnvelope", (path, method, status)
    for method in ("get", "patch", "delete"):
        assert ref("/v1/secrets/{name}", method, "404") == "ErrorEnvelope"
    assert ref("/v1/secrets", "post", "409") == "ErrorEnvelope"
    assert ref("/v1/secrets/{name}", "patch", "409") == "ErrorEnvelope"
    assert ref("/v1/secrets/{name}", "patch", "412") == "ErrorEnvelope"
    assert ref("/v1/secrets", "post", "413") == "ErrorEnvelope"
    # no leftover of FastAPI's own 422 shape
    assert "HTTPValidationError" not in schemas
