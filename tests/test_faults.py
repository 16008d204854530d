"""Faults strongroom must survive: a killed server, a restarted PostgreSQL, a full or
read-only disk, and a key rotation killed part-way.

Every test drives real processes (``strongroom serve``, ``strongroom master-key rotate``,
PostgreSQL) over real HTTP and real files, and then checks what the clients were told
against what the database holds:

- a write whose 2xx answer reached the client is there afterwards, with the value and
  version it was acknowledged with;
- a write that got no answer may or may not have landed, but if it did, it landed whole;
- nothing is half-written: every listed secret reads, its versions are 1..n without a gap,
  no version row lacks its secret, and every version decrypts;
- a fault is answered with the error envelope and a code that names it, never a 500 and
  never a hang.

The ``soak`` variants (``make soak``) run the same checks with more rounds, writers and
kill points; the default run leaves them out. Kill points are drawn from a seeded random
generator: set ``FAULT_SEED`` to replay a run (the seed is in every failure message).
docs/faults.md describes each fault and how it is produced.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import secrets as token
import signal
import sqlite3
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from strongroom.server.api.errors import storage_error
from strongroom.server.apikeys import create_api_key
from strongroom.server.auth import Caller
from strongroom.server.crypto import Barrier
from strongroom.server.secret_values import decrypt_value
from strongroom.server.services import Services
from strongroom.server.storage import (
    Sealed,
    StorageFull,
    StorageIOError,
    StorageReadOnly,
    StorageUnavailable,
    StoredVersion,
    open_store,
)
from strongroom.server.storage import schema as t
from strongroom.server.storage.postgres import PostgresStore
from strongroom.server.storage.sql import SQLStore
from strongroom.server.storage.sqlite import SQLiteStore

from .conftest import MASTER_KEY, IssueKey, unsealed
from .pgcluster import PrivatePostgres, private_postgres  # noqa: F401  (a fixture)
from .support import (
    STRONGROOM,
    ServerProcess,
    assert_error,
    canary,
    find_leaks,
    run_cli,
    start_server,
    wait_ready,
    wait_until,
)
from .tmpfs import Tmpfs, tmpfs_or_fail

SEED = int(os.environ.get("FAULT_SEED", "20240611"))
CLIENT_TIMEOUT = 10.0  # seconds: no answer within it counts as a hang
FULL_MESSAGE = "the database is full"
READ_ONLY_MESSAGE = "the database is read-only"
UNHANDLED = '"message": "unhandled error"'  # the log line of an answer 500


def server_env(database_url: str) -> dict[str, str]:
    """A server's settings: the writers here outpace any request budget on purpose, so the
    budgets are off (tests/test_rate_limits.py tests them)."""
    return {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_RATE_LIMIT_PER_KEY": "off",
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "off",
    }


def client_for(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=CLIENT_TIMEOUT,
    )


# -- what the clients were told -------------------------------------------------------------
@dataclass
class Ledger:
    """Each name's acknowledged history (values of versions 1..n; empty when deleted), and
    for a name whose last write got no answer, the history that write would have made."""

    acked: dict[str, list[str]] = field(default_factory=dict)
    unanswered: dict[str, list[str]] = field(default_factory=dict)
    sent: list[str] = field(default_factory=list)  # every value sent, for the leak checks
    acks: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Condition = field(default_factory=threading.Condition)

    def send(self, value: str) -> str:
        with self.lock:
            self.sent.append(value)
        return value

    def fail(self, problem: str) -> None:
        with self.lock:
            self.errors.append(problem)
            self.lock.notify_all()

    def ack(self, name: str, history: list[str]) -> None:
        with self.lock:
            self.acked[name] = history
            self.acks += 1
            self.lock.notify_all()

    def lost_answer(self, name: str, would_be: list[str]) -> None:
        with self.lock:
            self.unanswered[name] = would_be

    def wait_for_acks(self, count: int, timeout: float) -> None:
        with self.lock:
            if not self.lock.wait_for(lambda: self.acks >= count or bool(self.errors), timeout):
                raise AssertionError(f"only {self.acks} of {count} writes acknowledged in time")
        assert not self.errors, self.errors

    def settle(self, actual: dict[str, list[str]]) -> None:
        """After a check: the database's state becomes what the next round builds on."""
        for name in self.unanswered:
            self.acked[name] = actual.get(name, [])
        self.unanswered.clear()

    def all_values(self) -> list[str]:
        with self.lock:
            return list(self.sent)


