"""Abuse limits: request budgets per API key and per address, the penalty box for failed
authentication, which addresses count, and how API keys are looked up.

Budgets are set small per test through the settings (``client_with``), so a handful of
requests crosses them; waiting for a window to move on is a bounded poll, never a sleep
of a guessed length.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import ValidationError

from strongroom import Strongroom
from strongroom.server.apikeys import PREFIX, RANDOM_CHARS, _checksum
from strongroom.server.app import create_app
from strongroom.server.ratelimit import RateLimiter, parse_budget
from strongroom.server.services import Services
from strongroom.server.settings import Settings
from strongroom.server.storage import schema
from strongroom.server.storage.apikeys import SQLApiKeyStorage

from .conftest import MASTER_KEY, ClientWith, IssueKey
from .support import assert_error, run_cli, start_server


def _retry_after(response: httpx.Response) -> int:
    value = int(response.headers["retry-after"])
    assert 1 <= value <= 60, value
    return value


def _eventually_ok(send: Callable[[], httpx.Response], within_s: float) -> httpx.Response:
    """Poll until the window has moved on far enough for a request to be taken."""
    deadline = time.monotonic() + within_s
    while True:
        response = send()
        if response.status_code != 429 or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


# -- per key -------------------------------------------------------------------------------
def test_a_key_over_its_budget_gets_429_with_retry_after(
    client_with: ClientWith, issue_key: IssueKey
) -> None:
    client = client_with(rate_limit_per_key="3/minute", rate_limit_per_address="off")
    client.post("/v1/secrets", json={"name": "db", "value": "v"}).raise_for_status()
    for _ in range(2):
        assert client.get("/v1/secrets/db").status_code == 200
    refused = client.get("/v1/secrets/db")
    error = assert_error(refused, 429, "rate_limited")
    assert "API key" in error["message"]
    assert _retry_after(refused) >= 1
    # Every route counts, not only reads.
    assert_error(client.get("/v1/secrets"), 429, "rate_limited")

    # Another key of the same tenant, from the same address, has its own budget.
    other = client.get("/v1/secrets/db", headers={"Authorization": f"Bearer {issue_key()}"})
    assert other.status_code == 200, other.text


def test_a_refused_request_does_no_work_and_writes_nothing(
    client_with: ClientWith, services: Services
) -> None:
    client = client_with(rate_limit_per_key="1/minute", rate_limit_per_address="off")
    client.get("/v1/secrets").raise_for_status()
    with services.store.read() as tx:
        before = tx.audit.page(next(iter(_tenants(services))), limit=1000, offset=0)
    refused = client.post("/v1/secrets", json={"name": "never", "value": "v"})
    assert_error(refused, 429, "rate_limited")
    with services.store.read() as tx:
        tenant = next(iter(_tenants(services)))
        after = tx.audit.page(tenant, limit=1000, offset=0)
        assert tx.secrets.by_name(tenant, "never") is None
    assert len(after.items) == len(before.items)


def _tenants(services: Services) -> list[str]:
    with services.store.read() as tx:
        return sorted({key.tenant_id for key in tx.apikeys.list_keys()})


def test_a_budget_refills_as_the_window_moves(client_with: ClientWith) -> None:
    client = client_with(rate_limit_per_key="2/second", rate_limit_per_address="off")
    assert client.get("/v1/secrets").status_code == 200
    assert client.get("/v1/secrets").status_code == 200
    refused = client.get("/v1/secrets")
    assert_error(refused, 429, "rate_limited")
    assert _retry_after(refused) == 1
    again = _eventually_ok(lambda: client.get("/v1/secrets"), within_s=5)
    assert again.status_code == 200, again.text


# -- per address ---------------------------------------------------------------------------
def test_an_address_over_its_budget_gets_429_whatever_the_key(
    client_with: ClientWith, issue_key: IssueKey
) -> None:
    client = client_with(rate_limit_per_address="3/minute", rate_limit_per_key="off")
    app = client.app
    assert client.get("/v1/secrets").status_code == 200
    assert client.get("/v1/secrets").status_code == 200
    second_key = {"Authorization": f"Bearer {issue_key()}"}
    assert client.get("/v1/secrets", headers=second_key).status_code == 200
    refused = client.get("/v1/secrets", headers=second_key)
    error = assert_error(refused, 429, "rate_limited")
    assert "address" in error["message"]
    _retry_after(refused)
    # The Julep surface shares the budget; health checks and the schema do not count.
    assert_error(client.get("/julep/secrets"), 429, "rate_limited")
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200

    with TestClient(app, client=("10.1.2.3", 40000), headers=second_key) as elsewhere:
        assert elsewhere.get("/v1/secrets").status_code == 200


def test_an_address_over_budget_is_refused_before_its_body_is_read(
    client_with: ClientWith,
) -> None:
    client = client_with(rate_limit_per_address="1/minute", rate_limit_per_key="off")
    client.get("/v1/secrets").raise_for_status()
    # Over both limits at once: the cheaper refusal (429, no body read) comes first.
    huge = client.post("/v1/secrets", content=b"x" * (2 * 1024 * 1024))
    assert_error(huge, 429, "rate_limited")


# -- failed authentication -----------------------------------------------------------------
def test_repeated_failed_authentication_boxes_the_address(
    client_with: ClientWith, issue_key: IssueKey
) -> None:
    client = client_with(rate_limit_auth_failures="3/minute", rate_limit_per_address="off")
    app = client.app
    wrong = {"Authorization": "Bearer sr_" + "A" * 38}
    for headers in (wrong, {"Authorization": "Basic eA=="}, {"Authorization": ""}):
        assert_error(client.get("/v1/secrets", headers=headers), 401, "unauthorized")
    refused = client.get("/v1/secrets", headers=wrong)
    error = assert_error(refused, 429, "rate_limited")
    assert "failed authentication" in error["message"]
    assert _retry_after(refused) > 1
    # While boxed, a right key from that address waits too: a guesser learns nothing.
    assert_error(client.get("/v1/secrets"), 429, "rate_limited")
    # Other addresses are not affected.
    good = {"Authorization": f"Bearer {issue_key()}"}
    with TestClient(app, client=("10.9.9.9", 40000), headers=good) as elsewhere:
        assert elsewhere.get("/v1/secrets").status_code == 200


def test_successful_requests_do_not_count_as_failures(client_with: ClientWith) -> None:
    client = client_with(rate_limit_auth_failures="2/minute", rate_limit_per_address="off")
    for _ in range(10):
        assert client.get("/v1/secrets").status_code == 200
    # 403 and 404 are not authentication failures.
    assert client.get("/v1/secrets/missing").status_code == 404
    assert client.get("/v1/secrets").status_code == 200


# -- settings ------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["100/second;3000/minute", "10 per minute", "off", ""])
def test_budgets_parse(text: str) -> None:
    parse_budget(text)


@pytest.mark.parametrize("text", ["fast", "100", "-1/second", "100/fortnight"])
def test_a_bad_budget_is_refused_with_its_setting_named(text: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(database_url="sqlite:///x.db", rate_limit_per_key=text)
    message = str(caught.value)
    assert "rate_limit_per_key" in message
    assert "is not a rate limit" in message


def test_off_means_no_limit(client_with: ClientWith) -> None:
    client = client_with(
        rate_limit_per_key="off", rate_limit_per_address="off", rate_limit_auth_failures="off"
    )
    wrong = {"Authorization": "Bearer sr_" + "A" * 38}
    for _ in range(30):
        assert client.get("/v1/secrets", headers=wrong).status_code == 401
    assert client.get("/v1/secrets").status_code == 200


# -- API key look-up -----------------------------------------------------------------------
def test_keys_are_looked_up_by_their_hash_alone(
    api: TestClient, issue_key: IssueKey, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server never holds a real key to compare a presented one with, byte by byte:
    it hashes what it is given and looks the hash up. Two guesses that share all but
    their last characters with a real key hash to unrelated values, so the time a wrong
    key takes to refuse cannot guide the next guess."""
    real = issue_key()
    looked_up: list[str] = []
    original = SQLApiKeyStorage.by_hash

    def spy(self: SQLApiKeyStorage, key_hash: str) -> object:
        looked_up.append(key_hash)
        return original(self, key_hash)

    monkeypatch.setattr(SQLApiKeyStorage, "by_hash", spy)
    near_miss = _with_valid_checksum(real)
    assert near_miss != real
    refused = api.get("/v1/secrets", headers={"Authorization": f"Bearer {near_miss}"})
    assert_error(refused, 401, "unauthorized")
    assert "not recognised" in refused.json()["error"]["message"]
    assert api.get("/v1/secrets", headers={"Authorization": f"Bearer {real}"}).status_code == 200
    hashed = services.barrier.hash_api_key
    assert looked_up == [hashed(near_miss), hashed(real)]
    with services.store.read() as tx:
        stored = {key.key_hash for key in tx.apikeys.list_keys()}
    assert hashed(real) in stored
    assert hashlib.sha256(real.encode()).hexdigest() not in stored
    assert not any(real in value or real[3:35] in value for value in stored)


