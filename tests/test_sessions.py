"""Browser sessions (``/v1/sessions``), attacker first: the cookie's flags, a session that is
its key and no more, forged cross-site changes, sessions that have ended (expiry, logout,
the key revoked or expired), a cookie that tries to outlive its session, and a token that
must be nowhere but in the cookie. In process, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr, ValidationError

from strongroom.server.api import deps
from strongroom.server.api import sessions as session_routes
from strongroom.server.api.session_auth import COOKIE, authenticate_session
from strongroom.server.apikeys import create_api_key, revoke_api_key
from strongroom.server.app import create_app
from strongroom.server.auth import Caller
from strongroom.server.logs import JSONFormatter
from strongroom.server.rules import ResourceRule
from strongroom.server.services import Services
from strongroom.server.settings import Settings
from strongroom.server.storage import ApiKeyRecord, SessionRecord, schema
from strongroom.server.storage.sql import SQLStore

from .conftest import MASTER_KEY, ClientWith
from .support import assert_error, find_leaks, postgres_rows

CSRF = {"X-Strongroom-CSRF": "1"}
LIFETIME = 8 * 3600  # STRONGROOM_SESSION_SECONDS' default


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services, run_engine=False)


# -- helpers -----------------------------------------------------------------------------------
def issue(
    services: Services, scopes: tuple[str, ...] = (), tenant: str = "default"
) -> tuple[str, ApiKeyRecord]:
    return create_api_key(services.store, services.barrier, tenant, name="console", scopes=scopes)


def cookie_of(response: httpx.Response) -> dict[str, str]:
    """The one Set-Cookie of an answer, as ``{name: value, flag: value or ""}``."""
    (header,) = response.headers.get_list("set-cookie")
    parts = {}
    for part in header.split("; "):
        name, _, value = part.partition("=")
        parts[name] = value
    return parts


def login(app: FastAPI, key: str, *, https: bool = False) -> tuple[httpx.Response, str]:
    """``POST /v1/sessions`` with the key: the answer, and the token its cookie holds."""
    base = "https://testserver" if https else "http://testserver"
    with TestClient(app, base_url=base) as client:
        answer = client.post("/v1/sessions", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 201, answer.text
    return answer, cookie_of(answer)[COOKIE]


Browser = Callable[[str], TestClient]


@pytest.fixture
def browser(app: FastAPI) -> Iterator[Browser]:
    """``browser(token)``: a client that sends that session cookie and no key."""
    opened: list[TestClient] = []

    def make(token: str) -> TestClient:
        client = TestClient(app, cookies={COOKIE: token})
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def audit_of(services: Services, tenant_id: str) -> list[tuple[str, str, str | None]]:
    """The tenant's trail, oldest first: (action, outcome, key id)."""
    with services.store.read() as tx:
        page = tx.audit.page(tenant_id, limit=1000, offset=0)
    return [(e.action, e.outcome, e.key_id) for e in reversed(page.items)]


def store_session(services: Services, record: ApiKeyRecord, **changes: object) -> str:
    """A session of ``record``'s key written straight to the store; its token."""
    token = secrets.token_urlsafe(32)
    now = dt.datetime.now(dt.UTC)
    session = SessionRecord(
        id=services.sessions.session_id(token),
        tenant_id=record.tenant_id,
        key_id=record.id,
        created_at=now - dt.timedelta(hours=1),
        expires_at=now + dt.timedelta(hours=1),
        revoked_at=None,
    )
    with services.store.write() as tx:
        tx.sessions.insert(replace(session, **changes))
    return token