def write_stream(
    client: httpx.Client,
    ledger: Ledger,
    names: list[str],
    rng: random.Random,
    stop: threading.Event,
) -> None:
    """Create, update and delete ``names`` (this writer's own) until ``stop`` or until the
    server stops answering; every answer lands in ``ledger``."""
    while not stop.is_set():
        name = rng.choice(names)
        history = ledger.acked.get(name, [])
        value = ledger.send(canary(name))
        if not history:
            metadata = {"writer": names[0], "n": rng.randrange(3)}
            request = ("POST", "/v1/secrets", {"name": name, "value": value, "metadata": metadata})
            would_be = [value]
        elif rng.random() < 0.8:
            request = ("PATCH", f"/v1/secrets/{name}", {"value": value})
            would_be = [*history, value]
        else:
            # purged, so that the name is free for the next create
            request = ("DELETE", f"/v1/secrets/{name}?force=true", None)
            would_be = []
        method, path, body = request
        try:
            response = client.request(method, path, json=body)
        except httpx.TransportError:
            ledger.lost_answer(name, would_be)
            return  # the server is gone; this writer's part is over
        if not response.is_success:
            ledger.fail(f"{method} {path}: {response.status_code} {response.text}")
            return
        if method != "DELETE" and response.json()["version"] != len(would_be):
            ledger.fail(f"{method} {path}: expected version {len(would_be)}: {response.text}")
            return
        ledger.ack(name, would_be)


def run_writers(
    client: httpx.Client, ledger: Ledger, names: list[list[str]], rng: random.Random
) -> tuple[threading.Event, list[threading.Thread]]:
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=write_stream,
            args=(client, ledger, own, random.Random(rng.random()), stop),
            daemon=True,
        )
        for own in names
    ]
    for thread in threads:
        thread.start()
    return stop, threads


# -- what the database holds ----------------------------------------------------------------
def list_names(client: httpx.Client) -> list[str]:
    names: list[str] = []
    while True:
        response = client.get("/v1/secrets", params={"limit": 1000, "offset": len(names)})
        assert response.status_code == 200, response.text
        page = response.json()
        names += [item["name"] for item in page["items"]]
        if not page["has_more"]:
            return names


def read_value(client: httpx.Client, name: str, version: int | None = None) -> dict[str, Any]:
    params = {"version": version} if version is not None else {}
    response = client.get(f"/v1/secrets/{name}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def read_back(client: httpx.Client, ledger: Ledger, seed: int) -> dict[str, list[str]]:
    """Every listed secret's history, read through the API; each acknowledged name as it
    was acknowledged, each unanswered one either as before or as the write would make it."""
    actual: dict[str, list[str]] = {}
    for name in list_names(client):
        response = client.get(f"/v1/secrets/{name}/versions")
        assert response.status_code == 200, response.text
        numbers = sorted(item["version"] for item in response.json()["items"])
        assert numbers == list(range(1, len(numbers) + 1)), (name, numbers, seed)
        latest = read_value(client, name)
        assert latest["version"] == len(numbers), (name, seed)
        history = [read_value(client, name, n)["value"] for n in numbers]
        assert latest["value"] == history[-1], (name, seed)
        actual[name] = history
    for name in set(ledger.acked) | set(ledger.unanswered) | set(actual):
        allowed = [ledger.acked.get(name, [])]
        if name in ledger.unanswered:
            allowed.append(ledger.unanswered[name])
        assert actual.get(name, []) in allowed, (
            f"{name}: the database holds {len(actual.get(name, []))} version(s) matching "
            f"none of the {len(allowed)} allowed histories (seed {seed})"
        )
    return actual


def assert_whole(store: SQLStore, seed: int) -> int:
    """No orphan rows, versions 1..n for each secret, metadata entries for each metadata
    key, and every version decrypts with a keyring loaded afresh. Returns the version count."""
    with store.engine.connect() as conn:
        secrets_rows = conn.execute(
            sa.select(t.secrets.c.id, t.secrets.c.version, t.secrets.c.metadata_json)
        ).all()
        version_rows = conn.execute(sa.select(t.secret_versions)).all()
        entry_rows = conn.execute(sa.select(t.secret_metadata_entries.c.secret_id)).all()
    secret_ids = {row.id for row in secrets_rows}
    numbers: dict[str, set[int]] = defaultdict(set)
    for row in version_rows:
        assert row.secret_id in secret_ids, f"orphan version row (seed {seed})"
        numbers[row.secret_id].add(row.version)
    entries: dict[str, int] = defaultdict(int)
    for row in entry_rows:
        assert row.secret_id in secret_ids, f"orphan metadata entry (seed {seed})"
        entries[row.secret_id] += 1
    for row in secrets_rows:
        assert numbers[row.id] == set(range(1, row.version + 1)), (row.id, seed)
        assert entries[row.id] == len(json.loads(row.metadata_json)), (row.id, seed)
    keyring = Barrier(base64.b64decode(MASTER_KEY), store).unseal()
    for row in version_rows:
        sealed = Sealed(row.kek_id, bytes(row.wrapped_dek), bytes(row.ciphertext))
        stored = StoredVersion(row.tenant_id, row.secret_id, row.version, sealed)
        decrypt_value(
            keyring, stored, secret_tenant_id=row.tenant_id, caller_tenant_id=row.tenant_id
        )
    return len(version_rows)


def assert_no_leaks(values: list[str], *outputs: str) -> None:
    haystack = "\n".join(outputs).encode()
    for value in values:
        assert find_leaks(value, haystack) == [], "a secret value reached a log"


# -- 1. SIGKILL during a stream of writes ---------------------------------------------------
def sigkill_rounds(
    database_url: str,
    issue_key: IssueKey,
    services: Services,
    tmp_path: Path,
    *,
    rounds: int,
    writers: int,
    names_per_writer: int,
    kill_after: tuple[int, int],
    seed: int,
) -> None:
    rng = random.Random(seed)
    key = issue_key()
    ledger = Ledger()
    names = [[f"w{w}_{n}" for n in range(names_per_writer)] for w in range(writers)]
    store = services.store
    assert isinstance(store, SQLStore)
    logs: list[str] = []
    server = start_server(tmp_path, server_env(database_url))
    try:
        for _ in range(rounds):
            with client_for(server, key) as client:
                stop, threads = run_writers(client, ledger, names, rng)
                # Kill at an ack count drawn at random: the writers' requests are in flight
                # at every stage when it lands, and nothing waits for them to pause.
                ledger.wait_for_acks(ledger.acks + rng.randint(*kill_after), timeout=60)
                server.process.send_signal(signal.SIGKILL)
                assert server.process.wait(timeout=15) == -signal.SIGKILL
                stop.set()
                for thread in threads:
                    thread.join(timeout=CLIENT_TIMEOUT + 5)
                    assert not thread.is_alive()
            assert not ledger.errors, (ledger.errors, seed)
            logs.append(server.log() + server.stdout())

            server = start_server(tmp_path, server_env(database_url))
            with client_for(server, key) as client:
                actual = read_back(client, ledger, seed)
            assert_whole(store, seed)
            ledger.settle(actual)
    finally:
        server.stop()
    logs.append(server.log() + server.stdout())
    assert_no_leaks(ledger.all_values(), *logs)


@pytest.mark.e2e
def test_sigkill_during_writes_loses_no_acknowledged_write(
    database_url: str, issue_key: IssueKey, services: Services, tmp_path: Path
) -> None:
    sigkill_rounds(
        database_url,
        issue_key,
        services,
        tmp_path,
        rounds=1,
        writers=4,
        names_per_writer=6,
        kill_after=(30, 90),
        seed=SEED,
    )


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_soak_sigkill_during_writes(
    database_url: str, issue_key: IssueKey, services: Services, tmp_path: Path
) -> None:
    sigkill_rounds(
        database_url,
        issue_key,
        services,
        tmp_path,
        rounds=8,
        writers=8,
        names_per_writer=12,
        kill_after=(50, 400),
        seed=SEED + 1,
    )


# -- 2. PostgreSQL restarted under load -----------------------------------------------------
@dataclass
class Answers:
    """Every answer the load got, by phase, with the slowest."""

    statuses: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    bad: list[str] = field(default_factory=list)
    slowest: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, phase: str, status: int) -> int:
        with self.lock:
            return self.statuses[phase].count(status)


