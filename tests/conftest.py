"""Fixtures: every storage-touching test runs on SQLite and on a real PostgreSQL.

PostgreSQL comes from ``STRONGROOM_TEST_POSTGRES_URL`` (default: the local server as
user postgres). Without it the PostgreSQL half is skipped, except under ``CI=true``, where
a missing server fails the run.

A test that starts a process (a server, the CLI, a PostgreSQL cluster) is marked ``e2e``,
so ``pytest -m 'not e2e'`` (``make test-fast``) is an in-process run of a few minutes. The
mark is checked, not trusted: an unmarked test that starts a process fails.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.app import create_app
from strongroom.server.auth import Caller
from strongroom.server.crypto import Barrier
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import Store, schema

from .support import ServerProcess, start_server
from .upstream import Upstream, openai_upstream

# The in-process task tests' runner fixture and helpers (tasks_fixtures.py).
pytest_plugins = ["tests.tasks_fixtures"]

REDIS_URL = os.environ.get("STRONGROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get(
    "STRONGROOM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MASTER_KEY = base64.b64encode(b"k" * 32).decode()
BACKENDS = ("sqlite", "postgres")


def unsealed(store: Store) -> Barrier:
    """The barrier of a database the tests' servers use (all with ``MASTER_KEY``): what
    issuing an API key needs, since keys are stored as HMACs under a key it holds."""
    barrier = Barrier(base64.b64decode(MASTER_KEY), store)
    barrier.unseal()
    return barrier


# Fixtures that start a process: a test using one is e2e whether or not it says so.
PROCESS_FIXTURES = frozenset({"server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if PROCESS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def _processes_only_in_e2e(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the fast run fast and honest: starting a process needs the ``e2e`` mark."""
    node = request.node
    if node.get_closest_marker("e2e") or node.get_closest_marker("soak"):
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{node.nodeid} starts a process: mark it @pytest.mark.e2e")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their settings; the developer's STRONGROOM_* variables do not leak in."""
    for name in list(os.environ):
        if name.startswith("STRONGROOM_") and name != "STRONGROOM_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def redis_url() -> str:
    """The shared Redis, reachable; skipped (failed under CI) when it is not."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        message = f"Redis is not reachable at {REDIS_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh database on the PostgreSQL server for this test session, dropped after."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        message = f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    name = f"strongroom_test_{os.getpid()}_{secrets.token_hex(3)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = POSTGRES_URL.rpartition("/")
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_postgres(url: str) -> None:
    tables = ", ".join(t.name for t in schema.metadata.sorted_tables)
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.secrets') IS NOT NULL").fetchone()
        if exists and exists[0]:
            conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database of the test's backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'strongroom.db'}"
    url: str = request.getfixturevalue("postgres_database")
    truncate_postgres(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    """In-process apps answer far faster than any real client could ask, and many tests
    fire hundreds of requests with one key: the request budgets are off here (the
    failed-authentication box stays on). tests/test_rate_limits.py sets its own."""
    return Settings(
        database_url=database_url,
        master_key=SecretStr(MASTER_KEY),
        rate_limit_per_key="off",
        rate_limit_per_address="off",
    )


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    opened = open_services(settings)
    try:
        yield opened
    finally:
        opened.store.close()


@pytest.fixture
def caller(services: Services) -> Caller:
    """The caller of a new full-scope key of tenant ``default``, for the services directly."""
    _, record = create_api_key(services.store, services.barrier, "default")
    return Caller(record.tenant_id, record.tenant_name, record.id, record.scopes)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """An OpenAI-compatible server on 127.0.0.1 that records what it receives."""
    with openai_upstream() as found:
        yield found


@pytest.fixture
def app(services: Services) -> FastAPI:
    return create_app(services, run_engine=False)


IssueKey = Callable[..., str]


@pytest.fixture
def issue_key(services: Services) -> IssueKey:
    """Issue an API key: ``issue_key(tenant="default", scopes=("secrets:read",))``."""

    def issue(
        tenant: str = "default", scopes: tuple[str, ...] = (), name: str | None = None
    ) -> str:
        key, _ = create_api_key(services.store, services.barrier, tenant, name=name, scopes=scopes)
        return key

    return issue


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(app: FastAPI, issue_key: IssueKey) -> Iterator[MakeClient]:
    """In-process clients, each authenticated by a new key of the given tenant and scopes."""
    clients: list[TestClient] = []

    def make(
        tenant: str = "default", scopes: tuple[str, ...] = (), key: str | None = None
    ) -> TestClient:
        key = key or issue_key(tenant, scopes)
        client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


ClientWith = Callable[..., TestClient]


@pytest.fixture
def client_with(settings: Settings, issue_key: IssueKey) -> Iterator[ClientWith]:
    """A client of a second app on the same database with some settings changed:
    ``client_with(max_body_bytes=1024)``."""
    opened: list[tuple[Services, TestClient]] = []

    def make(**changes: object) -> TestClient:
        changed = open_services(settings.model_copy(update=changes))
        client = TestClient(
            create_app(changed, run_engine=False),
            headers={"Authorization": f"Bearer {issue_key()}"},
        )
        opened.append((changed, client))
        return client

    yield make
    for changed, client in opened:
        client.close()
        changed.store.close()


@pytest.fixture
def api(make_client: MakeClient) -> TestClient:
    """A client of tenant ``default`` holding every scope."""
    return make_client()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real ``strongroom serve`` process on a free loopback port."""
    proc = start_server(
        tmp_path,
        {"STRONGROOM_DATABASE_URL": database_url, "STRONGROOM_MASTER_KEY": MASTER_KEY},
    )
    try:
        yield proc
    finally:
        proc.stop()
