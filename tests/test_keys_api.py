"""``/v1/keys``: managing keys over the API, as a key that wants more than it was given.

Whatever a ``keys:admin`` key does, the keys it makes, changes, rotates or revokes are no
more powerful than itself: no scope it lacks, no secret beyond its rule, no day past its
expiry, no other tenant. Every refusal is a 403 ``forbidden`` and is in the audit trail.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom.server import apikeys
from strongroom.server.apikeys import create_api_key
from strongroom.server.rules import ResourceRule
from strongroom.server.services import Services
from strongroom.server.storage import open_store

from .conftest import unsealed
from .support import assert_error, find_leaks, postgres_rows

SOON = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)


class Keys:
    """Clients by key, and the tenant's full key to look behind the scenes with."""

    def __init__(self, app: FastAPI, services: Services) -> None:
        self.app = app
        self.services = services
        self.clients: list[TestClient] = []
        self.root = self.client(self.issue("root"))

    def issue(
        self,
        name: str,
        scopes: tuple[str, ...] = (),
        rule: ResourceRule | None = None,
        expires_at: dt.datetime | None = None,
        tenant: str = "default",
    ) -> str:
        key, _ = create_api_key(
            self.services.store,
            self.services.barrier,
            tenant,
            name=name,
            scopes=scopes,
            rule=rule,
            expires_at=expires_at,
        )
        return key

    def client(self, key: str) -> TestClient:
        made = TestClient(self.app, headers={"Authorization": f"Bearer {key}"})
        self.clients.append(made)
        return made

    def refusals(self) -> list[tuple[str, str | None]]:
        events = self.root.get("/v1/audit", params={"result": "forbidden", "limit": 1000})
        assert events.status_code == 200, events.text
        return [(e["action"], e["key_name"]) for e in events.json()["items"]]


@pytest.fixture
def keys(app: FastAPI, services: Services) -> Iterator[Keys]:
    made = Keys(app, services)
    yield made
    for client in made.clients:
        client.close()


def _ci_admin(keys: Keys) -> TestClient:
    """A keys:admin key that reaches ci_* secrets, reads them, and expires in a week."""
    key = keys.issue(
        "ci admin",
        scopes=("keys:admin", "secrets:read"),
        rule=ResourceRule(("ci_*",)),
        expires_at=SOON,
    )
    return keys.client(key)


def test_a_new_key_inherits_what_is_left_out_and_works(keys: Keys) -> None:
    admin = _ci_admin(keys)
    response = admin.post("/v1/keys", json={"name": "ci reader", "scopes": ["secrets:read"]})
    assert response.status_code == 201, response.text
    made = response.json()
    assert made["rule"] == {"names": ["ci_*"], "metadata": {}}
    assert made["expires_at"] is not None
    assert made["created_by"] is not None
    assert made["hint"].endswith(made["key"][-4:])
    keys.root.post("/v1/secrets", json={"name": "ci_token", "value": "v1"})
    keys.root.post("/v1/secrets", json={"name": "prod_token", "value": "v2"})
    reader = keys.client(made["key"])
    assert [s["name"] for s in reader.get("/v1/secrets").json()["items"]] == ["ci_token"]
    # the key's secret is shown once: never in a later answer
    listed = admin.get(f"/v1/keys/{made['id']}").json()
    assert "key" not in listed and made["key"] not in str(admin.get("/v1/keys").json())


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"scopes": ["secrets:write"]}, "a scope it lacks"),
        ({"scopes": ["*"]}, "every scope"),
        ({"rule": None}, "no rule: every secret"),
        ({"rule": {"names": ["c*"]}}, "a wider glob"),
        ({"rule": {"names": ["ci_*", "prod_*"]}}, "one glob beyond"),
        ({"rule": {"metadata": {"environment": "ci"}}}, "a selector without its globs"),
        ({"expires_at": None}, "no expiry"),
        ({"expires_at": (SOON + dt.timedelta(days=1)).isoformat()}, "a later expiry"),
    ],
)
def test_a_scoped_admin_cannot_mint_a_broader_key(
    keys: Keys, body: dict[str, Any], why: str
) -> None:
    admin = _ci_admin(keys)
    before = keys.root.get("/v1/keys", params={"limit": 1000}).json()["items"]
    error = assert_error(admin.post("/v1/keys", json=body), 403, "forbidden")
    assert "refused" in error["message"], why
    after = keys.root.get("/v1/keys", params={"limit": 1000}).json()["items"]
    assert len(after) == len(before), "no key was made"
    assert ("key.create", "ci admin") in keys.refusals()