def outage_load(
    client: httpx.Client,
    ledger: Ledger,
    answers: Answers,
    phase: list[str],
    prefix: str,
    stop: threading.Event,
) -> None:
    """Create new secrets and update them, through outages: a 2xx is acknowledged; a 503
    leaves the write unanswered (it may have committed just before the connection died)."""
    made: list[str] = []
    n = 0
    while not stop.is_set():
        n += 1
        if made and n % 3 == 0:
            name = made[n % len(made)]
            value = ledger.send(canary(name))
            method, path, body = "PATCH", f"/v1/secrets/{name}", {"value": value}
            would_be = [*ledger.acked[name], value]
        else:
            name = f"{prefix}_{n}"
            value = ledger.send(canary(name))
            method, path, body = "POST", "/v1/secrets", {"name": name, "value": value}
            would_be = [value]
        started = time.monotonic()
        current = phase[0]
        problem = None
        try:
            response = client.request(method, path, json=body)
        except httpx.TransportError as exc:
            problem = f"no answer: {exc!r}"
        else:
            # An answer counts for a phase only if its request began and ended in it.
            if phase[0] != current:
                current = "between phases"
            with answers.lock:
                answers.statuses[current].append(response.status_code)
                answers.slowest = max(answers.slowest, time.monotonic() - started)
            if response.is_success:
                ledger.ack(name, would_be)
                if method == "POST":
                    made.append(name)
                continue
            error = response.json().get("error", {})
            contract = (503, "unavailable", "1")
            if (response.status_code, error.get("code"), response.headers.get("retry-after")) != (
                contract
            ):
                problem = response.text
        # Unanswered: its state is known only at the end, so the name is not written again.
        ledger.lost_answer(name, would_be)
        if name in made:
            made.remove(name)
        if problem is not None:
            with answers.lock:
                answers.bad.append(f"{current}: {method} {path}: {problem}")
        stop.wait(0.05)  # an outage is met, not spun on


@dataclass
class PostgresServer:
    """A server on a database of the private PostgreSQL instance."""

    postgres: PrivatePostgres
    server: ServerProcess
    store: SQLStore

    def client(self, tenant: str) -> httpx.Client:
        """A client of a tenant of its own: a test sees only its own secrets."""
        key, _ = create_api_key(self.store, unsealed(self.store), tenant)
        return client_for(self.server, key)