def _with_valid_checksum(real: str) -> str:
    """A well-formed key that differs from ``real`` only in its last random character
    (and so in its checksum): the nearest miss a guesser could make."""
    body = real[len(PREFIX) : len(PREFIX) + RANDOM_CHARS]
    body = body[:-1] + ("Y" if body[-1] != "Y" else "X")
    return PREFIX + body + _checksum(body)


# -- a real server -------------------------------------------------------------------------
@pytest.mark.e2e
def test_forwarded_for_is_ignored_unless_the_proxy_is_trusted(
    database_url: str, tmp_path: Path, services: Services, issue_key: IssueKey
) -> None:
    """A client cannot dodge its address's budget, or write a false address into the
    audit trail, by sending ``X-Forwarded-For``; a trusted proxy can name the client."""
    key = issue_key()
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_RATE_LIMIT_AUTH_FAILURES": "3/minute",
    }
    wrong = "Bearer sr_" + "A" * 38
    server = start_server(tmp_path, env)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            for n in range(3):
                spoofed = {"Authorization": wrong, "X-Forwarded-For": f"203.0.113.{n}"}
                assert http.get("/v1/secrets", headers=spoofed).status_code == 401
            boxed = http.get(
                "/v1/secrets",
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": "203.0.113.99"},
            )
            assert_error(boxed, 429, "rate_limited")
    finally:
        server.stop()
    addresses = set(_auth_events(services))
    assert addresses == {"127.0.0.1"}

    trusted = start_server(tmp_path, {**env, "STRONGROOM_FORWARDED_ALLOW_IPS": "127.0.0.1"})
    try:
        with httpx.Client(base_url=trusted.base_url, timeout=10) as http:
            for _ in range(3):
                sent = {"Authorization": wrong, "X-Forwarded-For": "198.51.100.7"}
                assert http.get("/v1/secrets", headers=sent).status_code == 401
            boxed = http.get(
                "/v1/secrets",
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": "198.51.100.7"},
            )
            assert_error(boxed, 429, "rate_limited")
            other = http.get(
                "/v1/secrets",
                headers={"Authorization": f"Bearer {key}", "X-Forwarded-For": "198.51.100.8"},
            )
            assert other.status_code == 200, other.text
    finally:
        trusted.stop()
    assert "198.51.100.7" in _auth_events(services)


