"""The step runner without the durable engine, on SQLite and PostgreSQL.

The engine only calls ``begin``, ``run_step`` and ``finish`` and checkpoints what they
return; here a test plays the engine (and its crashes), so scopes, chaining, redaction,
audit, sealing, idempotence and cancellation are pinned down in process. Tools talk to a
local OpenAI-compatible upstream on 127.0.0.1.
"""

from __future__ import annotations

import json

import pytest

from strongroom.server.auth import Caller
from strongroom.server.crypto import IntegrityFailure
from strongroom.server.crypto.rotation import rotate
from strongroom.server.services import Services
from strongroom.server.storage import AuditFilter
from strongroom.server.tasks.runner import Runner
from strongroom.server.tasks.sealing import step_result_context

from .support import canary, find_leaks
from .tasks_fixtures import execution, run_all, start, steps_of
from .upstream import Upstream, at

URL_STEP = {
    "kind": "transform",
    "expression": "$ f'https://api.example.com/v1?api_key={secrets.api_key}&query={input}'",
    "input": "search query",
    "output": "api_url",
}


def test_the_guides_transform_is_stored_redacted(
    services: Services, caller: Caller, runner: Runner
) -> None:
    key = canary("api")
    services.secrets.create(caller, "api_key", key)
    execution_id = start(services, caller, [URL_STEP])
    assert run_all(runner, execution_id) == "succeeded"
    done = execution(services, caller, execution_id)
    assert done.output == "[REDACTED:api_key]"
    [step] = steps_of(services, execution_id)
    assert (step.status, step.output, step.error) == ("succeeded", "[REDACTED:api_key]", None)
    assert step.sealed is None  # wiped when the execution ended
    with services.store.read() as tx:
        reads = tx.audit.page(
            caller.tenant_id, limit=10, offset=0, where=AuditFilter(action="secret.read")
        ).items
    assert [(e.secret_name, e.outcome, e.detail) for e in reads] == [
        ("api_key", "success", f"execution {execution_id} step 0")
    ]


def test_outputs_chain_through_outputs_previous_steps_and_inputs(
    services: Services, caller: Caller, runner: Runner
) -> None:
    services.secrets.create(caller, "api_key", canary("api"))
    steps = [
        URL_STEP,
        {
            "kind": "transform",
            "expression": {
                "length": "$ len(outputs.api_url)",
                "same": "$ _ == steps[0]",
                "city": "$ inputs['city']",
            },
        },
        {"kind": "transform", "input": "$ inputs['city']", "expression": "$ upper(input)"},
        {"kind": "transform", "expression": ["$ steps[1]['city']", "$ _", "$ outputs.api_url"]},
    ]
    execution_id = start(services, caller, steps, input={"city": "Paris"})
    assert run_all(runner, execution_id) == "succeeded"
    outputs = [s.output for s in steps_of(services, execution_id)]
    # each slot derived from the secret is hidden whole (a length, a comparison); the
    # others stay readable, and reading a clean slot of a partly secret result is clean
    assert outputs[1] == {
        "length": "[REDACTED:api_key]",
        "same": "[REDACTED:api_key]",
        "city": "Paris",
    }
    assert outputs[2] == "PARIS"
    # the URL is secret-derived wherever it travels
    assert outputs[3] == ["Paris", "PARIS", "[REDACTED:api_key]"]
    assert execution(services, caller, execution_id).output == outputs[3]