@pytest.fixture(scope="module")
def postgres_server(
    private_postgres: PrivatePostgres,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PostgresServer]:
    """One server for the module's PostgreSQL outages: none of them may need a restart."""
    database_url = private_postgres.create_database(f"faults_{token.token_hex(4)}")
    server = start_server(tmp_path_factory.mktemp("pg-server"), server_env(database_url))
    store = open_store(database_url)
    assert isinstance(store, SQLStore)
    try:
        yield PostgresServer(private_postgres, server, store)
    finally:
        server.stop()
        store.close()
    # No request took the 500 path (the execution engine's own threads may log the
    # outages they met, tracebacks included).
    assert UNHANDLED not in server.log()


def postgres_outages(postgres_server: PostgresServer, tenant: str, modes: list[str]) -> None:
    """Stop PostgreSQL once per mode under three writers, and start it again; the server
    runs throughout."""
    postgres, server = postgres_server.postgres, postgres_server.server
    ledger = Ledger()
    answers = Answers()
    phase = ["before"]
    cycles = [f"{i} ({mode})" for i, mode in enumerate(modes)]
    with postgres_server.client(tenant) as client:
        stop = threading.Event()
        threads = [
            threading.Thread(
                target=outage_load,
                args=(client, ledger, answers, phase, f"load{i}", stop),
                daemon=True,
            )
            for i in range(3)
        ]
        for thread in threads:
            thread.start()
        try:
            for cycle, mode in zip(cycles, modes, strict=True):
                ledger.wait_for_acks(ledger.acks + 20, timeout=30)
                phase[0] = f"stopping {cycle}"
                postgres.stop(mode)
                phase[0] = f"outage {cycle}"
                # The load goes on; the outage lasts until the load has met it a few times.
                wait_until(
                    lambda c=cycle: answers.count(f"outage {c}", 503) >= 6,
                    timeout=30,
                    what=f"503 answers during outage {cycle}",
                )
                probe = client.get("/v1/secrets")
                assert_error(probe, 503, "unavailable")
                assert probe.headers["retry-after"] == "1"
                assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 503
                phase[0] = f"starting {cycle}"
                postgres.start()
                phase[0] = f"after {cycle}"
                # Back without restarting the server: writes succeed again, soon.
                ledger.wait_for_acks(ledger.acks + 10, timeout=20)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=CLIENT_TIMEOUT + 5)
            if not postgres.running():
                postgres.start()
        assert server.process.poll() is None, "the server died with its database"
        # Every answer was a 2xx or the contract's 503, and none came late.
        assert not answers.bad, answers.bad[:5]
        assert answers.slowest < CLIENT_TIMEOUT
        statuses = {p: set(s) for p, s in answers.statuses.items()}
        assert all(s <= {200, 201, 503} for s in statuses.values()), statuses
        # Down is down, and back is back: no 503 once PostgreSQL accepts connections.
        for cycle in cycles:
            assert statuses[f"outage {cycle}"] == {503}, statuses
            assert statuses[f"after {cycle}"] <= {200, 201}, statuses
        actual = read_back(client, ledger, SEED)
    assert set(actual) >= {name for name, history in ledger.acked.items() if history}
    assert_whole(postgres_server.store, SEED)
    assert_no_leaks(ledger.all_values(), server.log(), server.stdout())


@pytest.mark.e2e
def test_postgres_restart_under_load_recovers_without_a_server_restart(
    postgres_server: PostgresServer,
) -> None:
    postgres_outages(postgres_server, "restart", ["immediate", "fast"])


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_soak_postgres_restarts_under_load(postgres_server: PostgresServer) -> None:
    postgres_outages(postgres_server, "restarts", ["immediate", "fast"] * 5)


@pytest.mark.e2e
def test_postgres_turned_read_only_refuses_changes_clearly_and_recovers(
    postgres_server: PostgresServer,
) -> None:
    """``default_transaction_read_only`` set server-wide, as on a standby or during
    maintenance: the running server's connections turn read-only at the next reload."""
    postgres, server = postgres_server.postgres, postgres_server.server
    sent: list[str] = []

    def fresh() -> str:
        sent.append(canary("read_only"))
        return sent[-1]

    value = fresh()
    with postgres_server.client("read_only") as client:
        response = client.post("/v1/secrets", json={"name": "kept", "value": value})
        assert response.status_code == 201, response.text
        before = list_names(client)
        postgres.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        try:
            postgres.execute("SELECT pg_reload_conf()")
            tried: list[httpx.Response] = []

            def refused_now() -> bool:
                name = f"new{len(tried)}"
                response = client.post("/v1/secrets", json={"name": name, "value": fresh()})
                tried.append(response)
                return response.status_code != 201

            # The reload reaches each connection at its next statement.
            wait_until(refused_now, "writes refused after the reload", timeout=15)
            created = [f"new{i}" for i, r in enumerate(tried) if r.status_code == 201]
            assert len(created) == len(tried) - 1, [r.status_code for r in tried]
            error = assert_error(tried[-1], 503, "unavailable")
            assert error["message"].startswith(READ_ONLY_MESSAGE), error
            assert tried[-1].headers["retry-after"] == "1"
            for response in (
                client.patch("/v1/secrets/kept", json={"value": fresh()}),
                client.put("/v1/secrets/kept", json={"value": fresh()}),
                client.delete("/v1/secrets/kept"),
                client.post("/julep/secrets", json={"name": "julep", "value": fresh()}),
            ):
                assert assert_error(response, 503, "unavailable")["message"] == error["message"]
            # What only reads goes on; a value read is audited, so it waits too.
            assert list_names(client) == sorted([*before, *created])
            assert client.get("/v1/secrets/kept/versions").status_code == 200
            assert_error(client.get("/v1/secrets/kept"), 503, "unavailable")
        finally:
            postgres.execute("ALTER SYSTEM RESET default_transaction_read_only")
            postgres.execute("SELECT pg_reload_conf()")
        wait_until(
            lambda: client.patch("/v1/secrets/kept", json={"value": "v2"}).status_code == 200,
            timeout=15,
            what="writes accepted again",
        )
        assert read_value(client, "kept", 1)["value"] == value
        assert read_value(client, "kept")["value"] == "v2"
    assert server.process.poll() is None
    assert_no_leaks(sent, server.log(), server.stdout())


