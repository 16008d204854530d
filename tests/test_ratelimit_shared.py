"""Request budgets shared through Redis: two limiters (two servers) on one Redis spend one
budget, and a Redis that is down, silent or back again is handled without hanging.

Every limiter here writes under a key prefix of its own test (``shared_prefix``), removed
at the end, so the suite's parallel workers never meet in Redis. The shared Redis is
``STRONGROOM_TEST_REDIS_URL`` (default: the local server, database 0); without it these
tests are skipped, except under ``CI=true``, where they fail. The down-and-up test starts
a private ``redis-server`` of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from pydantic import SecretStr

from strongroom.server.app import create_app
from strongroom.server.ratelimit import RateLimiter, Refusal
from strongroom.server.ratelimit_redis import PREFIX, SharedBudget, key_names
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings

from .conftest import MASTER_KEY, IssueKey
from .support import assert_error, free_port, start_server, wait_until

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
KEY_OVER = "too many requests with this API key"
ADDRESS_OVER = "too many requests from this address"
BOXED = "too many failed authentication attempts from this address"


@pytest.fixture
def shared_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are removed when it ends."""
    prefix = f"{PREFIX}test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        left = list(client.scan_iter(f"{prefix}*"))
        if left:
            client.delete(*left)
    finally:
        client.close()


def limiter(
    url: str, prefix: str, *, per_key: str = "off", per_address: str = "off", box: str = "off"
) -> RateLimiter:
    return RateLimiter(
        per_key=per_key,
        per_address=per_address,
        auth_failures=box,
        redis_url=url,
        redis_prefix=prefix,
    )


def refused(refusal: Refusal | None, message: str) -> int:
    assert refusal is not None, "expected a refusal"
    assert refusal.message == message
    return refusal.retry_after


def assert_retry_after(answer: httpx.Response, interval_s: int, elapsed_s: float) -> None:
    """``Retry-After`` is one interval from the budget's first request, less the whole
    seconds gone since: exactly the interval when the requests took under a second."""
    retry_after = int(answer.headers["retry-after"])
    assert interval_s - math.ceil(elapsed_s) <= retry_after <= interval_s, (retry_after, elapsed_s)


def unique_id(label: str) -> str:
    return f"{label}-{secrets.token_hex(8)}"


# -- one budget across servers ----------------------------------------------------------------
def test_two_servers_share_one_key_budget_exactly(redis_url: str, shared_prefix: str) -> None:
    first, second = (limiter(redis_url, shared_prefix, per_key="5/minute") for _ in range(2))
    key_id = unique_id("key")
    taken = [(first if n % 2 == 0 else second).key_request(key_id) for n in range(5)]
    assert taken == [None] * 5
    # The sixth is refused on either, told to come back when one request's interval
    # (60 s / 5) has passed; asking again does not lengthen the wait.
    for server in (second, first, second):
        assert refused(server.key_request(key_id), KEY_OVER) == 12
    # Another key's budget is its own.
    assert second.key_request(unique_id("key")) is None
    # Nothing was counted in either process's memory, and Redis never failed.
    assert first.tracked() == second.tracked() == 0
    assert first.shared_failures == second.shared_failures == 0


def test_every_limit_of_a_shared_budget_holds(redis_url: str, shared_prefix: str) -> None:
    first, second = (
        limiter(redis_url, shared_prefix, per_key="2/second;3/minute") for _ in range(2)
    )
    key_id = unique_id("key")
    assert first.key_request(key_id) is None
    assert second.key_request(key_id) is None
    assert refused(first.key_request(key_id), KEY_OVER) == 1  # the per-second burst
    wait_until(lambda: second.key_request(key_id) is None, "the per-second limit refilled", 5)
    # The third request spent the per-minute budget: one more each 20 s from the first.
    assert refused(first.key_request(key_id), KEY_OVER) in (19, 20)


def test_the_address_budget_and_the_penalty_box_are_shared(
    redis_url: str, shared_prefix: str
) -> None:
    first, second = (
        limiter(redis_url, shared_prefix, per_address="4/minute", box="3/minute") for _ in range(2)
    )
    address = f"203.0.113.{secrets.randbelow(256)}-{secrets.token_hex(4)}"
    for server in (first, second, first, second):
        assert server.address_request(address) is None
    assert refused(second.address_request(address), ADDRESS_OVER) == 15

    boxed = unique_id("198.51.100.7")
    first.authentication_failed(boxed)
    second.authentication_failed(boxed)
    assert first.address_request(boxed) is None  # two failures of three
    second.authentication_failed(boxed)
    # The box is full: every request from the address waits, on either server, the
    # asyncio path (the middleware's) as the blocking one.
    assert refused(first.address_request(boxed), BOXED) == 20
    assert refused(asyncio.run(_address_async(second, boxed)), BOXED) == 20
    assert asyncio.run(_address_async(second, unique_id("192.0.2.1"))) is None


async def _address_async(server: RateLimiter, address: str) -> Refusal | None:
    try:
        return await server.address_request_async(address)
    finally:
        await server.aclose()


