"""Encryption at rest: the envelope, the barrier, the master key and KEK rotation.

The barrier tests follow Vault/OpenBao's: stored bytes differ from the plaintext, one
flipped byte fails the read, ciphertext moved to another row fails the read, and the same
plaintext twice gives different ciphertexts. They run on SQLite and on PostgreSQL, through
the API, with the stored rows read and altered by direct SQL.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi.testclient import TestClient
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.auth import Caller
from strongroom.server.crypto import (
    Barrier,
    IntegrityFailure,
    Keyring,
    KeyringDamaged,
    MasterKeyError,
    WrongMasterKey,
    envelope,
    load_master_key,
)
from strongroom.server.crypto.barrier import (
    API_KEY_HMAC,
    VERIFIER,
    VERIFIER_PLAINTEXT,
    kek_context,
)
from strongroom.server.crypto.rotation import rotate
from strongroom.server.secret_values import decrypt_value, value_context
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import AuditFilter, Sealed, schema
from strongroom.server.tasks.runner import Runner
from strongroom.server.tasks.sealing import step_result_context
from strongroom.server.tasks.status import SUCCEEDED
from strongroom.server.tasks.tools import EgressPolicy, ToolConfig

from .conftest import MASTER_KEY, IssueKey, MakeClient
from .support import STRONGROOM, ServerProcess, canary, find_leaks, run_cli, start_server

OTHER_MASTER_KEY = base64.b64encode(b"o" * 32).decode()
versions_table = schema.secret_versions


# -- helpers ----------------------------------------------------------------------------------
def cli_env(database_url: str, master_key: str = MASTER_KEY) -> dict[str, str]:
    return {"STRONGROOM_DATABASE_URL": database_url, "STRONGROOM_MASTER_KEY": master_key}


def stored_row(services: Services, secret_id: str, version: int) -> sa.Row:
    v = versions_table.c
    with services.store.engine.connect() as conn:
        return conn.execute(
            sa.select(versions_table).where(v.secret_id == secret_id, v.version == version)
        ).one()


def all_rows(services: Services) -> list[sa.Row]:
    v = versions_table.c
    with services.store.engine.connect() as conn:
        return list(conn.execute(sa.select(versions_table).order_by(v.secret_id, v.version)))


def overwrite(services: Services, secret_id: str, version: int, **values: object) -> None:
    v = versions_table.c
    with services.store.engine.begin() as conn:
        result = conn.execute(
            versions_table.update()
            .where(v.secret_id == secret_id, v.version == version)
            .values(**values)
        )
        assert result.rowcount == 1


def flip(blob: bytes, position: int) -> bytes:
    altered = bytearray(blob)
    altered[position] ^= 0x01
    return bytes(altered)


def create(api: TestClient | httpx.Client, name: str, value: str) -> dict[str, Any]:
    response = api.post("/v1/secrets", json={"name": name, "value": value})
    assert response.status_code == 201, response.text
    return response.json()


def set_value(api: TestClient | httpx.Client, name: str, value: str) -> None:
    response = api.patch(f"/v1/secrets/{name}", json={"value": value})
    assert response.status_code == 200, response.text


def read(client: TestClient | httpx.Client, name: str, version: int | None = None) -> str:
    params = {"version": version} if version is not None else {}
    response = client.get(f"/v1/secrets/{name}", params=params)
    assert response.status_code == 200, response.text
    return str(response.json()["value"])


def assert_tampered_read_fails(api: TestClient, name: str, *values: str) -> None:
    """GET answers 500 internal_error saying the stored ciphertext failed authentication."""
    response = api.get(f"/v1/secrets/{name}")
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert error["code"] == "internal_error"
    assert "stored ciphertext" in error["message"]
    assert "failed authentication" in error["message"]
    assert "value" not in response.json()
    for value in values:
        assert find_leaks(value, response.content) == []


def keyring_states(services: Services) -> dict[int, str]:
    with services.store.read() as tx:
        return {entry.id: entry.state for entry in tx.keyring.entries()}


def counts_by_kek(services: Services) -> dict[int, int]:
    with services.store.read() as tx:
        return tx.secrets.count_versions_by_kek()


def new_barrier(services: Services) -> Barrier:
    """A barrier of its own, unsealed, as a separate rotating process would have."""
    barrier = Barrier(base64.b64decode(MASTER_KEY), services.store)
    barrier.unseal()
    return barrier


def status_json(database_url: str) -> dict[int, dict[str, Any]]:
    result = run_cli(["master-key", "status", "--json"], cli_env(database_url))
    assert result.returncode == 0, result.stderr
    return {row["kek_id"]: row for row in json.loads(result.stdout)}


def one_line(text: str) -> str:
    """Rich wraps long lines when it does not write to a terminal."""
    return " ".join(text.split())


# -- the envelope -----------------------------------------------------------------------------
def test_encrypting_twice_gives_different_ciphertexts() -> None:
    key = AESGCM(envelope.new_key())
    aad = value_context("tenant", "secret", 1).aad
    first = envelope.encrypt(key, b"the same plaintext", aad)
    second = envelope.encrypt(key, b"the same plaintext", aad)
    assert first != second
    assert first[: envelope.NONCE_BYTES] != second[: envelope.NONCE_BYTES]
    assert b"the same plaintext" not in first
    assert envelope.decrypt(key, first, aad) == envelope.decrypt(key, second, aad)


@pytest.mark.parametrize(
    "wrong_aad",
    [
        value_context("tenant", "secret", 2).aad,
        value_context("tenant", "other-secret", 1).aad,
        value_context("other-tenant", "secret", 1).aad,
        value_context("tenant", "secret", 1).dek_aad,
        b"",
    ],
)
def test_decrypting_with_other_associated_data_fails(wrong_aad: bytes) -> None:
    key = AESGCM(envelope.new_key())
    blob = envelope.encrypt(key, b"plaintext", value_context("tenant", "secret", 1).aad)
    with pytest.raises(IntegrityFailure, match="failed authentication"):
        envelope.decrypt(key, blob, wrong_aad)


def test_decrypting_with_another_key_fails() -> None:
    aad = kek_context(1).aad
    blob = envelope.encrypt(AESGCM(envelope.new_key()), b"plaintext", aad)
    with pytest.raises(IntegrityFailure):
        envelope.decrypt(AESGCM(envelope.new_key()), blob, aad)


def test_every_flipped_byte_fails() -> None:
    key = AESGCM(envelope.new_key())
    aad = kek_context(7).aad
    blob = envelope.encrypt(key, b"short plaintext", aad)
    for position in range(len(blob)):
        with pytest.raises(IntegrityFailure):
            envelope.decrypt(key, flip(blob, position), aad)


@pytest.mark.parametrize("keep", [0, 5, envelope.NONCE_BYTES, envelope.NONCE_BYTES + 15, -1])
def test_truncated_blob_fails(keep: int) -> None:
    key = AESGCM(envelope.new_key())
    aad = kek_context(1).aad
    blob = envelope.encrypt(key, b"plaintext", aad)
    with pytest.raises(IntegrityFailure):
        envelope.decrypt(key, blob[:keep], aad)


def test_associated_data_names_its_context() -> None:
    contexts = {
        value_context("t", "s", 1).aad,
        value_context("t", "s", 2).aad,
        value_context("t", "s2", 1).aad,
        value_context("t2", "s", 1).aad,
        value_context("t", "s", 1).dek_aad,
        step_result_context("t", "s", 1).aad,
        step_result_context("t", "s", 1).dek_aad,
        kek_context(1).aad,
        kek_context(2).aad,
        VERIFIER.aad,
        API_KEY_HMAC.aad,
    }
    assert len(contexts) == 11


# -- stored format: every existing row was sealed with these bytes ---------------------------
def test_associated_data_bytes_never_change() -> None:
    assert value_context("t-1", "s-1", 3).aad == b"strongroom|value|v1|t-1|s-1|3"
    assert value_context("t-1", "s-1", 3).dek_aad == b"strongroom|dek|v1|t-1|s-1|3"
    assert step_result_context("t-1", "e-1", 2).aad == b"strongroom|step|v1|t-1|e-1|2"
    assert step_result_context("t-1", "e-1", 2).dek_aad == b"strongroom|step-dek|v1|t-1|e-1|2"
    assert kek_context(7).aad == b"strongroom|kek|v1|7"
    assert VERIFIER.aad == b"strongroom|barrier|v1"
    assert VERIFIER_PLAINTEXT == b"strongroom barrier verifier"
    assert API_KEY_HMAC.aad == b"strongroom|api-key-hmac|v1"


# Sealed by the code before the barrier/keyring split (KEK b"K" * 32, master key b"M" * 32):
# rows of a database written then must open now.
GOLDEN_VALUE = Sealed(
    1,
    bytes.fromhex(
        "044716dd33687d44e0c50002c7ab7ef72a9ba40544ee28619e33c3a0e00f9839"
        "b85959c198eac5e53f423c808997567a8dac020982b06db5e2793fbe"
    ),
    bytes.fromhex(
        "24961be6231e862ea937a1fb48496dbc841f8a569b9f65bec6896284477213d9c56d263182a21358df"
    ),
)
GOLDEN_STEP_RESULT = Sealed(
    1,
    bytes.fromhex(
        "5f3e22aa0364b083d940fa02d21efc1a259c19e595799effd4f828f06d028188"
        "68b552acda5768a4b7e8f9b9182f3cb899175be2479eb35f339ded6b"
    ),
    bytes.fromhex("130eeaf2f60f9d484896c84c1de59f0bfaf380ca30c99cf94874693069d92e9cd66139bbda2059"),
)
GOLDEN_UNDER_MASTER_KEY = [
    (
        kek_context(1),
        b"K" * 32,
        "80ee76ed61d53c1c493976041042b7cd076b7f63bf4a7905570c1492ce4042e1"
        "2a76ff9261e861c2ed0ac1b16613d09836abdb62096f081f9216fc7d",
    ),
    (
        VERIFIER,
        VERIFIER_PLAINTEXT,
        "9d2cef10847f87d55c8aecc85172dc638e1247684a7657f7a5091fcb1449ec47"
        "db6d1b6e3ed64f67f6db4d078c28b408e75696e9e66544",
    ),
    (
        API_KEY_HMAC,
        b"H" * 32,
        "694d19fd7017ce936d39559aaa981a8448a3c354956dca11ced12eb9df5bcc77"
        "3a293fcbd4e6328422e142a453a12121a31a378d7a26561d35e097a0",
    ),
]


def test_data_sealed_by_earlier_versions_still_opens() -> None:
    keyring = Keyring()
    keyring.load({1: b"K" * 32})
    value = value_context("t-1", "s-1", 3)
    assert keyring.decrypt(value, GOLDEN_VALUE) == "golden välue".encode()
    step = step_result_context("t-1", "e-1", 2)
    assert keyring.decrypt(step, GOLDEN_STEP_RESULT) == b'{"value":1}'
    # Rewrapped, the value keeps its ciphertext and still opens.
    keyring.load({1: b"K" * 32, 2: b"L" * 32})
    rewrapped = keyring.rewrap(value, GOLDEN_VALUE, 2)
    assert (rewrapped.kek_id, rewrapped.ciphertext) == (2, GOLDEN_VALUE.ciphertext)
    assert keyring.decrypt(value, rewrapped) == "golden välue".encode()
    master = AESGCM(b"M" * 32)
    for context, plaintext, blob in GOLDEN_UNDER_MASTER_KEY:
        assert envelope.decrypt(master, bytes.fromhex(blob), context.aad) == plaintext


# -- stored bytes -----------------------------------------------------------------------------
def test_stored_ciphertext_never_contains_the_plaintext(
    api: TestClient, services: Services
) -> None:
    first, second = canary("first"), canary("second")
    created = create(api, "stored", first)
    set_value(api, "stored", second)
    rows = all_rows(services)
    assert [(r.secret_id, r.version) for r in rows] == [(created["id"], 1), (created["id"], 2)]
    for row in rows:
        stored = row.ciphertext + row.wrapped_dek
        assert len(row.ciphertext) >= len(first)
        assert find_leaks(first, stored) == []
        assert find_leaks(second, stored) == []
    assert read(api, "stored", 1) == first
    assert read(api, "stored") == second


def test_the_same_value_twice_gives_different_ciphertexts_and_data_keys(
    api: TestClient, services: Services, make_client: MakeClient
) -> None:
    value = canary("same")
    one = create(api, "one", value)
    two = create(api, "two", value)
    # a key that may not read the value makes a version even of the same value
    set_value(make_client(scopes=("secrets:write",)), "two", value)
    rows = [
        stored_row(services, one["id"], 1),
        stored_row(services, two["id"], 1),
        stored_row(services, two["id"], 2),
    ]
    assert len({r.ciphertext for r in rows}) == 3
    assert len({r.wrapped_dek for r in rows}) == 3
    assert len({r.ciphertext[: envelope.NONCE_BYTES] for r in rows}) == 3
    assert read(api, "one") == read(api, "two") == read(api, "two", 1) == value


# -- tampering --------------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["ciphertext", "wrapped_dek"])
def test_one_flipped_byte_fails_the_read(api: TestClient, services: Services, column: str) -> None:
    value, bystander = canary("flipped"), canary("bystander")
    created = create(api, "flipped", value)
    create(api, "bystander", bystander)
    original = getattr(stored_row(services, created["id"], 1), column)
    # The nonce, the middle, and the tag's last byte.
    for position in (0, len(original) // 2, len(original) - 1):
        overwrite(services, created["id"], 1, **{column: flip(original, position)})
        assert_tampered_read_fails(api, "flipped", value)
        assert read(api, "bystander") == bystander
    overwrite(services, created["id"], 1, **{column: original})
    assert read(api, "flipped") == value


def test_a_failed_authentication_is_audited_and_logged_without_the_value(
    api: TestClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    value = canary("audited")
    created = create(api, "tampered", value)
    row = stored_row(services, created["id"], 1)
    overwrite(services, created["id"], 1, ciphertext=flip(row.ciphertext, 20))
    assert_tampered_read_fails(api, "tampered", value)
    audit = api.get("/v1/audit", params={"secret": "tampered", "action": "secret.read"})
    assert [e["outcome"] for e in audit.json()["items"]] == ["internal_error"]
    assert "failed authentication" in caplog.text
    assert find_leaks(value, caplog.text.encode()) == []


def move(services: Services, source: tuple[str, int], target: tuple[str, int]) -> None:
    """Copy one version's sealed value (KEK id, wrapped DEK, ciphertext) onto another row."""
    row = stored_row(services, *source)
    overwrite(
        services,
        *target,
        kek_id=row.kek_id,
        wrapped_dek=row.wrapped_dek,
        ciphertext=row.ciphertext,
    )