def test_narrower_keys_are_allowed(keys: Keys) -> None:
    admin = _ci_admin(keys)
    for body in (
        {"rule": {"names": ["ci_deploy_*"]}},
        {"rule": {"names": ["ci_?"], "metadata": {"environment": "ci"}}},
        {"scopes": ["secrets:read"], "expires_at": (SOON - dt.timedelta(days=1)).isoformat()},
    ):
        assert admin.post("/v1/keys", json=body).status_code == 201, body


def test_a_key_cannot_widen_its_own_rule_or_extend_its_own_expiry(keys: Keys) -> None:
    admin = _ci_admin(keys)
    own = admin.get("/v1/keys").json()["items"]
    [me] = [k for k in own if k["name"] == "ci admin"]
    for change in (
        {"rule": None},
        {"rule": {"names": ["*"]}},
        {"scopes": ["*"]},
        {"scopes": ["keys:admin", "secrets:read", "secrets:write"]},
        {"expires_at": None},
        {"expires_at": (SOON + dt.timedelta(days=365)).isoformat()},
    ):
        assert_error(admin.patch(f"/v1/keys/{me['id']}", json=change), 403, "forbidden")
    assert admin.get(f"/v1/keys/{me['id']}").json() == {**me, "last_used_at": me["last_used_at"]}
    # narrowing itself is fine
    narrowed = admin.patch(f"/v1/keys/{me['id']}", json={"rule": {"names": ["ci_a*"]}})
    assert narrowed.status_code == 200, narrowed.text
    assert [a for a, _ in keys.refusals()].count("key.update") == 6


def test_a_scoped_admin_cannot_touch_a_broader_key(keys: Keys) -> None:
    admin = _ci_admin(keys)
    broad = keys.root.post("/v1/keys", json={"name": "broad"}).json()
    listed = [k["name"] for k in admin.get("/v1/keys").json()["items"]]
    assert "broad" not in listed and "root" not in listed
    for method, path, body in (
        ("GET", f"/v1/keys/{broad['id']}", None),
        ("PATCH", f"/v1/keys/{broad['id']}", {"name": "mine now"}),
        ("POST", f"/v1/keys/{broad['id']}/rotate", {"grace_seconds": 0}),
        ("DELETE", f"/v1/keys/{broad['id']}", None),
    ):
        assert_error(admin.request(method, path, json=body), 403, "forbidden")
    # rotating it would have handed over a key as broad as it: the old one still works
    assert keys.client(broad["key"]).get("/v1/secrets").status_code == 200


def test_another_tenants_key_is_not_found(keys: Keys) -> None:
    theirs = keys.issue("theirs", tenant="other")
    other_admin = keys.client(theirs)
    mine = keys.root.post("/v1/keys", json={"name": "mine"}).json()
    for method, path in (
        ("GET", f"/v1/keys/{mine['id']}"),
        ("DELETE", f"/v1/keys/{mine['id']}"),
        ("POST", f"/v1/keys/{mine['id']}/rotate"),
    ):
        assert_error(other_admin.request(method, path), 404, "not_found")
    assert keys.client(mine["key"]).get("/v1/secrets").status_code == 200
    # and a tenant field cannot be slipped in
    assert_error(other_admin.post("/v1/keys", json={"tenant": "default"}), 422, "validation_error")


