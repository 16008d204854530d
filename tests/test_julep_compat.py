"""The official Julep Python client (``julep`` on PyPI, pinned) against ``/julep``.

Every test talks to a real ``strongroom serve`` process (the ``server`` fixture, on SQLite
and on PostgreSQL) with ``julep.Julep(base_url=.../julep)``, validating every answer
strictly against the client's own models, and checks the same state through ``/v1`` with
strongroom's SDK: one store, one set of tenants and keys, one audit trail.

julep 2.21.0 declares ``python-dotenv<1.1`` (which its code never imports) against the
``>=1.2.3`` strongroom needs, so it cannot sit in the ``dev`` extra; it is the
``julep-compat`` dependency group, installed without its declared dependencies:
``.venv/bin/pip install --no-deps --group julep-compat``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Installed by `make install` (pyproject's julep-compat group, without its declared deps).
import julep
import pytest

from strongroom import SecretNotFoundError, Strongroom
from strongroom.server.apikeys import create_api_key
from strongroom.server.storage import open_store

from .conftest import unsealed
from .support import ServerProcess, canary, find_leaks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
ENCRYPTED = "ENCRYPTED"

IssueKey = Callable[..., str]


@pytest.fixture
def issue(server: ServerProcess) -> Iterator[IssueKey]:
    """``issue(tenant="default", scopes=())``: a new key for the server's database."""
    store = open_store(server.env["STRONGROOM_DATABASE_URL"])

    def make(tenant: str = "default", scopes: tuple[str, ...] = ()) -> str:
        key, _ = create_api_key(store, unsealed(store), tenant, name="julep-compat", scopes=scopes)
        return key

    try:
        yield make
    finally:
        store.close()


def official(server: ServerProcess, key: str) -> Any:
    """The official client as a Julep user points it at strongroom: only the base URL
    changes. Strict validation makes any answer its models cannot hold an error."""
    return julep.Julep(
        api_key=key, base_url=f"{server.base_url}/julep", _strict_response_validation=True
    )


def v1(server: ServerProcess, key: str) -> Strongroom:
    return Strongroom(api_key=key, base_url=server.base_url)


def test_the_pinned_official_client_is_what_runs() -> None:
    groups = tomllib.loads((ROOT / "pyproject.toml").read_text())["dependency-groups"]
    assert f"julep=={julep.__version__}" in groups["julep-compat"]
    # what it sends: a Bearer key, which /v1's keys answer to
    client = julep.Julep(api_key="sr_example", base_url="http://127.0.0.1:1/julep")
    assert client.auth_headers == {"Authorization": "Bearer sr_example"}


