"""Usage policies on the secrets surface, tested as an attacker would try them.

A use-only secret (``readable: false``) holds a planted canary; then every route a key of
every scope combination can call is called, and no answer may hold any encoding of the
canary, while every value read answers 403 ``forbidden``. A key that may write but not
administer tries each way to loosen a policy, and each one is refused, audited and leaves
the policy as it was. Bad policies are refused with a 422 located at the bad entry. The
matching rules of ``policy.py`` are unit-tested at the end. Everything that touches
storage runs on SQLite and PostgreSQL (the ``backend`` fixture).
"""

from __future__ import annotations

import itertools
import json
import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient

from strongroom.server.policy import (
    DEFAULT_POLICY,
    MAX_ENTRIES,
    DestinationPattern,
    PolicyError,
    SecretPolicy,
)
from strongroom.server.services import Services
from strongroom.server.storage import Store, open_store
from strongroom.server.storage import schema as t
from strongroom.server.storage.migrate import alembic_config
from strongroom.server.storage.sql import SQLStore
from strongroom.server.tasks.tools import REGISTRY

from .conftest import MakeClient
from .support import ServerProcess, assert_error, canary, find_leaks, run_cli

SCOPES = ("secrets:read", "secrets:write", "secrets:admin", "tasks:run", "audit:read")
# Every non-empty combination of the scopes, and "*" (no scopes at all is every scope).
COMBINATIONS = [
    combo for size in range(1, len(SCOPES) + 1) for combo in itertools.combinations(SCOPES, size)
] + [("*",)]
USE_ONLY = {"readable": False}


