"""The Python SDK: every call, through the blocking and the asyncio client alike.

Each test body is written once and runs twice: against :class:`Strongroom` and against
:class:`AsyncStrongroom` (driven through :class:`Synced`), both talking to the real app
in process.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import strongroom
from strongroom import NOT_GIVEN, AsyncStrongroom, Julep, NotGiven, SecretPolicy, Strongroom
from strongroom.exceptions import (
    APIError,
    AuthenticationError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PreconditionFailedError,
    RotationCheckFailed,
    SecretAlreadyExistsError,
    SecretNotFoundError,
    StrongroomError,
    ValidationError,
)
from strongroom.server.services import Services

from .conftest import IssueKey
from .support import canary


class Synced:
    """Drive an async client (or resource) as if it were blocking, for shared tests."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if inspect.isasyncgenfunction(attr):
            return lambda *a, **k: iter(self._loop.run_until_complete(_collect(attr(*a, **k))))
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **k: self._loop.run_until_complete(attr(*a, **k))
        if hasattr(attr, "_client"):  # a resource
            return Synced(attr, self._loop)
        return attr


async def _collect(items: Any) -> list[Any]:
    return [item async for item in items]


MakeSDK = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def make_sdk(
    request: pytest.FixtureRequest, app: FastAPI, issue_key: IssueKey
) -> Iterator[MakeSDK]:
    """Clients of the in-process app: ``make_sdk(scopes=(...), tenant=...)``."""
    loop = asyncio.new_event_loop()
    closers: list[Callable[[], Any]] = []

    def make(tenant: str = "default", scopes: tuple[str, ...] = (), key: str | None = None) -> Any:
        key = key or issue_key(tenant, scopes)
        if request.param == "sync":
            http = TestClient(app)
            client = Strongroom(api_key=key, http_client=http)
            closers.append(http.close)
            return client
        transport = httpx.ASGITransport(app=app)
        http_async = httpx.AsyncClient(transport=transport)
        closers.append(lambda: loop.run_until_complete(http_async.aclose()))
        return Synced(AsyncStrongroom(api_key=key, http_client=http_async), loop)

    yield make
    for close in closers:
        close()
    loop.close()


@pytest.fixture
def sdk(make_sdk: MakeSDK) -> Any:
    return make_sdk()


# -- secrets ------------------------------------------------------------------------------------
def test_the_guides_secret_calls(sdk: Any) -> None:
    secret = sdk.secrets.create(
        name="stripe_api_key",
        value="sk_test_123",
        description="Stripe API key for payment processing",
        metadata={"environment": "production", "owner": "payments-team"},
    )
    assert isinstance(secret, strongroom.Secret)
    assert secret.value == "ENCRYPTED"
    assert isinstance(secret.created_at, dt.datetime)
    assert secret.created_at.tzinfo is not None

    listed = sdk.secrets.list()
    assert [s.name for s in listed.items] == ["stripe_api_key"]
    assert sdk.secrets.list(limit=10, offset=10).items == []
    production = sdk.secrets.list(metadata={"environment": "production"})
    assert [s.name for s in production.items] == ["stripe_api_key"]
    assert sdk.secrets.list(metadata={"environment": "production", "owner": "ops"}).items == []

    got = sdk.secrets.get(name="stripe_api_key")
    assert got.value == "sk_test_123"

    updated = sdk.secrets.update(
        name="stripe_api_key",
        value="sk_test_new_value",
        description="Updated Stripe API key",
        metadata={"environment": "production", "rotated": "2025-05-10"},
    )
    assert updated.version == 2
    only_description = sdk.secrets.update(name="stripe_api_key", description="New description")
    assert only_description.metadata == {"environment": "production", "rotated": "2025-05-10"}
    only_metadata = sdk.secrets.update(name="stripe_api_key", metadata={"lastRotated": "x"})
    assert only_metadata.description == "New description"
    assert only_metadata.metadata == {"lastRotated": "x"}
    cleared = sdk.secrets.update(name="stripe_api_key", description=None)
    assert cleared.description is None

    renamed = sdk.secrets.update(name="stripe_api_key", new_name="stripe_key")
    assert renamed.name == "stripe_key"
    with pytest.raises(SecretNotFoundError):
        sdk.secrets.get(name="stripe_api_key")

    deleted = sdk.secrets.delete(name="stripe_key")
    assert deleted.name == "stripe_key"
    assert isinstance(deleted.deleted_at, dt.datetime)
    assert sdk.secrets.list().items == []