def test_create_list_update_rename_delete(server: ServerProcess, issue: IssueKey) -> None:
    key = issue()
    client = official(server, key)
    own = v1(server, key)
    value = canary("stripe")

    raw = client.secrets.with_raw_response.create(
        name="stripe_api_key",
        value=value,
        description="Stripe API key for payment processing",
        metadata={"environment": "production", "owner": "payments-team"},
    )
    assert raw.status_code == 201
    assert find_leaks(value, raw.http_response.content) == []
    created = raw.parse()
    assert isinstance(created, julep.types.Secret)
    assert created.value == ENCRYPTED
    assert created.name == "stripe_api_key"
    assert created.description == "Stripe API key for payment processing"
    assert created.metadata == {"environment": "production", "owner": "payments-team"}
    assert str(uuid.UUID(created.id)) == created.id
    assert created.created_at.tzinfo is not None
    assert created.created_at == created.updated_at
    assert abs(dt.datetime.now(dt.UTC) - created.created_at) < dt.timedelta(minutes=5)

    second = client.secrets.create(name="database_password", value="complex-password-123")
    assert second.description is None
    assert second.metadata == {}
    third = client.secrets.create(name="openai_api_key", value="sk-abc")

    # A bare array, newest first, never a value; limit and offset page through it.
    listed = client.secrets.list()
    assert isinstance(listed, list)
    assert [s.name for s in listed] == ["openai_api_key", "database_password", "stripe_api_key"]
    assert {s.value for s in listed} == {ENCRYPTED}
    assert [s.id for s in client.secrets.list(limit=1, offset=1)] == [second.id]
    assert [s.id for s in client.secrets.list(limit=5, offset=2)] == [created.id]
    assert client.secrets.list(offset=3) == []
    raw_list = client.secrets.with_raw_response.list()
    assert raw_list.headers["cache-control"] == "no-store"
    assert find_leaks(value, raw_list.http_response.content) == []

    # PUT by id: a new value (version 2); description and metadata left out are kept.
    updated = client.secrets.update(created.id, name="stripe_api_key", value="sk_test_new")
    assert (updated.id, updated.name, updated.value) == (created.id, "stripe_api_key", ENCRYPTED)
    assert updated.description == "Stripe API key for payment processing"
    assert updated.metadata == {"environment": "production", "owner": "payments-team"}
    assert updated.created_at == created.created_at
    assert updated.updated_at > created.updated_at
    readable = own.secrets.get(name="stripe_api_key")
    assert (readable.value, readable.version) == ("sk_test_new", 2)
    # ... sent as null they are kept too, as Julep's own server does
    client.secrets.update(
        created.id, name="stripe_api_key", value="sk_test_3", description=None, metadata=None
    )
    assert own.secrets.get(name="stripe_api_key").description == updated.description

    # given, they replace
    changed = client.secrets.update(
        created.id,
        name="stripe_api_key",
        value="sk_test_4",
        description="Updated Stripe API key",
        metadata={"rotated": "2025-05-10"},
    )
    assert changed.description == "Updated Stripe API key"
    assert changed.metadata == {"rotated": "2025-05-10"}

    # "" empties the description (null keeps it)
    emptied = client.secrets.update(created.id, name="stripe_api_key", value="sk", description="")
    assert emptied.description == ""
    client.secrets.update(
        created.id, name="stripe_api_key", value="sk_test_4", description="Updated Stripe API key"
    )

    # A new name renames: same id, the old name is free at once, the value stays.
    renamed = client.secrets.update(created.id, name="stripe_secret_key", value="sk_test_5")
    assert (renamed.id, renamed.name) == (created.id, "stripe_secret_key")
    assert renamed.description == "Updated Stripe API key"
    with pytest.raises(SecretNotFoundError):
        own.secrets.get(name="stripe_api_key")
    after = own.secrets.get(name="stripe_secret_key")
    assert (after.id, after.value, after.version) == (created.id, "sk_test_5", 7)

    # DELETE by id: 202 {id, deleted_at}; gone from both surfaces; a second delete is 404.
    raw_delete = client.secrets.with_raw_response.delete(created.id)
    assert raw_delete.status_code == 202
    deleted = raw_delete.parse()
    assert isinstance(deleted, julep.types.SecretDeleteResponse)
    assert deleted.id == created.id
    assert deleted.deleted_at >= renamed.updated_at
    with pytest.raises(SecretNotFoundError):
        own.secrets.get(name="stripe_secret_key")
    assert [s.id for s in client.secrets.list()] == [third.id, second.id]
    with pytest.raises(julep.NotFoundError):
        client.secrets.delete(created.id)
    with pytest.raises(julep.NotFoundError):
        client.secrets.update(created.id, name="stripe_secret_key", value="x")
    # an id in capitals is the same id
    assert client.secrets.delete(second.id.upper()).id == second.id