def test_openai_step_sends_the_secret_and_redacts_echoes(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    key = canary("sk")
    services.secrets.create(caller, "openai_api_key", key)
    steps = [
        {
            "kind": "tool_call",
            "tool": "openai",
            "operation": "chat",
            "arguments": {
                "model": "gpt-4",
                "messages": [{"role": "user", "content": "What's the weather like?"}],
            },
            "secret_name": "openai_api_key",
            "output": "weather",
        },
        {
            "kind": "tool_call",
            "tool": "openai",
            "operation": "chat",
            "arguments": {
                "model": "gpt-4",
                "messages": [
                    {"role": "user", "content": "$ 'echo: key ' + secrets.openai_api_key"}
                ],
            },
            "secret_name": "openai_api_key",
        },
        {"kind": "transform", "expression": "$ outputs.weather['content']"},
    ]
    execution_id = start(services, caller, steps)
    assert run_all(runner, execution_id) == "succeeded"
    assert [r.headers["authorization"] for r in upstream.seen] == [f"Bearer {key}"] * 2
    first, second, third = steps_of(services, execution_id)
    assert first.output["content"] == "Sunny and 21 degrees in Paris."
    # the prompt built from the key sends it as data: the whole answer is marked, while
    # the first answer, which the key only authorised, is not
    assert second.output == "[REDACTED:openai_api_key]"
    assert third.output == "Sunny and 21 degrees in Paris."
    stored = json.dumps([s.output for s in (first, second, third)]).encode()
    assert find_leaks(key, stored) == []


def test_a_tool_answer_quoting_what_it_was_sent_is_redacted_in_later_steps(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    """A tool's answer to a call that sent a secret as data (here: in the prompt) may be
    derived from it (an echo, an error page): it is marked, so a later step that passes
    it on shows only the marker."""
    key = canary("sk")
    services.secrets.create(caller, "openai_api_key", key)
    steps = [
        {
            "kind": "tool_call",
            "tool": "openai",
            "operation": "chat",
            "arguments": {
                "model": "gpt-4",
                "messages": [{"role": "user", "content": "$ 'echo: ' + secrets.openai_api_key"}],
            },
            "secret_name": "openai_api_key",
            "output": "chat",
        },
        {"kind": "transform", "expression": "$ outputs.chat['content']"},
    ]
    execution_id = start(services, caller, steps)
    assert run_all(runner, execution_id) == "succeeded"
    assert upstream.seen[0].body["messages"][0]["content"] == f"echo: {key}"
    assert execution(services, caller, execution_id).output == "[REDACTED:openai_api_key]"
    stored = json.dumps([s.output for s in steps_of(services, execution_id)]).encode()
    assert find_leaks(key, stored) == []
    with services.store.read() as tx:
        reads = tx.audit.page(
            caller.tenant_id, limit=10, offset=0, where=AuditFilter(action="secret.read")
        ).items
    # the later step read the secret to redact it, and that read is audited
    assert f"execution {execution_id} step 1" in {e.detail for e in reads}


def test_a_failing_step_fails_the_execution_with_its_index_and_a_redacted_message(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    key = canary("api")
    services.secrets.create(caller, "api_key", key)
    steps = [
        URL_STEP,
        {
            "kind": "tool_call",
            "tool": "openai",
            "operation": "chat",
            "arguments": {
                "model": "m",
                "base_url": at(upstream, "fail"),
                "messages": [{"role": "user", "content": "$ outputs.api_url"}],
            },
        },
        {"kind": "transform", "expression": "$ 'never'"},
    ]
    execution_id = start(services, caller, steps)
    assert run_all(runner, execution_id) == "failed"
    # the upstream quoted the secret-derived URL back in its error
    assert key in upstream.seen[0].body["messages"][0]["content"]
    done = execution(services, caller, execution_id)
    assert done.error["step"] == 1
    assert done.error["code"] == "upstream_error"
    # the call carried a secret-derived value as data: the upstream's text is withheld
    assert done.error["message"] == (
        "openai/chat failed (upstream_error, HTTP 400); the message is withheld because the call "
        "carried values derived from secrets: [REDACTED:api_key]"
    )
    assert find_leaks(key, json.dumps(done.error).encode()) == []
    records = steps_of(services, execution_id)
    assert [r.status for r in records] == ["succeeded", "failed"]
    assert records[1].error == {"code": "upstream_error", "message": done.error["message"]}
    assert all(r.sealed is None for r in records)


def test_expression_errors_and_missing_secrets_fail_the_step(
    services: Services, caller: Caller, runner: Runner
) -> None:
    services.secrets.create(caller, "pin", "0000-secret-pin")
    failing = start(services, caller, [{"kind": "transform", "expression": "$ int(secrets.pin)"}])
    assert run_all(runner, failing) == "failed"
    error = execution(services, caller, failing).error
    # why int() failed would say something about the value: only that it failed is said
    assert error == {
        "step": 0,
        "code": "expression_error",
        "message": "steps[0].expression: the expression failed on a value derived from "
        "secrets (pin); the reason is withheld because it could describe the value",
    }
    missing = start(services, caller, [{"kind": "transform", "expression": "$ secrets.gone"}])
    assert run_all(runner, missing) == "failed"
    assert execution(services, caller, missing).error["message"] == "secret 'gone' does not exist"


def test_a_finished_step_is_not_run_again_after_a_crash(
    services: Services, caller: Caller, runner: Runner, upstream: Upstream
) -> None:
    key = canary("sk")
    services.secrets.create(caller, "openai_api_key", key)
    services.secrets.create(caller, "api_key", canary("api"))
    chat = {
        "kind": "tool_call",
        "tool": "openai",
        "operation": "chat",
        "arguments": {"model": "m", "messages": [{"role": "user", "content": "hello"}]},
        "secret_name": "openai_api_key",
    }
    steps = [URL_STEP, chat, {"kind": "transform", "expression": ["$ outputs.api_url", "$ _"]}]
    execution_id = start(services, caller, steps)
    assert runner.begin(execution_id) == 3
    assert runner.run_step(execution_id, 0) == "succeeded"
    assert runner.run_step(execution_id, 1) == "succeeded"
    # a new process replays from the start: nothing finished runs twice
    resumed = Runner(services.store, services.barrier, runner.tools)
    assert resumed.begin(execution_id) == 3
    assert resumed.run_step(execution_id, 0) == "succeeded"
    assert resumed.run_step(execution_id, 1) == "succeeded"
    assert len(upstream.seen) == 1
    assert resumed.run_step(execution_id, 2) == "succeeded"
    assert resumed.finish(execution_id) == "succeeded"
    output = execution(services, caller, execution_id).output
    assert output[0] == "[REDACTED:api_key]"
    assert output[1]["content"] == upstream.reply


def test_step_results_are_sealed_bound_to_their_row_and_wiped_at_the_end(
    services: Services, caller: Caller, runner: Runner
) -> None:
    key = canary("api")
    services.secrets.create(caller, "api_key", key)
    execution_id = start(services, caller, [URL_STEP, {"kind": "transform", "expression": "$ 1"}])
    runner.begin(execution_id)
    runner.run_step(execution_id, 0)
    [record] = steps_of(services, execution_id)
    assert record.sealed is not None
    assert find_leaks(key, record.sealed.ciphertext + record.sealed.wrapped_dek) == []
    context = step_result_context(caller.tenant_id, execution_id, 0)
    opened = json.loads(services.barrier.keyring.decrypt(context, record.sealed))
    # the whole value is marked, at the root of the result
    assert opened == {"value": opened["value"], "taint": [[[], ["api_key"]]]}
    assert key in opened["value"]
    moved = step_result_context(caller.tenant_id, execution_id, 1)  # to another index
    with pytest.raises(IntegrityFailure):
        services.barrier.keyring.decrypt(moved, record.sealed)
    # a KEK rotation rewraps the running execution's results too
    report = rotate(services.store, services.barrier)
    assert report.retired_kek_ids == [1]
    with services.store.read() as tx:
        assert tx.keyring.sealed_under([1], 10) == []
    assert runner.run_step(execution_id, 1) == "succeeded"
    assert runner.finish(execution_id) == "succeeded"
    assert all(r.sealed is None for r in steps_of(services, execution_id))


def test_cancel_is_checked_between_steps(
    services: Services, caller: Caller, runner: Runner
) -> None:
    services.secrets.create(caller, "api_key", canary("api"))
    execution_id = start(services, caller, [URL_STEP, {"kind": "transform", "expression": "$ 2"}])
    runner.begin(execution_id)
    runner.run_step(execution_id, 0)
    assert services.tasks.cancel(caller, execution_id).status == "cancelled"
    assert runner.run_step(execution_id, 1) == "cancelled"
    assert runner.finish(execution_id) == "cancelled"
    records = steps_of(services, execution_id)
    assert [r.index for r in records] == [0]
    assert records[0].sealed is None
    # a queued execution that was cancelled never starts
    queued = start(services, caller, [URL_STEP])
    services.tasks.cancel(caller, queued)
    assert runner.begin(queued) == 0
    assert runner.finish(queued) == "cancelled"
    assert steps_of(services, queued) == []


def test_a_deleted_secret_used_earlier_is_still_redacted_when_resumed(
    services: Services, caller: Caller, runner: Runner
) -> None:
    key = canary("api")
    services.secrets.create(caller, "api_key", key)
    steps = [URL_STEP, {"kind": "transform", "expression": ["$ outputs.api_url"]}]
    execution_id = start(services, caller, steps)
    runner.begin(execution_id)
    runner.run_step(execution_id, 0)
    services.secrets.delete(caller, "api_key")
    assert runner.run_step(execution_id, 1) == "succeeded"
    assert runner.finish(execution_id) == "succeeded"
    assert execution(services, caller, execution_id).output == ["[REDACTED:api_key]"]


def test_log_lines_during_a_step_are_redacted_tracebacks_included() -> None:
    """configure_logging puts a RedactingFilter on the handler; the JSON formatter prints
    the traceback the filter formatted (and redacted) once it has dropped ``exc_info``."""
    import io
    import logging

    from strongroom.server.logs import configure_logging
    from strongroom.server.redact import Redactor, redacting

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    key = canary("sk")
    try:
        with redacting(Redactor.from_secrets({"api_key": key})):
            try:
                raise RuntimeError(f"upstream said {key}")
            except RuntimeError:
                logging.getLogger("strongroom.test").exception("call to %s failed", key)
        logging.getLogger("strongroom.test").info("after the step: %s", "plain")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "call to [REDACTED:api_key] failed"
    assert "RuntimeError: upstream said [REDACTED:api_key]" in first["exception"]
    assert find_leaks(key, stream.getvalue().encode()) == []
    assert second["message"] == "after the step: plain"


def test_a_result_that_is_not_json_fails_the_step(
    services: Services, caller: Caller, runner: Runner
) -> None:
    execution_id = start(services, caller, [{"kind": "transform", "expression": "$ float('inf')"}])
    assert run_all(runner, execution_id) == "failed"
    assert execution(services, caller, execution_id).error["code"] == "bad_result"
