"""Running an execution step by step: everything the engine does, without the engine.

The durable engine (:mod:`.engine`) calls :meth:`Runner.begin`, then
:meth:`Runner.run_step` for each index, then :meth:`Runner.finish`, and checkpoints only
what they return (a count, a status). Everything else lives in strongroom's own tables:

- Each call reads the execution afresh and is idempotent: a step already recorded as
  succeeded is not run again (after a crash, whatever the engine's checkpoints say), and
  an execution that is no longer running (cancelled, failed) runs no further step. So
  cancellation is checked between steps.
- A step's scope is built from the execution's input and the *full* results of the
  earlier steps, which are stored sealed by the keyring (associated data
  ``strongroom|step|v1|<tenant>|<execution>|<index>``) and opened here; they keep their
  taint, so a value derived from a secret stays known as such in later steps. The sealed
  results are wiped when the execution ends.
- Secrets are fetched lazily, per step: those the step's templates and ``secret_name``
  read, plus those the earlier results derive from (so that a later output that echoes
  them is still redacted). Each read goes through the keyring and is audited as
  ``secret.read`` with a detail naming the execution and the step.
- Every output, error and log line is redacted with a :class:`Redactor` of those secret
  values plus every secret-derived (tainted) expression result. A tool's own result is
  not tainted by the credential it was given (an answer is not derived from the key that
  authorised it), but it is redacted like everything else; and since an answer may quote
  what the tool was sent (an echo, an error page), the secrets a tool step read are
  recorded with its result and redacted, as values, from every later step too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .. import audit
from ..audit import Action
from ..crypto import IntegrityFailure, Keyring
from ..crypto.keyring import STEP_RESULT, step_result_context
from ..redact import NamedValue, Redactor, redacting
from ..storage.base import ExecutionRecord, StepRecord, Store
from .definitions import CompiledStep, compile_steps
from .expressions import ExpressionError, Rendered, Scope, Tainted
from .status import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from .tools import REGISTRY, Registry, ToolConfig, ToolContext, ToolError

log = logging.getLogger("strongroom.engine")

DEFAULT_STEP_TIMEOUT: Final = 300.0
GONE: Final = "gone"  # the execution does not exist (any more)


class StepFailed(Exception):
    """A step could not produce a result; ``message`` is shown (redacted) to the author."""

    def __init__(self, message: str, code: str = "step_failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class _Prior:
    """The results of the steps before the current one, as its scope sees them."""

    results: list[Tainted]
    outputs: dict[str, Tainted]
    sent: frozenset[str] = frozenset()  # secrets earlier tool steps were sent

    @property
    def taint(self) -> frozenset[str]:
        return frozenset().union(*(result.secrets for result in self.results))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# Texts inside a secret-derived container shorter than this are not registered as derived
# values: taint is conservative (a whole list built with one secret is tainted), and
# redacting every short word of it everywhere would make outputs unreadable.
MIN_DERIVED_LEAF: Final = 8


def _strings(value: Any) -> Iterable[str]:
    """The texts in a JSON-like value (its string values, not its keys)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _derived(value: Any, secrets: frozenset[str], clean: frozenset[str]) -> list[NamedValue]:
    """The values to redact as derived from ``secrets``: a whole text result, or the longer
    texts inside a container result; never a text found verbatim in data that holds no
    secret (``clean``: the run's input and definition, untainted results), which redacting
    would not hide."""
    if not secrets:
        return []
    if isinstance(value, str):
        texts = [value] if value.strip() else []
    else:
        texts = [text for text in _strings(value) if len(text.strip()) >= MIN_DERIVED_LEAF]
    return [(text, secrets) for text in texts if text not in clean]


