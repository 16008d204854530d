"""The secret lifecycle over the API, on both backends: delete into a recovery window,
restore and purge; rollback and writes that change nothing; expiry; batch reads and writes.

Each part starts with what the weakest key would try: read a deleted or expired value,
learn a value it may not read by watching whether a write makes a version, free a name
it may not purge, or slip a batch past the rules its one-by-one calls keep.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from strongroom.server.housekeeping import purge_ended
from strongroom.server.services import Services
from strongroom.server.storage import schema as t

from .conftest import ClientWith, MakeClient
from .support import assert_error, canary

READ_WRITE = ("secrets:read", "secrets:write")
ADMIN = ("secrets:read", "secrets:write", "secrets:admin", "audit:read")


def create(api: TestClient, name: str, value: str = "v", **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/secrets", json={"name": name, "value": value, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def names(api: TestClient, **params: Any) -> list[str]:
    response = api.get("/v1/secrets", params=params)
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def versions(api: TestClient, name: str) -> list[int]:
    response = api.get(f"/v1/secrets/{name}/versions")
    assert response.status_code == 200, response.text
    return [v["version"] for v in response.json()["items"]]


def trail(api: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/audit", params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def in_future(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


def expire_now(services: Services, name: str) -> None:
    """Move a secret's expiry into the past, as time passing would (no sleeping)."""
    with services.store.engine.begin() as conn:
        conn.execute(
            t.secrets.update()
            .where(t.secrets.c.name == name)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )


# -- soft delete, restore, purge ----------------------------------------------------------------
def test_a_deleted_secret_is_invisible_yet_restorable_with_every_version(api: TestClient) -> None:
    first, second = canary("first"), canary("second")
    created = create(api, "doomed", first, description="d", metadata={"team": "a"})
    api.put("/v1/secrets/doomed", json={"value": second}).raise_for_status()
    deleted = api.delete("/v1/secrets/doomed").json()
    assert deleted["purge_after"] is not None
    for response in (
        api.get("/v1/secrets/doomed"),
        api.get("/v1/secrets/doomed", params={"version": 1}),
        api.get("/v1/secrets/doomed/versions"),
        api.patch("/v1/secrets/doomed", json={"value": "x"}),
    ):
        assert_error(response, 404, "not_found")
        assert first not in response.text and second not in response.text
    assert names(api) == []
    assert names(api, metadata='{"team":"a"}') == []
    # its name is held: a create says how to get it back
    refused = api.post("/v1/secrets", json={"name": "doomed", "value": "other"})
    assert "restore" in assert_error(refused, 409, "conflict")["message"]
    put = api.put("/v1/secrets/doomed", json={"value": "other"})
    assert_error(put, 409, "conflict")
    listed = api.get("/v1/secrets", params={"deleted": "true"}).json()["items"]
    assert [(s["name"], s["value"]) for s in listed] == [("doomed", "ENCRYPTED")]
    assert listed[0]["deleted_at"] and listed[0]["purge_after"]

    restored = api.post("/v1/secrets/doomed/restore")
    assert restored.status_code == 200, restored.text
    assert restored.json()["id"] == created["id"]
    assert restored.json()["deleted_at"] is None
    assert api.get("/v1/secrets/doomed").json()["value"] == second
    assert api.get("/v1/secrets/doomed", params={"version": 1}).json()["value"] == first
    assert names(api, metadata='{"team":"a"}') == ["doomed"]
    assert api.get("/v1/secrets", params={"deleted": "true"}).json()["items"] == []
    actions = [e["action"] for e in trail(api, secret="doomed")]
    assert "secret.delete" in actions and "secret.restore" in actions


def test_purging_needs_admin_and_destroys_every_version(
    make_client: MakeClient, services: Services
) -> None:
    admin, writer = make_client(scopes=ADMIN), make_client(scopes=READ_WRITE)
    value = canary("purged")
    create(admin, "doomed", value)
    refused = writer.delete("/v1/secrets/doomed", params={"force": "true"})
    assert "secrets:admin" in assert_error(refused, 403, "forbidden")["message"]
    writer.delete("/v1/secrets/doomed").raise_for_status()
    # a writer cannot purge the deleted one either
    assert_error(writer.delete("/v1/secrets/doomed", params={"force": "true"}), 403, "forbidden")
    purged = admin.delete("/v1/secrets/doomed", params={"force": "true"})
    assert purged.status_code == 200, purged.text
    assert purged.json()["purge_after"] is None
    with services.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.secret_versions)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(t.secrets)).scalar() == 0
    create(admin, "doomed", "fresh")  # the name is free
    assert "secret.purge" in [e["action"] for e in trail(admin, secret="doomed")]