def _auth_events(services: Services) -> list[str | None]:
    """The client address of every failed authentication (they belong to no tenant)."""
    a = schema.audit_events.c
    stmt = sa.select(a.client_addr).where(a.action == "auth.authenticate")
    with services.store.engine.connect() as conn:  # type: ignore[attr-defined]
        return [row.client_addr for row in conn.execute(stmt)]


@pytest.mark.e2e
def test_the_sdk_waits_out_a_429_and_succeeds(
    database_url: str, tmp_path: Path, issue_key: IssueKey
) -> None:
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_RATE_LIMIT_PER_KEY": "3/second",
    }
    server = start_server(tmp_path, env)
    try:
        with Strongroom(api_key=issue_key(), base_url=server.base_url, max_retries=5) as client:
            client.secrets.create(name="paced", value="v")
            started = time.monotonic()
            for _ in range(8):
                assert client.secrets.get("paced").value == "v"
            # Nine requests at three a second cannot all have gone through at once.
            assert time.monotonic() - started >= 1
        assert '"status": 429' in server.log()
    finally:
        server.stop()


@pytest.mark.e2e
def test_the_cli_reports_a_bad_budget_setting_at_start(tmp_path: Path) -> None:
    result = run_cli(
        ["serve", "--port", "0"],
        {
            "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
            "STRONGROOM_MASTER_KEY": MASTER_KEY,
            "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "lots",
        },
        timeout=60,
    )
    output = result.stderr + result.stdout
    assert result.returncode != 0, output
    assert "rate_limit_per_address" in output.lower(), output
    assert "is not a rate limit" in output, output