def test_without_keys_admin_nothing_is_managed(keys: Keys) -> None:
    reader = keys.client(keys.issue("reader", scopes=("secrets:read",)))
    assert_error(reader.post("/v1/keys", json={}), 403, "forbidden")
    assert_error(reader.get("/v1/keys"), 403, "forbidden")


def test_rotation_keeps_the_old_key_for_its_grace_then_refuses_it(
    keys: Keys, services: Services
) -> None:
    made = keys.root.post("/v1/keys", json={"name": "deploy", "scopes": ["secrets:read"]}).json()
    rotated = keys.root.post(f"/v1/keys/{made['id']}/rotate", json={"grace_seconds": 3600})
    assert rotated.status_code == 201, rotated.text
    new, old = rotated.json()["new"], rotated.json()["old"]
    assert (new["name"], new["scopes"]) == ("deploy", ["secrets:read"])
    assert old["expires_at"] is not None and old["revoked_at"] is None
    old_client, new_client = keys.client(made["key"]), keys.client(new["key"])
    assert old_client.get("/v1/secrets").status_code == 200
    assert new_client.get("/v1/secrets").status_code == 200
    # the grace period ends (its expiry moved into the past, as time would)
    with services.store.write() as tx:
        record = tx.apikeys.by_id(made["id"])
        assert record is not None
        tx.apikeys.update(replace(record, expires_at=dt.datetime.now(dt.UTC)))
    error = assert_error(old_client.get("/v1/secrets"), 401, "unauthorized")
    assert "expired" in error["message"]
    assert new_client.get("/v1/secrets").status_code == 200
    # without a grace period the old key is revoked at once
    again = keys.root.post(f"/v1/keys/{new['id']}/rotate").json()
    assert again["old"]["revoked_at"] is not None
    assert "revoked" in assert_error(new_client.get("/v1/secrets"), 401, "unauthorized")["message"]


def test_an_expired_key_is_told_so(keys: Keys) -> None:
    key = keys.issue("short", expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30))
    client = keys.client(key)
    assert client.get("/v1/secrets").status_code == 200
    with keys.services.store.write() as tx:
        [record] = [k for k in tx.apikeys.list_keys() if k.name == "short"]
        tx.apikeys.update(replace(record, expires_at=dt.datetime.now(dt.UTC)))
    error = assert_error(client.get("/v1/secrets"), 401, "unauthorized")
    assert error["message"].startswith("API key expired at ")


def test_last_used_at_is_written_once_a_minute_not_per_request(
    keys: Keys, services: Services
) -> None:
    made = keys.root.post("/v1/keys", json={"name": "used"}).json()
    assert made["last_used_at"] is None
    client = keys.client(made["key"])
    writes: list[str] = []
    original = type(services.store).write

    def counting(self: Any) -> Any:
        writes.append("write")
        return original(self)

    client.get("/v1/secrets")
    first = keys.root.get(f"/v1/keys/{made['id']}").json()["last_used_at"]
    assert first is not None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(type(services.store), "write", counting)
        for _ in range(5):
            assert client.get("/v1/secrets").status_code == 200
    assert writes == [], "a read-only request wrote (its key's use time)"
    assert keys.root.get(f"/v1/keys/{made['id']}").json()["last_used_at"] == first