def test_both_surfaces_share_one_store(server: ServerProcess, issue: IssueKey) -> None:
    key = issue()
    client = official(server, key)
    own = v1(server, key)

    # /julep -> /v1: listed, and the value readable by name
    from_julep = client.secrets.create(
        name="from_julep", value="julep-value", metadata={"team": "a"}
    )
    read = own.secrets.get(name="from_julep")
    assert (read.id, read.value, read.version, read.metadata) == (
        from_julep.id,
        "julep-value",
        1,
        {"team": "a"},
    )
    assert [s.name for s in own.secrets.list().items] == ["from_julep"]

    # /v1 -> /julep: listed with the same id, and updatable and deletable by that id
    from_v1 = own.secrets.create(name="from_v1", value="v1-value", description="made on /v1")
    listed = {s.name: s for s in client.secrets.list()}
    assert listed["from_v1"].id == from_v1.id
    assert listed["from_v1"].description == "made on /v1"
    assert listed["from_v1"].value == ENCRYPTED
    client.secrets.update(from_v1.id, name="from_v1", value="changed-by-julep")
    again = own.secrets.get(name="from_v1")
    assert (again.value, again.version, again.description) == ("changed-by-julep", 2, "made on /v1")
    client.secrets.delete(from_v1.id)
    assert [s.name for s in own.secrets.list().items] == ["from_julep"]

    # a name taken on one surface is taken on the other
    own.secrets.create(name="shared_name", value="x")
    with pytest.raises(julep.ConflictError):
        client.secrets.create(name="shared_name", value="y")


def test_errors_keep_the_envelope_with_the_clients_statuses(
    server: ServerProcess, issue: IssueKey
) -> None:
    key = issue()
    client = official(server, key)
    own = v1(server, key)
    first = client.secrets.create(name="first", value="1")
    client.secrets.create(name="second", value="2")

    def code(error: pytest.ExceptionInfo[Any]) -> str:
        body = error.value.body
        assert set(body) == {"error"}, body
        assert set(body["error"]) == {"code", "message", "request_id", "details"}
        return str(body["error"]["code"])

    # A taken name is 409 on create and on rename, answered at once: the clients retry a
    # 409 unless told not to, and the server tells them (one attempt is audited, not 3).
    with pytest.raises(julep.ConflictError) as conflict:
        client.secrets.create(name="first", value="again")
    assert code(conflict) == "conflict"
    assert conflict.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(julep.ConflictError):
        client.secrets.update(first.id, name="second", value="1")
    trail = [(r.action, r.outcome) for r in own.audit.list(secret="first").items]
    assert trail.count(("secret.create", "conflict")) == 1
    assert trail.count(("secret.rename", "conflict")) == 1

    # 422 for what the store cannot hold, with the field's location
    invalid: list[tuple[Callable[[], Any], str]] = [
        (lambda: client.secrets.create(name="not a name", value="x"), "body.name"),
        (lambda: client.secrets.create(name="ok_name", value=""), "body.value"),
        (lambda: client.secrets.create(name="ok_name", value="x", metadata=[1]), "body.metadata"),
        (lambda: client.secrets.update(first.id, name="first", value=""), "body.value"),
        (lambda: client.secrets.update("not-a-uuid", name="first", value="x"), "path.secret_id"),
        (lambda: client.secrets.delete("not-a-uuid"), "path.secret_id"),
        (lambda: client.secrets.list(limit=0), "query.limit"),
        (lambda: client.secrets.list(offset=-1), "query.offset"),
    ]
    for call, location in invalid:
        with pytest.raises(julep.UnprocessableEntityError) as unprocessable:
            call()
        assert code(unprocessable) == "validation_error"
        locations = [d["location"] for d in unprocessable.value.body["error"]["details"]]
        assert location in locations, (location, unprocessable.value.body)
    # a field Julep has and strongroom does not is refused, not ignored
    with pytest.raises(julep.UnprocessableEntityError) as unknown:
        client.secrets.create(name="ok_name", value="x", extra_body={"agent_id": str(uuid.uuid4())})
    assert "body.agent_id" in [d["location"] for d in unknown.value.body["error"]["details"]]
    # PUT needs both name and value (the client's own signature does too)
    with pytest.raises(julep.UnprocessableEntityError):
        client.secrets.update(first.id, name="first", value="x", extra_body={"value": None})

    # 404 for an unknown id; 401 for a bad key; 403 for a key without the scope
    with pytest.raises(julep.NotFoundError) as missing:
        client.secrets.delete(str(uuid.uuid4()))
    assert code(missing) == "not_found"
    with pytest.raises(julep.AuthenticationError) as unauthorized:
        official(server, "sr_not_a_real_key").secrets.list()
    assert code(unauthorized) == "unauthorized"
    reader = official(server, issue(scopes=("secrets:read",)))
    assert [s.name for s in reader.secrets.list()] == ["second", "first"]
    with pytest.raises(julep.PermissionDeniedError) as forbidden:
        reader.secrets.update(first.id, name="first", value="x")
    assert code(forbidden) == "forbidden"
    with pytest.raises(julep.PermissionDeniedError):
        official(server, issue(scopes=("audit:read",))).secrets.list()
    assert own.secrets.get(name="first").value == "1"


