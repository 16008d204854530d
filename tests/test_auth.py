"""Authentication, scopes and tenant isolation on every route, in process, on both backends.

401 ``unauthorized`` for a missing, malformed, unknown or revoked key; 403 ``forbidden`` for
a key without the scope; and another tenant's secret is indistinguishable from a missing
one: 404, never 403.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom.server.apikeys import (
    KEY_LENGTH,
    create_api_key,
    ensure_tenant,
    generate_api_key,
    key_hint,
    revoke_api_key,
)
from strongroom.server.app import create_app
from strongroom.server.crypto import envelope
from strongroom.server.crypto.barrier import API_KEY_HMAC
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import BarrierRow, schema

from .conftest import MASTER_KEY, MakeClient
from .support import assert_error, canary, postgres_rows

WWW_AUTHENTICATE = 'Bearer realm="strongroom"'

# Every authenticated route: (method, path, body)
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/v1/secrets", {"name": "created", "value": "v"}),
    ("GET", "/v1/secrets", None),
    ("GET", "/v1/secrets/target", None),
    ("PATCH", "/v1/secrets/target", {"value": "changed"}),
    ("PUT", "/v1/secrets/target", {"value": "replaced"}),
    ("DELETE", "/v1/secrets/target", None),
    ("GET", "/v1/secrets/target/versions", None),
    ("GET", "/v1/audit", None),
]
ROUTE_IDS = [f"{m} {p}" for m, p, _ in ROUTES]


def create(api: TestClient, name: str, value: str = "v", **fields: Any) -> dict[str, Any]:
    response = api.post("/v1/secrets", json={"name": name, "value": value, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def names(api: TestClient) -> list[str]:
    response = api.get("/v1/secrets")
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


def assert_untouched(owner: TestClient, name: str, value: str, version: int = 1) -> None:
    response = owner.get(f"/v1/secrets/{name}")
    assert response.status_code == 200, response.text
    assert (response.json()["value"], response.json()["version"]) == (value, version)


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[TestClient]:
    """A client that sends no key unless a test gives one."""
    client = TestClient(app)
    try:
        yield client
    finally:
        client.close()


# -- 401 --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=ROUTE_IDS)
def test_every_route_needs_a_key(
    anonymous: TestClient, api: TestClient, method: str, path: str, body: Any
) -> None:
    create(api, "target", "original")
    response = anonymous.request(method, path, json=body)
    error = assert_error(response, 401, "unauthorized")
    assert "Authorization: Bearer" in error["message"]
    assert response.headers["www-authenticate"] == WWW_AUTHENTICATE
    assert_untouched(api, "target", "original")
    assert names(api) == ["target"]


def test_each_kind_of_bad_key_gets_its_own_message(app: FastAPI, services: Services) -> None:
    real, _ = create_api_key(services.store, services.barrier, "default")
    revoked, revoked_record = create_api_key(services.store, services.barrier, "default")
    assert revoke_api_key(services.store, revoked_record.id)
    # one character of the random part changed: the checksum no longer matches
    flipped = real[:10] + ("A" if real[10] != "A" else "B") + real[11:]
    unknown = generate_api_key()
    headers = {
        "missing": {},
        "empty": {"Authorization": ""},
        "basic": {"Authorization": f"Basic {real}"},
        "bare_key": {"Authorization": real},
        "bearer_alone": {"Authorization": "Bearer "},
        "wrong_prefix": {"Authorization": "Bearer sk_live_0123456789abcdefghijklmnop"},
        "malformed": {"Authorization": "Bearer sr_tooshort"},
        "bad_characters": {"Authorization": "Bearer sr_" + "-" * (KEY_LENGTH - 3)},
        "checksum": {"Authorization": f"Bearer {flipped}"},
        "unknown": {"Authorization": f"Bearer {unknown}"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
    }
    messages = {}
    for n, (kind, header) in enumerate(headers.items()):
        # Each from its own address: eleven failures from one would fill its penalty box.
        with TestClient(app, client=(f"192.0.2.{n}", 50000)) as anonymous:
            response = anonymous.get("/v1/secrets", headers=header)
        error = assert_error(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == WWW_AUTHENTICATE, kind
        for key in (real, revoked, flipped, unknown):
            assert key not in response.text, kind
        messages[kind] = error["message"]
    assert messages["missing"] == messages["empty"]
    assert "Authorization: Bearer <key>" in messages["missing"]
    assert messages["basic"] == messages["bare_key"] == messages["bearer_alone"]
    assert "Bearer <key>" in messages["basic"]
    assert "sr_" in messages["wrong_prefix"]
    assert messages["malformed"] == messages["bad_characters"]
    assert "malformed" in messages["malformed"]
    assert "checksum" in messages["checksum"]
    assert "not recognised" in messages["unknown"]
    assert "revoked" in messages["revoked"]
    distinct = {
        messages[k]
        for k in ("missing", "basic", "wrong_prefix", "malformed", "checksum", "unknown", "revoked")
    }
    assert len(distinct) == 7, messages
    # the real key still works
    ok = anonymous.get("/v1/secrets", headers={"Authorization": f"Bearer {real}"})
    assert ok.status_code == 200


def test_the_bearer_scheme_is_case_insensitive(anonymous: TestClient, services: Services) -> None:
    key, _ = create_api_key(services.store, services.barrier, "default")
    for scheme in ("bearer", "BEARER", "Bearer"):
        response = anonymous.get("/v1/secrets", headers={"Authorization": f"{scheme} {key}"})
        assert response.status_code == 200, (scheme, response.text)


def test_a_revoked_key_stops_working_at_once(
    make_client: MakeClient, services: Services, api: TestClient
) -> None:
    key, record = create_api_key(services.store, services.barrier, "default")
    client = make_client(key=key)
    create(client, "before_revoke", "value")
    assert revoke_api_key(services.store, record.id)
    for method, path, body in ROUTES:
        response = client.request(method, path.replace("target", "before_revoke"), json=body)
        error = assert_error(response, 401, "unauthorized")
        assert "revoked" in error["message"]
    # the secret it wrote stays, and the refusals are on the tenant's trail
    assert_untouched(api, "before_revoke", "value")
    refused = api.get("/v1/audit", params={"action": "auth.authenticate"}).json()["items"]
    assert len(refused) == len(ROUTES)
    assert {(e["outcome"], e["key_id"]) for e in refused} == {("unauthorized", record.id)}


def test_unknown_keys_are_audited_but_in_no_tenant(anonymous: TestClient, api: TestClient) -> None:
    unknown = generate_api_key()
    response = anonymous.get("/v1/secrets", headers={"Authorization": f"Bearer {unknown}"})
    assert_error(response, 401, "unauthorized")
    assert api.get("/v1/audit", params={"action": "auth.authenticate"}).json()["items"] == []


# -- 403 --------------------------------------------------------------------------------------
WRITES = [r for r in ROUTES if r[0] in ("POST", "PATCH", "PUT", "DELETE")]
READS = [r for r in ROUTES if r[0] == "GET" and r[1] != "/v1/audit"]


@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[f"{m} {p}" for m, p, _ in WRITES])
def test_read_only_key_cannot_write(
    make_client: MakeClient, api: TestClient, method: str, path: str, body: Any
) -> None:
    create(api, "target", "original")
    reader = make_client(scopes=("secrets:read",))
    response = reader.request(method, path, json=body)
    error = assert_error(response, 403, "forbidden")
    assert "'secrets:write'" in error["message"]
    assert_untouched(api, "target", "original")
    assert names(api) == ["target"]


@pytest.mark.parametrize(("method", "path", "body"), READS, ids=[f"{m} {p}" for m, p, _ in READS])
def test_write_only_key_cannot_read(
    make_client: MakeClient, api: TestClient, method: str, path: str, body: Any
) -> None:
    value = canary()
    create(api, "target", value)
    writer = make_client(scopes=("secrets:write",))
    response = writer.request(method, path, json=body)
    error = assert_error(response, 403, "forbidden")
    assert "'secrets:read'" in error["message"]
    assert value not in response.text


def test_a_write_only_key_can_do_every_write(make_client: MakeClient, api: TestClient) -> None:
    writer = make_client(scopes=("secrets:write",))
    create(writer, "written", "one")
    assert writer.patch("/v1/secrets/written", json={"value": "two"}).status_code == 200
    assert writer.put("/v1/secrets/written", json={"value": "three"}).status_code == 200
    assert writer.put("/v1/secrets/second", json={"value": "x"}).status_code == 201
    assert writer.delete("/v1/secrets/second").status_code == 200
    assert_untouched(api, "written", "three", version=3)


def test_a_read_only_key_can_do_every_read(make_client: MakeClient, api: TestClient) -> None:
    create(api, "readable", "value")
    reader = make_client(scopes=("secrets:read",))
    assert reader.get("/v1/secrets").json()["items"][0]["name"] == "readable"
    assert reader.get("/v1/secrets/readable").json()["value"] == "value"
    assert reader.get("/v1/secrets/readable", params={"version": 1}).status_code == 200
    assert reader.get("/v1/secrets/readable/versions").status_code == 200
    assert_error(reader.get("/v1/audit"), 403, "forbidden")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [r for r in ROUTES if r[1] != "/v1/audit"],
    ids=[i for i in ROUTE_IDS if "audit" not in i],
)
def test_keys_without_secret_scopes_cannot_touch_secrets(
    make_client: MakeClient, api: TestClient, method: str, path: str, body: Any
) -> None:
    create(api, "target", "original")
    for scopes in (("audit:read",), ("tasks:run",)):
        response = make_client(scopes=scopes).request(method, path, json=body)
        assert_error(response, 403, "forbidden")
    assert_untouched(api, "target", "original")


def test_refusals_for_scope_are_audited(make_client: MakeClient, api: TestClient) -> None:
    reader = make_client(scopes=("secrets:read",))
    assert reader.post("/v1/secrets", json={"name": "nope", "value": "v"}).status_code == 403
    events = api.get("/v1/audit").json()["items"]
    assert [(e["action"], e["outcome"], e["secret_name"]) for e in events] == [
        ("secret.create", "forbidden", "nope")
    ]


# -- tenant isolation -------------------------------------------------------------------------
@pytest.fixture
def tenants(make_client: MakeClient) -> tuple[TestClient, TestClient]:
    """Tenant A owns ``shared`` (two versions); tenant B owns nothing yet."""
    a, b = make_client(tenant="tenant_a"), make_client(tenant="tenant_b")
    create(a, "shared", "a-one", description="A's", metadata={"owner": "a"})
    assert a.patch("/v1/secrets/shared", json={"value": "a-two"}).status_code == 200
    return a, b


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/secrets/shared", None),
        ("GET", "/v1/secrets/shared?version=1", None),
        ("GET", "/v1/secrets/shared/versions", None),
        ("PATCH", "/v1/secrets/shared", {"description": "B was here"}),
        ("PATCH", "/v1/secrets/shared", {"value": "b-value"}),
        ("PATCH", "/v1/secrets/shared", {"new_name": "stolen"}),
        ("PATCH", "/v1/secrets/shared", {"value": "b", "expected_version": 2}),
        ("DELETE", "/v1/secrets/shared", None),
    ],
)
def test_another_tenants_secret_is_not_found(
    tenants: tuple[TestClient, TestClient], method: str, path: str, body: Any
) -> None:
    a, b = tenants
    response = b.request(method, path, json=body)
    error = assert_error(response, 404, "not_found")
    assert "a-one" not in response.text
    assert "a-two" not in response.text
    # exactly what a name nobody has gets
    missing = b.request(method, path.replace("shared", "nobody_has_this"), json=body)
    assert_error(missing, 404, "not_found")
    assert error["message"] == missing.json()["error"]["message"].replace(
        "nobody_has_this", "shared"
    )
    # and A's secret is as it was
    secret = a.get("/v1/secrets/shared").json()
    assert (secret["value"], secret["version"], secret["description"]) == ("a-two", 2, "A's")
    assert [v["version"] for v in a.get("/v1/secrets/shared/versions").json()["items"]] == [2, 1]
    assert names(a) == ["shared"]


def test_another_tenants_secrets_are_not_listed(tenants: tuple[TestClient, TestClient]) -> None:
    a, b = tenants
    create(b, "b_own")
    assert names(b) == ["b_own"]
    assert names(a) == ["shared"]
    response = b.get("/v1/secrets", params={"metadata": '{"owner": "a"}'})
    assert response.json()["items"] == []
    response = b.get("/v1/secrets", params={"metadata[owner]": "a"})
    assert response.json()["items"] == []


def test_another_tenant_can_use_the_same_name(tenants: tuple[TestClient, TestClient]) -> None:
    a, b = tenants
    mine = create(b, "shared", "b-value", metadata={"owner": "b"})
    assert mine["version"] == 1
    assert b.get("/v1/secrets/shared").json()["value"] == "b-value"
    assert a.get("/v1/secrets/shared").json()["value"] == "a-two"
    assert b.patch("/v1/secrets/shared", json={"value": "b-2"}).json()["version"] == 2
    assert b.delete("/v1/secrets/shared").status_code == 200
    assert a.get("/v1/secrets/shared").json()["value"] == "a-two"


def test_put_on_another_tenants_name_creates_the_callers_own(
    tenants: tuple[TestClient, TestClient],
) -> None:
    a, b = tenants
    response = b.put("/v1/secrets/shared", json={"value": "b-put"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["version"], body["description"], body["metadata"]) == (1, None, {})
    assert b.get("/v1/secrets/shared").json()["value"] == "b-put"
    secret = a.get("/v1/secrets/shared").json()
    assert (secret["value"], secret["version"], secret["metadata"]) == ("a-two", 2, {"owner": "a"})


def test_rename_onto_another_tenants_name_is_no_conflict(
    tenants: tuple[TestClient, TestClient],
) -> None:
    a, b = tenants
    create(b, "b_secret", "b-value")
    response = b.patch("/v1/secrets/b_secret", json={"new_name": "shared"})
    assert response.status_code == 200, response.text
    assert b.get("/v1/secrets/shared").json()["value"] == "b-value"
    assert a.get("/v1/secrets/shared").json()["value"] == "a-two"
    # nor is A's rename onto a name only B uses
    create(a, "a_other")
    assert a.patch("/v1/secrets/a_other", json={"new_name": "b_secret"}).status_code == 200


def test_another_tenants_audit_trail_is_invisible(
    make_client: MakeClient, services: Services
) -> None:
    key_a, record_a = create_api_key(services.store, services.barrier, "tenant_a")
    key_b, record_b = create_api_key(services.store, services.barrier, "tenant_b")
    a, b = make_client(key=key_a), make_client(key=key_b)
    create(a, "shared", "a-value")
    a.get("/v1/secrets/shared")
    a.delete("/v1/secrets/shared")
    create(a, "a_only", "a-value")
    # B's own failed attempts on A's names
    b.get("/v1/secrets/a_only")
    b.delete("/v1/secrets/a_only")
    b_events = b.get("/v1/audit").json()["items"]
    assert [(e["action"], e["outcome"]) for e in b_events] == [
        ("secret.delete", "not_found"),
        ("secret.read", "not_found"),
    ]
    assert {e["key_id"] for e in b_events} == {record_b.id}
    assert {e["secret_id"] for e in b_events} == {None}
    assert b.get("/v1/audit", params={"secret": "shared"}).json()["items"] == []
    assert b.get("/v1/audit", params={"action": "secret.create"}).json()["items"] == []
    # and A does not see B's attempts
    a_events = a.get("/v1/audit").json()["items"]
    assert {e["key_id"] for e in a_events} == {record_a.id}
    assert [e["action"] for e in a_events] == [
        "secret.create",
        "secret.delete",
        "secret.read",
        "secret.create",
    ]


# -- how keys are stored ----------------------------------------------------------------------
def sha256_hex(key: str) -> str:
    """What older versions stored for a key, and what anybody can compute."""
    return hashlib.sha256(key.encode()).hexdigest()


def unwrapped_hmac_key(services: Services) -> bytes:
    """The API-key HMAC key, unwrapped from its barrier row with the master key."""
    barrier = schema.barrier
    with services.store.engine.connect() as conn:
        wrapped = conn.execute(
            sa.select(barrier.c.verifier).where(barrier.c.id == int(BarrierRow.API_KEY_HMAC_KEY))
        ).scalar_one()
    master = AESGCM(base64.b64decode(MASTER_KEY))
    return envelope.decrypt(master, bytes(wrapped), API_KEY_HMAC.aad)


def insert_key_row(
    services: Services, tenant: str, key: str, key_hash: str, revoked: bool = False
) -> str:
    """An ``api_keys`` row written by raw SQL, as by someone with database access."""
    key_id = str(uuid.uuid4())
    now = dt.datetime.now(dt.UTC)
    tenant_id = ensure_tenant(services.store, tenant).id
    with services.store.engine.begin() as conn:
        conn.execute(
            schema.api_keys.insert().values(
                id=key_id,
                tenant_id=tenant_id,
                name="raw",
                key_hash=key_hash,
                hint=key_hint(key),
                scopes='["*"]',
                created_at=now,
                revoked_at=now if revoked else None,
            )
        )
    return key_id


def stored_hashes(services: Services) -> dict[str, str]:
    with services.store.read() as tx:
        return dict(tx.apikeys.hashes())


def database_bytes(database_url: str) -> bytes:
    """Every byte the database holds: SQLite's files with their journal, or every row."""
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(f.read_bytes() for f in sorted(path.parent.glob(path.name + "*")))
    return postgres_rows(database_url)