def test_schedules_expire_and_their_names_hold_no_identity(
    redis_url: str, shared_prefix: str
) -> None:
    server = limiter(redis_url, shared_prefix, per_key="10/minute;30/hour", box="5/minute")
    key_id = unique_id("key")
    address = "2001:db8::" + "a" * 4000  # a long identity still makes a short name
    assert server.key_request(key_id) is None
    server.authentication_failed(address)
    client = redis.Redis.from_url(redis_url)
    try:
        names = sorted(name.decode() for name in client.scan_iter(f"{shared_prefix}*"))
        assert len(names) == 3, names
        for name in names:
            assert key_id not in name and "2001:db8" not in name
            tail = name.removeprefix(shared_prefix)
            pattern = r"\{[0-9a-f]{32}\}:(key|auth-failures):[01]:[0-9]+/[0-9]+s"
            assert re.fullmatch(pattern, tail), name
            # Each expires when its schedule is back to now: one interval after its request.
            ttl = client.pttl(name)
            assert 0 < ttl <= 120_000, (name, ttl)

        # And is gone then: a schedule of 2/second lasts half a second.
        brief = limiter(redis_url, shared_prefix, per_key="2/second")
        other = unique_id("key")
        assert brief.key_request(other) is None
        [name] = key_names(shared_prefix, other, SharedBudget("key", brief.per_key))
        assert client.pttl(name) <= 500  # -2 once gone
        wait_until(lambda: not client.exists(name), "the schedule expired in Redis", 5)
    finally:
        client.close()


# -- Redis down, silent, back ---------------------------------------------------------------
def test_an_unreachable_redis_falls_back_to_local_budgets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    server = limiter(f"redis://127.0.0.1:{port}/0", PREFIX, per_key="3/minute", box="2/minute")
    key_id = unique_id("key")
    caplog.set_level(logging.WARNING, logger="strongroom.ratelimit")
    started = time.monotonic()
    assert [server.key_request(key_id) for _ in range(3)] == [None] * 3
    assert refused(server.key_request(key_id), KEY_OVER) == 20
    server.authentication_failed("a")
    server.authentication_failed("a")
    assert refused(server.address_request("a"), BOXED) == 30
    assert asyncio.run(_address_async(server, "b")) is None
    assert time.monotonic() - started < 2
    assert server.shared_failures >= 1
    assert server.local_fallbacks == 8
    assert server.tracked() > 0
    warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert f"127.0.0.1:{port}" in warnings[0].getMessage()


def test_a_silent_redis_costs_a_short_timeout_then_nothing() -> None:
    with socket.socket() as silent:
        # Connections are taken by the kernel and then never answered.
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        server = limiter(f"redis://127.0.0.1:{port}/0", PREFIX, per_key="2/minute", box="1/minute")
        started = time.monotonic()
        assert server.key_request("k") is None
        first = time.monotonic() - started
        assert server.key_request("k") is None
        assert refused(server.key_request("k"), KEY_OVER) == 30
        assert asyncio.run(_address_async(server, "a")) is None
        total = time.monotonic() - started

        # The asyncio client (the middleware's) is held to the same timeout.
        on_loop = limiter(f"redis://127.0.0.1:{port}/0", PREFIX, per_address="2/minute")
        started = time.monotonic()
        assert asyncio.run(_address_async(on_loop, "a")) is None
        first_on_loop = time.monotonic() - started
    # One call waited out its timeout (0.25 s); the others went straight to local budgets.
    assert 0.2 <= first < 1.5, first
    assert total < first + 0.5, (first, total)
    assert server.shared_failures == 1
    assert server.local_fallbacks == 4
    assert 0.2 <= first_on_loop < 1.5, first_on_loop
    assert on_loop.shared_failures == on_loop.local_fallbacks == 1


@pytest.mark.e2e
def test_redis_coming_back_is_used_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    caplog.set_level(logging.INFO, logger="strongroom.ratelimit")
    process = _redis_server(tmp_path, port)
    server = limiter(url, PREFIX, per_key="100/minute", per_address="100/minute")
    try:
        assert server.key_request("k") is None
        assert server.shared_failures == 0
        process.terminate()
        process.wait(timeout=15)
        assert server.key_request("k") is None  # answered locally
        assert server.shared_failures == 1
        process = _redis_server(tmp_path, port)
        wait_until(lambda: _shared_again(server, url), "the limiter used Redis again", 10)
        messages = [r.getMessage() for r in caplog.records]
        assert sum("unavailable" in m for m in messages) == 1, messages
        assert sum("are back" in m for m in messages) == 1, messages
        # The asyncio client (the middleware's) finds it too.
        assert asyncio.run(_address_async(server, "a")) is None
        assert server.shared_failures == 1
        [name] = key_names(PREFIX, "a", SharedBudget("address", server.per_address))
        assert redis.Redis(port=port).exists(name)
    finally:
        server.close()
        process.terminate()
        process.wait(timeout=15)


def _shared_again(server: RateLimiter, url: str) -> bool:
    server.key_request("k")
    client = redis.Redis.from_url(url)
    try:
        return bool(client.dbsize())
    finally:
        client.close()


