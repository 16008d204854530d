"""Prometheus metrics and the readiness probe, on both backends.

The attacker's angle: metrics are of every tenant, so they are not on the API's port at
all; and a label made of a request's path would carry a secret's name, or a value pasted
into a URL, to whoever reads the metrics. Labels are route templates only.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from strongroom.server.app import create_app
from strongroom.server.metrics import Metrics
from strongroom.server.services import Services
from strongroom.server.settings import Settings
from strongroom.server.storage import StorageUnavailable
from strongroom.server.tasks.runner import Runner

from .conftest import MASTER_KEY, MakeClient
from .support import assert_error, canary, find_leaks, free_port, start_server
from .tasks_fixtures import run_all, start, tools_for


def scrape(metrics: Metrics) -> dict[str, list[Any]]:
    """Each metric family's samples, served as Prometheus reads them."""
    host, port = metrics.serve("127.0.0.1:0")
    try:
        text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    finally:
        metrics.stop()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value_of(samples: list[Any], **labels: str) -> float:
    found = [s.value for s in samples if all(s.labels.get(k) == v for k, v in labels.items())]
    assert found, (labels, samples)
    return float(sum(found))


def test_requests_are_counted_by_route_template_never_by_path(
    app: FastAPI, make_client: MakeClient
) -> None:
    api = make_client()
    name, value = f"n_{secrets.token_hex(8)}", canary("in-path")
    api.post("/v1/secrets", json={"name": name, "value": value}).raise_for_status()
    api.get(f"/v1/secrets/{name}").raise_for_status()
    assert api.get(f"/v1/secrets/{value.replace('-', '_')}").status_code == 404
    assert api.get(f"/no/such/{value}").status_code == 404
    found = scrape(app.state.metrics)
    requests = found["strongroom_http_requests"]
    assert value_of(requests, method="GET", route="/v1/secrets/{name}", status="200") == 1
    assert value_of(requests, method="GET", route="/v1/secrets/{name}", status="404") == 1
    assert value_of(requests, method="GET", route="unmatched", status="404") == 1
    assert value_of(requests, method="POST", route="/v1/secrets", status="201") == 1
    latency = found["strongroom_http_request_duration_seconds"]
    assert value_of(latency, route="/v1/secrets/{name}", le="+Inf") == 2
    text = repr(found).encode()
    assert find_leaks(value, text) == [] and name.encode() not in text


def test_the_database_numbers_are_read_at_scrape_time(
    app: FastAPI, make_client: MakeClient, services: Services
) -> None:
    api = make_client()
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    api.post("/v1/secrets", json={"name": "soon", "value": "v", "expires_at": soon})
    task = api.post("/v1/tasks", json={"steps": [{"kind": "transform", "expression": "$ 1"}]})
    api.post(f"/v1/tasks/{task.json()['id']}/executions", json={}).raise_for_status()
    api.patch(
        "/v1/secrets/soon", json={"rotation": {"every": "1d", "task_id": task.json()["id"]}}
    ).raise_for_status()
    api.post("/v1/secrets/soon/rotate").raise_for_status()
    found = scrape(app.state.metrics)
    assert value_of(found["strongroom_secrets_expiring"]) == 1
    assert value_of(found["strongroom_secrets_expired"]) == 0
    assert value_of(found["strongroom_rotations_due"]) == 1
    assert value_of(found["strongroom_executions"], status="queued") == 1
    pool = found["strongroom_database_connections"]
    assert value_of(pool, state="in_use") == 0  # every request's connection went back
    assert value_of(pool, state="idle") >= 1


def test_reads_writes_and_failed_authentications_are_counted_from_the_trail(
    app: FastAPI, make_client: MakeClient
) -> None:
    api = make_client()
    api.post("/v1/secrets", json={"name": "counted", "value": "v1"}).raise_for_status()
    api.put("/v1/secrets/counted", json={"value": "v2"}).raise_for_status()
    for _ in range(3):
        api.get("/v1/secrets/counted").raise_for_status()
    stranger = TestClient(app, headers={"Authorization": "Bearer sr_not_a_key"})
    assert stranger.get("/v1/secrets").status_code == 401
    events = scrape(app.state.metrics)["strongroom_audit_events"]
    assert value_of(events, action="secret.read", outcome="success") == 3
    assert value_of(events, action="secret.create", outcome="success") == 1
    assert value_of(events, action="secret.update", outcome="success") == 1
    assert value_of(events, action="auth.authenticate", outcome="unauthorized") == 1