# -- the cookie --------------------------------------------------------------------------------
def test_login_sets_a_cookie_no_script_or_other_site_gets(app: FastAPI, services: Services) -> None:
    key, record = issue(services, ("secrets:read",))
    started = dt.datetime.now(dt.UTC)
    answer, token = login(app, key)
    body = answer.json()
    assert set(body) == {"id", "key_id", "scopes", "expires_at"}
    assert (body["key_id"], body["scopes"]) == (record.id, ["secrets:read"])
    assert body["id"] != token and token not in answer.text  # the body names, never opens
    expires = dt.datetime.fromisoformat(body["expires_at"])
    assert (
        dt.timedelta(0)
        <= expires - started - dt.timedelta(seconds=LIFETIME)
        < dt.timedelta(seconds=5)
    )

    cookie = cookie_of(answer)
    assert set(cookie) == {COOKIE, "Max-Age", "Path", "HttpOnly", "SameSite"}  # no Secure: http
    assert (cookie["Path"], cookie["SameSite"], cookie["HttpOnly"]) == ("/", "Strict", "")
    assert LIFETIME - 5 <= int(cookie["Max-Age"]) <= LIFETIME
    assert len(token) == 43  # secrets.token_urlsafe(32)

    over_tls, _ = login(app, key, https=True)
    assert "Secure" in cookie_of(over_tls)
    assert answer.headers["cache-control"] == "no-store"


def test_the_lifetime_is_a_setting(client_with: ClientWith) -> None:
    answer = client_with(session_seconds=60).post("/v1/sessions")
    assert answer.status_code == 201, answer.text
    assert 55 <= int(cookie_of(answer)["Max-Age"]) <= 60
    expires = dt.datetime.fromisoformat(answer.json()["expires_at"])
    assert expires - dt.datetime.now(dt.UTC) <= dt.timedelta(seconds=60)