def test_ciphertext_moved_to_another_secret_fails_the_read(
    api: TestClient, services: Services
) -> None:
    source_value, target_value = canary("source"), canary("target")
    source = create(api, "source", source_value)
    target = create(api, "target", target_value)
    move(services, (source["id"], 1), (target["id"], 1))
    assert_tampered_read_fails(api, "target", source_value, target_value)
    assert read(api, "source") == source_value


def test_ciphertext_moved_to_another_version_fails_the_read(
    api: TestClient, services: Services
) -> None:
    first, second = canary("v1"), canary("v2")
    created = create(api, "versioned", first)
    set_value(api, "versioned", second)
    move(services, (created["id"], 1), (created["id"], 2))
    assert_tampered_read_fails(api, "versioned", first, second)
    assert read(api, "versioned", 1) == first


def test_ciphertext_moved_to_another_tenant_fails_the_read(
    api: TestClient, services: Services, make_client: MakeClient
) -> None:
    other = make_client("other_tenant")
    mine, theirs = canary("mine"), canary("theirs")
    source = create(api, "same_name", mine)
    target = create(other, "same_name", theirs)
    move(services, (source["id"], 1), (target["id"], 1))
    assert_tampered_read_fails(other, "same_name", mine, theirs)
    assert read(api, "same_name") == mine


