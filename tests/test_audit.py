"""The audit trail: every access to a secret is recorded, and a read that cannot be is refused.

Each event is checked in the ``audit_events`` table itself: its time, tenant, API key,
action, secret name, request id (the response's ``X-Request-Id``) and outcome, and that no
value is in it.
"""

from __future__ import annotations

import ast
import datetime as dt
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

import strongroom.server
from strongroom.server.apikeys import create_api_key, generate_api_key, revoke_api_key
from strongroom.server.logs import JSONFormatter
from strongroom.server.services import Services
from strongroom.server.storage import ApiKeyRecord, schema

from .support import canary, find_leaks

audit_table = schema.audit_events


@dataclass
class Keyed:
    """A client and the API key record it authenticates with."""

    client: TestClient
    key: str
    record: ApiKeyRecord


@pytest.fixture
def keyed(app: FastAPI, services: Services) -> Iterator[Callable[..., Keyed]]:
    made: list[TestClient] = []

    def make(tenant: str = "default", scopes: tuple[str, ...] = ()) -> Keyed:
        key, record = create_api_key(services.store, services.barrier, tenant, scopes=scopes)
        client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
        made.append(client)
        return Keyed(client, key, record)

    yield make
    for client in made:
        client.close()


def all_events(services: Services) -> list[sa.Row[Any]]:
    with services.store.engine.connect() as conn:
        return list(conn.execute(sa.select(audit_table).order_by(audit_table.c.id)))


def events_of(services: Services, response: httpx.Response) -> list[sa.Row[Any]]:
    request_id = response.headers["x-request-id"]
    assert request_id
    assert response.json().get("error", {}).get("request_id", request_id) == request_id
    return [e for e in all_events(services) if e.request_id == request_id]


@dataclass
class Expected:
    action: str
    outcome: str
    secret_name: str | None