def test_versions_upsert_and_reading_an_old_version(sdk: Any) -> None:
    created = sdk.secrets.upsert("token", "one", description="d")
    assert created.version == 1
    replaced = sdk.secrets.upsert("token", "two")
    assert replaced.version == 2
    assert replaced.description == "d"
    assert [v.version for v in sdk.secrets.versions("token").items] == [2, 1]
    assert [v.version for v in sdk.secrets.versions("token")] == [2, 1]
    assert sdk.secrets.get("token", version=1).value == "one"
    with pytest.raises(PreconditionFailedError):
        sdk.secrets.upsert("token", "three", expected_version=1)


def test_conditional_update_and_delete(sdk: Any) -> None:
    sdk.secrets.create("guarded", "v1")
    with pytest.raises(PreconditionFailedError) as caught:
        sdk.secrets.update("guarded", value="v2", expected_version=7)
    assert caught.value.code == "precondition_failed"
    assert sdk.secrets.update("guarded", value="v2", expected_version=1).version == 2
    with pytest.raises(PreconditionFailedError):
        sdk.secrets.delete("guarded", expected_version=1)
    assert sdk.secrets.delete("guarded", expected_version=2).name == "guarded"


def test_list_all_walks_every_page(sdk: Any) -> None:
    for i in range(23):
        sdk.secrets.create(f"s{i:02d}", "v", metadata={"even": i % 2 == 0})
    assert [s.name for s in sdk.secrets.list_all(page_size=5)] == [f"s{i:02d}" for i in range(23)]
    page = sdk.secrets.list(limit=5, offset=20)
    assert [s.name for s in page] == [s.name for s in page.items] == ["s20", "s21", "s22"]
    assert (page.limit, page.offset, page.has_more) == (5, 20, False)
    assert page.model_dump()["limit"] == 5, "a page iterates its items; model_dump its fields"
    evens = [s.name for s in sdk.secrets.list_all(metadata={"even": True}, page_size=4)]
    assert evens == [f"s{i:02d}" for i in range(0, 23, 2)]


def test_the_value_never_shows_in_repr(sdk: Any) -> None:
    value = canary()
    sdk.secrets.create("hidden", value)
    secret = sdk.secrets.get("hidden")
    assert secret.value == value
    assert value not in repr(secret)
    assert value not in str(secret)


def test_rotate_replaces_the_value_after_the_check_and_keeps_the_old_one(sdk: Any) -> None:
    sdk.secrets.create("stripe_api_key", "old", description="Stripe", metadata={"owner": "pay"})
    seen: list[str] = []

    def check(value: str) -> bool:
        seen.append(value)
        return True

    rotated = sdk.secrets.rotate("stripe_api_key", "new", check=check)
    assert seen == ["new"]
    assert rotated.version == 2
    assert rotated.description == "Stripe"
    assert rotated.metadata["owner"] == "pay"
    assert "lastRotated" in rotated.metadata
    assert sdk.secrets.get("stripe_api_key").value == "new"
    assert sdk.secrets.get("stripe_api_key", version=1).value == "old"

    with pytest.raises(RotationCheckFailed):
        sdk.secrets.rotate("stripe_api_key", "bad", check=lambda value: False)

    def explode(value: str) -> bool:
        raise RuntimeError("upstream refused the key")

    with pytest.raises(RotationCheckFailed):
        sdk.secrets.rotate("stripe_api_key", "worse", check=explode)
    assert sdk.secrets.get("stripe_api_key").value == "new"


# -- errors -------------------------------------------------------------------------------------
def test_every_api_error_carries_code_status_request_id_and_details(sdk: Any) -> None:
    with pytest.raises(SecretNotFoundError) as missing:
        sdk.secrets.get(name="non_existent_secret")
    error = missing.value
    assert isinstance(error, NotFoundError)
    assert isinstance(error, APIError)
    assert isinstance(error, StrongroomError)
    assert (error.code, error.status_code) == ("not_found", 404)
    assert error.request_id
    assert error.request_id.startswith("req_")
    assert "non_existent_secret" in str(error)
    assert error.request_id in str(error)

    with pytest.raises(ValidationError) as invalid:
        sdk.secrets.create(name="invalid name", value="test")
    assert invalid.value.code == "validation_error"
    assert [d.location for d in invalid.value.details] == ["body.name"]
    assert "body.name" in str(invalid.value)

    sdk.secrets.create(name="existing_secret", value="test")
    with pytest.raises(SecretAlreadyExistsError) as taken:
        sdk.secrets.create(name="existing_secret", value="test")
    assert taken.value.code == "conflict"
    sdk.secrets.create(name="other", value="x")
    with pytest.raises(SecretAlreadyExistsError):
        sdk.secrets.update("other", new_name="existing_secret")