def test_a_tenant_holds_a_bounded_number_of_keys(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(apikeys, "MAX_ACTIVE_KEYS", 3)
    statuses = [keys.root.post("/v1/keys", json={}).status_code for _ in range(3)]
    # root itself is one of the three
    assert statuses == [201, 201, 409]


def test_keys_are_never_stored_or_logged(
    keys: Keys, services: Services, backend: str, database_url: str, caplog: Any
) -> None:
    made = keys.root.post("/v1/keys", json={"name": "canary"}).json()
    rotated = keys.root.post(f"/v1/keys/{made['id']}/rotate", json={"grace_seconds": 60}).json()
    for key in (made["key"], rotated["new"]["key"]):
        if backend == "postgres":
            assert find_leaks(key, postgres_rows(database_url)) == []
        else:
            path = Path(database_url.removeprefix("sqlite:///"))
            assert find_leaks(key, path.read_bytes()) == []
        assert find_leaks(key, caplog.text.encode()) == []


def test_the_audit_trail_names_the_key_as_it_was(keys: Keys) -> None:
    made = keys.root.post("/v1/keys", json={"name": "before"}).json()
    client = keys.client(made["key"])
    client.post("/v1/secrets", json={"name": "named", "value": "v"})
    keys.root.patch(f"/v1/keys/{made['id']}", json={"name": "after"})
    client.get("/v1/secrets/named")
    events = keys.root.get("/v1/audit", params={"key_id": made["id"]}).json()["items"]
    assert [(e["action"], e["key_name"]) for e in events] == [
        ("secret.read", "after"),
        ("secret.create", "before"),
    ]


def test_audit_filters(keys: Keys) -> None:
    start = dt.datetime.now(dt.UTC)
    keys.root.post("/v1/secrets", json={"name": "a", "value": "v"})
    keys.root.get("/v1/secrets/missing")
    middle = dt.datetime.now(dt.UTC)
    keys.root.get("/v1/secrets/a")

    def actions(**params: Any) -> list[tuple[str, str]]:
        response = keys.root.get("/v1/audit", params=params)
        assert response.status_code == 200, response.text
        return [(e["action"], e["outcome"]) for e in response.json()["items"]]

    assert actions(result="not_found") == [("secret.read", "not_found")]
    assert actions(since=middle.isoformat()) == [("secret.read", "success")]
    assert actions(since=start.isoformat(), until=middle.isoformat(), action="secret.read") == [
        ("secret.read", "not_found")
    ]
    assert actions(secret="a", action="secret.create") == [("secret.create", "success")]
    assert actions(key_id="nobody") == []
    for bad in ({"secert": "a"}, {"since": "yesterday"}, {"since": "2026-01-01T00:00:00"}):
        assert_error(keys.root.get("/v1/audit", params=bad), 422, "validation_error")


def test_a_selector_admin_may_add_globs_but_never_drop_its_selector(keys: Keys) -> None:
    admin = keys.client(
        keys.issue(
            "staging admin",
            scopes=("keys:admin", "secrets:read"),
            rule=ResourceRule(metadata={"environment": "staging"}),
        )
    )
    narrower = {"rule": {"names": ["ci_*"], "metadata": {"environment": "staging"}}}
    assert admin.post("/v1/keys", json=narrower).status_code == 201
    for wider in ({"names": ["ci_*"]}, {"metadata": {"environment": "production"}}):
        assert_error(admin.post("/v1/keys", json={"rule": wider}), 403, "forbidden")


def test_a_key_cannot_be_left_without_scopes(keys: Keys) -> None:
    made = keys.root.post("/v1/keys", json={"name": "scoped"}).json()
    for scopes in (None, []):
        response = keys.root.patch(f"/v1/keys/{made['id']}", json={"scopes": scopes})
        assert_error(response, 422, "validation_error", "body.scopes")


# -- the bootstrap key -----------------------------------------------------------------------
def test_servers_starting_together_issue_one_bootstrap_key(services: Services) -> None:
    """Each server of a new deployment runs ``serve --dev``'s bootstrap at once: exactly
    one of them may issue the all-scopes key (an advisory lock on PostgreSQL, the write
    lock on SQLite), or a second key would be printed in a log nobody watches."""
    start = threading.Barrier(4)
    issued: list[str | None] = []

    def boot() -> None:
        # A store of its own, as another process would have.
        store = open_store(services.settings.database_url)
        try:
            barrier = unsealed(store)
            start.wait()
            issued.append(apikeys.bootstrap_key(store, barrier))
        finally:
            store.close()

    threads = [threading.Thread(target=boot) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(issued) == 4
    assert len([key for key in issued if key is not None]) == 1
    with services.store.read() as tx:
        assert tx.apikeys.count() == 1