# -- 3. A full disk and a read-only database file (SQLite) ----------------------------------
INTEGRITY = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
print(conn.execute("PRAGMA integrity_check").fetchone()[0])
print(conn.execute(
    "SELECT count(*) FROM secret_versions WHERE secret_id NOT IN (SELECT id FROM secrets)"
).fetchone()[0])
"""


def assert_integrity(fs: Tmpfs) -> None:
    checked = fs.python(INTEGRITY, str(fs.mountpoint / "strongroom.db")).split()
    assert checked == ["ok", "0"], checked


def bootstrap_key(server: ServerProcess) -> str:
    """The key ``serve --dev`` prints on a database without keys."""
    for line in server.stdout().splitlines():
        if "export STRONGROOM_API_KEY=" in line:
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"no bootstrap key printed:\n{server.stdout()}")


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    fs = tmpfs_or_fail(tmp_path / "disk", size="8m")
    try:
        yield fs
    finally:
        fs.close()


def fill_and_write(client: httpx.Client, ledger: Ledger, tmpfs: Tmpfs) -> list[str]:
    """Fill the disk, then create and update secrets of 16 KiB: the first may still fit
    in space SQLite holds, the rest must be refused as 507. Returns the refused names."""
    assert tmpfs.fill() > 0
    big = "x" * 16384
    answers: list[httpx.Response] = []
    refused: list[str] = []
    for i in range(40):
        name = f"f{i}"
        value = ledger.send(canary(name) + big)
        if i % 3 == 2:
            target = f"s{i % 10}"
            response = client.patch(f"/v1/secrets/{target}", json={"value": value})
            if response.is_success:
                ledger.ack(target, [*ledger.acked[target], value])
        else:
            response = client.post("/v1/secrets", json={"name": name, "value": value})
            if response.is_success:
                ledger.ack(name, [value])
            else:
                refused.append(name)
        answers.append(response)
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 201, 507}, statuses
    assert statuses.count(507) >= 30, statuses
    for response in answers:
        if response.status_code == 507:
            error = assert_error(response, 507, "insufficient_storage")
            assert error["message"].startswith(FULL_MESSAGE), error
            assert "retry-after" not in response.headers
    return refused


@pytest.mark.e2e
def test_full_then_read_only_disk_refuses_clearly_and_loses_nothing(
    tmpfs: Tmpfs, tmp_path: Path
) -> None:
    """A full disk under a running server, then the filesystem read-only at start-up.

    The kernel cannot make a filesystem read-only under a server that holds its database
    open for writing (``EBUSY``), so the read-only database is met by the next start."""
    env = server_env(f"sqlite:///{tmpfs.mountpoint / 'strongroom.db'}")
    prefix = tuple(tmpfs.enter())
    # PYTHONUNBUFFERED: the bootstrap key reaches the output file at once.
    server = start_server(tmp_path, {**env, "PYTHONUNBUFFERED": "1"}, ("--dev",), prefix=prefix)
    logs: list[str] = []
    ledger = Ledger()
    try:
        key = bootstrap_key(server)
        with client_for(server, key) as client:
            for i in range(10):
                value = ledger.send(canary(f"before{i}"))
                response = client.post("/v1/secrets", json={"name": f"s{i}", "value": value})
                assert response.status_code == 201, response.text
                ledger.ack(f"s{i}", [value])

            refused = fill_and_write(client, ledger, tmpfs)
            # Reads that write nothing go on; the server stays up and healthy.
            assert set(list_names(client)) == set(ledger.acked)
            versions = client.get("/v1/secrets/s2/versions")
            assert versions.status_code == 200
            assert [v["version"] for v in versions.json()["items"]] == list(
                range(1, len(ledger.acked["s2"]) + 1)
            )
            assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
            # A value read is recorded in the audit trail before it is returned: with no
            # room for the record, the value is refused too, with the same answer.
            read = client.get("/v1/secrets/s1")
            if read.status_code != 200:
                assert_error(read, 507, "insufficient_storage")
            assert server.process.poll() is None

            tmpfs.free()
            for i in range(3):
                value = ledger.send(canary(f"after{i}"))
                response = client.post("/v1/secrets", json={"name": f"a{i}", "value": value})
                assert response.status_code == 201, response.text
                ledger.ack(f"a{i}", [value])
            value = ledger.send(canary("after-patch"))
            response = client.patch("/v1/secrets/s1", json={"value": value})
            assert response.status_code == 200, response.text
            ledger.ack("s1", [*ledger.acked["s1"], value])
            # A refused create left nothing behind; every acknowledged write reads back.
            assert not set(refused) & set(list_names(client))
            read_back(client, ledger, SEED)
    finally:
        server.stop()
        logs += [server.log(), server.stdout()]
    assert_integrity(tmpfs)

    remounted = tmpfs.remount(read_only=True)
    assert remounted.returncode == 0, remounted.stderr
    refusing = start_server(tmp_path, env, prefix=prefix, wait=False)
    try:
        code = refusing.process.wait(timeout=60)
    finally:
        refusing.stop()
        logs += [refusing.log(), refusing.stdout()]
    assert code != 0
    # Refused by strongroom's own start-up ("the database is read-only") or, when SQLite
    # could still open the file read-only, by the execution engine's first write.
    assert "the database is read-only" in logs[-2] or "readonly database" in logs[-2], logs[-2]

    remounted = tmpfs.remount(read_only=False)
    assert remounted.returncode == 0, remounted.stderr
    server = start_server(tmp_path, env, prefix=prefix)
    try:
        with client_for(server, key) as client:
            read_back(client, ledger, SEED)
            value = ledger.send(canary("last"))
            response = client.post("/v1/secrets", json={"name": "last", "value": value})
            assert response.status_code == 201, response.text
    finally:
        server.stop()
        logs += [server.log(), server.stdout()]
    assert_integrity(tmpfs)
    assert UNHANDLED not in logs[0]
    assert_no_leaks(ledger.all_values(), *logs)


# -- the mapping from a driver's error to the answer ----------------------------------------
def with_connection_setting(services: Services, sqlite_pragma: str, postgres_set: str) -> None:
    """Every new connection of the app's store runs this setting; pooled ones are closed."""
    store = services.store
    assert isinstance(store, SQLStore)

    @sa.event.listens_for(store.engine, "connect")
    def _apply(dbapi_conn: Any, _record: Any) -> None:
        if isinstance(store, SQLiteStore):
            dbapi_conn.execute(sqlite_pragma)
        else:
            dbapi_conn.autocommit = True
            dbapi_conn.execute(postgres_set)
            dbapi_conn.autocommit = False

    store.engine.dispose()