def test_the_lifetime_setting_is_bounded(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = SecretStr(MASTER_KEY)
    for seconds in (0, 59, 7 * 24 * 3600 + 1):
        with pytest.raises(ValidationError):
            Settings(database_url=database_url, master_key=key, session_seconds=seconds)
    assert Settings(database_url=database_url, master_key=key).session_seconds == LIFETIME
    monkeypatch.setenv("STRONGROOM_SESSION_SECONDS", "900")
    assert Settings(database_url=database_url, master_key=key).session_seconds == 900


# -- the session is its key, and no more -------------------------------------------------------
def test_the_cookie_acts_as_its_key_with_its_scopes_and_no_more(
    app: FastAPI, services: Services, browser: Browser
) -> None:
    owner_key, owner = issue(services)
    with TestClient(app, headers={"Authorization": f"Bearer {owner_key}"}) as owner_api:
        assert owner_api.post("/v1/secrets", json={"name": "db_password", "value": "v1"}).is_success
    reader_key, reader = issue(services, ("secrets:read",))
    _, token = login(app, reader_key)
    session = browser(token)

    assert session.get("/v1/secrets/db_password").json()["value"] == "v1"
    assert [s["name"] for s in session.get("/v1/secrets").json()["items"]] == ["db_password"]
    refused = session.post("/v1/secrets", json={"name": "planted", "value": "x"}, headers=CSRF)
    assert "secrets:write" in assert_error(refused, 403, "forbidden")["message"]
    assert_error(session.get("/v1/audit"), 403, "forbidden")
    assert_error(session.post("/v1/tasks", json={"steps": []}, headers=CSRF), 403, "forbidden")

    # Another tenant's key: its session sees none of this tenant's secrets.
    stranger_key, _ = issue(services, tenant="elsewhere")
    _, stranger_token = login(app, stranger_key)
    stranger = browser(stranger_token)
    assert_error(stranger.get("/v1/secrets/db_password"), 404, "not_found")

    # What the session did is the key's in the trail.
    trail = audit_of(services, owner.tenant_id)
    assert ("secret.read", "success", reader.id) in trail
    assert ("secret.create", "forbidden", reader.id) in trail
    assert ("session.create", "success", reader.id) in trail


def test_the_cookie_reaches_only_the_secrets_its_keys_rule_reaches(
    app: FastAPI, services: Services, browser: Browser
) -> None:
    owner_key, _ = issue(services)
    with TestClient(app, headers={"Authorization": f"Bearer {owner_key}"}) as owner_api:
        for name in ("ci_token", "db_password"):
            assert owner_api.post("/v1/secrets", json={"name": name, "value": "v"}).is_success
    ci_key, _ = create_api_key(
        services.store, services.barrier, "default", rule=ResourceRule.parse({"names": ["ci_*"]})
    )
    _, token = login(app, ci_key)
    session = browser(token)
    assert [s["name"] for s in session.get("/v1/secrets").json()["items"]] == ["ci_token"]
    assert session.get("/v1/secrets/ci_token").status_code == 200
    assert_error(session.get("/v1/secrets/db_password"), 403, "forbidden")


def test_who_am_i_by_cookie_and_by_key(app: FastAPI, services: Services, browser: Browser) -> None:
    key, record = issue(services, ("secrets:read", "audit:read"))
    answer, token = login(app, key)
    session = browser(token)
    assert session.get("/v1/sessions/current").json() == {
        "key_id": record.id,
        "key_name": "console",
        "tenant_name": "default",
        "scopes": ["secrets:read", "audit:read"],
        "session_id": answer.json()["id"],
        "expires_at": answer.json()["expires_at"],
    }
    by_key = TestClient(app, headers={"Authorization": f"Bearer {key}"})
    who = by_key.get("/v1/sessions/current").json()
    assert (who["key_id"], who["session_id"], who["expires_at"]) == (record.id, None, None)
    # The Authorization header, when sent, is the credential: a cookie beside it is not.
    other_key, other = issue(services)
    both = TestClient(app, headers={"Authorization": f"Bearer {other_key}"})
    both.cookies.set(COOKIE, token)
    assert both.get("/v1/sessions/current").json()["key_id"] == other.id
    # Logging out is the session's: a request with the key alone has none to end.
    assert_error(by_key.delete("/v1/sessions/current"), 404, "not_found")
    assert session.get("/v1/sessions/current").status_code == 200


# -- cross-site request forgery ----------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "0", "true", " 1"])
def test_a_change_by_cookie_without_the_csrf_header_is_refused(
    app: FastAPI, services: Services, browser: Browser, header: str | None
) -> None:
    key, record = issue(services)
    _, token = login(app, key)
    session = browser(token)
    forged = {} if header is None else {"X-Strongroom-CSRF": header}
    attempts = [
        session.post("/v1/secrets", json={"name": "forged", "value": "x"}, headers=forged),
        session.put("/v1/secrets/forged", json={"value": "x"}, headers=forged),
        # what a cross-site <form> can send: no JSON, no custom header
        session.post(
            "/v1/secrets",
            content=b"name=forged&value=x",
            headers={**forged, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        session.delete("/v1/sessions/current", headers=forged),  # a forced logout
        session.post("/v1/sessions", headers=forged),
    ]
    for refused in attempts[:4]:
        error = assert_error(refused, 403, "forbidden")
        assert "X-Strongroom-CSRF: 1" in error["message"]
    assert attempts[4].status_code == 401  # needs the key, not the cookie, whatever the header

    assert session.get("/v1/sessions/current").status_code == 200  # not logged out
    assert_error(session.get("/v1/secrets/forged"), 404, "not_found")  # nothing written
    made = session.post("/v1/secrets", json={"name": "wanted", "value": "x"}, headers=CSRF)
    assert made.status_code == 201, made.text
    refusals = [
        e
        for e in audit_of(services, record.tenant_id)
        if e[:2] == ("auth.authenticate", "forbidden")
    ]
    assert refusals == [("auth.authenticate", "forbidden", record.id)] * 4


# -- sessions that have ended ------------------------------------------------------------------
def test_an_expired_session_is_refused_and_its_cookie_cleared(
    app: FastAPI, services: Services, browser: Browser
) -> None:
    _, record = issue(services)
    now = dt.datetime.now(dt.UTC)
    expired = store_session(services, record, expires_at=now - dt.timedelta(seconds=1))
    live = store_session(services, record)
    refused = browser(expired).get("/v1/secrets")
    assert "expired" in assert_error(refused, 401, "unauthorized")["message"]
    cleared = cookie_of(refused)
    assert (cleared[COOKIE], cleared["Max-Age"]) == ("", "0")
    assert browser(live).get("/v1/secrets").status_code == 200
    assert ("auth.authenticate", "unauthorized", record.id) in audit_of(services, record.tenant_id)


def test_logout_ends_the_session_and_its_cookie_then_fails(
    app: FastAPI, services: Services, browser: Browser
) -> None:
    key, record = issue(services)
    _, token = login(app, key)
    _, other_token = login(app, key)
    session = browser(token)
    ended = session.delete("/v1/sessions/current", headers=CSRF)
    assert ended.status_code == 204, ended.text
    assert (cookie_of(ended)[COOKIE], cookie_of(ended)["Max-Age"]) == ("", "0")

    replayed = browser(token)  # the cookie, kept by an attacker
    assert "ended" in assert_error(replayed.get("/v1/secrets"), 401, "unauthorized")["message"]
    assert_error(replayed.delete("/v1/sessions/current", headers=CSRF), 401, "unauthorized")
    assert browser(other_token).get("/v1/secrets").status_code == 200
    trail = audit_of(services, record.tenant_id)
    assert [e for e in trail if e[0].startswith("session.")] == [
        ("session.create", "success", record.id),
        ("session.create", "success", record.id),
        ("session.end", "success", record.id),
    ]


def test_revoking_the_key_ends_its_sessions(
    app: FastAPI, services: Services, browser: Browser
) -> None:
    key, record = issue(services)
    _, token = login(app, key)
    session = browser(token)
    assert session.get("/v1/secrets").status_code == 200
    assert revoke_api_key(services.store, record.id)
    assert "revoked" in assert_error(session.get("/v1/secrets"), 401, "unauthorized")["message"]
    assert_error(session.get("/v1/sessions/current"), 401, "unauthorized")


def test_the_keys_expiry_ends_its_sessions_and_bounds_new_ones(
    app: FastAPI, services: Services, browser: Browser
) -> None:
    key, record = issue(services)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)
    with services.store.write() as tx:
        tx.apikeys.update(replace(record, expires_at=soon))
    answer, token = login(app, key)
    assert dt.datetime.fromisoformat(answer.json()["expires_at"]) == soon
    assert int(cookie_of(answer)["Max-Age"]) <= 600

    with services.store.write() as tx:
        tx.apikeys.update(replace(record, expires_at=dt.datetime.now(dt.UTC)))
    refused = browser(token).get("/v1/secrets")
    assert "expired" in assert_error(refused, 401, "unauthorized")["message"]


# -- a cookie that tries to outlive its session ------------------------------------------------
def cookie_first(request: Request) -> Caller:
    """The worst way deps.authenticate() could weigh a cookie: before any key sent with it."""
    return authenticate_session(request) or deps.authenticate(request)


@pytest.mark.parametrize("weighing", ["as wired", "cookie first"])
def test_a_session_cannot_start_a_session(
    app: FastAPI,
    services: Services,
    browser: Browser,
    monkeypatch: pytest.MonkeyPatch,
    weighing: str,
) -> None:
    """A stolen cookie must not outlive its session by starting another, however
    ``deps.authenticate`` weighs a cookie against a key sent with it."""
    if weighing == "cookie first":
        monkeypatch.setattr(session_routes, "authenticate", cookie_first)
    key, record = issue(services)
    _, token = login(app, key)
    session = browser(token)
    for headers in (CSRF, {**CSRF, "Authorization": "Bearer"}, {**CSRF, "Authorization": "sr_x"}):
        refused = session.post("/v1/sessions", headers=headers)
        assert "Bearer <key>" in assert_error(refused, 401, "unauthorized")["message"]
        assert refused.headers.get_list("set-cookie") == []  # no new session
    assert sessions_of(services, record.id) == 1
    assert [e[0] for e in audit_of(services, record.tenant_id)].count("session.create") == 1


def sessions_of(services: Services, key_id: str) -> int:
    assert isinstance(services.store, SQLStore)
    stmt = sa.select(sa.func.count()).where(schema.sessions.c.key_id == key_id)
    with services.store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def test_cookies_that_open_no_session_are_refused_and_audited(
    app: FastAPI, services: Services, browser: Browser
) -> None:
    key, _ = issue(services)
    _, token = login(app, key)
    # a token one character off, one of another length, one from another database, junk
    changed = token[:-1] + ("A" if token[-1] != "A" else "B")
    for bad in (changed, token + "A", secrets.token_urlsafe(32), "../../etc", "x" * 4000):
        refused = browser(bad).get("/v1/secrets")
        error = assert_error(refused, 401, "unauthorized")
        assert "log in again" in error["message"]
        assert cookie_of(refused)["Max-Age"] == "0"
    assert unattributed_failures(services) == 5  # in no tenant: no session was found
    assert browser(token).get("/v1/secrets").status_code == 200


def unattributed_failures(services: Services) -> int:
    """Failed authentications the trail holds in no tenant (no key was found)."""
    assert isinstance(services.store, SQLStore)
    e = schema.audit_events.c
    stmt = sa.select(sa.func.count()).where(
        e.tenant_id.is_(None), e.action == "auth.authenticate", e.outcome == "unauthorized"
    )
    with services.store.engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())


# -- the token is kept nowhere but in the cookie -----------------------------------------------
def database_bytes(database_url: str) -> bytes:
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        return b"".join(f.read_bytes() for f in sorted(path.parent.glob(path.name + "*")))
    return postgres_rows(database_url)


def test_the_token_is_stored_and_logged_nowhere(
    app: FastAPI,
    services: Services,
    browser: Browser,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key, _ = issue(services)
    answer, token = login(app, key)
    session = browser(token)
    assert session.post("/v1/secrets", json={"name": "n", "value": "v"}, headers=CSRF).is_success
    assert session.post("/v1/secrets", json={"name": "m", "value": "v"}).status_code == 403
    assert session.delete("/v1/sessions/current", headers=CSRF).status_code == 204
    assert session.get("/v1/secrets").status_code == 401

    with services.store.read() as tx:
        stored = tx.sessions.by_id(answer.json()["id"])
    assert stored is not None and stored.id == services.sessions.session_id(token)
    rows = database_bytes(database_url)
    assert answer.json()["id"].encode() in rows  # the scan sees the session's row
    assert find_leaks(token, rows) == []
    formatter = JSONFormatter()
    logged = "\n".join(formatter.format(r) + str(vars(r)) for r in caplog.records).encode()
    assert b"/v1/sessions" in logged  # the scan sees the request log
    assert find_leaks(token, logged) == []
    assert find_leaks(key, logged + rows) == []


# -- the storage area --------------------------------------------------------------------------
def test_session_storage_revokes_once_and_purges_only_what_has_ended(services: Services) -> None:
    _, record = issue(services)
    now = dt.datetime.now(dt.UTC)
    live = store_session(services, record)
    expired = store_session(services, record, expires_at=now - dt.timedelta(seconds=1))
    logged_out = store_session(services, record)
    ids = {t: services.sessions.session_id(t) for t in (live, expired, logged_out)}
    with services.store.write() as tx:
        assert tx.sessions.revoke(ids[logged_out], now)
        assert not tx.sessions.revoke(ids[logged_out], now)
        assert not tx.sessions.revoke("no-such-session", now)
    with services.store.write() as tx:
        found = tx.sessions.by_id(ids[logged_out])
        assert found is not None and found.revoked_at == now and found.ended(now)
        assert tx.sessions.purge_ended(record.id, now) == 2
        assert tx.sessions.by_id(ids[expired]) is None
        assert tx.sessions.by_id(ids[logged_out]) is None
        kept = tx.sessions.by_id(ids[live])
        assert kept is not None and not kept.ended(now)