# -- helpers ------------------------------------------------------------------------------------
def create(api: TestClient, name: str, value: str = "v", **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/secrets", json={"name": name, "value": value, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def policy_of(api: TestClient, name: str) -> dict[str, Any]:
    """The policy as the list shows it (a use-only secret cannot be read by name)."""
    response = api.get("/v1/secrets", params={"limit": 1000})
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        if item["name"] == name:
            found: dict[str, Any] = item["policy"]
            return found
    raise AssertionError(f"no secret {name}")


def audit(api: TestClient, **params: Any) -> list[dict[str, Any]]:
    response = api.get("/v1/audit", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def assert_no_leak(values: list[str], response: Any) -> None:
    """No encoding of any planted value in the answer: body and headers."""
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    haystack = response.content + headers.encode()
    for value in values:
        assert find_leaks(value, haystack) == [], (response.request.url, response.text)


def grants(scopes: tuple[str, ...], scope: str) -> bool:
    return "*" in scopes or scope in scopes


def engine_of(store: Store) -> sa.Engine:
    assert isinstance(store, SQLStore)
    return store.engine


def registry_tools() -> set[str]:
    """Every tool name and tool/operation the task tool registry has."""
    names = set(REGISTRY.names)
    for name in REGISTRY.names:
        tool = REGISTRY.get(name)
        assert tool is not None
        names.update(f"{name}/{operation}" for operation in tool.operations)
    return names


# -- the default policy, and what the Secret object shows -----------------------------------------
def test_a_secret_has_the_default_policy_unless_given_one(api: TestClient) -> None:
    body = create(api, "plain")
    assert body["policy"] == {"allowed_destinations": None, "allowed_tools": None, "readable": True}
    assert api.get("/v1/secrets/plain").json()["policy"] == body["policy"]
    assert api.get("/v1/secrets").json()["items"][0]["policy"] == body["policy"]


def test_a_policy_is_stored_normalised_and_shown_everywhere(api: TestClient) -> None:
    policy = {
        "allowed_destinations": ["API.Stripe.com.", "*.stripe.com:443", "[2001:DB8::1]:8443"],
        "allowed_tools": ["http/request", "openai"],
    }
    body = create(api, "stripe", policy=policy)
    shown = {
        "allowed_destinations": ["api.stripe.com", "*.stripe.com:443", "[2001:db8::1]:8443"],
        "allowed_tools": ["http/request", "openai"],
        "readable": True,
    }
    assert body["policy"] == shown
    assert api.get("/v1/secrets/stripe").json()["policy"] == shown
    assert policy_of(api, "stripe") == shown


def test_the_openapi_document_describes_the_policy(api: TestClient) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    secret = schemas["Secret"]
    assert "policy" in secret["required"]
    out = schemas[secret["properties"]["policy"]["$ref"].rsplit("/", 1)[-1]]
    assert set(out["required"]) == {"allowed_destinations", "allowed_tools", "readable"}
    change = schemas["SecretPolicyChange"]
    assert change["additionalProperties"] is False
    tools = change["properties"]["allowed_tools"]["anyOf"][0]
    assert set(tools["items"]["enum"]) == registry_tools()
    assert tools["maxItems"] == MAX_ENTRIES
    assert change["properties"]["readable"]["type"] == "boolean"
    for body in ("SecretCreate", "SecretUpdate", "SecretPut"):
        assert schemas[body]["properties"]["policy"]["$ref"].endswith("/SecretPolicyChange")
    assert {"required": ["policy"]} in schemas["SecretUpdate"]["anyOf"]


# -- use-only: the canary never comes out ---------------------------------------------------------
def test_a_use_only_secret_leaks_to_no_key_of_any_scope_through_any_route(
    make_client: MakeClient,
) -> None:
    admin = make_client(scopes=("*",))
    planted = [canary("v1"), canary("v2")]
    vault = create(
        admin,
        "vault",
        planted[0],
        description="payments",
        metadata={"env": "prod"},
        policy=USE_ONLY,
    )
    update = admin.patch("/v1/secrets/vault", json={"value": planted[1]})  # writes still work
    assert update.status_code == 200, update.text
    assert update.json()["version"] == 2
    create(admin, "readable_one", "not-secret", metadata={"env": "prod"})

    for scopes in COMBINATIONS:
        client = make_client(scopes=scopes)
        answers = []

        # the value, whichever version, and the versions list: 403 for everybody
        for params in ({}, {"version": 1}, {"version": 2}, {"version": 3}):
            response = client.get("/v1/secrets/vault", params=params)
            error = assert_error(response, 403, "forbidden")
            if grants(scopes, "secrets:read"):
                assert "use-only" in error["message"], error
            answers.append(response)
        versions = client.get("/v1/secrets/vault/versions")
        assert_error(versions, 403, "forbidden")
        answers.append(versions)

        # lists: allowed to readers, and never with a value
        for params in ({}, {"metadata": json.dumps({"env": "prod"})}, {"metadata[env]": "prod"}):
            listed = client.get("/v1/secrets", params=params)
            assert listed.status_code == (200 if grants(scopes, "secrets:read") else 403)
            if listed.status_code == 200:
                item = next(i for i in listed.json()["items"] if i["name"] == "vault")
                assert item["value"] == "ENCRYPTED"
                assert item["policy"]["readable"] is False
            answers.append(listed)
        julep_list = client.get("/julep/secrets")
        assert julep_list.status_code == (200 if grants(scopes, "secrets:read") else 403)
        answers.append(julep_list)

        # writes: allowed to writers, whose answers hold no value (not even the one sent)
        mine = canary("mine")
        planted.append(mine)
        writes = [
            client.patch("/v1/secrets/vault", json={"description": "payments"}),
            client.patch("/v1/secrets/vault", json={"new_name": "vault"}),
            client.put("/v1/secrets/vault", json={"value": mine}),
            client.put(f"/julep/secrets/{vault['id']}", json={"name": "vault", "value": mine}),
        ]
        scratch = f"scratch_{uuid.uuid4().hex[:8]}"
        created = client.post("/julep/secrets", json={"name": scratch, "value": mine})
        writes.append(created)
        if created.status_code == 201:
            writes.append(client.delete(f"/julep/secrets/{created.json()['id']}"))
        for response in writes:
            if grants(scopes, "secrets:write"):
                assert response.status_code in (200, 201, 202), response.text
                assert response.json().get("value", "ENCRYPTED") == "ENCRYPTED"
            else:
                assert_error(response, 403, "forbidden")
        answers += writes

        # the trail: readable by auditors, and it holds no value either
        trail = client.get("/v1/audit", params={"limit": 1000})
        assert trail.status_code == (200 if grants(scopes, "audit:read") else 403)
        answers.append(trail)

        for response in answers:
            assert_no_leak(planted, response)

    # the writes kept the policy, and every value read was refused and recorded so
    assert policy_of(admin, "vault")["readable"] is False
    reads = audit(admin, secret="vault", action="secret.read")
    assert len(reads) == 4 * len(COMBINATIONS)
    assert {r["outcome"] for r in reads} == {"forbidden"}
    listed = audit(admin, secret="vault", action="secret.versions")
    assert {r["outcome"] for r in listed} == {"forbidden"} and len(listed) == len(COMBINATIONS)


def test_an_unknown_secret_is_still_not_found_and_a_readable_one_still_reads(
    api: TestClient,
) -> None:
    create(api, "hidden", canary(), policy=USE_ONLY)
    assert_error(api.get("/v1/secrets/absent"), 404, "not_found")
    value = canary()
    create(api, "shown", value, policy={"allowed_tools": ["http"]})
    assert api.get("/v1/secrets/shown").json()["value"] == value


def test_making_a_secret_use_only_stops_reads_of_its_old_versions_too(api: TestClient) -> None:
    old = canary("old")
    create(api, "retired", old)
    api.patch("/v1/secrets/retired", json={"value": canary("new")}).raise_for_status()
    tightened = api.patch("/v1/secrets/retired", json={"policy": USE_ONLY})
    assert tightened.status_code == 200 and tightened.json()["policy"]["readable"] is False
    for version in (1, 2):
        response = api.get("/v1/secrets/retired", params={"version": version})
        assert_error(response, 403, "forbidden")
        assert not find_leaks(old, response.content)


# -- escalation: loosening needs secrets:admin ----------------------------------------------------
RESTRICTED = {
    "allowed_destinations": ["*.stripe.com", "api.example.com:443"],
    "allowed_tools": ["http/request"],
    "readable": False,
}
LOOSENINGS = [
    {"readable": True},
    {"allowed_destinations": None},
    {"allowed_destinations": ["*.stripe.com", "api.example.com:443", "evil.example"]},
    {"allowed_destinations": ["stripe.com"]},  # the apex is not under *.stripe.com
    {"allowed_destinations": ["api.example.com"]},  # any port is wider than :443
    {"allowed_destinations": ["*.com"]},
    {"allowed_tools": None},
    {"allowed_tools": ["http"]},  # every operation is wider than one
    {"allowed_tools": ["http/request", "openai/chat"]},
    {"allowed_tools": ["http/request"], "readable": True},
]


@pytest.mark.parametrize("loosening", LOOSENINGS, ids=lambda change: json.dumps(change))
def test_a_write_key_cannot_loosen_a_policy(
    make_client: MakeClient, loosening: dict[str, Any]
) -> None:
    admin = make_client(scopes=("*",))
    secret = create(admin, "guarded", canary(), policy=RESTRICTED)
    writer = make_client(scopes=("secrets:read", "secrets:write", "tasks:run", "audit:read"))
    before = policy_of(admin, "guarded")

    attempts = [
        writer.patch("/v1/secrets/guarded", json={"policy": loosening}),
        # with other changes, none of which may then be kept
        writer.patch(
            "/v1/secrets/guarded",
            json={"value": canary(), "description": "x", "policy": loosening},
        ),
        writer.put("/v1/secrets/guarded", json={"value": canary(), "policy": loosening}),
    ]
    for response in attempts:
        error = assert_error(response, 403, "forbidden")
        assert "secrets:admin" in error["message"], error

    assert policy_of(admin, "guarded") == before
    listed = next(i for i in admin.get("/v1/secrets").json()["items"] if i["name"] == "guarded")
    assert (listed["version"], listed["description"]) == (1, None)
    assert listed["updated_at"] == secret["updated_at"]
    refused = [e for e in audit(admin, secret="guarded") if e["outcome"] == "forbidden"]
    assert [e["action"] for e in refused] == ["secret.update"] * 3


def test_a_key_with_secrets_admin_alone_cannot_write(make_client: MakeClient) -> None:
    admin = make_client(scopes=("*",))
    create(admin, "guarded", canary(), policy=RESTRICTED)
    only_admin = make_client(scopes=("secrets:admin",))
    response = only_admin.patch("/v1/secrets/guarded", json={"policy": {"readable": True}})
    assert "secrets:write" in assert_error(response, 403, "forbidden")["message"]
    assert policy_of(admin, "guarded")["readable"] is False


@pytest.mark.parametrize(
    "scopes", [("secrets:write", "secrets:admin"), ("*",)], ids=["write+admin", "star"]
)
def test_an_admin_key_can_loosen_and_the_trail_says_so(
    make_client: MakeClient, scopes: tuple[str, ...]
) -> None:
    owner = make_client(scopes=("*",))
    create(owner, "guarded", canary(), policy=RESTRICTED)
    admin = make_client(scopes=scopes)
    for loosening in LOOSENINGS:
        owner.patch("/v1/secrets/guarded", json={"policy": RESTRICTED}).raise_for_status()
        response = admin.patch("/v1/secrets/guarded", json={"policy": loosening})
        assert response.status_code == 200, (loosening, response.text)
        assert response.json()["policy"] == {**RESTRICTED, **loosening}
    admin.patch(
        "/v1/secrets/guarded",
        json={"policy": {"allowed_destinations": None, "allowed_tools": None, "readable": True}},
    ).raise_for_status()
    assert policy_of(owner, "guarded") == {
        "allowed_destinations": None,
        "allowed_tools": None,
        "readable": True,
    }
    updates = audit(owner, secret="guarded", action="secret.update")
    assert updates[0]["detail"] == (
        "changed policy; version 1; the policy change removes allowed_destinations and "
        "removes allowed_tools"
    )
    assert "makes it readable again" in updates[-2]["detail"]  # the first loosening
    assert all(e["outcome"] == "success" for e in updates)


# Each narrower than the one before (from *.stripe.com and api.example.com:443, any tool)
TIGHTENINGS = [
    {"allowed_tools": ["http"]},
    {"readable": False},
    {"allowed_destinations": ["*.api.stripe.com", "api.example.com:443"]},  # under *.stripe.com
    {"allowed_destinations": ["eu.api.stripe.com", "api.example.com:443"]},
    {"allowed_destinations": ["eu.api.stripe.com"]},
    {"allowed_tools": ["http/request"]},  # one operation of http
    {"allowed_destinations": []},
    {"allowed_tools": []},
]


def test_a_write_key_can_tighten_a_policy(make_client: MakeClient) -> None:
    admin = make_client(scopes=("*",))
    start = {"allowed_destinations": ["*.stripe.com", "api.example.com:443"], "readable": True}
    create(admin, "tightened", canary(), policy=start)
    writer = make_client(scopes=("secrets:read", "secrets:write"))
    expected: dict[str, Any] = {**start, "allowed_tools": None}
    for change in TIGHTENINGS:
        response = writer.patch("/v1/secrets/tightened", json={"policy": change})
        assert response.status_code == 200, (change, response.text)
        expected.update(change)
        assert response.json()["policy"] == expected
    assert policy_of(admin, "tightened") == expected


def test_a_write_key_can_create_a_secret_with_any_policy(make_client: MakeClient) -> None:
    writer = make_client(scopes=("secrets:write",))
    created = writer.post(
        "/v1/secrets", json={"name": "fresh", "value": canary(), "policy": RESTRICTED}
    )
    assert created.status_code == 201, created.text
    assert created.json()["policy"]["readable"] is False
    put = writer.put("/v1/secrets/fresh_put", json={"value": canary(), "policy": USE_ONLY})
    assert put.status_code == 201, put.text
    assert put.json()["policy"]["readable"] is False


def test_writes_that_give_no_policy_keep_it(make_client: MakeClient) -> None:
    admin = make_client(scopes=("*",))
    secret = create(admin, "kept", canary(), policy=RESTRICTED)
    writer = make_client(scopes=("secrets:read", "secrets:write"))
    before = policy_of(admin, "kept")
    writer.patch("/v1/secrets/kept", json={"value": canary(), "metadata": {"a": 1}})
    writer.put("/v1/secrets/kept", json={"value": canary()})
    writer.put(f"/julep/secrets/{secret['id']}", json={"name": "kept", "value": canary()})
    renamed = writer.patch("/v1/secrets/kept", json={"new_name": "moved"})
    assert renamed.status_code == 200, renamed.text
    assert policy_of(admin, "moved") == before
    # a partial policy keeps the fields it leaves out
    partial = writer.patch("/v1/secrets/moved", json={"policy": {"allowed_tools": []}})
    assert partial.json()["policy"] == {**before, "allowed_tools": []}


# -- validation ---------------------------------------------------------------------------------
BAD_POLICIES = [
    ({"allowed_destinations": ["api.stripe.com", "exa mple.com"]}, "allowed_destinations[1]"),
    ({"allowed_destinations": ["https://api.stripe.com"]}, "allowed_destinations[0]"),
    ({"allowed_destinations": ["api.stripe.com/v1"]}, "allowed_destinations[0]"),
    ({"allowed_destinations": ["api.stripe.com:0"]}, "allowed_destinations[0]"),
    ({"allowed_destinations": ["api.stripe.com:65536"]}, "allowed_destinations[0]"),
    ({"allowed_destinations": ["a.com", "[a.com]:443"]}, "allowed_destinations[1]"),
    ({"allowed_destinations": ["1.2.3.256"]}, "allowed_destinations[0]"),
    ({"allowed_destinations": [""]}, "allowed_destinations[0]"),
    ({"allowed_destinations": ["xn--mnchen-3ya.de", "münchen.de"]}, "allowed_destinations[1]"),
    ({"allowed_destinations": "api.stripe.com"}, "allowed_destinations"),
    ({"allowed_destinations": [f"h{i}.example" for i in range(65)]}, "allowed_destinations"),
    ({"allowed_tools": ["ftp"]}, "allowed_tools[0]"),
    ({"allowed_tools": ["http", "http/get"]}, "allowed_tools[1]"),
    ({"allowed_tools": ["HTTP"]}, "allowed_tools[0]"),
    ({"allowed_tools": "http"}, "allowed_tools"),
    ({"allowed_tools": [1]}, "allowed_tools[0]"),
    ({"readable": "false"}, "readable"),
    ({"readable": None}, "readable"),
    ({"colour": "red"}, "colour"),
]


@pytest.mark.parametrize(("policy", "where"), BAD_POLICIES, ids=[w for _, w in BAD_POLICIES])
def test_a_bad_policy_is_refused_where_it_is_wrong(
    api: TestClient, policy: dict[str, Any], where: str
) -> None:
    location = f"body.policy.{where}"
    created = api.post("/v1/secrets", json={"name": "bad", "value": "v", "policy": policy})
    assert_error(created, 422, "validation_error", location)
    assert api.get("/v1/secrets").json()["items"] == []
    create(api, "good", "v", policy={"allowed_tools": ["http"]})
    assert_error(
        api.patch("/v1/secrets/good", json={"description": "x", "policy": policy}),
        422,
        "validation_error",
        location,
    )
    assert_error(
        api.put("/v1/secrets/good", json={"value": "w", "policy": policy}),
        422,
        "validation_error",
        location,
    )
    unchanged = api.get("/v1/secrets/good").json()
    assert (unchanged["version"], unchanged["description"]) == (1, None)
    assert unchanged["policy"]["allowed_tools"] == ["http"]


@pytest.mark.parametrize("method", ["post", "patch", "put"])
def test_a_null_or_non_object_policy_is_refused(api: TestClient, method: str) -> None:
    create(api, "target", "v")
    for bad in (None, [], "readable", 1):
        body = {"value": "w", "policy": bad}
        if method == "post":
            response = api.post("/v1/secrets", json={"name": "other", **body})
        else:
            response = getattr(api, method)("/v1/secrets/target", json=body)
        assert_error(response, 422, "validation_error", "body.policy")


# -- audit of no-op writes, and what a write-only key learns ------------------------------------
def test_no_op_updates_are_audited(api: TestClient) -> None:
    create(api, "same", "v", policy={"allowed_tools": ["http"]})
    for body in (
        {"new_name": "same"},
        {"policy": {}},
        {"policy": {"allowed_tools": ["http"]}},
    ):
        response = api.patch("/v1/secrets/same", json=body)
        assert response.status_code == 200, response.text
    updates = audit(api, secret="same", action="secret.update")
    assert [(e["outcome"], e["detail"]) for e in updates] == [("success", "no change")] * 3


def test_a_write_only_key_learns_nothing_it_did_not_send(make_client: MakeClient) -> None:
    owner = make_client(scopes=("*",))
    description, label = canary("description"), canary("label")
    secret = create(owner, "labelled", "v", description=description, metadata={"label": label})
    writer = make_client(scopes=("secrets:write",))

    answers = {
        "no-op rename": writer.patch("/v1/secrets/labelled", json={"new_name": "labelled"}),
        "new value": writer.patch("/v1/secrets/labelled", json={"value": "w"}),
        "policy": writer.patch("/v1/secrets/labelled", json={"policy": {"allowed_tools": []}}),
        "put": writer.put("/v1/secrets/labelled", json={"value": "x"}),
        "julep put": writer.put(
            f"/julep/secrets/{secret['id']}", json={"name": "labelled", "value": "y"}
        ),
        "rename": writer.patch("/v1/secrets/labelled", json={"new_name": "relabelled"}),
    }
    for what, response in answers.items():
        assert response.status_code == 200, (what, response.text)
        body = response.json()
        assert (body["description"], body["metadata"]) == (None, {}), what
        assert not find_leaks(description, response.content), what
        assert not find_leaks(label, response.content), what

    # what it sends, it sees back; what it did not send stays hidden
    sent = writer.patch("/v1/secrets/relabelled", json={"description": "mine"}).json()
    assert (sent["description"], sent["metadata"]) == ("mine", {})
    # and nothing was lost: a reader sees the metadata the writer never saw
    listed = owner.get("/v1/secrets").json()["items"][0]
    assert (listed["description"], listed["metadata"]) == ("mine", {"label": label})
    # the no-op rename is in the trail
    noop = audit(owner, secret="labelled", action="secret.update")
    assert ("success", "no change") in [(e["outcome"], e["detail"]) for e in noop]

    # a key that may also read sees everything, as before
    reader_writer = make_client(scopes=("secrets:read", "secrets:write"))
    full = reader_writer.patch("/v1/secrets/relabelled", json={"new_name": "relabelled"}).json()
    assert full["metadata"] == {"label": label}


# -- storage: both backends, and the migration -------------------------------------------------
def test_the_default_policy_is_stored_as_null(api: TestClient, services: Services) -> None:
    create(api, "default_one")
    create(api, "restricted_one", policy={"allowed_tools": ["http"], "readable": False})
    engine = engine_of(services.store)
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.select(t.secrets.c.name, t.secrets.c.policy_json)).all())
    assert rows["default_one"] is None
    assert json.loads(rows["restricted_one"]) == {
        "allowed_destinations": None,
        "allowed_tools": ["http"],
        "readable": False,
    }
    # back to the default is back to NULL
    api.patch(
        "/v1/secrets/restricted_one", json={"policy": {"allowed_tools": None, "readable": True}}
    ).raise_for_status()
    with engine.connect() as conn:
        stored = conn.execute(
            sa.select(t.secrets.c.policy_json).where(t.secrets.c.name == "restricted_one")
        ).scalar_one()
    assert stored is None