def test_a_read_only_database_answers_503_saying_so(
    api: TestClient, services: Services, backend: str
) -> None:
    """SQLite's SQLITE_READONLY and PostgreSQL's read_only_sql_transaction (a 500 before)."""
    value = canary("ro")
    assert api.post("/v1/secrets", json={"name": "kept", "value": value}).status_code == 201
    with_connection_setting(
        services, "PRAGMA query_only = 1", "SET default_transaction_read_only = on"
    )
    for response in (
        api.post("/v1/secrets", json={"name": "new", "value": canary()}),
        api.patch("/v1/secrets/kept", json={"value": canary()}),
        api.delete("/v1/secrets/kept"),
        api.post("/julep/secrets", json={"name": "julep", "value": canary()}),
    ):
        error = assert_error(response, 503, "unavailable")
        assert error["message"].startswith(READ_ONLY_MESSAGE), (backend, error)
        assert response.headers["retry-after"] == "1"
    assert api.get("/v1/secrets").json()["items"][0]["name"] == "kept"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_full_sqlite_database_answers_507_and_keeps_nothing_of_the_write(
    api: TestClient, services: Services
) -> None:
    """PostgreSQL's disk_full cannot be produced here; the unit test below maps it."""
    assert api.post("/v1/secrets", json={"name": "kept", "value": "small"}).status_code == 201
    store = services.store
    assert isinstance(store, SQLiteStore)
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
    # SQLite's own size cap: a write needing a page beyond it fails with SQLITE_FULL.
    with_connection_setting(services, f"PRAGMA max_page_count = {pages}", "")
    value = canary("full") + "x" * 60000
    response = api.post("/v1/secrets", json={"name": "big", "value": value})
    error = assert_error(response, 507, "insufficient_storage")
    assert error["message"].startswith(FULL_MESSAGE)
    assert find_leaks(value, response.content) == []
    assert_error(api.get("/v1/secrets/big"), 404, "not_found")
    assert api.get("/v1/secrets/kept").json()["value"] == "small"


