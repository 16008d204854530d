"""Races against a real server process: one winner per name, no lost updates."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from strongroom.server.apikeys import create_api_key
from strongroom.server.storage import open_store

from .conftest import MASTER_KEY, unsealed
from .support import ServerProcess, start_server

THREADS = 12


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server whose request budgets are off: these races send hundreds of requests a
    second from one key, and what they test is the writes, not the budgets."""
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_RATE_LIMIT_PER_KEY": "off",
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "off",
    }
    proc = start_server(tmp_path, env)
    try:
        yield proc
    finally:
        proc.stop()


def _client(server: ServerProcess) -> httpx.Client:
    store = open_store(server.env["STRONGROOM_DATABASE_URL"])
    try:
        key, _ = create_api_key(store, unsealed(store), "default")
    finally:
        store.close()
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _race(count: int, work):  # type: ignore[no-untyped-def]
    """Run ``work(i)`` on ``count`` threads released together."""
    start = threading.Barrier(count)

    def run(i: int):  # type: ignore[no-untyped-def]
        start.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_concurrent_creates_of_one_name_give_exactly_one_201(server: ServerProcess) -> None:
    with _client(server) as client:
        statuses = _race(
            THREADS,
            lambda i: (
                client.post(
                    "/v1/secrets", json={"name": "contested", "value": f"value-{i}"}
                ).status_code
            ),
        )
        assert Counter(statuses) == {201: 1, 409: THREADS - 1}
        winner = client.get("/v1/secrets/contested").json()
        assert winner["version"] == 1
        assert winner["value"] in {f"value-{i}" for i in range(THREADS)}


def _value(client: httpx.Client, version: int) -> str:
    answer = client.get("/v1/secrets/counter", params={"version": version})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["value"])


def test_concurrent_conditional_updates_lose_nothing(server: ServerProcess) -> None:
    """Each writer retries on 412 until its value lands; every value ends in history."""
    with _client(server) as client:
        assert (
            client.post("/v1/secrets", json={"name": "counter", "value": "v0"}).status_code == 201
        )
        updates_per_writer = 3

        def writer(i: int) -> list[int]:
            landed = []
            for n in range(updates_per_writer):
                while True:
                    current = client.get("/v1/secrets/counter").json()["version"]
                    answer = client.patch(
                        "/v1/secrets/counter",
                        json={"value": f"w{i}-{n}"},
                        headers={"If-Match": f'"{current}"'},
                    )
                    if answer.status_code == 200:
                        landed.append(answer.json()["version"])
                        break
                    assert answer.status_code == 412, answer.text
            return landed

        results = _race(6, writer)
        versions = sorted(v for landed in results for v in landed)
        total = 6 * updates_per_writer
        assert versions == list(range(2, total + 2)), "each success got its own version"
        history = client.get("/v1/secrets/counter/versions").json()["items"]
        assert [item["version"] for item in history] == list(range(total + 1, 0, -1))
        stored = {_value(client, v) for v in range(2, total + 2)}
        assert stored == {f"w{i}-{n}" for i in range(6) for n in range(updates_per_writer)}


def test_concurrent_unconditional_updates_each_get_a_version(server: ServerProcess) -> None:
    with _client(server) as client:
        assert client.post("/v1/secrets", json={"name": "busy", "value": "v0"}).status_code == 201
        answers = _race(
            THREADS,
            lambda i: client.patch("/v1/secrets/busy", json={"value": f"u{i}"}),
        )
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert sorted(a.json()["version"] for a in answers) == list(range(2, THREADS + 2))
        values = {
            client.get("/v1/secrets/busy", params={"version": v}).json()["value"]
            for v in range(2, THREADS + 2)
        }
        assert values == {f"u{i}" for i in range(THREADS)}


def test_concurrent_renames_onto_one_name_give_one_winner(server: ServerProcess) -> None:
    with _client(server) as client:
        for i in range(THREADS):
            assert (
                client.post("/v1/secrets", json={"name": f"src{i}", "value": "x"}).status_code
                == 201
            )
        statuses = _race(
            THREADS,
            lambda i: client.patch(f"/v1/secrets/src{i}", json={"new_name": "target"}).status_code,
        )
        assert Counter(statuses) == {200: 1, 409: THREADS - 1}
        names = [s["name"] for s in client.get("/v1/secrets").json()["items"]]
        assert "target" in names and len(names) == THREADS