class _StepRun:
    """One attempt at one step: the scope it builds and the redactor that grows with it."""

    def __init__(self, runner: Runner, execution: ExecutionRecord, step: CompiledStep) -> None:
        self.runner = runner
        self.execution = execution
        self.step = step
        self.redactor = Redactor()
        self.secrets: dict[str, str] = {}
        self.clean: frozenset[str] = frozenset()
        self.running: StepRecord | None = None  # recorded with the secrets' reads

    def learn(self, derived: Iterable[NamedValue]) -> None:
        self.redactor = self.redactor.with_values(derived)

    def learn_rendered(self, rendered: Rendered) -> None:
        for part in rendered.parts.values():
            self.learn(_derived(part.value, part.secrets, self.clean))

    def run(self, prior: _Prior) -> Tainted:
        step = self.step
        untainted = [r.value for r in prior.results if not r.secrets]
        sources = (self.execution.input, self.execution.steps, untainted)
        self.clean = frozenset(text for source in sources for text in _strings(source))
        for result in prior.results:
            self.learn(_derived(result.value, result.secrets, self.clean))
        self.secrets = self.runner.fetch_secrets(
            self.execution,
            step.index,
            required=step.secret_refs,
            for_redaction=prior.taint | prior.sent,
            running=self.running,
        )
        self.learn((value, name) for name, value in self.secrets.items())
        scope = Scope(
            secrets=self.secrets,
            input=self.execution.input,
            inputs=self.execution.input,
            outputs=prior.outputs,
            steps=prior.results,
            previous=prior.results[-1] if prior.results else None,
        )
        with redacting(self.redactor):
            if step.input is not None:
                rendered = step.input.evaluate(scope)
                self.learn_rendered(rendered)
                scope = Scope(
                    secrets=scope.secrets,
                    input=rendered.tainted(),
                    inputs=scope.inputs,
                    outputs=scope.outputs,
                    steps=scope.steps,
                    previous=scope.previous,
                )
            if step.expression is not None:
                rendered = step.expression.evaluate(scope)
                self.learn_rendered(rendered)
                return rendered.tainted()
            return self._call_tool(scope)

    def _call_tool(self, scope: Scope) -> Tainted:
        step = self.step
        assert step.tool is not None
        assert step.operation is not None
        arguments = None
        if step.arguments is not None:
            rendered = step.arguments.evaluate(scope)
            self.learn_rendered(rendered)
            arguments = rendered.value
        credential = self.secrets[step.secret_name] if step.secret_name else None
        context = ToolContext(
            self.runner.tools, deadline=time.monotonic() + self.runner.step_timeout
        )
        with redacting(self.redactor):
            result = self.runner.registry.call(
                step.tool, step.operation, arguments, credential, context
            )
        return Tainted(result)


