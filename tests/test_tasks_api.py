"""Contract tests of ``/v1/tasks`` and ``/v1/executions``, in process, on SQLite and PostgreSQL.

No engine runs here (the app's default keeps executions queued for one), so these tests
pin the API's shapes, validation, scopes and tenancy; the runs themselves are tested in
test_tasks_runner.py and, through real server processes, in test_tasks_e2e.py.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from strongroom import Strongroom
from strongroom.server.services import Services

from .conftest import MakeClient
from .support import assert_error, canary, find_leaks

TASK_FIELDS = {"id", "name", "description", "steps", "created_at", "updated_at"}
EXECUTION_FIELDS = {
    "id",
    "task_id",
    "status",
    "input",
    "output",
    "error",
    "created_at",
    "updated_at",
}

# The product guide's four task definitions.
GUIDE_OPENAI = {
    "steps": [
        {
            "kind": "tool_call",
            "tool": "openai",
            "operation": "chat",
            "arguments": {
                "model": "gpt-4",
                "messages": [{"role": "user", "content": "What's the weather like?"}],
            },
            "secret_name": "openai_api_key",
        }
    ]
}
GUIDE_TRANSFORM = {
    "steps": [
        {
            "kind": "transform",
            "expression": "$ f'https://api.example.com/v1?api_key={secrets.api_key}&query={input}'",
            "input": "search query",
            "output": "api_url",
        }
    ]
}
GUIDE_DATABASE = {
    "steps": [
        {
            "kind": "tool_call",
            "tool": "database",
            "operation": "query",
            "arguments": {
                "query": "SELECT * FROM users",
                "connection": {
                    "host": "$ secrets.db_host",
                    "user": "$ secrets.db_username",
                    "password": "$ secrets.db_password",
                    "database": "$ secrets.db_name",
                },
            },
        }
    ]
}
GUIDE_ASYNC = {
    "steps": [
        {
            "kind": "tool_call",
            "tool": "database",
            "operation": "query",
            "secret_name": "database_password",
        }
    ]
}
GUIDE_TASKS = [GUIDE_OPENAI, GUIDE_TRANSFORM, GUIDE_DATABASE, GUIDE_ASYNC]


def create_task(api: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def problems(response: Any) -> dict[str, str]:
    error = assert_error(response, 422, "validation_error")
    return {d["location"]: d["message"] for d in error["details"]}


# -- creating tasks -----------------------------------------------------------------------------
@pytest.mark.parametrize("definition", GUIDE_TASKS)
def test_the_guides_tasks_are_accepted_in_both_body_forms(
    api: TestClient, definition: dict[str, Any]
) -> None:
    wrapped = create_task(api, {"task": definition})
    bare = create_task(api, definition)
    for task in (wrapped, bare):
        assert set(task) == TASK_FIELDS | {"warnings"}
        assert task["steps"] == definition["steps"]
        assert task["name"] is None
        assert task["created_at"].endswith("Z")
    assert wrapped["id"] != bare["id"]


def test_name_and_description_are_kept(api: TestClient) -> None:
    task = create_task(
        api, {"task": {**GUIDE_TRANSFORM, "name": "search", "description": "build a URL"}}
    )
    assert (task["name"], task["description"]) == ("search", "build a URL")
    assert api.get(f"/v1/tasks/{task['id']}").json() == {
        k: v for k, v in task.items() if k != "warnings"
    }


def test_secrets_that_do_not_exist_yet_are_warnings(api: TestClient) -> None:
    task = create_task(api, GUIDE_OPENAI)
    assert task["warnings"] == [
        {
            "location": "steps[0].secret_name",
            "message": "secret 'openai_api_key' does not exist yet",
        }
    ]
    database = create_task(api, GUIDE_DATABASE)
    assert [w["location"] for w in database["warnings"]] == [
        "steps[0].arguments.connection.host",
        "steps[0].arguments.connection.user",
        "steps[0].arguments.connection.password",
        "steps[0].arguments.connection.database",
    ]
    api.post("/v1/secrets", json={"name": "openai_api_key", "value": "sk-test-1234"})
    assert create_task(api, GUIDE_OPENAI)["warnings"] == []


def test_one_detail_per_problem_located_in_the_body(api: TestClient) -> None:
    body = {
        "task": {
            "steps": [
                {"kind": "shell", "command": "rm -rf /"},
                {
                    "kind": "tool_call",
                    "tool": "database",
                    "operation": "query",
                    "arguments": {
                        "connection": {"host": 5, "user": "$ secrets[inputs]"},
                        "max_rows": 0,
                    },
                    "secret_name": "not a name",
                    "output": "1st",
                },
                {"kind": "transform", "expression": "$ open('/etc/passwd')"},
                {"kind": "transform", "expression": "$ f'{undefined}'", "input": "$ 1 +"},
                {"kind": "tool_call", "tool": "ssh", "operation": "run"},
                {"kind": "tool_call", "tool": "openai", "operation": "complete"},
                {"kind": "transform"},
            ]
        }
    }
    found = problems(api.post("/v1/tasks", json=body))
    assert set(found) == {
        "body.task.steps[0].kind",
        "body.task.steps[1].arguments.connection.host",
        "body.task.steps[1].arguments.max_rows",
        "body.task.steps[1].arguments.connection.user",
        "body.task.steps[1].secret_name",
        "body.task.steps[1].output",
        "body.task.steps[2].expression",
        "body.task.steps[3].expression",
        "body.task.steps[3].input",
        "body.task.steps[4].tool",
        "body.task.steps[5].operation",
        "body.task.steps[6].expression",
    }
    assert "transform, tool_call" in found["body.task.steps[0].kind"]
    assert "constant name" in found["body.task.steps[1].arguments.connection.user"]
    assert "undefined" in found["body.task.steps[3].expression"]
    assert found["body.task.steps[6].expression"] == "is required"


def test_top_level_form_is_located_under_body(api: TestClient) -> None:
    found = problems(
        api.post("/v1/tasks", json={"steps": [{"kind": "transform", "expression": "$ x"}]})
    )
    assert list(found) == ["body.steps[0].expression"]


def test_task_level_problems(api: TestClient) -> None:
    assert list(problems(api.post("/v1/tasks", json={"name": "no steps"}))) == ["body.steps"]
    assert list(problems(api.post("/v1/tasks", json={"task": {"steps": []}}))) == [
        "body.task.steps"
    ]
    assert list(problems(api.post("/v1/tasks", json={"task": "steps"}))) == ["body.task"]
    found = problems(
        api.post("/v1/tasks", json={"task": GUIDE_TRANSFORM, "steps": [], "colour": "red"})
    )
    assert set(found) == {"body.steps", "body.colour"}
    found = problems(api.post("/v1/tasks", json={**GUIDE_TRANSFORM, "name": 5, "x": 1}))
    assert set(found) == {"body.name", "body.x"}
    assert list(problems(api.post("/v1/tasks", json=[1, 2]))) == ["body"]


def test_unknown_step_fields_and_duplicate_outputs(api: TestClient) -> None:
    step = {"kind": "transform", "expression": "$ 1", "output": "x"}
    found = problems(api.post("/v1/tasks", json={"steps": [step, {**step, "tool": "openai"}]}))
    assert set(found) == {"body.steps[1].tool", "body.steps[1].output"}
    assert "steps[0]" in found["body.steps[1].output"]


def test_validation_messages_hold_no_value_from_the_body(api: TestClient) -> None:
    sneaky = "sk-live-0123456789abcdef"
    response = api.post(
        "/v1/tasks",
        json={"steps": [{"kind": "tool_call", "tool": sneaky, "operation": sneaky}]},
    )
    assert sneaky not in response.text


# -- reading and deleting tasks -------------------------------------------------------------------
def test_list_get_delete(api: TestClient) -> None:
    ids = [create_task(api, GUIDE_TRANSFORM)["id"] for _ in range(3)]
    page = api.get("/v1/tasks", params={"limit": 2}).json()
    assert [t["id"] for t in page["items"]] == ids[:2]
    assert (page["limit"], page["offset"], page["has_more"]) == (2, 0, True)
    rest = api.get("/v1/tasks", params={"limit": 2, "offset": 2}).json()
    assert [t["id"] for t in rest["items"]] == ids[2:]
    assert rest["has_more"] is False
    assert set(page["items"][0]) == TASK_FIELDS
    deleted = api.delete(f"/v1/tasks/{ids[0]}")
    assert deleted.status_code == 200
    assert deleted.json()["id"] == ids[0]
    assert_error(api.get(f"/v1/tasks/{ids[0]}"), 404, "not_found")
    assert_error(api.delete(f"/v1/tasks/{ids[0]}"), 404, "not_found")
    assert [t["id"] for t in api.get("/v1/tasks").json()["items"]] == ids[1:]
    assert_error(api.get("/v1/tasks", params={"limit": 0}), 422, "validation_error")


def test_a_malformed_id_is_not_repeated_in_the_404(api: TestClient) -> None:
    """Ids are UUIDs; anything else in their place (a value pasted by mistake, a secret
    too) is not echoed back. A well-formed id that is not there is named."""
    value = canary("id")
    for method, path in (
        ("GET", f"/v1/tasks/{value}"),
        ("DELETE", f"/v1/tasks/{value}"),
        ("POST", f"/v1/tasks/{value}/executions"),
        ("GET", f"/v1/executions/{value}"),
        ("GET", f"/v1/executions/{value}/steps"),
        ("POST", f"/v1/executions/{value}/cancel"),
    ):
        response = api.request(method, path)
        error = assert_error(response, 404, "not_found")
        assert "ids are UUIDs" in error["message"], error
        assert find_leaks(value, response.content) == [], path
    missing = str(uuid.uuid4())
    error = assert_error(api.get(f"/v1/tasks/{missing}"), 404, "not_found")
    assert error["message"] == f"task {missing!r} does not exist"


def test_other_tenants_tasks_and_executions_are_not_found(
    api: TestClient, make_client: MakeClient
) -> None:
    task = create_task(api, GUIDE_TRANSFORM)
    execution = api.post(f"/v1/tasks/{task['id']}/executions").json()
    other = make_client(tenant="other")
    assert other.get("/v1/tasks").json()["items"] == []
    assert other.get("/v1/executions").json()["items"] == []
    for method, path in (
        ("GET", f"/v1/tasks/{task['id']}"),
        ("DELETE", f"/v1/tasks/{task['id']}"),
        ("POST", f"/v1/tasks/{task['id']}/executions"),
        ("GET", f"/v1/executions/{execution['id']}"),
        ("GET", f"/v1/executions/{execution['id']}/steps"),
        ("POST", f"/v1/executions/{execution['id']}/cancel"),
    ):
        assert_error(other.request(method, path), 404, "not_found")
    assert api.get(f"/v1/executions/{execution['id']}").json()["status"] == "queued"


def test_every_route_needs_the_tasks_run_scope(api: TestClient, make_client: MakeClient) -> None:
    task = create_task(api, GUIDE_TRANSFORM)
    execution = api.post(f"/v1/tasks/{task['id']}/executions").json()
    reader = make_client(scopes=("secrets:read", "secrets:write", "audit:read"))
    for method, path, body in (
        ("POST", "/v1/tasks", GUIDE_TRANSFORM),
        ("GET", "/v1/tasks", None),
        ("GET", f"/v1/tasks/{task['id']}", None),
        ("DELETE", f"/v1/tasks/{task['id']}", None),
        ("POST", f"/v1/tasks/{task['id']}/executions", {}),
        ("GET", "/v1/executions", None),
        ("GET", f"/v1/executions/{execution['id']}", None),
        ("GET", f"/v1/executions/{execution['id']}/steps", None),
        ("POST", f"/v1/executions/{execution['id']}/cancel", None),
    ):
        error = assert_error(reader.request(method, path, json=body), 403, "forbidden")
        assert "tasks:run" in error["message"]
    runner = make_client(scopes=("tasks:run",))
    assert runner.post("/v1/tasks", json=GUIDE_TRANSFORM).status_code == 201
    refused = {(e["action"], e["outcome"]) for e in api.get("/v1/audit").json()["items"]}
    assert ("task.create", "forbidden") in refused
    assert ("task.execute", "forbidden") in refused
    assert_error(TestClient(api.app).get("/v1/tasks"), 401, "unauthorized")


# -- executions -----------------------------------------------------------------------------------
def test_execute_answers_a_queued_execution(api: TestClient) -> None:
    task = create_task(api, GUIDE_TRANSFORM)
    response = api.post(f"/v1/tasks/{task['id']}/executions", json={"input": {"q": [1, "two"]}})
    assert response.status_code == 201, response.text
    execution = response.json()
    assert set(execution) == EXECUTION_FIELDS
    assert execution["status"] == "queued"
    assert (execution["task_id"], execution["input"]) == (task["id"], {"q": [1, "two"]})
    assert (execution["output"], execution["error"]) == (None, None)
    assert api.get(f"/v1/executions/{execution['id']}").json() == execution
    assert api.get(f"/v1/executions/{execution['id']}/steps").json() == {"items": []}
    # no body at all is an execution without input
    bare = api.post(f"/v1/tasks/{task['id']}/executions")
    assert bare.status_code == 201
    assert bare.json()["input"] is None
    assert_error(
        api.post(f"/v1/tasks/{task['id']}/executions", json={"inputs": 1}),
        422,
        "validation_error",
        "body.inputs",
    )
    assert_error(api.post("/v1/tasks/nope/executions"), 404, "not_found")


def test_list_executions_newest_first_and_by_task(api: TestClient) -> None:
    first, second = create_task(api, GUIDE_TRANSFORM), create_task(api, GUIDE_OPENAI)
    runs = [
        api.post(f"/v1/tasks/{task['id']}/executions").json()["id"]
        for task in (first, second, first)
    ]
    listed = api.get("/v1/executions").json()
    assert [e["id"] for e in listed["items"]] == runs[::-1]
    assert listed["has_more"] is False
    of_first = api.get("/v1/executions", params={"task_id": first["id"], "limit": 1}).json()
    assert [e["id"] for e in of_first["items"]] == [runs[2]]
    assert of_first["has_more"] is True


def test_cancel_a_queued_execution_and_again(api: TestClient, services: Services) -> None:
    task = create_task(api, GUIDE_TRANSFORM)
    execution = api.post(f"/v1/tasks/{task['id']}/executions").json()
    cancelled = api.post(f"/v1/executions/{execution['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert api.post(f"/v1/executions/{execution['id']}/cancel").json()["status"] == "cancelled"
    audit = [e["action"] for e in api.get("/v1/audit").json()["items"]]
    assert audit.count("execution.cancel") == 1


def test_deleting_a_task_keeps_its_executions(api: TestClient) -> None:
    task = create_task(api, GUIDE_TRANSFORM)
    execution = api.post(f"/v1/tasks/{task['id']}/executions").json()
    api.delete(f"/v1/tasks/{task['id']}")
    assert api.get(f"/v1/executions/{execution['id']}").json()["status"] == "queued"


# -- the Python SDK sends these shapes --------------------------------------------------------
def test_the_sdk_speaks_this_api(api: TestClient) -> None:
    key = api.headers["authorization"].removeprefix("Bearer ")
    with Strongroom(api_key=key, base_url="http://testserver", http_client=api) as client:
        task = client.tasks.create(task=GUIDE_OPENAI)
        assert task.steps == GUIDE_OPENAI["steps"]
        again = client.tasks.create(steps=GUIDE_TRANSFORM["steps"], name="url")
        assert again.name == "url"
        assert [t.id for t in client.tasks.list().items] == [task.id, again.id]
        assert client.tasks.get(task.id).id == task.id
        execution = client.tasks.execute(task.id, input={"city": "Paris"})
        assert execution.status == "queued"
        assert client.executions.get(execution.id).input == {"city": "Paris"}
        assert client.executions.steps(execution.id).items == []
        assert [e.id for e in client.executions.list(task_id=task.id).items] == [execution.id]
        assert client.executions.cancel(execution.id).status == "cancelled"
        assert client.tasks.delete(again.id)["id"] == again.id
