"""Rotation in process, on both backends: the set_secret step, rotation policies and the
scheduler's claim. (Two servers and a worker sharing the schedule: test_rotation_e2e.py.)

The attacker here holds a tasks:run key, or a narrow one, and tries to make a run store a
value where it should not go: a use-only secret's value laundered into a readable secret,
a write by a key that may not write, a new key shown in a step's output, or a rotation
that runs twice.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from strongroom.server.apikeys import create_api_key
from strongroom.server.auth import Caller
from strongroom.server.housekeeping import rotation_execution_id, start_due_rotations
from strongroom.server.services import Services
from strongroom.server.storage import schema as t
from strongroom.server.tasks.runner import Runner
from strongroom.server.tasks.status import FAILED, SUCCEEDED
from strongroom.server.tasks.tools import EgressPolicy, ToolConfig

from .conftest import MakeClient
from .key_issuer import KeyIssuer, key_issuer, rotation_steps
from .support import assert_error, find_leaks
from .tasks_fixtures import run_all, start, steps_of


@pytest.fixture
def issuer() -> Iterator[KeyIssuer]:
    with key_issuer() as issuer:
        yield issuer


@pytest.fixture
def local_runner(services: Services) -> Runner:
    return Runner(
        services.store, services.barrier, ToolConfig(egress=EgressPolicy.parse("127.0.0.1"))
    )


def caller_with(services: Services, scopes: tuple[str, ...]) -> Caller:
    _, record = create_api_key(services.store, services.barrier, "default", scopes=scopes)
    return Caller(record.tenant_id, record.tenant_name, record.id, record.scopes)


def value_of(services: Services, caller: Caller, name: str) -> tuple[str, int]:
    revealed = services.secrets.get(caller, name)
    return revealed.value, revealed.version


def every_row(services: Services) -> bytes:
    """Every row of every table, as text: where a value must not be."""
    found = []
    with services.store.engine.connect() as conn:
        for table in t.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                found.append(repr(tuple(row)))
    return "\n".join(found).encode()


def setup(services: Services, caller: Caller, issuer: KeyIssuer) -> None:
    services.secrets.create(caller, "provider_admin", issuer.admin_token)
    services.secrets.create(caller, "api_key", "sk_live_old")


# -- the set_secret step -----------------------------------------------------------------------
def test_a_rotation_task_stages_verifies_and_stores_the_new_key(
    services: Services, caller: Caller, issuer: KeyIssuer, local_runner: Runner
) -> None:
    setup(services, caller, issuer)
    execution_id = start(services, caller, rotation_steps(issuer, "api_key", "provider_admin"))
    assert run_all(local_runner, execution_id) == SUCCEEDED
    new_key = issuer.issued[-1]
    assert value_of(services, caller, "api_key") == (new_key, 2)
    # the verify step sent the staged key, before it was stored
    assert issuer.verified == [new_key]
    # the new key is nowhere: not in the outputs, the trail, or any row (only sealed)
    execution = services.tasks.get_execution(caller, execution_id)
    shown = repr(
        (execution.output, [(s.output, s.error) for s in steps_of(services, execution_id)])
    )
    assert find_leaks(new_key, shown.encode()) == []
    assert "[REDACTED:api_key]" in shown  # the provider's answer is shown as the key's
    assert find_leaks(new_key, every_row(services)) == []
    trail = services.audit.list_events(caller, limit=100, offset=0).items
    set_by = [e for e in trail if e.action == "secret.update" and e.secret_name == "api_key"]
    assert set_by and f"set by execution {execution_id}" in (set_by[0].detail or "")


def test_a_failed_verification_keeps_the_old_version(
    services: Services, caller: Caller, issuer: KeyIssuer, local_runner: Runner
) -> None:
    setup(services, caller, issuer)
    issuer.reject_all = True
    execution_id = start(services, caller, rotation_steps(issuer, "api_key", "provider_admin"))
    assert run_all(local_runner, execution_id) == FAILED
    assert value_of(services, caller, "api_key") == ("sk_live_old", 1)
    assert [v.version for v in services.secrets.versions(caller, "api_key")] == [1]
    error = services.tasks.get_execution(caller, execution_id).error
    assert find_leaks(issuer.issued[-1], repr(error).encode()) == []


def test_set_secret_cannot_launder_a_tighter_policy(
    services: Services, caller: Caller, local_runner: Runner
) -> None:
    """A use-only secret's value, stored in a readable secret, could be read back: the
    step refuses any value derived from a secret whose policy is tighter."""
    services.secrets.create(caller, "locked", "use-only-value", policy={"readable": False})
    services.secrets.create(caller, "open", "x")
    for value in ("$ secrets.locked", "$ upper(secrets.locked)", '$ secrets.locked[::-1] + "!"'):
        steps = [{"kind": "set_secret", "name": "open", "value": value}]
        execution_id = start(services, caller, steps)
        assert run_all(local_runner, execution_id) == FAILED
        error = services.tasks.get_execution(caller, execution_id).error
        assert error["code"] == "policy_refused", error
        assert value_of(services, caller, "open") == ("x", 1)
    # into a secret at least as tight, it may go
    services.secrets.create(caller, "also_locked", "y", policy={"readable": False})
    steps = [{"kind": "set_secret", "name": "also_locked", "value": "$ secrets.locked"}]
    assert run_all(local_runner, start(services, caller, steps)) == SUCCEEDED


@pytest.mark.parametrize(
    ("scopes", "code"),
    [(("tasks:run",), "forbidden"), (("tasks:run", "secrets:read"), "forbidden")],
)
def test_set_secret_needs_a_key_that_may_write(
    services: Services,
    local_runner: Runner,
    scopes: tuple[str, ...],
    code: str,
    caller: Caller,
) -> None:
    services.secrets.create(caller, "target", "before")
    runner_key = caller_with(services, scopes)
    steps = [{"kind": "set_secret", "name": "target", "value": "after"}]
    execution_id = start(services, runner_key, steps)
    assert run_all(local_runner, execution_id) == FAILED
    assert services.tasks.get_execution(runner_key, execution_id).error["code"] == code
    assert value_of(services, caller, "target") == ("before", 1)


def test_set_secret_of_a_missing_or_unreachable_secret_fails(
    services: Services, caller: Caller, local_runner: Runner
) -> None:
    from strongroom.server.rules import ResourceRule

    services.secrets.create(caller, "prod_db", "before")
    _, record = create_api_key(
        services.store, services.barrier, "default", rule=ResourceRule(names=("ci_*",))
    )
    scoped = Caller(
        record.tenant_id, record.tenant_name, record.id, record.scopes, rule=record.rule
    )
    for who, name in ((caller, "no_such_secret"), (scoped, "prod_db")):
        steps = [{"kind": "set_secret", "name": name, "value": "after"}]
        execution_id = start(services, who, steps)
        assert run_all(local_runner, execution_id) == FAILED
        assert services.tasks.get_execution(who, execution_id).error["code"] == "secret_not_found"
    assert value_of(services, caller, "prod_db") == ("before", 1)


def test_set_secret_values_must_be_text(
    services: Services, caller: Caller, local_runner: Runner
) -> None:
    services.secrets.create(caller, "target", "before")
    for value in (42, "", "$ {'a': 1}", "x" * 70_000):
        execution_id = start(
            services, caller, [{"kind": "set_secret", "name": "target", "value": value}]
        )
        assert run_all(local_runner, execution_id) == FAILED
    assert value_of(services, caller, "target") == ("before", 1)


def test_a_set_secret_step_is_checked_when_the_task_is_made(api: TestClient) -> None:
    refused = api.post("/v1/tasks", json={"steps": [{"kind": "set_secret", "name": "x"}]})
    error = assert_error(refused, 422, "validation_error")
    assert error["details"][0]["location"] == "body.steps[0].value"
    bad_name = api.post(
        "/v1/tasks", json={"steps": [{"kind": "set_secret", "name": "no/slash", "value": "v"}]}
    )
    assert_error(bad_name, 422, "validation_error")


# -- rotation policies --------------------------------------------------------------------------
def rotation_task(api: TestClient, issuer: KeyIssuer) -> str:
    response = api.post(
        "/v1/tasks", json={"steps": rotation_steps(issuer, "api_key", "provider_admin")}
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def test_a_rotation_policy_is_checked_and_shown(make_client: MakeClient, issuer: KeyIssuer) -> None:
    api = make_client()
    task_id = rotation_task(api, issuer)
    created = api.post(
        "/v1/secrets",
        json={"name": "api_key", "value": "v", "rotation": {"every": "30d", "task_id": task_id}},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["rotation"] == {"every": "30d", "task_id": task_id}
    next_at = dt.datetime.fromisoformat(body["next_rotation_at"])
    assert dt.timedelta(days=29) < next_at - dt.datetime.now(dt.UTC) <= dt.timedelta(days=30)
    for rotation, where in (
        ({"every": "30 days", "task_id": task_id}, "body.rotation.every"),
        ({"every": "10s", "task_id": task_id}, "body.rotation.every"),
        ({"every": "1d", "task_id": "no-such-task"}, "body.rotation.task_id"),
    ):
        refused = api.patch("/v1/secrets/api_key", json={"rotation": rotation})
        error = assert_error(refused, 422, "validation_error")
        assert error["details"][0]["location"] == where
    # a key that may not run tasks may not have one run for it
    writer = make_client(scopes=("secrets:read", "secrets:write"))
    refused = writer.patch(
        "/v1/secrets/api_key", json={"rotation": {"every": "1d", "task_id": task_id}}
    )
    assert "tasks:run" in assert_error(refused, 403, "forbidden")["message"]
    ended = api.patch("/v1/secrets/api_key", json={"rotation": None}).json()
    assert (ended["rotation"], ended["next_rotation_at"]) == (None, None)
    assert_error(api.post("/v1/secrets/api_key/rotate"), 409, "conflict")


def test_a_due_rotation_is_claimed_once_and_recorded(
    make_client: MakeClient,
    services: Services,
    issuer: KeyIssuer,
    local_runner: Runner,
    caller: Caller,
) -> None:
    api = make_client()
    setup(services, caller, issuer)
    task_id = rotation_task(api, issuer)
    api.patch(
        "/v1/secrets/api_key", json={"rotation": {"every": "1h", "task_id": task_id}}
    ).raise_for_status()
    due = api.post("/v1/secrets/api_key/rotate").json()["next_rotation_at"]
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    # several processes' ticks at once: one claim
    claimed: list[Any] = []
    threads = [
        threading.Thread(target=lambda: claimed.extend(start_due_rotations(services.store, now)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = {execution.id for execution in claimed}
    secret = api.get("/v1/secrets/api_key").json()
    assert ids == {rotation_execution_id(secret["id"], dt.datetime.fromisoformat(due))}
    assert start_due_rotations(services.store, now) == []  # moved on: not due any more
    (execution_id,) = ids
    assert run_all(local_runner, execution_id) == SUCCEEDED
    rotated = api.get("/v1/secrets/api_key").json()
    assert (rotated["version"], rotated["value"]) == (2, issuer.issued[-1])
    assert rotated["last_rotated_at"] is not None
    assert dt.datetime.fromisoformat(rotated["next_rotation_at"]) > now
    events = api.get("/v1/audit", params={"action": "secret.rotate"}).json()["items"]
    assert [e["outcome"] for e in events] == ["success", "started"]


def test_a_failed_rotation_says_why_and_keeps_the_version(
    make_client: MakeClient,
    services: Services,
    issuer: KeyIssuer,
    local_runner: Runner,
    caller: Caller,
) -> None:
    api = make_client()
    setup(services, caller, issuer)
    task_id = rotation_task(api, issuer)
    api.patch(
        "/v1/secrets/api_key", json={"rotation": {"every": "1h", "task_id": task_id}}
    ).raise_for_status()
    api.post("/v1/secrets/api_key/rotate").raise_for_status()
    issuer.reject_all = True
    (execution,) = start_due_rotations(
        services.store, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    )
    assert run_all(local_runner, execution.id) == FAILED
    assert api.get("/v1/secrets/api_key").json()["value"] == "sk_live_old"
    events = api.get("/v1/audit", params={"action": "secret.rotate"}).json()["items"]
    assert events[0]["outcome"] == "failed"
    assert "the current version is kept" in events[0]["detail"]
    assert find_leaks(issuer.issued[-1], repr(events).encode()) == []