# -- a secret moved to another tenant in the database ----------------------------------------
# What an attacker with write access to the database (not to the master key) could try:
# re-label a secret as another tenant's, then read it with that tenant's key.
def tenant_id(services: Services, name: str) -> str:
    with services.store.read() as tx:
        tenant = tx.apikeys.tenant_by_name(name)
    assert tenant is not None
    return tenant.id


def set_tenant(services: Services, table: sa.Table, secret_id: str, tenant: str) -> None:
    """``UPDATE <table> SET tenant_id = tenant`` for the secret's row(s), by raw SQL."""
    column = table.c.id if table is schema.secrets else table.c.secret_id
    with services.store.engine.begin() as conn:
        result = conn.execute(table.update().where(column == secret_id).values(tenant_id=tenant))
        assert result.rowcount >= 1


@pytest.mark.parametrize(
    "tables",
    [
        pytest.param((schema.secrets,), id="secret-row"),
        pytest.param((schema.secrets, schema.secret_versions), id="secret-and-version-rows"),
    ],
)
def test_a_secret_moved_to_another_tenant_does_not_open_there(
    api: TestClient, services: Services, make_client: MakeClient, tables: tuple[sa.Table, ...]
) -> None:
    """Moving only the secret row used to hand the value to the other tenant (the version
    row's tenant made the associated data); now the version, the secret and the caller
    must agree. Moving every row consistently fails too: the associated data is the
    caller's tenant, and the ciphertext stays bound to the tenant that sealed it."""
    thief = make_client("thief")
    first, second, bystander = canary("first"), canary("second"), canary("bystander")
    created = create(api, "moved", first)
    set_value(api, "moved", second)
    create(api, "bystander", bystander)
    owner, other = tenant_id(services, "default"), tenant_id(services, "thief")
    for table in tables:
        set_tenant(services, table, created["id"], other)

    assert_tampered_read_fails(thief, "moved", first, second)
    for version in (1, 2):
        response = thief.get("/v1/secrets/moved", params={"version": version})
        assert response.status_code == 500, response.text
        assert find_leaks(first, response.content) == find_leaks(second, response.content) == []
    audit = thief.get("/v1/audit", params={"secret": "moved", "action": "secret.read"})
    assert [e["outcome"] for e in audit.json()["items"]] == ["internal_error"] * 3
    # The owner no longer finds it (the row says it is the thief's), and reads the rest.
    assert api.get("/v1/secrets/moved").status_code == 404
    assert read(api, "bystander") == bystander

    for table in tables:
        set_tenant(services, table, created["id"], owner)
    assert read(api, "moved") == second
    assert read(api, "moved", 1) == first
    assert thief.get("/v1/secrets/moved").status_code == 404