def test_tenants_are_isolated_by_id(server: ServerProcess, issue: IssueKey) -> None:
    default = official(server, issue("default"))
    acme = official(server, issue("acme"))
    ours = default.secrets.create(name="stripe_api_key", value="default-value")

    # another tenant's id is indistinguishable from a missing one
    assert acme.secrets.list() == []
    with pytest.raises(julep.NotFoundError):
        acme.secrets.update(ours.id, name="stripe_api_key", value="stolen")
    with pytest.raises(julep.NotFoundError):
        acme.secrets.update(ours.id, name="renamed_by_acme", value="stolen")
    with pytest.raises(julep.NotFoundError):
        acme.secrets.delete(ours.id)

    # names are per tenant
    theirs = acme.secrets.create(name="stripe_api_key", value="acme-value")
    assert theirs.id != ours.id
    assert [s.id for s in default.secrets.list()] == [ours.id]
    assert [s.id for s in acme.secrets.list()] == [theirs.id]
    own = v1(server, issue("default"))
    got = own.secrets.get(name="stripe_api_key")
    assert (got.id, got.value, got.version) == (ours.id, "default-value", 1)


def test_the_audit_trail_records_julep_calls(server: ServerProcess, issue: IssueKey) -> None:
    key = issue()
    client = official(server, key)
    own = v1(server, key)

    raw = client.secrets.with_raw_response.create(name="audited", value="v")
    created = raw.parse()
    client.secrets.update(created.id, name="audited", value="v2")
    client.secrets.update(created.id, name="audited_renamed", value="v3")
    client.secrets.delete(created.id)
    stranger = official(server, issue("acme"))
    with pytest.raises(julep.NotFoundError):
        stranger.secrets.delete(created.id)

    records = list(own.audit.list_all())[::-1]  # oldest first
    trail = [
        (r.action, r.outcome, r.secret_name, r.secret_id)
        for r in records
        if r.action.startswith("secret.")
    ]
    assert trail == [
        ("secret.create", "success", "audited", created.id),
        ("secret.update", "success", "audited", created.id),
        ("secret.rename", "success", "audited_renamed", created.id),
        ("secret.update", "success", "audited_renamed", created.id),
        ("secret.delete", "success", "audited_renamed", created.id),
    ]
    assert records[0].request_id == raw.headers["x-request-id"]
    assert len({r.key_id for r in records}) == 1  # the one key both clients used

    # the other tenant's failed attempt is in its own trail, naming the id it tried
    acme_trail = [
        (r.action, r.outcome, r.secret_name, r.secret_id)
        for r in v1(server, issue("acme")).audit.list_all()
    ]
    assert ("secret.delete", "not_found", None, created.id) in acme_trail


def test_readme_block_runs_as_printed(server: ServerProcess, issue: IssueKey) -> None:
    found = re.search(
        r"<!-- julep-python:begin -->\n```python\n(.*?)```\n<!-- julep-python:end -->",
        README.read_text(),
        re.DOTALL,
    )
    assert found, "README lost its Coming from Julep block"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "JULEP_API_KEY": issue(),
        "JULEP_BASE_URL": f"{server.base_url}/julep",
    }
    done = subprocess.run(
        [sys.executable, "-c", found.group(1)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["stripe_api_key ENCRYPTED", "stripe_api_key", "True"]
    own = v1(server, env["JULEP_API_KEY"])
    trail = [f"{r.action} {r.outcome}" for r in own.audit.list_all()][::-1]
    # the rename sends the value it already holds: a rename, and no new version
    assert trail == [
        "secret.create success",
        "secret.update success",
        "secret.rename success",
        "secret.delete success",
    ]
