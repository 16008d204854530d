"""Tools as sinks with a rule, usage policies at run time, and the bounds on a run.

In process (the runner without the durable engine, as tests/test_tasks_runner.py plays
it), on SQLite and PostgreSQL, with a real OpenAI-compatible upstream on 127.0.0.1 that
records what it receives, so "refused before any connection" is checked where it matters:
at the upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from strongroom.server.auth import Caller
from strongroom.server.errors import ValidationFailed
from strongroom.server.redact import marker
from strongroom.server.services import Services
from strongroom.server.storage import AuditFilter
from strongroom.server.tasks.limits import TaskLimits
from strongroom.server.tasks.runner import Runner
from strongroom.server.tasks.service import TaskService

from .support import canary, find_leaks
from .tasks_fixtures import execution, run_all, start, steps_of, tools_for
from .upstream import Upstream, openai_upstream


@pytest.fixture
def other() -> Iterator[Upstream]:
    """A second upstream: where a secret must not go."""
    with openai_upstream() as found:
        yield found


def chat(content: str, **more: Any) -> dict[str, Any]:
    return {
        "kind": "tool_call",
        "tool": "openai",
        "operation": "chat",
        "arguments": {"model": "m", "messages": [{"role": "user", "content": content}], **more},
        **({"secret_name": more.pop("secret_name")} if "secret_name" in more else {}),
    }


def host_port(upstream: Upstream) -> str:
    return upstream.base_url.split("//")[1].split("/")[0]


def test_a_secret_sent_as_data_marks_the_answer_and_every_later_use_of_it(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    key = canary("k")
    services.secrets.create(caller, "k", key)
    steps = [
        chat("$ f'echo: {lower(secrets.k)}'"),  # the upstream answers with what it got
        {"kind": "transform", "expression": "$ upper(_['content'])"},  # undoes lower()
        {"kind": "transform", "expression": "$ len(steps[0]['response']['choices'])"},
    ]
    execution_id = start(services, caller, steps)
    assert run_all(runner, execution_id) == "succeeded"
    outputs = [r.output for r in steps_of(services, execution_id)]
    assert outputs == ["[REDACTED:k]"] * 3
    assert upstream.seen[0].body["messages"][0]["content"] == f"echo: {key.lower()}"
    for text in (key, key.lower(), key.upper()):
        assert find_leaks(text, json.dumps(outputs).encode()) == []


def test_a_credential_authorises_and_an_answer_quoting_it_is_scrubbed_where_it_stands(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    key = canary("sk")
    services.secrets.create(caller, "openai_api_key", key)
    upstream.reply = f"your key is {key}"
    steps = [
        chat("hello", secret_name="openai_api_key"),
        # the answer is not marked by its credential: later steps read it, but the
        # quoted key is gone from it before any step can transform it
        {"kind": "transform", "expression": "$ lower(_['content'])"},
    ]
    execution_id = start(services, caller, steps)
    assert run_all(runner, execution_id) == "succeeded"
    outputs = [r.output for r in steps_of(services, execution_id)]
    assert outputs[0]["content"] == "your key is [REDACTED:openai_api_key]"
    assert outputs[1] == "your key is [redacted:openai_api_key]"
    assert upstream.seen[0].headers["authorization"] == f"Bearer {key}"


def test_an_error_of_a_call_that_carried_a_secret_as_data_is_withheld(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    key = canary("k")
    services.secrets.create(caller, "k", key)
    # the upstream's 400 quotes the prompt, which holds the secret reversed
    step = chat("$ secrets.k[::-1]", base_url=upstream.base_url.replace("/v1", "/fail/v1"))
    execution_id = start(services, caller, [step])
    assert run_all(runner, execution_id) == "failed"
    error = execution(services, caller, execution_id).error
    assert error["code"] == "upstream_error"
    assert error["message"] == (
        "openai/chat failed (upstream_error, HTTP 400); the message is withheld because the call "
        "carried values derived from secrets: [REDACTED:k]"
    )
    assert find_leaks(key[::-1], json.dumps(error).encode()) == []


def test_allowed_tools_refuses_before_the_tool_runs_and_is_audited(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    services.secrets.create(caller, "k", canary("k"), policy={"allowed_tools": ["http/request"]})
    execution_id = start(services, caller, [chat("$ lower(secrets.k)")])
    assert run_all(runner, execution_id) == "failed"
    error = execution(services, caller, execution_id).error
    assert error["code"] == "policy_refused"
    assert "'k'" in error["message"] and "openai/chat" in error["message"]
    assert upstream.seen == []
    with services.store.read() as tx:
        uses = tx.audit.page(
            caller.tenant_id, limit=10, offset=0, where=AuditFilter(action="secret.use")
        ).items
    assert [(e.secret_name, e.outcome, e.key_id) for e in uses] == [
        ("k", "forbidden", caller.key_id)
    ]


def test_allowed_destinations_refuses_every_other_host_before_connecting(
    services: Services, caller: Caller, upstream: Upstream, other: Upstream
) -> None:
    allowed = host_port(upstream)
    services.secrets.create(caller, "k", canary("k"), policy={"allowed_destinations": [allowed]})
    runner = Runner(services.store, services.barrier, tools_for(upstream))
    cases = [
        chat("hi", secret_name="k", base_url=other.base_url),  # as the credential
        chat("$ lower(secrets.k)", base_url=other.base_url),  # derived, as data
        {  # in a header, to a port the policy does not name
            "kind": "tool_call",
            "tool": "http",
            "operation": "request",
            "arguments": {"url": other.base_url, "headers": {"X-Key": "$ secrets.k"}},
        },
    ]
    for step in cases:
        execution_id = start(services, caller, [step])
        assert run_all(runner, execution_id) == "failed"
        error = execution(services, caller, execution_id).error
        assert error["code"] == "policy_refused", error
        assert host_port(other) not in error["message"]
    assert other.seen == []
    # the listed destination gets it; its answer is marked all the same (it may say back
    # any function of what it was sent: the policy limits where a value goes, not that)
    execution_id = start(services, caller, [chat("$ f'hello {len(secrets.k)}'")])
    assert run_all(runner, execution_id) == "succeeded"
    [record] = steps_of(services, execution_id)
    assert record.output == marker("k")
    assert len(upstream.seen) == 1


def test_a_value_returned_unmarked_cannot_be_sent_on_to_a_host_its_policy_does_not_list(
    services: Services, caller: Caller, upstream: Upstream, other: Upstream
) -> None:
    """The second line at the sink: a data position holding a secret's value counts as
    a use of it even when the value lost its mark (here: the execution's own input)."""
    key = canary("k")
    services.secrets.create(
        caller, "k", key, policy={"allowed_destinations": [host_port(upstream)]}
    )
    runner = Runner(services.store, services.barrier, tools_for(upstream))
    steps = [
        {"kind": "transform", "expression": "$ len(secrets.k)"},  # the step reads k
        chat("$ inputs['smuggled']", base_url=other.base_url),
    ]
    execution_id = start(services, caller, steps, input={"smuggled": key})
    assert run_all(runner, execution_id) == "failed"
    assert execution(services, caller, execution_id).error["code"] == "policy_refused"
    assert other.seen == []


def test_a_result_over_the_step_limit_fails_the_step_and_stores_nothing(
    services: Services, caller: Caller, upstream: Upstream
) -> None:
    limits = TaskLimits(max_result_bytes=10_000, max_execution_bytes=20_000)
    runner = Runner(services.store, services.barrier, tools_for(upstream), limits=limits)
    services.secrets.create(caller, "k", canary("k"))
    big = start(services, caller, [{"kind": "transform", "expression": "$ 'x' * 20000"}])
    assert run_all(runner, big) == "failed"
    error = execution(services, caller, big).error
    assert error["code"] == "result_too_large"
    assert "STRONGROOM_TASK_MAX_RESULT_BYTES" in error["message"]
    assert steps_of(services, big)[0].output is None
    # each step fits (its sealed result and its shown output: ~12 KB), two do not
    steps = [{"kind": "transform", "expression": "$ 'y' * 6000"} for _ in range(5)]
    many = start(services, caller, steps)
    assert run_all(runner, many) == "failed"
    error = execution(services, caller, many).error
    assert (error["code"], error["step"]) == ("execution_too_large", 1)


def test_a_task_with_more_steps_than_the_setting_is_refused_when_created(
    services: Services, caller: Caller
) -> None:
    tasks = TaskService(services.store, limits=TaskLimits(max_steps=3))
    step = {"kind": "transform", "expression": "$ 1"}
    tasks.create_task(caller, {"steps": [step] * 3})
    with pytest.raises(ValidationFailed) as refused:
        tasks.create_task(caller, {"steps": [step] * 4})
    assert "STRONGROOM_TASK_MAX_STEPS" in str(refused.value)


def test_a_secret_too_long_to_scan_for_marks_the_answer_it_authorised(
    services: Services, caller: Caller, upstream: Upstream
) -> None:
    limits = TaskLimits(redact_max_value_chars=64)
    runner = Runner(services.store, services.barrier, tools_for(upstream), limits=limits)
    services.secrets.create(caller, "long_key", canary("long") * 4)
    execution_id = start(services, caller, [chat("hi", secret_name="long_key")])
    assert run_all(runner, execution_id) == "succeeded"
    assert steps_of(services, execution_id)[0].output == "[REDACTED:long_key]"


def test_an_error_never_quotes_part_of_a_credential_that_is_a_url(
    services: Services, caller: Caller, runner: Runner
) -> None:
    """Tools quote the host of a URL they could not reach, lower-cased: a fragment of a
    URL credential that exact-value redaction cannot know. Such errors are withheld."""
    host = "Qz" + canary("host").replace("-", "") + ".invalid"
    services.secrets.create(caller, "db_url", f"postgresql://u:p@{host}:5432/db")
    services.secrets.create(caller, "hook", f"https://{host}/services/T0/B0/x")
    steps = {
        "db": {
            "kind": "tool_call",
            "tool": "database",
            "operation": "query",
            "secret_name": "db_url",
        },
        "hook": {
            "kind": "tool_call",
            "tool": "http",
            "operation": "request",
            "arguments": {"url": "$ secrets.hook", "method": "POST"},
        },
    }
    for name, step in steps.items():
        execution_id = start(services, caller, [step])
        assert run_all(runner, execution_id) == "failed"
        error = execution(services, caller, execution_id).error
        assert error["message"].endswith(f"[REDACTED:{name if name == 'hook' else 'db_url'}]")
        for form in (host, host.lower(), host.lower()[2:30]):
            assert form not in json.dumps(error), (name, error)


def test_a_host_credential_is_redacted_from_errors_in_the_case_tools_print_it(
    services: Services, caller: Caller, runner: Runner
) -> None:
    host = "Qz" + canary("host").replace("-", "") + ".invalid"
    services.secrets.create(caller, "db_host", host)
    step = {
        "kind": "tool_call",
        "tool": "database",
        "operation": "query",
        "arguments": {"connection": {"host": "$ secrets.db_host", "user": "postgres"}},
    }
    execution_id = start(services, caller, [step])
    assert run_all(runner, execution_id) == "failed"
    error = execution(services, caller, execution_id).error
    assert "[REDACTED:db_host]" in error["message"]  # the reason is kept, the host is not
    assert host.lower() not in json.dumps(error)


def test_a_secret_deleted_mid_run_is_still_recognised_where_it_is_sent(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    """The execution's redactor still knows a value an earlier step read; the secret has
    no policy any more, so sending it counts as a plain data use (not a crash)."""
    key = canary("k")
    services.secrets.create(caller, "k", key)
    steps = [{"kind": "transform", "expression": "$ len(secrets.k)"}, chat("$ inputs['v']")]
    execution_id = start(services, caller, steps, input={"v": key})
    runner.begin(execution_id)
    assert runner.run_step(execution_id, 0) == "succeeded"
    services.secrets.delete(caller, "k")
    assert runner.run_step(execution_id, 1) == "succeeded"
    assert runner.finish(execution_id) == "succeeded"
    assert steps_of(services, execution_id)[1].output == "[REDACTED:k]"