def check(
    services: Services,
    response: httpx.Response,
    status: int,
    who: Keyed | None,
    *expected: Expected,
    since: dt.datetime,
) -> list[sa.Row[Any]]:
    """The response has ``status`` and left exactly the ``expected`` events, in order."""
    assert response.status_code == status, response.text
    found = events_of(services, response)
    assert [(e.action, e.outcome, e.secret_name) for e in found] == [
        (x.action, x.outcome, x.secret_name) for x in expected
    ]
    for event in found:
        assert since <= event.occurred_at <= dt.datetime.now(dt.UTC)
        assert event.occurred_at.tzinfo is not None
        if who is not None:
            assert event.tenant_id == who.record.tenant_id
            assert event.key_id == who.record.id
        assert event.client_addr
    return found


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_every_access_is_recorded(
    keyed: Callable[..., Keyed], services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    me = keyed()
    api = me.client
    first, second, third = canary("first"), canary("second"), canary("third")
    E = Expected

    t = now()
    r = api.post("/v1/secrets", json={"name": "audited", "value": first})
    [created] = check(services, r, 201, me, E("secret.create", "success", "audited"), since=t)
    secret_id = r.json()["id"]
    assert created.secret_id == secret_id

    t = now()
    r = api.get("/v1/secrets/audited")
    [read] = check(services, r, 200, me, E("secret.read", "success", "audited"), since=t)
    assert (read.secret_id, read.detail) == (secret_id, "version 1")

    t = now()
    r = api.get("/v1/secrets/missing")
    check(services, r, 404, me, E("secret.read", "not_found", "missing"), since=t)

    t = now()
    r = api.get("/v1/secrets/audited", params={"version": 7})
    [absent] = check(services, r, 404, me, E("secret.read", "not_found", "audited"), since=t)
    assert absent.detail == "version 7"

    t = now()
    r = api.patch("/v1/secrets/audited", json={"value": second})
    [updated] = check(services, r, 200, me, E("secret.update", "success", "audited"), since=t)
    assert "version 2" in updated.detail

    t = now()
    r = api.get("/v1/secrets/audited", params={"version": 1})
    [read] = check(services, r, 200, me, E("secret.read", "success", "audited"), since=t)
    assert read.detail == "version 1"

    t = now()
    r = api.patch("/v1/secrets/audited", json={"new_name": "renamed"})
    [renamed] = check(services, r, 200, me, E("secret.rename", "success", "renamed"), since=t)
    assert (renamed.secret_id, renamed.detail) == (secret_id, "renamed from 'audited'")

    t = now()
    r = api.patch("/v1/secrets/renamed", json={"new_name": "again", "value": third})
    check(
        services,
        r,
        200,
        me,
        E("secret.rename", "success", "again"),
        E("secret.update", "success", "again"),
        since=t,
    )

    t = now()
    r = api.post("/v1/secrets", json={"name": "again", "value": first})
    check(services, r, 409, me, E("secret.create", "conflict", "again"), since=t)

    t = now()
    r = api.patch("/v1/secrets/missing", json={"value": first})
    check(services, r, 404, me, E("secret.update", "not_found", "missing"), since=t)

    t = now()
    r = api.patch("/v1/secrets/again", json={"value": first, "expected_version": 1})
    check(services, r, 412, me, E("secret.update", "precondition_failed", "again"), since=t)

    t = now()
    r = api.get("/v1/secrets/missing/versions")
    check(services, r, 404, me, E("secret.versions", "not_found", "missing"), since=t)

    t = now()
    r = api.delete("/v1/secrets/again")
    [deleted] = check(services, r, 200, me, E("secret.delete", "success", "again"), since=t)
    assert deleted.secret_id == secret_id

    t = now()
    r = api.delete("/v1/secrets/again")
    check(services, r, 404, me, E("secret.delete", "not_found", "again"), since=t)

    t = now()
    r = api.get("/v1/secrets/again")
    check(services, r, 404, me, E("secret.read", "not_found", "again"), since=t)

    # The values are in no event, column or log line.
    for event in all_events(services):
        text = repr(tuple(event)).encode()
        for value in (first, second, third):
            assert find_leaks(value, text) == [], event
    logs = "\n".join(JSONFormatter().format(rec) for rec in caplog.records).encode()
    assert b"secret.read" in logs
    for value in (first, second, third):
        assert find_leaks(value, logs) == []

    # The tenant reads the same trail through the API, newest first.
    trail = api.get("/v1/audit", params={"limit": 1000}).json()["items"]
    table = [e for e in all_events(services) if e.tenant_id == me.record.tenant_id]
    assert [e["request_id"] for e in trail] == [e.request_id for e in reversed(table)]
    assert all(e["key_id"] == me.record.id for e in trail)


def test_refused_callers_are_recorded(keyed: Callable[..., Keyed], services: Services) -> None:
    owner = keyed()
    created = owner.client.post("/v1/secrets", json={"name": "kept", "value": canary()})
    assert created.status_code == 201
    E = Expected
    app_client = owner.client

    t = now()
    r = app_client.get("/v1/secrets/kept", headers={"Authorization": ""})
    [event] = check(services, r, 401, None, E("auth.authenticate", "unauthorized", None), since=t)
    assert (event.tenant_id, event.key_id) == (None, None)
    assert "missing API key" in event.detail

    t = now()
    unknown = generate_api_key()
    r = app_client.get("/v1/secrets/kept", headers={"Authorization": f"Bearer {unknown}"})
    [event] = check(services, r, 401, None, E("auth.authenticate", "unauthorized", None), since=t)
    assert (event.tenant_id, event.key_id) == (None, None)
    assert event.detail == "API key is not recognised"

    revoked = keyed()
    assert revoke_api_key(services.store, revoked.record.id)
    t = now()
    r = revoked.client.get("/v1/secrets/kept")
    [event] = check(
        services, r, 401, revoked, E("auth.authenticate", "unauthorized", None), since=t
    )
    assert event.detail == "API key has been revoked"

    reader = keyed(scopes=("secrets:read",))
    t = now()
    r = reader.client.post("/v1/secrets", json={"name": "nope", "value": canary()})
    check(services, r, 403, reader, E("secret.create", "forbidden", "nope"), since=t)
    t = now()
    r = reader.client.delete("/v1/secrets/kept")
    check(services, r, 403, reader, E("secret.delete", "forbidden", "kept"), since=t)
    t = now()
    r = reader.client.get("/v1/audit")
    check(services, r, 403, reader, E("audit.read", "forbidden", None), since=t)

    writer = keyed(scopes=("secrets:write",))
    t = now()
    r = writer.client.get("/v1/secrets/kept")
    check(services, r, 403, writer, E("secret.read", "forbidden", "kept"), since=t)

    # Another tenant's secret is missing to this one, and recorded as its own not_found.
    stranger = keyed("stranger")
    t = now()
    r = stranger.client.get("/v1/secrets/kept")
    check(services, r, 404, stranger, E("secret.read", "not_found", "kept"), since=t)

    owner_trail = owner.client.get("/v1/audit", params={"limit": 1000}).json()["items"]
    assert {e["key_id"] for e in owner_trail} == {
        owner.record.id,
        revoked.record.id,
        reader.record.id,
        writer.record.id,
    }
    assert stranger.client.get("/v1/audit").json()["items"][0]["key_id"] == stranger.record.id


# -- no record, no value ----------------------------------------------------------------------
@pytest.fixture
def audit_unavailable(services: Services) -> Iterator[Callable[[bool], None]]:
    """``switch(True)`` makes every INSERT into audit_events fail; ``switch(False)`` heals."""
    engine = services.store.engine
    sqlite = engine.dialect.name == "sqlite"

    def switch(broken: bool) -> None:
        with engine.begin() as conn:
            if sqlite and broken:
                conn.exec_driver_sql(
                    "CREATE TRIGGER audit_unavailable BEFORE INSERT ON audit_events "
                    "BEGIN SELECT RAISE(ABORT, 'audit unavailable'); END"
                )
            elif sqlite:
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_unavailable")
            elif broken:
                conn.exec_driver_sql(
                    "CREATE OR REPLACE FUNCTION strongroom_test_audit_unavailable() "
                    "RETURNS trigger LANGUAGE plpgsql AS "
                    "$$ BEGIN RAISE EXCEPTION 'audit unavailable'; END $$"
                )
                conn.exec_driver_sql(
                    "CREATE TRIGGER audit_unavailable BEFORE INSERT ON audit_events "
                    "FOR EACH ROW EXECUTE FUNCTION strongroom_test_audit_unavailable()"
                )
            else:
                conn.exec_driver_sql("DROP TRIGGER IF EXISTS audit_unavailable ON audit_events")
                conn.exec_driver_sql("DROP FUNCTION IF EXISTS strongroom_test_audit_unavailable()")

    try:
        yield switch
    finally:
        switch(False)


def count(services: Services, table: sa.Table) -> int:
    with services.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_a_read_that_cannot_be_audited_fails(
    api: TestClient,
    services: Services,
    audit_unavailable: Callable[[bool], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    value, new_value = canary("unaudited"), canary("unaudited_new")
    assert api.post("/v1/secrets", json={"name": "guarded", "value": value}).status_code == 201
    events_before = count(services, audit_table)
    versions_before = count(services, schema.secret_versions)

    audit_unavailable(True)
    for params in ({}, {"version": 1}):
        response = api.get("/v1/secrets/guarded", params=params)
        assert response.status_code >= 500, response.text
        assert response.json()["error"]["code"] in ("internal_error", "unavailable")
        assert response.headers["x-request-id"]
        assert find_leaks(value, response.content) == []

    # A create or an update that cannot be recorded does not happen either.
    response = api.post("/v1/secrets", json={"name": "unrecorded", "value": new_value})
    assert response.status_code >= 500, response.text
    assert find_leaks(new_value, response.content) == []
    response = api.patch("/v1/secrets/guarded", json={"value": new_value})
    assert response.status_code >= 500, response.text
    assert find_leaks(new_value, response.content) == []
    response = api.put("/v1/secrets/put_unrecorded", json={"value": new_value})
    assert response.status_code >= 500, response.text

    logs = "\n".join(JSONFormatter().format(rec) for rec in caplog.records).encode()
    assert b"audit unavailable" in logs  # the cause is logged for the operator
    assert find_leaks(value, logs) == []
    assert find_leaks(new_value, logs) == []

    audit_unavailable(False)
    assert count(services, audit_table) == events_before
    assert count(services, schema.secret_versions) == versions_before
    assert api.get("/v1/secrets/unrecorded").status_code == 404
    assert api.get("/v1/secrets/put_unrecorded").status_code == 404
    with services.store.engine.connect() as conn:
        names = conn.execute(sa.select(schema.secrets.c.name)).scalars().all()
    assert names == ["guarded"]
    answer = api.get("/v1/secrets/guarded")
    assert (answer.status_code, answer.json()["value"], answer.json()["version"]) == (
        200,
        value,
        1,
    )


def test_a_value_is_decrypted_only_on_the_audited_path() -> None:
    """``secret_values.reveal`` decrypts and records the read in one transaction; nothing
    else in the server may open a secret value (a second path could skip the record)."""
    root = Path(strongroom.server.__file__).parent
    callers = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name == "decrypt_value":
                    callers.append(path.relative_to(root).as_posix())
    assert set(callers) == {"secret_values.py"}