def test_refusals_for_a_spent_budget_are_counted(services: Services, issue_key: Any) -> None:
    budgeted = services.settings.model_copy(update={"rate_limit_per_key": "2/minute"})
    app = create_app(replace(services, settings=budgeted), run_engine=False)
    api = TestClient(app, headers={"Authorization": f"Bearer {issue_key()}"})
    statuses = [api.get("/v1/secrets").status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]
    found = scrape(app.state.metrics)
    assert value_of(found["strongroom_http_rate_limited"], route="/v1/secrets") == 2


def test_each_step_is_timed_by_the_status_it_left(
    services: Services, caller: Any, upstream: Any
) -> None:
    steps = [
        {"kind": "transform", "expression": "$ 1"},
        {"kind": "transform", "expression": "$ 1 // 0"},
    ]
    runner = Runner(
        services.store,
        services.barrier,
        tools_for(upstream),
        observe_step=services.metrics.observe_step,
    )
    assert run_all(runner, start(services, caller, steps)) == "failed"
    timed = scrape(services.metrics)["strongroom_execution_step_duration_seconds"]
    assert value_of(timed, status="succeeded", le="+Inf") == 1
    assert value_of(timed, status="failed", le="+Inf") == 1


def test_metrics_are_not_on_the_api_port(api: TestClient) -> None:
    assert_error(api.get("/metrics"), 404, "not_found")


def test_the_metrics_listener_is_validated() -> None:
    for bad in ("9464", "host:", "host:99999", "host:x"):
        with pytest.raises(ValueError, match="host:port"):
            Settings(metrics_listen=bad)
    assert Settings(metrics_listen="").metrics_listen is None


def test_readyz_says_what_is_ready(api: TestClient) -> None:
    with TestClient(api.app) as anonymous:
        response = anonymous.get("/readyz")
    assert response.status_code == 200
    # an in-process app runs no engine: another process does
    assert response.json() == {
        "status": "ready",
        "database": "ok",
        "keyring": "unsealed",
        "engine": "off",
    }


def test_readyz_is_503_without_the_database(
    api: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    def down() -> None:
        raise StorageUnavailable("connection refused")

    monkeypatch.setattr(services.store, "ping", down)
    response = api.get("/readyz")
    error = assert_error(response, 503, "unavailable")
    assert "connection refused" not in error["message"]


def test_readyz_is_503_while_the_engine_is_not_running(services: Services) -> None:
    from strongroom.server.app import create_app

    app = create_app(services, run_engine=True)
    # no lifespan: the engine never started
    response = TestClient(app).get("/readyz")
    assert "engine" in assert_error(response, 503, "unavailable")["message"]


@pytest.mark.e2e
def test_serve_answers_metrics_on_its_own_listener(database_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_METRICS_LISTEN": f"127.0.0.1:{port}",
    }
    server = start_server(tmp_path, env)
    try:
        assert httpx.get(f"{server.base_url}/readyz", timeout=10).json()["engine"] == "running"
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert 'route="/readyz"' in text and "strongroom_executions" in text
        assert httpx.get(f"{server.base_url}/metrics", timeout=10).status_code == 404
    finally:
        server.stop()


def test_an_unreachable_redis_for_shared_budgets_is_counted(
    services: Services, issue_key: Any
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    shared = services.settings.model_copy(
        update={"redis_url": SecretStr(nowhere), "rate_limit_per_key": "100/second"}
    )
    app = create_app(replace(services, settings=shared), run_engine=False)
    api = TestClient(app, headers={"Authorization": f"Bearer {issue_key()}"})
    assert api.get("/v1/secrets").status_code == 200  # answered on local budgets
    found = scrape(app.state.metrics)
    assert value_of(found["strongroom_ratelimit_redis_failures"]) >= 1
    assert value_of(found["strongroom_ratelimit_local_fallbacks"]) >= 1