class Runner:
    """The steps of executions, run against strongroom's store and keyring."""

    def __init__(
        self,
        store: Store,
        keyring: Keyring,
        tools: ToolConfig,
        *,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        registry: Registry = REGISTRY,
    ) -> None:
        self.store = store
        self.keyring = keyring
        self.tools = tools
        self.step_timeout = step_timeout
        self.registry = registry

    # -- the three calls the engine makes -------------------------------------------------
    def begin(self, execution_id: str) -> int:
        """Mark a queued execution running; its number of steps, or 0 if it is not to run
        (cancelled while queued, already ended, or gone). A running one is being resumed."""
        with self.store.write() as tx:
            execution = tx.execution_by_id(execution_id, for_update=True)
            if execution is None:
                return 0
            if execution.status == QUEUED:
                tx.set_execution_status(execution.id, RUNNING, _now(), only_from=(QUEUED,))
            elif execution.status != RUNNING:
                return 0
        log.info("execution started", extra={"execution_id": execution_id})
        return len(execution.steps)

    def run_step(self, execution_id: str, index: int) -> str:
        """Run step ``index`` unless it already succeeded; the execution's status after it
        (``succeeded`` for the step means: go on), or ``gone``."""
        with self.store.read() as tx:
            execution = tx.execution_by_id(execution_id)
            records = {r.index: r for r in tx.execution_steps(execution_id)}
        if execution is None:
            return GONE
        if execution.status != RUNNING:
            return execution.status
        done = records.get(index)
        if done is not None and done.status == SUCCEEDED and done.sealed is not None:
            return SUCCEEDED  # finished before a crash: its result is kept, sealed
        steps = compile_steps(execution.steps)
        step = steps[index]
        started = _now()
        attempt = _StepRun(self, execution, step)
        attempt.running = StepRecord(execution.id, index, step.kind, RUNNING, started_at=started)
        clock = time.perf_counter()
        try:
            prior = self._prior(execution, steps, records, index)
            result = attempt.run(prior)
            # A tool's answer may quote what it was sent: later steps redact those secrets.
            sent = {"sent": sorted(step.secret_refs)} if step.tool and step.secret_refs else {}
            payload = json.dumps(
                {"value": result.value, "secrets": sorted(result.secrets), **sent},
                separators=(",", ":"),
                ensure_ascii=False,
                allow_nan=False,  # the answer is JSON, which has no NaN or Infinity
            ).encode()
        except StepFailed as failure:
            return self._fail(attempt, started, failure.message, failure.code)
        except ToolError as error:
            return self._fail(attempt, started, error.message, error.code)
        except ExpressionError as error:
            return self._fail(attempt, started, str(error), "expression_error")
        except (TypeError, ValueError):
            return self._fail(attempt, started, "the step's result is not JSON", "bad_result")
        except Exception:
            with redacting(attempt.redactor):
                log.exception("step crashed", extra={"execution_id": execution.id, "step": index})
            return self._fail(attempt, started, "internal error while running the step", "internal")
        output = attempt.redactor.redact_json(result.value)
        with self.store.write() as tx:
            current = tx.execution_by_id(execution.id, for_update=True)
            running = current is not None and current.status == RUNNING
            sealed = None
            if running:
                context = step_result_context(execution.tenant_id, execution.id, index)
                sealed = self.keyring.seal_blob(tx, STEP_RESULT, context, payload)
            tx.save_step(
                StepRecord(
                    execution.id, index, step.kind, SUCCEEDED, output, None, started, _now(), sealed
                )
            )
        log.info(
            "step succeeded",
            extra={
                "execution_id": execution.id,
                "step": index,
                "duration_ms": round((time.perf_counter() - clock) * 1000, 2),
            },
        )
        if current is None:
            return GONE
        return SUCCEEDED if running else current.status

    def finish(self, execution_id: str) -> str:
        """End the execution: succeeded with the last step's output if every step did;
        wipe the sealed step results whatever the status. Returns the final status."""
        with self.store.write() as tx:
            execution = tx.execution_by_id(execution_id, for_update=True)
            if execution is None:
                return GONE
            status = execution.status
            if status == RUNNING:
                records = tx.execution_steps(execution.id)
                complete = len(records) == len(execution.steps) and all(
                    r.status == SUCCEEDED for r in records
                )
                if complete:
                    output = records[-1].output if records else None
                    tx.set_execution_status(
                        execution.id, SUCCEEDED, _now(), only_from=(RUNNING,), output=output
                    )
                    status = SUCCEEDED
                else:
                    error = {"step": len(records), "message": "the execution stopped early"}
                    tx.set_execution_status(
                        execution.id, FAILED, _now(), only_from=(RUNNING,), error=error
                    )
                    status = FAILED
            tx.wipe_step_results(execution.id)
        log.info("execution finished", extra={"execution_id": execution_id, "status": status})
        return status

    def abandon(self, execution_id: str, message: str) -> None:
        """Fail an execution the engine gave up on (its message must hold no value)."""
        with self.store.write() as tx:
            tx.set_execution_status(
                execution_id,
                FAILED,
                _now(),
                only_from=(QUEUED, RUNNING),
                error={"step": None, "message": message},
            )
            tx.wipe_step_results(execution_id)

    # -- parts ----------------------------------------------------------------------------
    def _prior(
        self,
        execution: ExecutionRecord,
        steps: tuple[CompiledStep, ...],
        records: Mapping[int, StepRecord],
        index: int,
    ) -> _Prior:
        results: list[Tainted] = []
        outputs: dict[str, Tainted] = {}
        sent: set[str] = set()
        for earlier in steps[:index]:
            record = records.get(earlier.index)
            if record is None or record.status != SUCCEEDED or record.sealed is None:
                raise StepFailed(f"the result of steps[{earlier.index}] is not available")
            context = step_result_context(execution.tenant_id, execution.id, earlier.index)
            try:
                plain = self.keyring.open_blob(record.sealed, STEP_RESULT, context)
            except IntegrityFailure:
                raise StepFailed(
                    f"the sealed result of steps[{earlier.index}] failed authentication"
                ) from None
            stored = json.loads(plain)
            result = Tainted(stored["value"], frozenset(stored["secrets"]))
            sent.update(stored.get("sent", ()))
            results.append(result)
            if earlier.output is not None:
                outputs[earlier.output] = result
        return _Prior(results, outputs, frozenset(sent))

    def fetch_secrets(
        self,
        execution: ExecutionRecord,
        index: int,
        *,
        required: frozenset[str],
        for_redaction: frozenset[str] = frozenset(),
        running: StepRecord | None = None,
    ) -> dict[str, str]:
        """Decrypt the named secrets of the execution's tenant, each read audited, in the
        transaction that records the step as ``running`` (one transaction fewer per step).

        ``required`` ones must exist; ``for_redaction`` ones (read by earlier steps) are
        skipped if they have gone since.
        """
        values: dict[str, str] = {}
        missing: list[str] = []
        damaged: list[str] = []
        detail = f"execution {execution.id} step {index}"
        names = sorted(required | for_redaction)
        if not names and running is None:
            return values
        with self.store.write() as tx:
            if running is not None:
                tx.save_step(running)
            for name in names:
                secret = tx.secret_by_name(execution.tenant_id, name)
                stored = tx.version(secret.id, secret.version) if secret else None
                outcome = "success"
                if secret is None or stored is None:
                    outcome = "not_found"
                    if name in required:
                        missing.append(name)
                else:
                    try:
                        values[name] = self.keyring.open(stored)
                    except IntegrityFailure:
                        outcome = "internal_error"
                        damaged.append(name)
                audit.record(
                    tx,
                    audit.event(
                        None,
                        Action.READ,
                        outcome,
                        secret_name=name,
                        secret_id=secret.id if secret else None,
                        detail=detail,
                        tenant_id=execution.tenant_id,
                        key_id=execution.created_by,
                    ),
                )
        if missing:
            listed = ", ".join(repr(name) for name in missing)
            raise StepFailed(f"secret {listed} does not exist", "secret_not_found")
        if damaged:
            listed = ", ".join(repr(name) for name in damaged)
            raise StepFailed(f"the stored ciphertext of secret {listed} failed authentication")
        return values

    def _fail(self, attempt: _StepRun, started: dt.datetime, message: str, code: str) -> str:
        execution, index = attempt.execution, attempt.step.index
        message = attempt.redactor.redact(message)
        now = _now()
        with self.store.write() as tx:
            tx.save_step(
                StepRecord(
                    execution.id,
                    index,
                    attempt.step.kind,
                    FAILED,
                    None,
                    {"code": code, "message": message},
                    started,
                    now,
                )
            )
            tx.set_execution_status(
                execution.id,
                FAILED,
                now,
                only_from=(RUNNING,),
                error={"step": index, "code": code, "message": message},
            )
            tx.wipe_step_results(execution.id)
            current = tx.execution_by_id(execution.id)
        with redacting(attempt.redactor):
            log.info(
                "step failed",
                extra={"execution_id": execution.id, "step": index, "code": code},
            )
        return current.status if current is not None else CANCELLED