def test_error_messages_never_hold_the_value(sdk: Any) -> None:
    value = canary()
    sdk.secrets.create(name="existing", value="x")
    for call in (
        lambda: sdk.secrets.create(name="existing", value=value),
        lambda: sdk.secrets.create(name="bad name", value=value),
        lambda: sdk.secrets.update("missing", value=value),
        lambda: sdk.secrets.update("existing", value=value, expected_version=9),
    ):
        with pytest.raises(APIError) as caught:
            call()
        assert value not in str(caught.value)
        assert value not in repr(caught.value)


def test_authentication_and_permission_errors(make_sdk: MakeSDK) -> None:
    with pytest.raises(AuthenticationError) as bad:
        make_sdk(key="sr_not_a_key").secrets.list()
    assert bad.value.code == "unauthorized"
    reader = make_sdk(scopes=("secrets:read",))
    with pytest.raises(PermissionDeniedError) as denied:
        reader.secrets.create("x", "y")
    assert denied.value.status_code == 403


def test_tenants_do_not_see_each_other(make_sdk: MakeSDK) -> None:
    make_sdk(tenant="acme").secrets.create("shared_name", "acme's")
    other = make_sdk(tenant="globex")
    with pytest.raises(SecretNotFoundError):
        other.secrets.get("shared_name")
    other.secrets.create("shared_name", "globex's")
    assert other.secrets.get("shared_name").value == "globex's"


def test_payload_too_large(client_with: Any, issue_key: IssueKey) -> None:
    small = client_with(max_body_bytes=1024)
    client = Strongroom(api_key=issue_key(), http_client=small)
    with pytest.raises(PayloadTooLargeError) as caught:
        client.secrets.create("big", "x" * 4096)
    assert caught.value.code == "payload_too_large"


# -- usage policies -----------------------------------------------------------------------------
def test_a_policy_is_set_shown_and_changed_field_by_field(sdk: Any) -> None:
    created = sdk.secrets.create(
        "stripe_api_key",
        "sk_test_x",
        policy=SecretPolicy(allowed_destinations=["*.stripe.com"], allowed_tools=["http"]),
    )
    assert isinstance(created.policy, SecretPolicy)
    assert created.policy == SecretPolicy(
        allowed_destinations=["*.stripe.com"], allowed_tools=["http"], readable=True
    )
    # a model sends only the fields it was given: the others are kept
    tightened = sdk.secrets.update("stripe_api_key", policy=SecretPolicy(readable=False))
    assert tightened.policy.readable is False
    assert tightened.policy.allowed_destinations == ["*.stripe.com"]
    # a dict works as well, and a tuple is a list on the wire
    narrowed = sdk.secrets.update(
        "stripe_api_key", policy={"allowed_destinations": ("api.stripe.com:443",)}
    )
    assert narrowed.policy.allowed_destinations == ["api.stripe.com:443"]
    assert narrowed.policy.readable is False
    listed = next(iter(sdk.secrets.list_all()))
    assert listed.policy == narrowed.policy
    # upsert: a new value, and a policy field, with the rest kept
    upserted = sdk.secrets.upsert("stripe_api_key", "sk_test_y", policy={"allowed_tools": []})
    assert (upserted.version, upserted.policy.allowed_tools) == (2, [])
    assert upserted.policy.allowed_destinations == ["api.stripe.com:443"]
    # the default policy, for a secret given none
    plain = sdk.secrets.create("plain", "v")
    assert plain.policy == SecretPolicy(allowed_destinations=None, allowed_tools=None)


def test_a_use_only_secret_cannot_be_read_through_the_sdk(make_sdk: MakeSDK) -> None:
    owner = make_sdk(scopes=("*",))
    value = canary()
    owner.secrets.create("vault", value, policy={"readable": False})
    for scopes in (("*",), ("secrets:read",)):
        client = make_sdk(scopes=scopes)
        with pytest.raises(PermissionDeniedError) as caught:
            client.secrets.get("vault")
        assert caught.value.code == "forbidden"
        assert "use-only" in caught.value.message
        assert value not in repr(caught.value)
        with pytest.raises(PermissionDeniedError):
            client.secrets.get("vault", version=1)
        with pytest.raises(PermissionDeniedError):
            client.secrets.versions("vault")