def test_secrets_from_before_the_migration_have_the_default_policy(
    backend: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """Migrate a database at 0003 that holds a secret: the new column is NULL, which is
    the default policy, and the secret is read as before."""
    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else str(request.getfixturevalue("database_url"))
    )
    store = open_store(url)
    try:
        engine = engine_of(store)
        if backend == "postgres":  # the test database, emptied to before any migration
            with engine.begin() as conn:
                conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                conn.execute(sa.text("CREATE SCHEMA public"))
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0003")
            conn.execute(
                sa.text("INSERT INTO tenants (id, name, created_at) VALUES (:id, 't', :at)"),
                {"id": "t1", "at": "2026-01-01 00:00:00"},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO secrets (id, tenant_id, name, description, metadata_json,"
                    " version, created_at, updated_at) VALUES ('s1', 't1', 'old', NULL, '{}',"
                    " 1, :at, :at)"
                ),
                {"at": "2026-01-01 00:00:00"},
            )
        store.migrate()
        with store.read() as tx:
            secret = tx.secrets.by_name("t1", "old")
        assert secret is not None
        assert secret.policy == DEFAULT_POLICY
    finally:
        store.close()


# -- the command line -----------------------------------------------------------------------------
def cli_env(server: ServerProcess, key: str) -> dict[str, str]:
    return {"STRONGROOM_API_KEY": key, "STRONGROOM_BASE_URL": server.base_url}