def test_opening_needs_the_version_its_secret_and_the_caller_to_agree(
    api: TestClient, services: Services
) -> None:
    value = canary("bound")
    created = create(api, "bound", value)
    owner = tenant_id(services, "default")
    with services.store.read() as tx:
        stored = tx.secrets.version(created["id"], 1)
    assert stored is not None
    assert (
        decrypt_value(
            services.barrier.keyring, stored, secret_tenant_id=owner, caller_tenant_id=owner
        )
        == value
    )
    for secret_tenant, caller_tenant in (("other", owner), (owner, "other"), ("other", "other")):
        with pytest.raises(IntegrityFailure, match="different tenants"):
            decrypt_value(
                services.barrier.keyring,
                stored,
                secret_tenant_id=secret_tenant,
                caller_tenant_id=caller_tenant,
            )
    relabelled = dataclasses.replace(stored, tenant_id="other")
    with pytest.raises(IntegrityFailure, match="failed authentication"):
        decrypt_value(
            services.barrier.keyring, relabelled, secret_tenant_id="other", caller_tenant_id="other"
        )


def test_a_task_of_another_tenant_cannot_use_a_secret_moved_to_it(
    api: TestClient, services: Services
) -> None:
    """The task runner opens values as the execution's tenant, with the same check."""
    value = canary("task")
    created = create(api, "api_key", value)
    _, record = create_api_key(services.store, services.barrier, "thief")
    thief = Caller(record.tenant_id, record.tenant_name, record.id, record.scopes)
    set_tenant(services, schema.secrets, created["id"], record.tenant_id)
    steps = [{"kind": "transform", "expression": "$ secrets.api_key"}]
    task, _ = services.tasks.create_task(thief, {"steps": steps})
    execution_id = services.tasks.execute(thief, task.id, None).id
    runner = Runner(services.store, services.barrier, ToolConfig(egress=EgressPolicy.parse("")))
    for index in range(runner.begin(execution_id)):
        if runner.run_step(execution_id, index) != SUCCEEDED:
            break
    assert runner.finish(execution_id) == "failed"
    with services.store.read() as tx:
        [step] = tx.executions.steps(execution_id)
        reads = tx.audit.page(
            record.tenant_id, limit=10, offset=0, where=AuditFilter(action="secret.read")
        ).items
    assert step.status == "failed" and step.error is not None
    assert "failed authentication" in step.error["message"]
    assert find_leaks(value, json.dumps([step.output, step.error]).encode()) == []
    assert [(e.secret_name, e.outcome) for e in reads] == [("api_key", "internal_error")]