def test_loosening_a_policy_needs_secrets_admin(make_sdk: MakeSDK) -> None:
    owner = make_sdk(scopes=("*",))
    owner.secrets.create("vault", "v", policy=SecretPolicy(readable=False))
    writer = make_sdk(scopes=("secrets:read", "secrets:write"))
    with pytest.raises(PermissionDeniedError) as caught:
        writer.secrets.update("vault", policy=SecretPolicy(readable=True))
    assert "secrets:admin" in caught.value.message
    with pytest.raises(PermissionDeniedError):
        writer.secrets.upsert("vault", "w", policy={"readable": True})
    admin = make_sdk(scopes=("secrets:write", "secrets:admin"))
    assert admin.secrets.update("vault", policy={"readable": True}).policy.readable is True


def test_a_bad_policy_is_a_validation_error_at_the_entry(sdk: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        sdk.secrets.create(
            "bad", "v", policy={"allowed_destinations": ["ok.example", "https://x.example"]}
        )
    assert [d.location for d in caught.value.details] == ["body.policy.allowed_destinations[1]"]
    with pytest.raises(ValidationError):
        sdk.secrets.create("bad", "v", policy={"allowed_tools": ["ftp"]})
    with pytest.raises(TypeError):
        sdk.secrets.create("bad", "v", policy=["readable"])


# -- audit --------------------------------------------------------------------------------------
def test_audit_list_and_list_all(sdk: Any) -> None:
    sdk.secrets.create("a", "1")
    sdk.secrets.get("a")
    records = sdk.audit.list(limit=1)
    assert records.has_more
    assert records.items[0].action == "secret.read"
    assert isinstance(records.items[0].time, dt.datetime)
    actions = [r.action for r in sdk.audit.list_all(secret="a", page_size=1)]
    assert actions == ["secret.read", "secret.create"]
    reads = [r.action for r in sdk.audit.list_all(action="secret.create")]
    assert reads == ["secret.create"]


# -- construction -------------------------------------------------------------------------------
def test_settings_come_from_arguments_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StrongroomError, match="STRONGROOM_API_KEY"):
        Strongroom()
    monkeypatch.setenv("STRONGROOM_API_KEY", "sr_from_env")
    monkeypatch.setenv("STRONGROOM_BASE_URL", "http://127.0.0.1:9999/")
    with Strongroom() as client:
        assert client.base_url == "http://127.0.0.1:9999"
        assert "sr_from_env" not in repr(client)
    assert Julep is Strongroom
    assert strongroom.AsyncJulep is AsyncStrongroom
    explicit = Strongroom(api_key="sr_arg", base_url="http://127.0.0.1:1")
    assert explicit.base_url == "http://127.0.0.1:1"
    explicit.close()


def test_not_given_is_leaving_an_argument_out(sdk: Any) -> None:
    assert not NOT_GIVEN
    assert repr(NOT_GIVEN) == "NOT_GIVEN"
    assert isinstance(NOT_GIVEN, NotGiven)
    sdk.secrets.create("kept", "v", description="d", metadata={"a": 1})
    same = sdk.secrets.update("kept", value="w", description=NOT_GIVEN, metadata=NOT_GIVEN)
    assert (same.version, same.description, same.metadata) == (2, "d", {"a": 1})
    assert sdk.secrets.update("kept", description=None).description is None


def test_sync_and_async_clients_offer_the_same_calls() -> None:
    sync = Strongroom(api_key="sr_x")
    asynchronous = AsyncStrongroom(api_key="sr_x")
    for resource in ("secrets", "tasks", "executions", "audit"):
        mine = getattr(sync, resource)
        theirs = getattr(asynchronous, resource)
        names = {n for n in dir(mine) if not n.startswith("_")}
        assert names == {n for n in dir(theirs) if not n.startswith("_")}
        for name in names:
            ours = inspect.signature(getattr(mine, name)).parameters
            assert ours == inspect.signature(getattr(theirs, name)).parameters, name
    sync.close()