@pytest.mark.e2e
def test_the_cli_sets_shows_and_changes_a_policy(server: ServerProcess, issue_key: Any) -> None:
    owner = cli_env(server, issue_key(scopes=("*",)))
    value = canary()
    done = run_cli(
        [
            "secrets", "set", "stripe_key", value,
            "--allow-destination", "api.stripe.com:443",
            "--allow-destination", "*.stripe.com",
            "--allow-tool", "http/request",
            "--use-only",
        ],
        owner,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "use-only; destinations: api.stripe.com:443, *.stripe.com" in done.stderr
    assert not find_leaks(value, (done.stdout + done.stderr).encode())

    listed = run_cli(["secrets", "list", "--json"], owner)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["policy"] == {
        "allowed_destinations": ["api.stripe.com:443", "*.stripe.com"],
        "allowed_tools": ["http/request"],
        "readable": False,
    }
    shown = run_cli(["secrets", "policy", "stripe_key", "--json"], owner)
    assert json.loads(shown.stdout)["readable"] is False

    # a new value through `set` keeps the policy; `policy` changes it without the value
    assert run_cli(["secrets", "set", "stripe_key", canary()], owner).returncode == 0
    writer = cli_env(server, issue_key(scopes=("secrets:read", "secrets:write")))
    narrowed = run_cli(
        ["secrets", "policy", "stripe_key", "--allow-destination", "api.stripe.com:443"], writer
    )
    assert narrowed.returncode == 0, narrowed.stderr
    assert (
        narrowed.stdout == "stripe_key: use-only; destinations: api.stripe.com:443; "
        "tools: http/request\n"
    )
    for loosening in (["--readable"], ["--clear-tools"], ["--allow-tool", "http"]):
        refused = run_cli(["secrets", "policy", "stripe_key", *loosening], writer)
        assert refused.returncode == 5, refused.stderr  # the auth/permission exit code
        assert "secrets:admin" in refused.stderr
    loosened = run_cli(
        ["secrets", "policy", "stripe_key", "--readable", "--clear-destinations", "--json"],
        owner,
    )
    assert loosened.returncode == 0, loosened.stderr
    assert json.loads(loosened.stdout) == {
        "allowed_destinations": None,
        "allowed_tools": ["http/request"],
        "readable": True,
    }
    both = run_cli(
        ["secrets", "policy", "stripe_key", "--allow-tool", "http", "--clear-tools"], owner
    )
    assert both.returncode == 2
    bad = run_cli(["secrets", "policy", "stripe_key", "--allow-destination", "https://x"], owner)
    assert bad.returncode == 1 and "body.policy.allowed_destinations[0]" in bad.stderr
    missing = run_cli(["secrets", "policy", "nothing_here"], owner)
    assert missing.returncode == 3


@pytest.mark.e2e
def test_the_cli_never_prints_a_use_only_value(server: ServerProcess, issue_key: Any) -> None:
    env = cli_env(server, issue_key(scopes=("*",)))
    hidden, shown = canary("hidden"), canary("shown")
    assert run_cli(["secrets", "set", "hidden_key", hidden, "--use-only"], env).returncode == 0
    assert run_cli(["secrets", "set", "shown_key", shown], env).returncode == 0

    got = run_cli(["secrets", "get", "hidden_key"], env)
    assert got.returncode == 5, got.stderr
    assert got.stdout == ""
    assert "use-only" in got.stderr and "hidden_key" in got.stderr

    exported = run_cli(["secrets", "export", "--format", "json"], env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {"shown_key": shown}
    assert "left out 1 use-only secrets" in exported.stderr and "hidden_key" in exported.stderr
    for done in (got, exported):
        assert not find_leaks(hidden, (done.stdout + done.stderr).encode())


# -- policy.py: parsing, matching, loosening ------------------------------------------------------
def test_a_wildcard_matches_subdomains_only() -> None:
    pattern = DestinationPattern.parse("*.stripe.com")
    assert pattern.matches("api.stripe.com", 443)
    assert pattern.matches("a.b.stripe.com", None)
    assert not pattern.matches("stripe.com", 443)  # the apex is not a subdomain
    assert not pattern.matches("evilstripe.com", 443)  # nor is a name that ends alike
    assert not pattern.matches("stripe.com.evil.example", 443)
    assert not pattern.matches(".stripe.com", 443)  # an empty label is no subdomain
    assert not pattern.matches("a..stripe.com", 443)
    exact = DestinationPattern.parse("stripe.com")
    assert exact.matches("stripe.com", 1234) and not exact.matches("api.stripe.com", None)


def test_matching_folds_case_and_a_trailing_dot() -> None:
    pattern = DestinationPattern.parse("API.Stripe.COM.")
    assert str(pattern) == "api.stripe.com"
    assert pattern.matches("api.stripe.com", None)
    assert pattern.matches("Api.STRIPE.com.", 443)
    assert DestinationPattern.parse("*.Stripe.com").matches("X.stripe.COM.", None)


def test_a_port_restricts_and_no_port_allows_any() -> None:
    with_port = DestinationPattern.parse("api.stripe.com:443")
    assert with_port.matches("api.stripe.com", 443)
    assert not with_port.matches("api.stripe.com", 8443)
    assert not with_port.matches("api.stripe.com", None)  # the caller must say which port
    assert DestinationPattern.parse("api.stripe.com").matches("api.stripe.com", 8443)
    assert DestinationPattern.parse("api.stripe.com:00443").port == 443


def test_ip_addresses_match_in_any_spelling() -> None:
    v6 = DestinationPattern.parse("[2001:DB8:0:0::1]:443")
    assert (v6.host, v6.port, str(v6)) == ("2001:db8::1", 443, "[2001:db8::1]:443")
    assert v6.matches("[2001:db8::1]", 443)
    assert v6.matches("2001:0db8::0001", 443)
    assert not v6.matches("2001:db8::2", 443)
    bare = DestinationPattern.parse("2001:db8::1")  # without brackets, no port
    assert (bare.host, bare.port) == ("2001:db8::1", None)
    v4 = DestinationPattern.parse("192.0.2.10:8080")
    assert v4.matches("192.0.2.10", 8080) and not v4.matches("192.0.2.1", 8080)
    assert DestinationPattern.parse(str(v6)) == v6  # what is shown parses back the same


@pytest.mark.parametrize(
    "entry",
    [
        "https://api.stripe.com",
        "api.stripe.com/",
        "api.stripe.com:0",
        "api.stripe.com:65536",
        "api.stripe.com:",
        "api.stripe.com:²",  # a digit to str.isdigit(), not to int()
        "api.stripe.com:44x",
        " api.stripe.com",
        "api.stripe.com\n",
        "[api.stripe.com]",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "1.2.3.256",
        "10.1.1",
        "*",
        "*.",
        "a*.stripe.com",
        "-bad.example",
        "münchen.de",
        "",
        "a" * 256,
    ],
)
def test_bad_destinations_are_refused(entry: str) -> None:
    with pytest.raises(PolicyError):
        DestinationPattern.parse(entry)


def test_errors_name_where_the_bad_entry_is() -> None:
    with pytest.raises(PolicyError) as caught:
        SecretPolicy.build(["api.stripe.com", "https://x"])
    assert caught.value.location == "allowed_destinations[1]"
    with pytest.raises(PolicyError) as caught:
        SecretPolicy.build(None, ["http", "http/nope"], known_tools={"http": ("request",)})
    assert caught.value.location == "allowed_tools[1]"
    assert "no operation 'nope'" in caught.value.message
    not_a_list: Any = {"http": 1}  # a mapping iterates as its keys; it is still refused
    with pytest.raises(PolicyError) as caught:
        SecretPolicy.build(None, not_a_list)
    assert caught.value.location == "allowed_tools"
    with pytest.raises(PolicyError) as caught:
        SecretPolicy.build(["a.example"] * (MAX_ENTRIES + 1))
    assert caught.value.location == "allowed_destinations"
    with pytest.raises(PolicyError) as caught:
        DEFAULT_POLICY.changed({"readable": "false"})
    assert caught.value.location == "readable"  # bool("false") would have been True


def test_policies_round_trip_through_json_and_dedupe() -> None:
    policy = SecretPolicy.build(
        ["api.stripe.com", "API.stripe.com", "[::1]:8080"], ["http", "http"], readable=False
    )
    assert policy.to_json() == {
        "allowed_destinations": ["api.stripe.com", "[::1]:8080"],
        "allowed_tools": ["http"],
        "readable": False,
    }
    assert SecretPolicy.from_json(policy.to_json()) == policy
    assert SecretPolicy.from_json(None) is DEFAULT_POLICY
    assert DEFAULT_POLICY.is_default and not policy.is_default


def test_a_change_keeps_what_it_does_not_give() -> None:
    start = SecretPolicy.build(["api.stripe.com"], ["http"], readable=False)
    assert start.changed({}) == start
    assert start.changed({"readable": True}) == SecretPolicy.build(["api.stripe.com"], ["http"])
    assert start.changed({"allowed_tools": None}).allowed_tools is None
    assert start.changed({"allowed_tools": None}).allowed_destinations == start.allowed_destinations
    with pytest.raises(PolicyError):
        start.changed({"allowed_hosts": []})


def test_what_counts_as_loosening() -> None:
    start = SecretPolicy.build(["*.stripe.com", "api.example.com:443"], ["http/request"], False)
    same_or_tighter = [
        start,
        start.changed({"allowed_destinations": ["api.stripe.com"]}),
        start.changed({"allowed_destinations": ["*.eu.stripe.com", "api.example.com:443"]}),
        start.changed({"allowed_destinations": []}),
        start.changed({"allowed_tools": []}),
    ]
    for policy in same_or_tighter:
        assert not start.loosened_by(policy), policy
    looser = {
        "makes it readable again": start.changed({"readable": True}),
        "removes allowed_destinations": start.changed({"allowed_destinations": None}),
        "widens allowed_destinations": start.changed({"allowed_destinations": ["stripe.com"]}),
        "removes allowed_tools": start.changed({"allowed_tools": None}),
        "widens allowed_tools": start.changed({"allowed_tools": ["http"]}),
    }
    for said, policy in looser.items():
        assert start.loosenings(policy) == [said]
    # from no restriction, any restriction tightens
    assert not DEFAULT_POLICY.loosened_by(start)
    assert DestinationPattern.parse("api.example.com").covers(
        DestinationPattern.parse("api.example.com:443")
    )
    assert not DestinationPattern.parse("api.example.com:443").covers(
        DestinationPattern.parse("api.example.com")
    )


def test_tools_match_by_name_or_operation() -> None:
    policy = SecretPolicy.build(None, ["http", "openai/chat"])
    assert policy.allows_tool("http", "request")
    assert policy.allows_tool("openai", "chat")
    assert not policy.allows_tool("openai", "embeddings")
    assert not policy.allows_tool("database", "query")
    assert DEFAULT_POLICY.allows_tool("database", "query")
    assert not SecretPolicy.build(None, []).allows_tool("http", "request")