# -- the master key ---------------------------------------------------------------------------
def test_open_services_with_another_master_key_is_refused(
    services: Services, settings: Settings
) -> None:
    wrong = settings.model_copy(update={"master_key": SecretStr(OTHER_MASTER_KEY)})
    with pytest.raises(WrongMasterKey, match="master key does not match") as raised:
        open_services(wrong)
    assert OTHER_MASTER_KEY not in str(raised.value)
    assert MASTER_KEY not in str(raised.value)
    # The right key still opens it: the refusal changed nothing.
    again = open_services(settings)
    again.store.close()


@pytest.mark.e2e
def test_serve_with_another_master_key_exits_before_serving(
    services: Services, database_url: str, tmp_path: Path
) -> None:
    proc = start_server(tmp_path, cli_env(database_url, OTHER_MASTER_KEY), wait=False)
    try:
        returncode = proc.process.wait(timeout=30)
    finally:
        proc.stop()
    log = proc.log()
    assert returncode == 2, log
    assert "master key does not match" in one_line(log)
    assert "refusing to start" in one_line(log)
    for started in ("Started server process", "Application startup", "Uvicorn running"):
        assert started not in log
    assert OTHER_MASTER_KEY not in log + proc.stdout()
    assert MASTER_KEY not in log + proc.stdout()