def test_keys_are_stored_as_hmacs_under_a_key_the_master_key_wraps(
    services: Services, database_url: str
) -> None:
    key, record = create_api_key(services.store, services.barrier, "default")
    mac_key = unwrapped_hmac_key(services)
    expected = hmac.new(mac_key, hashlib.sha256(key.encode()).digest(), "sha256").hexdigest()
    assert stored_hashes(services) == {record.id: expected}
    assert expected != sha256_hex(key)

    stored = database_bytes(database_url)
    with services.store.read() as tx:
        wrapped = tx.keyring.barrier_row(BarrierRow.API_KEY_HMAC_KEY)
    assert wrapped is not None and wrapped in stored  # the scan sees the barrier row
    for spelling in (mac_key, mac_key.hex().encode(), base64.b64encode(mac_key)):
        assert spelling not in stored
    assert sha256_hex(key).encode() not in stored


def test_a_row_holding_a_plain_hash_authorises_nothing(
    anonymous: TestClient, services: Services, settings: Settings
) -> None:
    """Anybody can compute ``sha256(key)`` of a key they made up: a row written with it
    must not become a key, now or after any later start (the conversion of such rows
    happened once, when the HMAC key was made)."""
    minted = generate_api_key()
    key_id = insert_key_row(services, "default", minted, sha256_hex(minted))
    headers = {"Authorization": f"Bearer {minted}"}
    refused = anonymous.get("/v1/secrets", headers=headers)
    assert "not recognised" in assert_error(refused, 401, "unauthorized")["message"]

    restarted = open_services(settings)
    try:
        with TestClient(create_app(restarted, run_engine=False)) as client:
            again = client.get("/v1/secrets", headers=headers)
        assert "not recognised" in assert_error(again, 401, "unauthorized")["message"]
    finally:
        restarted.store.close()
    assert stored_hashes(services)[key_id] == sha256_hex(minted)


