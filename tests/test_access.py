"""Resource-scoped keys, as the holder of the narrowest key would probe them.

One tenant holds four secrets; four keys look at them: one without a rule, one with the
name glob ``ci_*``, one with the selector ``environment=staging``, and one of another
tenant. For every route that reaches a secret, each key must see exactly the secrets
its rule reaches, and be refused the others:

- **403 forbidden** where the refusal is decided by the *name alone* (a glob key asking
  for ``stripe_key``): it learns nothing it did not send.
- **404 not_found**, worded exactly as for a missing secret, where the secret's
  *metadata* decides (a selector key asking for ``ci_build``) and for another tenant:
  answering 403 would tell the key that such a secret exists.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom.server.apikeys import create_api_key
from strongroom.server.rules import ResourceRule
from strongroom.server.services import Services
from strongroom.server.tasks.runner import Runner

from .support import assert_error, canary
from .tasks_fixtures import run_all, steps_of

SECRETS: dict[str, dict[str, Any]] = {
    "ci_deploy": {"environment": "staging"},
    "ci_build": {"environment": "production"},
    "stripe_key": {"environment": "staging"},
    "plain": {},
}
SCOPES = ("secrets:read", "secrets:write", "tasks:run", "audit:read")


@dataclass(frozen=True)
class Viewer:
    """A key, what it must see, and how it is refused the rest."""

    rule: ResourceRule | None
    tenant: str
    sees: frozenset[str]

    def refusal(self, name: str) -> tuple[int, str]:
        """What a call naming a secret out of reach answers."""
        if self.rule is not None and not self.rule.admits_name(name):
            return 403, "forbidden"
        return 404, "not_found"


VIEWERS = {
    "unscoped": Viewer(None, "default", frozenset(SECRETS)),
    "glob": Viewer(ResourceRule(("ci_*",)), "default", frozenset({"ci_deploy", "ci_build"})),
    "selector": Viewer(
        ResourceRule(metadata={"environment": "staging"}),
        "default",
        frozenset({"ci_deploy", "stripe_key"}),
    ),
    "other_tenant": Viewer(None, "other", frozenset()),
}


@dataclass
class World:
    owner: TestClient  # the tenant's full key
    client: TestClient  # the viewer's key
    viewer: Viewer
    values: dict[str, str]
    ids: dict[str, str]
    services: Services


@pytest.fixture
def world_of(app: FastAPI, services: Services) -> Iterator[Callable[[str], World]]:
    clients: list[TestClient] = []

    def client(key: str) -> TestClient:
        made = TestClient(app, headers={"Authorization": f"Bearer {key}"})
        clients.append(made)
        return made

    def make(viewer_name: str) -> World:
        viewer = VIEWERS[viewer_name]
        owner_key, _ = create_api_key(services.store, services.barrier, "default", name="owner")
        owner = client(owner_key)
        values, ids = {}, {}
        for name, metadata in SECRETS.items():
            values[name] = canary(name)
            response = owner.post(
                "/v1/secrets", json={"name": name, "value": values[name], "metadata": metadata}
            )
            assert response.status_code == 201, response.text
            ids[name] = response.json()["id"]
        key, _ = create_api_key(
            services.store,
            services.barrier,
            viewer.tenant,
            name=f"{viewer_name} key",
            scopes=SCOPES,
            rule=viewer.rule,
        )
        return World(owner, client(key), viewer, values, ids, services)

    yield make
    for made in clients:
        made.close()


def _names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["name"] for item in response.json()["items"]]


VIEWER_NAMES = list(VIEWERS)


@pytest.mark.parametrize("viewer", VIEWER_NAMES)
def test_list_shows_exactly_the_reach_with_pages_that_add_up(
    world_of: Callable[[str], World], viewer: str
) -> None:
    world = world_of(viewer)
    assert _names(world.client.get("/v1/secrets")) == sorted(world.viewer.sees)
    # one by one: every page full, has_more true until the last secret in reach
    seen, offset = [], 0
    while True:
        page = world.client.get("/v1/secrets", params={"limit": 1, "offset": offset}).json()
        seen += [item["name"] for item in page["items"]]
        offset += 1
        if not page["has_more"]:
            break
    assert seen == sorted(world.viewer.sees)
    # a metadata filter narrows the reach, never widens it
    staging = world.client.get("/v1/secrets", params={"metadata[environment]": "staging"})
    assert _names(staging) == sorted(
        world.viewer.sees & {n for n, m in SECRETS.items() if m.get("environment") == "staging"}
    )
    production = world.client.get("/v1/secrets", params={"metadata[environment]": "production"})
    assert _names(production) == sorted(world.viewer.sees & {"ci_build"})
    julep = world.client.get("/julep/secrets")
    assert julep.status_code == 200, julep.text
    assert sorted(item["name"] for item in julep.json()) == sorted(world.viewer.sees)


@pytest.mark.parametrize("viewer", VIEWER_NAMES)
def test_reads_reach_only_the_rule(world_of: Callable[[str], World], viewer: str) -> None:
    world = world_of(viewer)
    for name in SECRETS:
        for path in (f"/v1/secrets/{name}", f"/v1/secrets/{name}/versions"):
            response = world.client.get(path)
            if name in world.viewer.sees:
                assert response.status_code == 200, response.text
            else:
                status, code = world.viewer.refusal(name)
                error = assert_error(response, status, code)
                assert world.values[name] not in response.text
                if status == 404:  # exactly as a secret that does not exist
                    missing = world.client.get(path.replace(name, "no_such_secret"))
                    assert error["message"].replace(name, "X") == missing.json()["error"][
                        "message"
                    ].replace("no_such_secret", "X")


@pytest.mark.parametrize("viewer", VIEWER_NAMES)
def test_writes_reach_only_the_rule(world_of: Callable[[str], World], viewer: str) -> None:
    world = world_of(viewer)
    for name in SECRETS:
        calls = [
            ("PATCH", f"/v1/secrets/{name}", {"description": "changed"}),
            ("DELETE", f"/v1/secrets/{name}", None),
            ("POST", f"/v1/secrets/{name}/restore", None),
            # (a selector key creates only secrets that carry its metadata)
            ("PUT", f"/v1/secrets/{name}", {"value": "new", "metadata": SECRETS[name]}),
        ]
        for method, path, body in calls:
            response = world.client.request(method, path, json=body)
            if name in world.viewer.sees:
                # deleted, restored, then given a new value
                assert response.status_code == 200, response.text
                continue
            status, code = world.viewer.refusal(name)
            if method == "PUT" and status == 404:
                # A put creates a missing secret, so a taken name cannot be hidden
                # (creating it would say so too); the secret itself stays untouched.
                status, code = 409, "conflict"
                if world.viewer.tenant != "default":
                    # another tenant's names are its own: the put creates the viewer's
                    assert response.status_code == 201, response.text
                    continue
            assert_error(response, status, code)
        if name not in world.viewer.sees:
            # every refused write left the owner's secret as it was
            got = world.owner.get(f"/v1/secrets/{name}").json()
            assert (got["value"], got["description"], got["version"]) == (
                world.values[name],
                None,
                1,
            )


@pytest.mark.parametrize("viewer", VIEWER_NAMES)
def test_julep_routes_by_id_reach_only_the_rule(
    world_of: Callable[[str], World], viewer: str
) -> None:
    world = world_of(viewer)
    for name, secret_id in world.ids.items():
        put = world.client.put(
            f"/julep/secrets/{secret_id}", json={"name": name, "value": "replaced"}
        )
        delete = world.client.delete(f"/julep/secrets/{secret_id}")
        if name in world.viewer.sees:
            assert put.status_code == 200, put.text
            assert delete.status_code == 202, delete.text
        else:
            # by id the name is not the caller's to give: always 404, never 403
            assert_error(put, 404, "not_found")
            assert_error(delete, 404, "not_found")
            assert world.owner.get(f"/v1/secrets/{name}").json()["value"] == world.values[name]


@pytest.mark.parametrize("viewer", ["glob", "selector"])
def test_creating_outside_the_reach_is_refused(
    world_of: Callable[[str], World], viewer: str
) -> None:
    world = world_of(viewer)
    inside = {"name": "ci_new", "value": "v", "metadata": {"environment": "staging"}}
    assert world.client.post("/v1/secrets", json=inside).status_code == 201
    outside_name = {"name": "stripe_new", "value": "v", "metadata": {"environment": "staging"}}
    outside_metadata = {"name": "ci_new2", "value": "v", "metadata": {"environment": "prod"}}
    for body in (outside_name, outside_metadata):
        response = world.client.post("/v1/secrets", json=body)
        if world.viewer.rule and world.viewer.rule.admits(body["name"], body["metadata"]):
            assert response.status_code == 201, response.text
        else:
            assert_error(response, 403, "forbidden")
            assert world.owner.get(f"/v1/secrets/{body['name']}").status_code == 404


@pytest.mark.parametrize("viewer", ["glob", "selector"])
def test_a_rename_or_metadata_change_cannot_move_a_secret_across_the_reach(
    world_of: Callable[[str], World], viewer: str
) -> None:
    world = world_of(viewer)
    # out of reach, by renaming it out of the globs or changing its metadata away
    for change in ({"new_name": "moved_out"}, {"metadata": {"environment": "production"}}):
        response = world.client.patch("/v1/secrets/ci_deploy", json=change)
        rule = world.viewer.rule
        assert rule is not None
        stays = rule.admits(
            change.get("new_name", "ci_deploy"), change.get("metadata", SECRETS["ci_deploy"])
        )
        if stays:
            assert response.status_code == 200, response.text
            world.client.patch(
                f"/v1/secrets/{change.get('new_name', 'ci_deploy')}",
                json={"new_name": "ci_deploy", "metadata": SECRETS["ci_deploy"]},
            )
        else:
            assert_error(response, 403, "forbidden")
    got = world.owner.get("/v1/secrets/ci_deploy").json()
    assert (got["name"], got["metadata"]) == ("ci_deploy", SECRETS["ci_deploy"])
    # into reach: a secret out of reach cannot even be named, so cannot be moved in
    outside = next(n for n in SECRETS if n not in world.viewer.sees)
    into = world.client.patch(
        f"/v1/secrets/{outside}",
        json={"new_name": "ci_taken", "metadata": {"environment": "staging"}},
    )
    assert into.status_code in (403, 404)
    assert world.owner.get(f"/v1/secrets/{outside}").json()["metadata"] == SECRETS[outside]


@pytest.mark.parametrize("viewer", VIEWER_NAMES)
def test_audit_shows_a_scoped_key_only_its_secrets_events(
    world_of: Callable[[str], World], viewer: str
) -> None:
    world = world_of(viewer)
    for name in SECRETS:
        world.owner.get(f"/v1/secrets/{name}")
    response = world.client.get("/v1/audit", params={"limit": 1000})
    assert response.status_code == 200, response.text
    events = response.json()["items"]
    named = {event["secret_name"] for event in events}
    if world.viewer.tenant != "default":
        assert named <= {None}
    elif world.viewer.rule is None:
        assert named >= set(SECRETS)
    else:
        # only its secrets' events: no event about another secret, and none about no
        # secret (another key's sign-in, a task of the tenant)
        assert named == set(world.viewer.sees)
    for name in SECRETS:
        filtered = world.client.get("/v1/audit", params={"secret": name}).json()["items"]
        if name not in world.viewer.sees:
            assert filtered == []


@pytest.mark.parametrize("viewer", ["glob", "selector"])
def test_a_task_run_uses_only_the_secrets_its_key_reaches(
    world_of: Callable[[str], World], viewer: str, runner: Runner
) -> None:
    world = world_of(viewer)
    results = {}
    for name in SECRETS:
        task = world.client.post(
            "/v1/tasks",
            json={"steps": [{"kind": "transform", "expression": f"$ len(secrets.{name})"}]},
        )
        assert task.status_code == 201, task.text
        warnings = task.json().get("warnings", [])
        assert bool(warnings) == (name not in world.viewer.sees), warnings
        execution = world.client.post(f"/v1/tasks/{task.json()['id']}/executions", json={})
        assert execution.status_code == 201, execution.text
        execution_id = execution.json()["id"]
        results[name] = run_all(runner, execution_id)
        [step] = steps_of(world.services, execution_id)
        if name not in world.viewer.sees:
            assert step.error is not None
            # the same words whether the secret is missing or only out of reach
            assert "does not exist or is outside the reach" in step.error["message"]
    assert {n for n, status in results.items() if status == "succeeded"} == world.viewer.sees


def test_a_narrowed_key_is_held_to_its_rule_at_execution_time(
    world_of: Callable[[str], World], runner: Runner, services: Services
) -> None:
    world = world_of("unscoped")
    task = world.client.post(
        "/v1/tasks", json={"steps": [{"kind": "transform", "expression": "$ len(secrets.plain)"}]}
    ).json()
    execution_id = world.client.post(f"/v1/tasks/{task['id']}/executions", json={}).json()["id"]
    # the key is narrowed after the run was queued, before it runs
    with services.store.write() as tx:
        key = next(k for k in tx.apikeys.list_keys() if k.name == "unscoped key")
        tx.apikeys.update(replace(key, rule=ResourceRule(("ci_*",))))
    assert run_all(runner, execution_id) == "failed"


def test_globs_match_case_and_underscores_exactly_on_both_backends(
    app: FastAPI, services: Services
) -> None:
    """SQLite's LIKE ignores case and LIKE's ``_`` is a wildcard: a glob key must see
    neither ``CI_upper`` nor ``ciXunderscore`` through ``ci_*``, in lists as in reads."""
    owner_key, _ = create_api_key(services.store, services.barrier, "default")
    rule = ResourceRule(("ci_*", "a?c"))
    key, _ = create_api_key(services.store, services.barrier, "default", scopes=SCOPES, rule=rule)
    with (
        TestClient(app, headers={"Authorization": f"Bearer {owner_key}"}) as owner,
        TestClient(app, headers={"Authorization": f"Bearer {key}"}) as scoped,
    ):
        names = ["CI_upper", "ciXunderscore", "ci_", "ci_lower", "abc", "ac", "abbc", "Abc"]
        for name in names:
            assert owner.post("/v1/secrets", json={"name": name, "value": "v"}).status_code == 201
        assert _names(scoped.get("/v1/secrets")) == ["abc", "ci_", "ci_lower"]
        for name in names:
            expected = 200 if name in {"abc", "ci_", "ci_lower"} else 403
            assert scoped.get(f"/v1/secrets/{name}").status_code == expected, name