def test_missing_master_key_is_explained() -> None:
    with pytest.raises(MasterKeyError, match="no master key: set STRONGROOM_MASTER_KEY"):
        load_master_key(None, None)
    with pytest.raises(MasterKeyError, match="no master key"):
        load_master_key("", None)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (MASTER_KEY[:-4] + "!!!!", "is not valid base64"),
        ("not a key at all, just words", "is not valid base64"),
        (base64.b64encode(b"s" * 16).decode(), "must decode to 32 bytes (it decodes to 16)"),
        (base64.b64encode(b"s" * 33).decode(), "must decode to 32 bytes (it decodes to 33)"),
    ],
)
def test_malformed_master_key_is_explained_without_key_material(
    text: str, problem: str, tmp_path: Path
) -> None:
    with pytest.raises(MasterKeyError) as from_env:
        load_master_key(text, None)
    assert str(from_env.value).startswith("STRONGROOM_MASTER_KEY ")
    assert problem in str(from_env.value)

    file = tmp_path / "master.key"
    file.write_text(text + "\n")
    with pytest.raises(MasterKeyError) as from_file:
        load_master_key(None, file)
    assert str(from_file.value).startswith(f"master key file {file} ")
    assert problem in str(from_file.value)

    for message in (str(from_env.value), str(from_file.value)):
        assert text not in message
        assert text[:8] not in message
        assert text[-8:] not in message