def test_a_locked_sqlite_database_is_unavailable_not_an_error(tmp_path: Path) -> None:
    """Another process holds the write lock past the busy timeout: SQLite's BEGIN, which
    the store runs on the driver itself, fails outside SQLAlchemy's wrapping."""
    path = tmp_path / "locked.db"
    store = SQLiteStore(str(path), busy_timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    try:
        store.migrate()
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageUnavailable, match="database is locked"), store.write():
            pass
    finally:
        other.close()
        store.close()


def sqlite_error(code: int) -> Exception:
    error = sqlite3.OperationalError("the driver's text")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("backend", "orig", "fault"),
    [
        ("sqlite", sqlite_error(13), StorageFull),  # SQLITE_FULL
        ("sqlite", sqlite_error(8), StorageReadOnly),  # SQLITE_READONLY
        ("sqlite", sqlite_error(1032), StorageReadOnly),  # SQLITE_READONLY_DBMOVED
        ("sqlite", sqlite_error(778), StorageIOError),  # SQLITE_IOERR_WRITE
        ("sqlite", sqlite_error(14), StorageUnavailable),  # SQLITE_CANTOPEN
        ("postgres", psycopg.errors.DiskFull("the driver's text"), StorageFull),
        ("postgres", psycopg.errors.ReadOnlySqlTransaction("the driver's text"), StorageReadOnly),
        ("postgres", psycopg.errors.IoError("the driver's text"), StorageIOError),
        ("postgres", psycopg.errors.AdminShutdown("the driver's text"), StorageUnavailable),
    ],
)
def test_driver_errors_map_to_the_fault_they_name(
    backend: str, orig: Exception, fault: type[StorageUnavailable], tmp_path: Path
) -> None:
    """Including the codes no test here can produce for real (PostgreSQL's disk_full)."""
    store: SQLStore
    if backend == "sqlite":
        store, base = SQLiteStore(str(tmp_path / "unused.db")), sqlite3.Error
    else:  # the engine connects lazily: nothing is reached
        store, base = PostgresStore("postgresql://postgres@127.0.0.1:1/none"), psycopg.Error
    try:
        exc = sa.exc.DBAPIError.instance("INSERT ...", {"value": "secret"}, orig, base)
        found = store._fault(exc)
    finally:
        store.close()
    assert type(found) is fault
    assert "secret" not in str(found) and "INSERT" not in str(found)


def test_errors_that_are_no_fault_of_the_database_surface_unchanged(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "unused.db"))
    try:
        violation = sqlite3.IntegrityError("FOREIGN KEY constraint failed")
        exc = sa.exc.DBAPIError.instance("INSERT ...", None, violation, sqlite3.Error)
        assert store._fault(exc) is None
    finally:
        store.close()


@pytest.mark.parametrize(
    ("fault", "status", "code", "message"),
    [
        (StorageFull, 507, "insufficient_storage", FULL_MESSAGE),
        (StorageReadOnly, 503, "unavailable", READ_ONLY_MESSAGE),
        (StorageIOError, 503, "unavailable", "the database's storage failed (disk I/O error)"),
        (StorageUnavailable, 503, "unavailable", "the database is unavailable"),
    ],
)
def test_each_fault_has_its_answer(
    fault: type[StorageUnavailable], status: int, code: str, message: str
) -> None:
    error = storage_error(fault("OperationalError: the driver's text"))
    assert (error.status, error.code) == (status, code)
    assert error.message.startswith(message)
    assert "driver" not in error.message
    assert ("Retry-After" in error.headers) == (status == 503)


# -- 4. Master-key rotation killed at random points -----------------------------------------
def keyring_states(store: SQLStore) -> dict[int, str]:
    with store.read() as tx:
        return {entry.id: entry.state for entry in tx.keyring.entries()}


def assert_keyring_consistent(
    store: SQLStore, total: int, database_url: str | None, seed: int
) -> str:
    """One active KEK, the newest; the others draining (mid-rotation) or retired, a retired
    one wrapping nothing; every data key under a KEK of the keyring; and, given the
    database's URL, ``master-key status`` saying the same. Returns "mid-rotation" or
    "settled"."""
    states = keyring_states(store)
    active = [kek for kek, state in states.items() if state == "active"]
    assert len(active) == 1 and active[0] == max(states), (states, seed)
    assert set(states.values()) <= {"active", "draining", "retired"}, (states, seed)
    with store.read() as tx:
        counts = tx.secrets.count_versions_by_kek()
    assert set(counts) <= set(states), (counts, states, seed)
    assert sum(counts.values()) == total, (counts, seed)
    for kek, state in states.items():
        if state == "retired":
            assert counts.get(kek, 0) == 0, (counts, states, seed)
    if database_url is not None:
        status = run_cli(["master-key", "status", "--json"], server_env(database_url))
        assert status.returncode == 0, status.stderr
        rows = {row["kek_id"]: row for row in json.loads(status.stdout)}
        assert {k: r["state"] for k, r in rows.items()} == states, (rows, seed)
        assert {k: r["data_keys"] for k, r in rows.items() if r["data_keys"]} == counts, seed
    return "mid-rotation" if "draining" in states.values() else "settled"