def _redis_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def answers() -> bool:
        assert process.poll() is None, "redis-server exited"
        client = redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    wait_until(answers, "redis-server answered", 10)
    return process


# -- through the app ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite"])
def test_two_apps_share_budgets_through_the_middleware_and_the_key_check(
    database_url: str, redis_url: str, services: Services, issue_key: IssueKey
) -> None:
    """In-process: the address budget (the middleware, on the event loop) and the key
    budget (the authentication dependency, on the threadpool) are shared by two apps."""
    settings = Settings(
        database_url=database_url,
        master_key=SecretStr(MASTER_KEY),
        rate_limit_per_key="3/minute",
        rate_limit_per_address="5/minute",
        redis_url=SecretStr(redis_url),
    )
    key = issue_key()
    address = unique_id("192.0.2.44")
    headers = {"Authorization": f"Bearer {key}"}
    opened = [open_services(settings) for _ in range(2)]
    apps = [create_app(running, run_engine=False) for running in opened]
    try:
        with (
            TestClient(apps[0], client=(address, 1), headers=headers) as one,
            TestClient(apps[1], client=(address, 2), headers=headers) as two,
        ):
            started = time.monotonic()
            for client in (one, two, one):
                assert client.get("/v1/secrets").status_code == 200
            error = assert_error(two.get("/v1/secrets"), 429, "rate_limited")
            assert KEY_OVER in error["message"]
            # Four of the address's five are spent; a wrong key spends the fifth, and the
            # sixth request is refused before any key is looked at, on either app.
            assert one.get("/v1/secrets", headers={"Authorization": "Bearer x"}).status_code == 401
            for client in (two, one):
                answer = client.get("/v1/secrets")
                assert ADDRESS_OVER in assert_error(answer, 429, "rate_limited")["message"]
                assert_retry_after(answer, 12, time.monotonic() - started)
        for app in apps:
            assert app.state.limiter.shared
            assert app.state.limiter.shared_failures == 0
    finally:
        _forget(redis_url, apps[0].state.limiter, address, _key_id(services, key))
        for app, running in zip(apps, opened, strict=True):
            app.state.limiter.close()
            running.store.close()


def _key_id(services: Services, key: str) -> str:
    with services.store.read() as tx:
        record = tx.apikeys.by_hash(services.barrier.hash_api_key(key))
    assert record is not None
    return record.id


def _forget(url: str, server: RateLimiter, address: str, key_id: str) -> None:
    """Remove the keys a test made under the default prefix (its identities are its own)."""
    names = key_names(PREFIX, address, SharedBudget("address", server.per_address))
    names += key_names(PREFIX, address, SharedBudget("auth-failures", server.auth_failures))
    names += key_names(PREFIX, key_id, SharedBudget("key", server.per_key))
    client = redis.Redis.from_url(url)
    try:
        client.delete(*names)
    finally:
        client.close()


def test_the_redis_url_is_a_secret_and_checked_without_being_shown() -> None:
    assert Settings(database_url="sqlite:///x.db", redis_url="").redis_url is None
    with_password = Settings(database_url="sqlite:///x.db", redis_url="redis://:hush@h:1/0")
    assert "hush" not in repr(with_password)
    with pytest.raises(ValueError, match="STRONGROOM_REDIS_URL is not a Redis URL") as caught:
        RateLimiter(
            per_key="off", per_address="off", auth_failures="off", redis_url="http://:hush@h"
        )
    assert "hush" not in str(caught.value)


# -- two real servers ---------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["postgres"])
def test_two_serve_processes_enforce_one_key_budget(
    database_url: str, redis_url: str, tmp_path: Path, services: Services, issue_key: IssueKey
) -> None:
    key = issue_key()
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_REDIS_URL": redis_url,
        "STRONGROOM_RATE_LIMIT_PER_KEY": "5/minute",
        # Counted in Redis too (the middleware's path), never reached here.
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "1000/minute",
    }
    servers = [
        start_server(tmp_path, {**env, "STRONGROOM_EXECUTOR_ID": f"api-{n}"}) for n in (1, 2)
    ]
    headers = {"Authorization": f"Bearer {key}"}
    clients = [httpx.Client(base_url=s.base_url, headers=headers, timeout=10) for s in servers]
    try:
        started = time.monotonic()
        statuses = [clients[n % 2].get("/v1/secrets").status_code for n in range(5)]
        assert statuses == [200] * 5
        for client in (clients[1], clients[0]):
            answer = client.get("/v1/secrets")
            assert KEY_OVER in assert_error(answer, 429, "rate_limited")["message"]
            assert_retry_after(answer, 12, time.monotonic() - started)
    finally:
        for client in clients:
            client.close()
        for server in servers:
            server.stop()
        used = RateLimiter(per_key="5/minute", per_address="1000/minute", auth_failures="10/minute")
        _forget(redis_url, used, "127.0.0.1", _key_id(services, key))
    for server in servers:
        assert "unavailable" not in server.log(), server.log()