def test_unreadable_master_key_file_is_explained(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.key"
    with pytest.raises(MasterKeyError, match=r"cannot read master key file .*nowhere\.key"):
        load_master_key(None, missing)


def test_master_key_from_a_file(tmp_path: Path) -> None:
    file = tmp_path / "master.key"
    file.write_text(f"  {MASTER_KEY}\n")
    assert load_master_key(None, file) == base64.b64decode(MASTER_KEY)
    # The variable wins over the file.
    assert load_master_key(OTHER_MASTER_KEY, file) == base64.b64decode(OTHER_MASTER_KEY)


@pytest.mark.e2e
def test_master_key_file_setting_opens_the_database(
    services: Services,
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    api: TestClient,
) -> None:
    value = canary("keyfile")
    create(api, "from_file", value)
    file = tmp_path / "master.key"
    file.write_text(MASTER_KEY + "\n")
    monkeypatch.setenv("STRONGROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("STRONGROOM_MASTER_KEY_FILE", str(file))
    opened = open_services(Settings())
    try:
        with opened.store.read() as tx:
            secret = tx.secrets.by_name(api_tenant(services), "from_file")
            assert secret is not None
            stored = tx.secrets.version(secret.id, 1)
        assert stored is not None
        tenant_id = api_tenant(services)
        assert (
            decrypt_value(
                opened.barrier.keyring,
                stored,
                secret_tenant_id=tenant_id,
                caller_tenant_id=tenant_id,
            )
            == value
        )
    finally:
        opened.store.close()

    # The real command reads the same variable.
    env = {"STRONGROOM_DATABASE_URL": database_url, "STRONGROOM_MASTER_KEY_FILE": str(file)}
    result = run_cli(["master-key", "status", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert [row["state"] for row in json.loads(result.stdout)] == ["active"]

    # A file holding another key is refused like the variable would be.
    file.write_text(OTHER_MASTER_KEY + "\n")
    with pytest.raises(WrongMasterKey):
        open_services(Settings())


@pytest.mark.e2e
def test_malformed_master_key_stops_the_command(tmp_path: Path) -> None:
    bad = base64.b64encode(b"q" * 31).decode()
    database_url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    result = run_cli(["master-key", "status"], cli_env(database_url, bad))
    assert result.returncode == 2
    assert "must decode to 32 bytes" in one_line(result.stderr)
    assert bad not in result.stderr + result.stdout
    assert not (tmp_path / "never-opened.db").exists()


def api_tenant(services: Services) -> str:
    with services.store.read() as tx:
        tenant = tx.apikeys.tenant_by_name("default")
    assert tenant is not None
    return tenant.id


# -- rotation ---------------------------------------------------------------------------------
class Crash(Exception):
    """Stands in for the rotating process dying between two batches."""


def make_secrets(api: TestClient, count: int) -> dict[tuple[str, int], str]:
    """``count`` secrets, every third with three versions: {(name, version): value}."""
    values: dict[tuple[str, int], str] = {}
    for i in range(count):
        name = f"rot_{i:03d}"
        values[(name, 1)] = canary(name)
        create(api, name, values[(name, 1)])
        if i % 3 == 0:
            for version in (2, 3):
                values[(name, version)] = canary(name)
                set_value(api, name, values[(name, version)])
    return values


def assert_all_readable(
    client: TestClient | httpx.Client, values: dict[tuple[str, int], str]
) -> None:
    """Every version by number, and the latest version of each secret with several."""
    latest: dict[str, int] = {}
    for (name, version), value in values.items():
        assert read(client, name, version) == value
        latest[name] = max(version, latest.get(name, 0))
    for name, version in latest.items():
        if version > 1:
            assert read(client, name) == values[(name, version)]


def assert_all_decrypt(
    services: Services, tenant_id: str, values: dict[tuple[str, int], str]
) -> None:
    """Every version opens with a keyring loaded afresh, as a newly started server's would."""
    keyring = new_barrier(services).keyring
    with services.store.read() as tx:
        for (name, version), value in values.items():
            secret = tx.secrets.by_name(tenant_id, name)
            assert secret is not None
            stored = tx.secrets.version(secret.id, version)
            assert stored is not None
            opened = decrypt_value(
                keyring, stored, secret_tenant_id=tenant_id, caller_tenant_id=tenant_id
            )
            assert opened == value


def test_rotation_interrupted_then_resumed(api: TestClient, services: Services) -> None:
    values = make_secrets(api, 25)
    total = len(values)
    assert total == 25 + 2 * 9
    before = {(r.secret_id, r.version): r for r in all_rows(services)}
    assert counts_by_kek(services) == {1: total}

    def crash_after_two_batches(rewrapped: int) -> None:
        if rewrapped >= 10:
            raise Crash

    with pytest.raises(Crash):
        rotate(
            services.store, new_barrier(services), batch_size=5, on_batch=crash_after_two_batches
        )

    # Half-way: the old KEK drains, the new one is active, and every version still reads.
    assert keyring_states(services) == {1: "draining", 2: "active"}
    assert counts_by_kek(services) == {1: total - 10, 2: 10}
    assert_all_readable(api, values)
    # A value written meanwhile goes under the new KEK.
    values[("written_meanwhile", 1)] = canary("meanwhile")
    create(api, "written_meanwhile", values[("written_meanwhile", 1)])
    assert counts_by_kek(services) == {1: total - 10, 2: 11}

    report = rotate(services.store, new_barrier(services), batch_size=5)
    assert report.resumed is True
    assert report.active_kek_id == 2
    assert report.rewrapped == total - 10
    assert report.retired_kek_ids == [1]
    assert keyring_states(services) == {1: "retired", 2: "active"}
    assert counts_by_kek(services) == {2: total + 1}
    assert_all_readable(api, values)
    # Rotation rewraps data keys; the value ciphertexts are left as they were.
    for row in all_rows(services):
        old = before.get((row.secret_id, row.version))
        if old is not None:
            assert row.ciphertext == old.ciphertext
            assert row.wrapped_dek != old.wrapped_dek

    report = rotate(services.store, new_barrier(services), batch_size=5)
    assert report.resumed is False
    assert report.active_kek_id == 3
    assert report.rewrapped == total + 1
    assert report.retired_kek_ids == [2]
    assert keyring_states(services) == {1: "retired", 2: "retired", 3: "active"}
    assert counts_by_kek(services) == {3: total + 1}
    assert_all_readable(api, values)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_rotation_refuses_an_empty_batch_size(
    api: TestClient, services: Services, batch_size: int
) -> None:
    """A batch of no data keys would look like a finished rotation and retire KEK 1."""
    create(api, "kept", canary())
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        rotate(services.store, new_barrier(services), batch_size=batch_size)
    assert keyring_states(services) == {1: "active"}
    assert counts_by_kek(services) == {1: 1}


@pytest.mark.e2e
def test_rotate_command_refuses_an_empty_batch_size(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    result = run_cli(["master-key", "rotate", "--batch-size", "0"], cli_env(database_url))
    assert result.returncode == 2
    assert "--batch-size" in result.stderr
    assert "rotation finished" not in result.stderr
    assert not (tmp_path / "never-opened.db").exists()


def test_rotation_by_the_command_while_a_server_runs(
    server: ServerProcess, issue_key: IssueKey, database_url: str, services: Services
) -> None:
    values: dict[tuple[str, int], str] = {}
    headers = {"Authorization": f"Bearer {issue_key()}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        for i in range(12):
            name = f"live_{i:02d}"
            values[(name, 1)] = canary(name)
            create(client, name, values[(name, 1)])
            if i % 4 == 0:
                values[(name, 2)] = canary(name)
                set_value(client, name, values[(name, 2)])
        # The server has read them all under KEK 1 and knows no other KEK.
        assert_all_readable(client, values)

        result = run_cli(["master-key", "rotate", "--batch-size", "1"], cli_env(database_url))
        assert result.returncode == 0, result.stderr
        assert f"rewrapped {len(values)} data keys" in result.stderr
        assert "rotation finished" in one_line(result.stderr)

        # Every data key is now under KEK 2, which the running server must learn about.
        status = status_json(database_url)
        assert (status[1]["state"], status[1]["data_keys"]) == ("retired", 0)
        assert (status[2]["state"], status[2]["data_keys"]) == ("active", len(values))
        assert_all_readable(client, values)

        values[("after", 1)] = canary("after")
        create(client, "after", values[("after", 1)])
        assert read(client, "after") == values[("after", 1)]
    assert counts_by_kek(services) == {2: len(values)}
    assert server.process.poll() is None


@pytest.mark.e2e
def test_rotation_killed_with_sigkill_resumes(
    services: Services, api: TestClient, database_url: str
) -> None:
    _, record = create_api_key(services.store, services.barrier, "default")
    caller = Caller(record.tenant_id, record.tenant_name, record.id, ("*",))
    values = {}
    for i in range(300):
        values[(f"bulk_{i:03d}", 1)] = value = canary("bulk")
        services.secrets.create(caller, f"bulk_{i:03d}", value)

    process = subprocess.Popen(
        [STRONGROOM, "master-key", "rotate", "--batch-size", "1"],
        env={"PATH": os.environ.get("PATH", ""), **cli_env(database_url)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    progress = []
    try:
        # Each line is printed after its batch commits; kill once a few have.
        for line in process.stderr:
            progress.append(line.decode())
            if line.startswith(b"rewrapped ") and int(line.split()[1]) >= 3:
                process.send_signal(signal.SIGKILL)
                break
        returncode = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    assert returncode == -signal.SIGKILL, progress

    # Killed mid-way: both KEKs hold data keys and every secret still reads.
    counts = counts_by_kek(services)
    assert counts.get(1, 0) > 0, counts
    assert counts.get(2, 0) >= 3, counts
    assert sum(counts.values()) == 300
    assert keyring_states(services) == {1: "draining", 2: "active"}
    assert_all_decrypt(services, record.tenant_id, values)
    sample = dict(list(values.items())[::15])
    assert_all_readable(api, sample)

    report = rotate(services.store, new_barrier(services), batch_size=50)
    assert (report.resumed, report.active_kek_id) == (True, 2)
    assert report.rewrapped == counts[1]
    assert report.retired_kek_ids == [1]

    status = status_json(database_url)
    assert {k: (row["state"], row["data_keys"]) for k, row in status.items()} == {
        1: ("retired", 0),
        2: ("active", 300),
    }
    assert_all_decrypt(services, record.tenant_id, values)
    assert_all_readable(api, sample)


def test_a_damaged_keyring_row_refuses_start_with_a_clear_message(
    services: Services, settings: Settings
) -> None:
    engine = services.store.engine
    with engine.begin() as conn:
        wrapped = conn.execute(sa.select(schema.keyring.c.wrapped_key)).scalar_one()
        conn.execute(schema.keyring.update().values(wrapped_key=flip(bytes(wrapped), 20)))
    with pytest.raises(KeyringDamaged, match="keyring entry 1 failed authentication"):
        open_services(settings)


def test_servers_starting_together_on_a_new_database_agree_on_one_keyring(
    database_url: str,
) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from strongroom.server.storage import open_store

    stores = [open_store(database_url) for _ in range(4)]
    stores[0].migrate()
    start = threading.Barrier(len(stores))
    master = base64.b64decode(MASTER_KEY)

    def unseal(store: Any) -> None:
        start.wait()
        Barrier(master, store).unseal()

    try:
        with ThreadPoolExecutor(len(stores)) as pool:
            list(pool.map(unseal, stores))
        with stores[0].read() as tx:
            assert [e.id for e in tx.keyring.entries()] == [1]
    finally:
        for store in stores:
            store.close()