# -- the lifecycle: recovery window, history, expiry, batches --------------------------------------
def test_delete_restore_and_purge(make_sdk: MakeSDK) -> None:
    sdk = make_sdk()
    value = canary("restorable")
    sdk.secrets.create(name="doomed", value=value)
    deleted = sdk.secrets.delete(name="doomed")
    assert isinstance(deleted, strongroom.DeletedSecret) and deleted.purge_after is not None
    with pytest.raises(SecretNotFoundError):
        sdk.secrets.get(name="doomed")
    with pytest.raises(SecretAlreadyExistsError, match="restore"):
        sdk.secrets.create(name="doomed", value="again")
    listed = sdk.secrets.list(deleted=True).items
    assert [(s.name, s.purge_after is not None) for s in listed] == [("doomed", True)]
    assert sdk.secrets.restore(name="doomed").deleted_at is None
    assert sdk.secrets.get(name="doomed").value == value
    writer = make_sdk(scopes=("secrets:read", "secrets:write"))
    with pytest.raises(PermissionDeniedError, match="secrets:admin"):
        writer.secrets.purge(name="doomed")
    assert sdk.secrets.purge(name="doomed").purge_after is None
    sdk.secrets.create(name="doomed", value="fresh")  # the name is free


def test_rollback_and_writes_that_change_nothing(sdk: Any) -> None:
    sdk.secrets.create(name="history", value="one")
    assert sdk.secrets.update(name="history", value="two").version == 2
    assert sdk.secrets.update(name="history", value="two").version == 2  # no new version
    rolled = sdk.secrets.rollback(name="history", version=1)
    assert (rolled.version, rolled.value) == (3, "ENCRYPTED")
    assert sdk.secrets.get(name="history").value == "one"
    with pytest.raises(PreconditionFailedError):
        sdk.secrets.rollback(name="history", version=2, expected_version=1)


def test_expiry_raises_secret_expired_except_for_an_admin(
    make_sdk: MakeSDK, services: Services
) -> None:
    admin, reader = make_sdk(), make_sdk(scopes=("secrets:read",))
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    created = admin.secrets.create(name="token", value="v", expires_at=soon)
    assert created.expires_at == soon.replace(microsecond=created.expires_at.microsecond)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert [s.name for s in reader.secrets.list(expiring_before=later).items] == ["token"]
    with services.store.write() as tx:
        secret = tx.secrets.by_name(created_tenant(services), "token")
        assert secret is not None
        tx.secrets.update(replace(secret, expires_at=dt.datetime.now(dt.UTC)))
    with pytest.raises(strongroom.SecretExpiredError) as raised:
        reader.secrets.get(name="token")
    assert (raised.value.status_code, raised.value.code) == (410, "expired")
    assert admin.secrets.get(name="token").value == "v"
    with pytest.raises(ValueError, match="zone"):
        admin.secrets.update(name="token", expires_at=dt.datetime(2099, 1, 1))


def created_tenant(services: Services) -> str:
    with services.store.read() as tx:
        tenant = tx.apikeys.tenant_by_name("default")
    assert tenant is not None
    return tenant.id


def test_batch_get_and_batch_put(sdk: Any) -> None:
    values = {f"b{i}": canary(f"batch{i}") for i in range(3)}
    written = sdk.secrets.batch_put([{"name": n, "value": v} for n, v in values.items()])
    assert [item.status for item in written.items] == ["created"] * 3
    again = sdk.secrets.batch_put(
        [{"name": "b0", "value": values["b0"]}, {"name": "b1", "value": "new"}], dry_run=True
    )
    assert ([i.status for i in again.items], again.dry_run) == (["unchanged", "updated"], True)
    assert sdk.secrets.get(name="b1").value == values["b1"]  # a dry run writes nothing
    read = sdk.secrets.batch_get([*values, "missing"])
    assert read.values() == values
    assert [(e.name, e.code) for e in read.errors] == [("missing", "not_found")]
    with pytest.raises(TypeError):
        sdk.secrets.batch_get("b0")


def test_a_rotation_policy_set_made_due_and_ended(sdk: Any) -> None:
    sdk.secrets.create(name="api_key", value="v")
    task = sdk.tasks.create(steps=[{"kind": "set_secret", "name": "api_key", "value": "w"}])
    made = sdk.secrets.update(name="api_key", rotation={"every": "30d", "task_id": task.id})
    assert made.rotation == strongroom.Rotation(every="30d", task_id=task.id)
    assert made.next_rotation_at is not None and made.last_rotated_at is None
    due = sdk.secrets.rotate_now(name="api_key")
    assert due.next_rotation_at is not None and due.next_rotation_at < made.next_rotation_at
    with pytest.raises(ValidationError, match=r"body\.rotation\.every"):
        sdk.secrets.update(name="api_key", rotation={"every": "10s", "task_id": task.id})
    ended = sdk.secrets.update(name="api_key", rotation=None)
    assert (ended.rotation, ended.next_rotation_at) == (None, None)
