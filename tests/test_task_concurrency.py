"""Executions running at once are bounded per tenant, so one tenant's stalled runs cannot
hold every worker (a real server and its DBOS queue, on SQLite and PostgreSQL).

Tenant A's first run blocks on a silent upstream (it answers only when told to, with an
event, never after a delay). With ``STRONGROOM_TASK_CONCURRENCY_PER_TENANT=1`` its second
run must stay queued, while tenant B's run, enqueued after it, runs and finishes: the
queue is first-in first-out, so without the per-tenant bound A's second run would have
started first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strongroom.server.apikeys import create_api_key
from strongroom.server.services import Services

from .conftest import MASTER_KEY
from .support import ServerProcess, start_server, wait_until
from .upstream import Upstream, at

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(database_url: str, tmp_path: Path, upstream: Upstream) -> Iterator[ServerProcess]:
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_EGRESS_ALLOW": "127.0.0.1",
        "STRONGROOM_TASK_CONCURRENCY": "2",
        "STRONGROOM_TASK_CONCURRENCY_PER_TENANT": "1",
    }
    proc = start_server(tmp_path, env)
    try:
        yield proc
    finally:
        proc.stop()


def client(server: ServerProcess, services: Services, tenant: str) -> httpx.Client:
    key, _ = create_api_key(services.store, services.barrier, tenant)
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def run(api: httpx.Client, steps: list[dict[str, Any]]) -> str:
    task = api.post("/v1/tasks", json={"steps": steps})
    assert task.status_code == 201, task.text
    started = api.post(f"/v1/tasks/{task.json()['id']}/executions", json={})
    assert started.status_code == 201, started.text
    return str(started.json()["id"])


def status(api: httpx.Client, execution_id: str) -> str:
    return str(api.get(f"/v1/executions/{execution_id}").json()["status"])


def test_one_tenants_stalled_runs_do_not_hold_back_another_tenant(
    server: ServerProcess, services: Services, upstream: Upstream
) -> None:
    blocking = {
        "kind": "tool_call",
        "tool": "openai",
        "operation": "chat",
        "arguments": {
            "model": "m",
            "base_url": at(upstream, "blocking"),
            "messages": [{"role": "user", "content": "hello"}],
        },
    }
    with client(server, services, "tenant_a") as a, client(server, services, "tenant_b") as b:
        first = run(a, [blocking])
        assert upstream.arrived.wait(30)
        second = run(a, [blocking])
        other = run(b, [{"kind": "transform", "expression": "$ 'done'"}])
        wait_until(lambda: status(b, other) == "succeeded", "tenant B's run finishes")
        # A's second run was enqueued before B's, and B's is done: only the bound on A's
        # runs at once kept it waiting
        assert status(a, first) == "running"
        assert status(a, second) == "queued"
        assert len(upstream.seen) == 1
        upstream.release.set()
        wait_until(lambda: status(a, second) == "succeeded", "A's second run finishes", 60)
        assert status(a, first) == "succeeded"
        assert len(upstream.seen) == 2