def test_keys_issued_before_the_upgrade_keep_working_after_it(
    services: Services, settings: Settings
) -> None:
    """A database as an older version left it: keys stored as ``sha256hex(key)`` and no
    HMAC key. The first unseal makes the HMAC key and converts every row; revoked keys
    stay revoked, and a row not in the old form (never a key) is left unusable."""
    current, current_record = create_api_key(services.store, services.barrier, "default")
    old, revoked = generate_api_key(), generate_api_key()
    old_id = insert_key_row(services, "legacy", old, sha256_hex(old))
    insert_key_row(services, "legacy", revoked, sha256_hex(revoked), revoked=True)
    upper = generate_api_key()
    upper_id = insert_key_row(services, "legacy", upper, sha256_hex(upper).upper())
    with services.store.engine.begin() as conn:
        conn.execute(
            schema.barrier.delete().where(schema.barrier.c.id == int(BarrierRow.API_KEY_HMAC_KEY))
        )
        # The key issued under the HMAC key just removed, put back as an old version
        # would have stored it.
        conn.execute(
            schema.api_keys.update()
            .where(schema.api_keys.c.id == current_record.id)
            .values(key_hash=sha256_hex(current))
        )

    upgraded = open_services(settings)
    try:
        mac_key = unwrapped_hmac_key(upgraded)
        hashes = stored_hashes(upgraded)
        assert (
            hashes[old_id]
            == hmac.new(mac_key, hashlib.sha256(old.encode()).digest(), "sha256").hexdigest()
        )
        assert hashes[upper_id] == sha256_hex(upper).upper()  # left as it was
        with TestClient(create_app(upgraded, run_engine=False)) as client:

            def status(key: str) -> tuple[int, str]:
                response = client.get("/v1/secrets", headers={"Authorization": f"Bearer {key}"})
                message = response.json().get("error", {}).get("message", "")
                return response.status_code, message

            assert status(old)[0] == 200
            assert status(current)[0] == 200
            code, message = status(revoked)
            assert code == 401 and "revoked" in message
            assert status(upper)[0] == 401
    finally:
        upgraded.store.close()

    # Once only: another start converts nothing again, so the hashes stay as they are.
    again = open_services(settings)
    try:
        assert stored_hashes(again) == hashes
        assert again.barrier.hash_api_key(old) == hashes[old_id]
    finally:
        again.store.close()