def test_create_app_reads_the_budgets_from_settings(services: Services) -> None:
    app = create_app(services, run_engine=False)
    limiter = app.state.limiter
    assert [str(i) for i in limiter.per_key] == [
        str(i) for i in parse_budget(services.settings.rate_limit_per_key)
    ]


# -- the limiter itself --------------------------------------------------------------------
def test_a_budget_allows_its_burst_then_one_request_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("strongroom.server.ratelimit.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(per_key="4/minute", per_address="off", auth_failures="off")
    assert [limiter.key_request("k") for _ in range(4)] == [None] * 4
    refused = limiter.key_request("k")
    assert refused is not None
    assert refused.retry_after == 15  # one request per 60/4 s once the burst is spent
    clock[0] += 14.9
    assert limiter.key_request("k") is not None
    clock[0] += 0.1
    assert limiter.key_request("k") is None
    assert limiter.key_request("k") is not None
    # A refused request is not counted: the wait does not grow by asking.
    clock[0] += 15
    assert limiter.key_request("k") is None


def test_every_limit_of_a_budget_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr("strongroom.server.ratelimit.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(per_key="2/second;3/minute", per_address="off", auth_failures="off")
    assert limiter.key_request("k") is None
    assert limiter.key_request("k") is None
    assert limiter.key_request("k") is not None  # the per-second burst is spent
    clock[0] += 1
    assert limiter.key_request("k") is None
    clock[0] += 1
    refused = limiter.key_request("k")  # the per-minute budget is spent now
    assert refused is not None
    assert refused.retry_after > 1


def test_the_penalty_box_lets_one_attempt_through_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr("strongroom.server.ratelimit.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(per_key="off", per_address="off", auth_failures="6/minute")
    for _ in range(6):
        assert limiter.address_request("a") is None
        limiter.authentication_failed("a")
    boxed = limiter.address_request("a")
    assert boxed is not None
    assert boxed.retry_after == 10
    assert limiter.address_request("b") is None
    clock[0] += 10
    assert limiter.address_request("a") is None
    limiter.authentication_failed("a")
    assert limiter.address_request("a") is not None


def test_memory_follows_recent_identities_not_all_ever_seen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    monkeypatch.setattr("strongroom.server.ratelimit.time.monotonic", lambda: clock[0])
    limiter = RateLimiter(per_key="off", per_address="10/second", auth_failures="off")
    for n in range(50_000):
        clock[0] += 0.01  # each address is seen once, and forgotten a second later
        assert limiter.address_request(f"10.0.{n // 256}.{n % 256}") is None
    assert limiter.tracked() <= 2 * 10_000