def test_the_scheduler_purges_when_the_window_ends(api: TestClient, services: Services) -> None:
    create(api, "old", "v")
    create(api, "young", "v")
    api.delete("/v1/secrets/old").raise_for_status()
    api.delete("/v1/secrets/young").raise_for_status()
    with services.store.engine.begin() as conn:
        conn.execute(
            t.secrets.update()
            .where(t.secrets.c.name == "old")
            .values(purge_after=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    # a restore after the window ended is refused, even before the purge ran
    late = api.post("/v1/secrets/old/restore")
    assert "recovery window" in assert_error(late, 404, "not_found")["message"]
    assert purge_ended(services.store, dt.datetime.now(dt.UTC)) == 1
    deleted = api.get("/v1/secrets", params={"deleted": "true"}).json()["items"]
    assert [s["name"] for s in deleted] == ["young"]
    create(api, "old", "again")
    purge = [e for e in trail(api, secret="old") if e["action"] == "secret.purge"]
    assert purge and "recovery window ended" in purge[0]["detail"]


def test_a_zero_window_purges_at_once(client_with: ClientWith) -> None:
    api = client_with(secret_recovery_days=0)
    create(api, "gone", "v")
    assert api.delete("/v1/secrets/gone").json()["purge_after"] is None
    assert api.get("/v1/secrets", params={"deleted": "true"}).json()["items"] == []
    create(api, "gone", "again")


def test_the_guides_rotation_recipe_may_rename_onto_a_deleted_name(api: TestClient) -> None:
    """Delete, then rename the replacement into place: the deleted one stays restorable
    once the name is free again."""
    old = create(api, "stripe_key", "old")
    create(api, "stripe_key_tmp", "new")
    api.delete("/v1/secrets/stripe_key").raise_for_status()
    renamed = api.patch("/v1/secrets/stripe_key_tmp", json={"new_name": "stripe_key"})
    assert renamed.status_code == 200, renamed.text
    assert_error(api.post("/v1/secrets/stripe_key/restore"), 409, "conflict")
    api.patch("/v1/secrets/stripe_key", json={"new_name": "stripe_key_new"}).raise_for_status()
    back = api.post("/v1/secrets/stripe_key/restore")
    assert back.json()["id"] == old["id"]
    assert api.get("/v1/secrets/stripe_key").json()["value"] == "old"


def test_the_julep_delete_keeps_its_wire_shape(api: TestClient) -> None:
    created = create(api, "julep_one", "v")
    response = api.delete(f"/julep/secrets/{created['id']}")
    assert response.status_code == 202
    assert set(response.json()) == {"id", "deleted_at", "jobs"}
    assert api.post("/v1/secrets/julep_one/restore").status_code == 200


def test_a_scoped_key_neither_sees_nor_restores_others_deleted_secrets(
    make_client: MakeClient, issue_key: Any, services: Services
) -> None:
    from strongroom.server.apikeys import create_api_key
    from strongroom.server.rules import ResourceRule

    admin = make_client(scopes=ADMIN)
    create(admin, "ci_one", "v")
    create(admin, "prod_db", canary("prod"))
    admin.delete("/v1/secrets/ci_one").raise_for_status()
    admin.delete("/v1/secrets/prod_db").raise_for_status()
    key, _ = create_api_key(
        services.store,
        services.barrier,
        "default",
        scopes=("*",),
        rule=ResourceRule(names=("ci_*",)),
    )
    scoped = make_client(key=key)
    listed = scoped.get("/v1/secrets", params={"deleted": "true"}).json()["items"]
    assert [s["name"] for s in listed] == ["ci_one"]
    assert_error(scoped.post("/v1/secrets/prod_db/restore"), 403, "forbidden")
    assert_error(scoped.delete("/v1/secrets/prod_db", params={"force": "true"}), 403, "forbidden")
    other = make_client(tenant="other", scopes=ADMIN)
    assert_error(other.post("/v1/secrets/ci_one/restore"), 404, "not_found")
    assert other.get("/v1/secrets", params={"deleted": "true"}).json()["items"] == []


# -- history: rollback, writes that change nothing ----------------------------------------------
def test_rollback_makes_a_new_version_with_the_old_value(api: TestClient) -> None:
    values = [canary(f"v{i}") for i in range(3)]
    create(api, "history", values[0])
    for value in values[1:]:
        api.put("/v1/secrets/history", json={"value": value}).raise_for_status()
    rolled = api.post("/v1/secrets/history/rollback", json={"version": 1})
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["version"] == 4
    for value in values:
        assert value not in rolled.text
    assert api.get("/v1/secrets/history").json()["value"] == values[0]
    assert versions(api, "history") == [4, 3, 2, 1]
    # back to what is current: nothing changes
    again = api.post("/v1/secrets/history/rollback", json={"version": 1})
    assert again.json()["version"] == 4
    assert_error(api.post("/v1/secrets/history/rollback", json={"version": 9}), 404, "not_found")
    stale = api.post("/v1/secrets/history/rollback", json={"version": 2, "expected_version": 3})
    assert_error(stale, 412, "precondition_failed")
    details = [e["detail"] for e in trail(api, secret="history", action="secret.update")]
    assert any("rolled back to version 1" in (d or "") for d in details)


def test_a_write_of_the_current_value_makes_no_version_for_a_reader(api: TestClient) -> None:
    value = canary("same")
    create(api, "steady", value)
    same = api.patch("/v1/secrets/steady", json={"value": value})
    assert same.json()["version"] == 1
    assert api.put("/v1/secrets/steady", json={"value": value}).json()["version"] == 1
    assert versions(api, "steady") == [1]
    assert api.put("/v1/secrets/steady", json={"value": value + "!"}).json()["version"] == 2


def test_a_write_only_key_learns_nothing_from_whether_a_version_is_made(
    make_client: MakeClient,
) -> None:
    """The no-op rule is no oracle: a key that may not read a value always makes a
    version, whether its guess is right or wrong; so does a write to a use-only secret."""
    admin, writer = make_client(scopes=ADMIN), make_client(scopes=("secrets:write",))
    value = canary("pin")
    create(admin, "pin", value)
    right = writer.put("/v1/secrets/pin", json={"value": value}).json()
    wrong = writer.put("/v1/secrets/pin", json={"value": "0000"}).json()
    assert (right["version"], wrong["version"]) == (2, 3)
    create(admin, "use_only", value, policy={"readable": False})
    guess = admin.put("/v1/secrets/use_only", json={"value": value}).json()
    assert guess["version"] == 2
    dry = admin.put(
        "/v1/secrets:batch",
        json={"secrets": [{"name": "use_only", "value": value}], "dry_run": True},
    ).json()
    assert dry["items"][0]["status"] == "updated"
    # and a write-only key may still roll a use-only secret back: the value never leaves
    rolled = writer.post("/v1/secrets/use_only/rollback", json={"version": 1})
    assert rolled.status_code == 200 and rolled.json()["version"] == 3
    assert value not in rolled.text


# -- expiry ---------------------------------------------------------------------------------------
def test_an_expired_secret_answers_410_except_to_an_admin(
    make_client: MakeClient, services: Services
) -> None:
    admin, reader = make_client(scopes=ADMIN), make_client(scopes=READ_WRITE)
    value = canary("expiring")
    created = create(admin, "token", value, expires_at=in_future(hours=1))
    assert created["expires_at"]
    assert reader.get("/v1/secrets/token").json()["value"] == value
    expire_now(services, "token")
    response = reader.get("/v1/secrets/token")
    error = assert_error(response, 410, "expired")
    assert "expired at" in error["message"] and value not in response.text
    assert admin.get("/v1/secrets/token").json()["value"] == value
    assert [e["outcome"] for e in trail(admin, secret="token", action="secret.read")][:2] == [
        "success",
        "expired",
    ]
    # a new expiry brings it back
    reader.patch("/v1/secrets/token", json={"expires_at": in_future(days=1)}).raise_for_status()
    assert reader.get("/v1/secrets/token").json()["value"] == value
    reader.patch("/v1/secrets/token", json={"expires_at": None}).raise_for_status()
    assert reader.get("/v1/secrets/token").json()["expires_at"] is None


def test_expiry_must_be_in_the_future_and_zoned(api: TestClient) -> None:
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    refused = api.post("/v1/secrets", json={"name": "x", "value": "v", "expires_at": past})
    assert assert_error(refused, 422, "validation_error")["details"][0]["location"] == (
        "body.expires_at"
    )
    naive = api.post(
        "/v1/secrets", json={"name": "x", "value": "v", "expires_at": "2099-01-01T00:00:00"}
    )
    assert_error(naive, 422, "validation_error")


def test_expiring_before_lists_the_soon_and_the_expired(
    api: TestClient, services: Services
) -> None:
    create(api, "soon", "v", expires_at=in_future(days=2), metadata={"env": "prod"})
    create(api, "later", "v", expires_at=in_future(days=30))
    create(api, "never", "v")
    create(api, "gone", "v", expires_at=in_future(hours=1))
    expire_now(services, "gone")
    before = in_future(days=7)
    assert names(api, expiring_before=before) == ["gone", "soon"]
    assert names(api, expiring_before=before, metadata='{"env":"prod"}') == ["soon"]
    assert names(api) == ["gone", "later", "never", "soon"]


# -- batches -------------------------------------------------------------------------------------
def test_batch_get_reads_many_with_one_record_each(api: TestClient) -> None:
    values = {f"s{i}": canary(f"b{i}") for i in range(5)}
    for name, value in values.items():
        create(api, name, value)
    create(api, "hidden", canary("hidden"), policy={"readable": False})
    response = api.post("/v1/secrets:batchGet", json={"names": [*values, "missing", "hidden"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert {s["name"]: s["value"] for s in body["secrets"]} == values
    assert [(e["name"], e["code"]) for e in body["errors"]] == [
        ("missing", "not_found"),
        ("hidden", "forbidden"),
    ]
    reads = trail(api, action="secret.read")
    assert sorted(e["secret_name"] for e in reads) == sorted([*values, "missing", "hidden"])


def test_batch_get_keeps_a_scoped_keys_rule(make_client: MakeClient, services: Services) -> None:
    from strongroom.server.apikeys import create_api_key
    from strongroom.server.rules import ResourceRule

    admin = make_client(scopes=ADMIN)
    prod = canary("prod")
    create(admin, "ci_token", "ci")
    create(admin, "ci_prod", prod, metadata={"env": "prod"})
    create(admin, "prod_db", prod)
    key, _ = create_api_key(
        services.store,
        services.barrier,
        "default",
        scopes=("secrets:read",),
        rule=ResourceRule(names=("ci_*",), metadata={"env": "ci"}),
    )
    scoped = make_client(key=key)
    admin.patch("/v1/secrets/ci_token", json={"metadata": {"env": "ci"}}).raise_for_status()
    response = scoped.post(
        "/v1/secrets:batchGet", json={"names": ["ci_token", "ci_prod", "prod_db"]}
    )
    assert prod not in response.text
    body = response.json()
    assert [s["name"] for s in body["secrets"]] == ["ci_token"]
    # out of reach by metadata: worded as missing; by name: forbidden
    assert [(e["name"], e["code"]) for e in body["errors"]] == [
        ("ci_prod", "not_found"),
        ("prod_db", "forbidden"),
    ]
    write_only = make_client(scopes=("secrets:write",))
    assert_error(
        write_only.post("/v1/secrets:batchGet", json={"names": ["ci_token"]}), 403, "forbidden"
    )


def test_batch_requests_are_bounded(api: TestClient) -> None:
    many = [f"s{i}" for i in range(1001)]
    assert_error(api.post("/v1/secrets:batchGet", json={"names": many}), 422, "validation_error")
    twice = api.post("/v1/secrets:batchGet", json={"names": ["a", "a"]})
    assert "twice" in assert_error(twice, 422, "validation_error")["message"]
    assert_error(api.post("/v1/secrets:batchGet", json={"names": []}), 422, "validation_error")
    items = [{"name": f"s{i}", "value": "v"} for i in range(1001)]
    assert_error(api.put("/v1/secrets:batch", json={"secrets": items}), 422, "validation_error")


def test_batch_put_is_all_or_nothing(make_client: MakeClient) -> None:
    admin, writer = make_client(scopes=ADMIN), make_client(scopes=READ_WRITE)
    create(admin, "locked", "v", policy={"readable": False})
    batch = [
        {"name": "fresh", "value": "one"},
        {"name": "locked", "value": "two", "policy": {"readable": True}},  # a loosening
    ]
    refused = writer.put("/v1/secrets:batch", json={"secrets": batch})
    assert_error(refused, 403, "forbidden")
    assert names(admin) == ["locked"]  # "fresh" was not created either
    bad_value = [{"name": "fresh", "value": "one"}, {"name": "big", "value": "x" * 70_000}]
    error = assert_error(
        writer.put("/v1/secrets:batch", json={"secrets": bad_value}), 422, "validation_error"
    )
    assert error["details"][0]["location"] == "body.secrets[1].value"
    assert names(admin) == ["locked"]


def test_batch_put_creates_updates_and_keeps_what_is_unchanged(api: TestClient) -> None:
    create(api, "same", "kept", description="d")
    create(api, "changed", "before")
    batch = [
        {"name": "same", "value": "kept"},
        {"name": "changed", "value": "after"},
        {"name": "new", "value": "n", "metadata": {"team": "a"}, "expires_at": in_future(days=3)},
    ]
    dry = api.put("/v1/secrets:batch", json={"secrets": batch, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert [(i["name"], i["status"]) for i in dry.json()["items"]] == [
        ("same", "unchanged"),
        ("changed", "updated"),
        ("new", "created"),
    ]
    assert names(api) == ["changed", "same"]  # a dry run writes nothing
    done = api.put("/v1/secrets:batch", json={"secrets": batch}).json()
    assert [(i["status"], i["version"]) for i in done["items"]] == [
        ("unchanged", 1),
        ("updated", 2),
        ("created", 1),
    ]
    created = api.get("/v1/secrets/new").json()
    assert created["metadata"] == {"team": "a"}
    assert created["expires_at"] is not None
    assert api.get("/v1/secrets/same").json()["description"] == "d"
    assert versions(api, "same") == [1]
    again = api.put("/v1/secrets:batch", json={"secrets": batch}).json()
    assert {i["status"] for i in again["items"]} == {"unchanged"}


def test_batch_put_does_not_take_a_deleted_name(api: TestClient) -> None:
    create(api, "deleted_one", "v")
    api.delete("/v1/secrets/deleted_one").raise_for_status()
    refused = api.put(
        "/v1/secrets:batch", json={"secrets": [{"name": "deleted_one", "value": "x"}]}
    )
    assert "restore" in assert_error(refused, 409, "conflict")["message"]


@pytest.mark.parametrize("scopes", [("secrets:read",), ("tasks:run",)])
def test_batch_put_needs_write(make_client: MakeClient, scopes: tuple[str, ...]) -> None:
    client = make_client(scopes=scopes)
    refused = client.put("/v1/secrets:batch", json={"secrets": [{"name": "x", "value": "v"}]})
    assert_error(refused, 403, "forbidden")


def test_expired_and_expiring_secrets_are_counted(api: TestClient, services: Services) -> None:
    """What a metrics endpoint reports: expired, and expiring within a window."""
    create(api, "gone", "v", expires_at=in_future(hours=1))
    create(api, "soon", "v", expires_at=in_future(days=2))
    create(api, "later", "v", expires_at=in_future(days=30))
    create(api, "deleted_soon", "v", expires_at=in_future(days=1))
    api.delete("/v1/secrets/deleted_soon").raise_for_status()
    expire_now(services, "gone")
    now = dt.datetime.now(dt.UTC)
    with services.store.read() as tx:
        assert tx.secrets.count_expiring(now, now + dt.timedelta(days=7)) == (1, 1)
