"""``client.keys`` and the audit trail's filters, through the blocking and the asyncio
client alike, against the real app in process (as tests/test_sdk.py does).

A key made through the SDK is then used as a client would use it: each test checks what
the server does with the key, not only what it answered when it made it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import ValidationError as ModelValidationError

import strongroom
from strongroom import (
    NOT_GIVEN,
    ApiKey,
    AsyncStrongroom,
    CreatedApiKey,
    KeyRule,
    RotatedApiKey,
    Strongroom,
)
from strongroom.exceptions import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    SecretNotFoundError,
    ValidationError,
)
from strongroom.resources.keys import create_key, rotate_key, update_key

from .conftest import IssueKey
from .test_sdk import Synced

MakeSDK = Callable[..., Any]
WEEK = dt.timedelta(days=7)


@pytest.fixture(params=["sync", "async"])
def make_sdk(
    request: pytest.FixtureRequest, app: FastAPI, issue_key: IssueKey
) -> Iterator[MakeSDK]:
    """Clients of the in-process app: ``make_sdk()`` holds a new key with every scope,
    ``make_sdk(key=...)`` the key given (one the SDK made, say)."""
    loop = asyncio.new_event_loop()
    closers: list[Callable[[], Any]] = []

    def make(scopes: tuple[str, ...] = (), key: str | None = None) -> Any:
        key = key or issue_key("default", scopes)
        if request.param == "sync":
            http = TestClient(app)
            closers.append(http.close)
            return Strongroom(api_key=key, http_client=http)
        http_async = httpx.AsyncClient(transport=httpx.ASGITransport(app=app))
        closers.append(lambda: loop.run_until_complete(http_async.aclose()))
        return Synced(AsyncStrongroom(api_key=key, http_client=http_async), loop)

    yield make
    for close in closers:
        close()
    loop.close()


@pytest.fixture
def admin(make_sdk: MakeSDK) -> Any:
    """A client whose key has every scope, no rule and no expiry."""
    return make_sdk()


def _soon(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


# -- the life of a key --------------------------------------------------------------------------
def test_create_use_list_rotate_with_grace_then_revoke(admin: Any, make_sdk: MakeSDK) -> None:
    created = admin.keys.create(name="deploy", scopes=["secrets:read", "secrets:write"])
    assert isinstance(created, CreatedApiKey)
    assert created.key.startswith("sr_") and created.hint.endswith(created.key[-4:])
    assert (created.name, created.scopes) == ("deploy", ["secrets:read", "secrets:write"])
    # left out, the rule and the expiry are the calling key's: none
    assert created.rule is None and created.expires_at is None and created.revoked_at is None
    assert created.created_by is not None  # the admin's key, which issued it

    deploy = make_sdk(key=created.key)
    deploy.secrets.create(name="made_by_deploy", value="v")
    assert [s.name for s in deploy.secrets.list()] == ["made_by_deploy"]
    with pytest.raises(PermissionDeniedError):  # no keys:admin: it cannot manage keys
        deploy.keys.list()

    listed = admin.keys.list()
    assert isinstance(listed, strongroom.ApiKeyList)
    mine = {k.id: k for k in listed}
    assert created.id in mine and isinstance(mine[created.id], ApiKey)
    assert not isinstance(mine[created.id], CreatedApiKey)  # a listing never has the key
    assert "key" not in mine[created.id].model_dump()
    assert mine[created.id].last_used_at is not None  # deploy has been used
    assert [k.id for k in admin.keys.list_all(page_size=1)] == [k.id for k in listed.items]
    assert admin.keys.get(created.id).hint == created.hint

    rotated = admin.keys.rotate(created.id, grace_seconds=3600)
    assert isinstance(rotated, RotatedApiKey)
    new, old = rotated.new, rotated.old
    assert new.key != created.key and new.id != created.id
    assert (new.name, new.scopes) == ("deploy", created.scopes)
    assert old.id == created.id and old.revoked_at is None
    assert old.expires_at is not None
    assert _soon(3500) < old.expires_at < _soon(3700)
    # the grace period: the old key and the new one both work
    rotated_in = make_sdk(key=new.key)
    assert [s.name for s in deploy.secrets.list()] == ["made_by_deploy"]
    assert [s.name for s in rotated_in.secrets.list()] == ["made_by_deploy"]

    revoked = admin.keys.revoke(new.id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthenticationError) as refused:
        rotated_in.secrets.list()
    assert refused.value.status_code == 401 and "revoked" in str(refused.value)
    assert [s.name for s in deploy.secrets.list()] == ["made_by_deploy"]  # still in its grace
    admin.keys.revoke(old.id)
    with pytest.raises(AuthenticationError):
        deploy.secrets.list()
    assert admin.keys.revoke(old.id).revoked_at is not None  # again: nothing changes

    active = {k.id for k in admin.keys.list_all()}
    everything = {k.id for k in admin.keys.list_all(include_revoked=True)}
    assert {old.id, new.id}.isdisjoint(active) and {old.id, new.id} <= everything
    with pytest.raises(ConflictError):  # a revoked key is not rotated back to life
        admin.keys.rotate(old.id)


def test_rotation_without_grace_revokes_the_old_key_at_once(admin: Any, make_sdk: MakeSDK) -> None:
    made = admin.keys.create(name="ci")
    rotated = admin.keys.rotate(made.id)
    assert rotated.old.revoked_at is not None
    with pytest.raises(AuthenticationError):
        make_sdk(key=made.key).secrets.list()
    assert make_sdk(key=rotated.new.key).secrets.list().items == []


def test_a_key_scoped_by_the_sdk_sees_only_its_secrets(admin: Any, make_sdk: MakeSDK) -> None:
    for name, metadata in (
        ("ci_build", {"env": "ci"}),
        ("ci_deploy", {"env": "prod"}),
        ("prod_db", {"env": "prod"}),
    ):
        admin.secrets.create(name=name, value=f"value of {name}", metadata=metadata)
    by_name = admin.keys.create(scopes=["secrets:read"], rule=KeyRule(names=["ci_*"]))
    assert by_name.rule == KeyRule(names=["ci_*"], metadata={})
    ci = make_sdk(key=by_name.key)
    assert [s.name for s in ci.secrets.list_all()] == ["ci_build", "ci_deploy"]
    assert ci.secrets.get("ci_build").value == "value of ci_build"
    with pytest.raises(PermissionDeniedError):  # outside its globs
        ci.secrets.get("prod_db")
    with pytest.raises(PermissionDeniedError):  # secrets:read only
        ci.secrets.create(name="ci_new", value="v")

    # a mapping works as the rule too; names and metadata must both hold
    both = admin.keys.create(
        scopes=["secrets:read"], rule={"names": ("ci_*",), "metadata": {"env": "ci"}}
    )
    assert both.rule is not None and both.rule.metadata == {"env": "ci"}
    narrow = make_sdk(key=both.key)
    assert [s.name for s in narrow.secrets.list_all()] == ["ci_build"]
    with pytest.raises(SecretNotFoundError):  # outside its metadata: as if it did not exist
        narrow.secrets.get("ci_deploy")


def test_left_out_is_inherited_and_none_is_asked_for(admin: Any, make_sdk: MakeSDK) -> None:
    expiry = _soon(WEEK.total_seconds())
    scoped = admin.keys.create(
        name="ci admin",
        scopes=["keys:admin", "secrets:read"],
        rule=KeyRule(names=["ci_*"]),
        expires_at=expiry,
    )
    assert scoped.expires_at is not None and abs(scoped.expires_at - expiry) < dt.timedelta(
        seconds=1
    )
    ci_admin = make_sdk(key=scoped.key)

    inherited = ci_admin.keys.create(name="child")
    assert inherited.scopes == ["keys:admin", "secrets:read"]
    assert inherited.rule == scoped.rule and inherited.expires_at == scoped.expires_at
    narrower = ci_admin.keys.create(
        scopes=["secrets:read"], rule={"names": ["ci_a*"]}, expires_at=_soon(3600)
    )
    assert narrower.scopes == ["secrets:read"] and narrower.rule == KeyRule(names=["ci_a*"])

    # None asks for every secret / no expiry: more than this key has, so refused
    for wider in (
        {"rule": None},
        {"expires_at": None},
        {"scopes": ["secrets:write"]},
        {"rule": KeyRule(names=["*"])},
        {"expires_at": expiry + dt.timedelta(days=1)},
    ):
        with pytest.raises(PermissionDeniedError) as refused:
            ci_admin.keys.create(**wider)
        assert refused.value.status_code == 403, wider
    # a key without a rule or an expiry may ask for none
    free = admin.keys.create(rule=None, expires_at=None)
    assert free.rule is None and free.expires_at is None
    # another's keys it may not manage are not shown to it
    assert {k.id for k in ci_admin.keys.list_all()} == {scoped.id, inherited.id, narrower.id}
    with pytest.raises(PermissionDeniedError):
        ci_admin.keys.revoke(free.id)


def test_update_changes_only_the_fields_given(admin: Any) -> None:
    made = admin.keys.create(name="worker", scopes=["secrets:read", "secrets:write"])
    when = _soon(3600)
    renamed = admin.keys.update(made.id, name="worker-2")
    assert (renamed.name, renamed.scopes, renamed.expires_at) == ("worker-2", made.scopes, None)
    narrowed = admin.keys.update(
        made.id, scopes=["secrets:read"], rule={"metadata": {"team": "infra"}}, expires_at=when
    )
    assert narrowed.name == "worker-2" and narrowed.scopes == ["secrets:read"]
    assert narrowed.rule == KeyRule(metadata={"team": "infra"})
    assert narrowed.expires_at is not None and abs(narrowed.expires_at - when) < dt.timedelta(
        seconds=1
    )
    # None clears: no name, every secret, no expiry; an RFC 3339 string is a time too
    cleared = admin.keys.update(made.id, name=None, rule=None, expires_at=None)
    assert (cleared.name, cleared.rule, cleared.expires_at) == (None, None, None)
    stamped = admin.keys.update(made.id, expires_at="2999-01-01T00:00:00Z")
    assert stamped.expires_at == dt.datetime(2999, 1, 1, tzinfo=dt.UTC)
    assert admin.keys.get(made.id) == stamped

    with pytest.raises(ValidationError) as bad:  # a time without a zone
        admin.keys.update(made.id, expires_at="2999-01-01T00:00:00")
    assert any(d.location == "body.expires_at" for d in bad.value.details)
    with pytest.raises(ValidationError):
        admin.keys.update(made.id, scopes=["secrets:everything"])
    with pytest.raises(NotFoundError):
        admin.keys.update("no-such-key", name="x")
    admin.keys.revoke(made.id)
    with pytest.raises(ConflictError):
        admin.keys.update(made.id, name="revived")


def test_a_naive_datetime_is_refused_before_any_request(admin: Any) -> None:
    naive = dt.datetime(2999, 1, 1)
    with pytest.raises(ValueError, match="time zone"):
        admin.keys.create(expires_at=naive)
    with pytest.raises(ValueError, match="time zone"):
        admin.audit.list(since=naive)
    assert [k.name for k in admin.keys.list_all()] == [None]  # only the admin's own key


def test_the_key_never_shows_in_repr_str_or_errors(admin: Any) -> None:
    created = admin.keys.create(name="secretive")
    rotated = admin.keys.rotate(created.id, grace_seconds=60)
    for key, shown in (
        (created.key, created),
        (rotated.new.key, rotated),
        (rotated.new.key, rotated.new),
    ):
        assert key not in repr(shown) and key not in str(shown) and key not in f"{shown!r}"
    assert "secretive" in repr(created)  # the rest is shown
    assert created.model_dump()["key"] == created.key  # asked for, it is there
    broken = {**created.model_dump(mode="json"), "created_at": "not a time"}
    with pytest.raises(ModelValidationError) as invalid:
        CreatedApiKey.model_validate(broken)
    assert created.key not in str(invalid.value)
    with pytest.raises(ModelValidationError) as invalid_rotation:
        RotatedApiKey.model_validate({"new": broken, "old": broken})
    assert created.key not in str(invalid_rotation.value)


# -- the audit trail's filters --------------------------------------------------------------------
def test_audit_filters_and_key_names(admin: Any, make_sdk: MakeSDK) -> None:
    worker = admin.keys.create(name="worker", scopes=["secrets:read", "secrets:write"])
    client = make_sdk(key=worker.key)
    start = dt.datetime.now(dt.UTC)
    client.secrets.create(name="audited", value="v")
    with pytest.raises(SecretNotFoundError):
        client.secrets.get("missing")
    middle = dt.datetime.now(dt.UTC)
    client.secrets.get("audited")
    admin.keys.update(worker.id, name="worker-renamed")
    client.secrets.get("audited")

    def seen(**filters: Any) -> list[tuple[str, str, str | None]]:
        return [(r.action, r.outcome, r.key_name) for r in admin.audit.list_all(**filters)]

    assert seen(key_id=worker.id) == [
        ("secret.read", "success", "worker-renamed"),
        ("secret.read", "success", "worker"),
        ("secret.read", "not_found", "worker"),
        ("secret.create", "success", "worker"),
    ]
    assert seen(key_id=worker.id, result="not_found") == [("secret.read", "not_found", "worker")]
    assert seen(key_id=worker.id, since=middle, action="secret.read") == [
        ("secret.read", "success", "worker-renamed"),
        ("secret.read", "success", "worker"),
    ]
    until = seen(key_id=worker.id, since=start.isoformat(), until=middle)
    assert until == [("secret.read", "not_found", "worker"), ("secret.create", "success", "worker")]
    assert seen(secret="audited", action="secret.create") == [
        ("secret.create", "success", "worker")
    ]
    assert admin.audit.list(key_id=worker.id, limit=1).has_more
    assert seen(key_id="nobody") == []
    with pytest.raises(ValidationError):
        admin.audit.list(since="yesterday")
    assert [r.action for r in admin.audit.list_all(action="key.update")] == ["key.update"]


# -- what the builders send ---------------------------------------------------------------------
def test_left_out_is_not_sent_and_none_is_sent_as_null() -> None:
    assert create_key().json == {}
    assert create_key(name=NOT_GIVEN, rule=NOT_GIVEN).json == {}
    assert create_key(name=None, rule=None, expires_at=None).json == {
        "name": None,
        "rule": None,
        "expires_at": None,
    }
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    sent = create_key(scopes=("secrets:read",), rule=KeyRule(names=["a*"]), expires_at=when).json
    assert sent == {
        "scopes": ["secrets:read"],
        "rule": {"names": ["a*"], "metadata": {}},
        "expires_at": "2030-01-02T03:04:05+02:00",
    }
    op = update_key("k/../x", name="n")
    assert (op.method, op.path, op.json, op.idempotent) == (
        "PATCH",
        "/v1/keys/k%2F..%2Fx",
        {"name": "n"},
        True,
    )
    assert rotate_key("k").json == {} and rotate_key("k", grace_seconds=5).json == {
        "grace_seconds": 5
    }
    one_scope: Any = "secrets:read"  # a string is a sequence too: refused, not split
    with pytest.raises(TypeError, match="list of scopes"):
        create_key(scopes=one_scope)