def assert_server_reads(
    server: ServerProcess, key: str, sample: dict[tuple[str, int], str]
) -> None:
    """The server, started on the database as it was left, serves the sample's values."""
    wait_ready(server)
    with client_for(server, key) as client:
        for (name, version), value in sample.items():
            assert read_value(client, name, version)["value"] == value


def remaining_data_keys(store: SQLStore, total: int) -> int:
    """How many data keys the next ``master-key rotate`` rewraps: those not yet under the
    active KEK when it resumes a rotation, all of them when it starts a new one."""
    states = keyring_states(store)
    if "draining" not in states.values():
        return total
    with store.read() as tx:
        return total - tx.secrets.count_versions_by_kek().get(max(states), 0)


def kill_rotation(
    database_url: str, store: SQLStore, total: int, rng: random.Random, *, anywhere: bool
) -> str:
    """Run ``master-key rotate`` with a random batch size and SIGKILL it at a random point:
    after a random number of committed batches (short of the last two), or, ``anywhere``,
    also after a random time from its start, which may land before its first batch or
    after its last. Returns what happened, for failure messages."""
    batch_size = rng.randint(3, 9)
    batches = -(-remaining_data_keys(store, total) // batch_size)
    # Short of the last two: the kill then lands with work left (the batch under way is
    # a few milliseconds; the signal takes far less).
    after_batches = rng.randrange(1, batches - 1) if batches > 2 else 0
    after_seconds = rng.uniform(0.0, 3.0) if anywhere and rng.random() < 0.3 else None
    process = subprocess.Popen(
        [STRONGROOM, "master-key", "rotate", "--batch-size", str(batch_size)],
        env={"PATH": os.environ.get("PATH", ""), **server_env(database_url)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if after_seconds is None else subprocess.DEVNULL,
    )
    seen = 0
    try:
        if after_seconds is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=after_seconds)  # it may finish first: nothing to kill
        else:
            assert process.stderr is not None
            # Each line is printed after its batch commits; the next batch is under way
            # when the signal lands, at no particular point of it.
            for line in process.stderr:
                seen += line.startswith(b"rewrapped ")
                if seen >= after_batches:
                    break
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
    when = f"{after_seconds:.2f} s" if after_seconds is not None else f"{seen} batches"
    return f"batch size {batch_size}, killed after {when} (exit {code})"


def rotation_kills(
    services: Services,
    issue_key: IssueKey,
    database_url: str,
    tmp_path: Path,
    *,
    count: int,
    kills: int,
    anywhere: bool,
    seed: int,
) -> None:
    rng = random.Random(seed)
    store = services.store
    assert isinstance(store, SQLStore)
    _, record = create_api_key(store, services.barrier, "default")
    caller = Caller(record.tenant_id, record.tenant_name, record.id, ("*",))
    values: dict[tuple[str, int], str] = {}
    for i in range(count):
        name = f"rot_{i:04d}"
        values[(name, 1)] = canary(name)
        services.secrets.create(caller, name, values[(name, 1)])
        if i % 10 == 0:
            values[(name, 2)] = canary(name)
            services.secrets.update(caller, name, value=values[(name, 2)])
    total = len(values)
    key = issue_key()
    sample = dict(rng.sample(sorted(values.items()), 12))

    outcomes: list[str] = []
    for _ in range(kills):
        how = kill_rotation(database_url, store, total, rng, anywhere=anywhere)
        # A server starts on the database as the kill left it, while the rest is checked.
        server = start_server(tmp_path, server_env(database_url), wait=False)
        try:
            outcome = assert_keyring_consistent(store, total, database_url, seed)
            outcomes.append(f"{how}: {outcome}")
            assert assert_whole(store, seed) == total, outcomes
            assert_server_reads(server, key, sample)
        finally:
            server.stop()
        assert_no_leaks(list(values.values()), server.log(), server.stdout())
    assert any(o.endswith("mid-rotation") for o in outcomes), (outcomes, seed)

    finished = run_cli(["master-key", "rotate", "--batch-size", "50"], server_env(database_url))
    assert finished.returncode == 0, finished.stderr
    assert "finished" in finished.stderr, finished.stderr
    assert assert_keyring_consistent(store, total, None, seed) == "settled"
    with store.read() as tx:
        assert tx.secrets.count_versions_by_kek() == {max(keyring_states(store)): total}, outcomes
    assert assert_whole(store, seed) == total


@pytest.mark.e2e
def test_rotation_killed_at_random_points_keeps_the_keyring_consistent(
    services: Services, issue_key: IssueKey, database_url: str, tmp_path: Path
) -> None:
    rotation_kills(
        services,
        issue_key,
        database_url,
        tmp_path,
        count=200,
        kills=2,
        anywhere=False,
        seed=SEED + 2,
    )


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_soak_rotation_killed_at_random_points(
    services: Services, issue_key: IssueKey, database_url: str, tmp_path: Path
) -> None:
    rotation_kills(
        services,
        issue_key,
        database_url,
        tmp_path,
        count=1000,
        kills=12,
        anywhere=True,
        seed=SEED + 3,
    )
