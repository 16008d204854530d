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
  ``strongroom|step|v1|<tenant>|<execution>|<index>``) with the taint of each part
  (:func:`.containment.pack`), so a value derived from a secret stays marked as such in
  every later step.
- Secrets are fetched lazily, per step: those the step reads, plus those the earlier
  results derive from or earlier tool steps were sent (for the redactor). Each read goes
  through the keyring and is audited as ``secret.read`` naming the execution and step.
- What a run shows is decided by taint (:mod:`.containment`): a secret-derived value is
  replaced whole by ``[REDACTED:<names>]`` in outputs, and an error raised after a
  secret-derived value was involved says only that it failed. A tool call is checked
  against the usage policy of every secret it carries before it connects anywhere, and
  its answer is tainted by the secrets it was sent as data (see ``answer_taint``) and by
  those any run ever sent as data to a place it reached (:mod:`.held`).
- Exact-value redaction is the second line: one :class:`Redactor` of the run's secret
  values per execution (built once, extended as steps read more secrets) scrubs every
  output, error and log line, and every tool answer that quotes a value back.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .. import trail
from ..auth import Scope as KeyScope
from ..auth import grants
from ..crypto import Barrier, IntegrityFailure
from ..policy import DEFAULT_POLICY, SecretPolicy
from ..redact import Redactor, marker, redacting
from ..secret_values import Purpose, Refusal, reveal, value_context
from ..storage import ApiKeyRecord, ExecutionRecord, StepRecord, Store, StoredVersion, Transaction
from ..trail import Action, Actor
from . import containment
from .containment import SecretUses
from .definitions import SET_SECRET, CompiledStep, compile_steps
from .expressions import ExpressionError, Scope, Tainted
from .held import HeldSecrets
from .limits import DEFAULT_LIMITS, TaskLimits
from .sealing import step_result_context
from .status import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED
from .tools import REGISTRY, Registry, ToolConfig, ToolContext, ToolError
from .tools.context import Destination, DestinationGuard
from .tools.errors import PolicyRefused

log = logging.getLogger("strongroom.engine")

DEFAULT_STEP_TIMEOUT: Final = 300.0
GONE: Final = "gone"  # the execution does not exist (any more)
# Executions whose redactor a process keeps between steps (the oldest is dropped first;
# a dropped one is rebuilt from the secrets the next step fetches anyway).
_REDACTORS_KEPT: Final = 256


class StepFailed(Exception):
    """A step could not produce a result; ``message`` is shown (redacted) to the author."""

    def __init__(self, message: str, code: str = "step_failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class _Prior:
    """The results of the steps before the current one, as its scope sees them (with
    their marks), and what they cost in storage so far."""

    results: list[Any]
    outputs: dict[str, Any]
    sent: frozenset[str] = frozenset()  # secrets earlier tool steps were sent
    stored_bytes: int = 0
    # New values earlier set_secret steps staged, by secret name: this run reads them as
    # secrets.<name>. Never in a repr.
    staged: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def taint(self) -> frozenset[str]:
        return frozenset().union(*(containment.taint_of(result) for result in self.results))


@dataclass(frozen=True)
class Fetched:
    """Secrets one step fetched: their values and their usage policies, by name."""

    values: dict[str, str]
    policies: dict[str, SecretPolicy]

    def policy(self, name: str) -> SecretPolicy:
        """The policy of ``name``; the default for a secret deleted since an earlier step
        read it (the execution's redactor still knows its value)."""
        return self.policies.get(name, DEFAULT_POLICY)

    def __repr__(self) -> str:  # values never in a traceback
        return f"Fetched(names={sorted(self.values)!r})"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _listed(names: Iterable[str]) -> str:
    return ", ".join(repr(name) for name in sorted(names))


class _StepRun:
    """One attempt at one step: its secrets, its redactor, and what its tool call carried."""

    def __init__(self, runner: Runner, execution: ExecutionRecord, step: CompiledStep) -> None:
        self.runner = runner
        self.execution = execution
        self.step = step
        self.redactor = Redactor()
        self.fetched = Fetched({}, {})
        self.running: StepRecord | None = None  # recorded with the secrets' reads
        # A tool step's answer (and error) is tainted by these: see containment.answer_taint
        self.answer_taint: frozenset[str] = frozenset()
        # ... and its error by these too: a credential that is a URL, whose parts (a host,
        # an origin) the tools' own messages quote
        self.error_taint: frozenset[str] = frozenset()
        # The secrets a later set_secret step of the run sets: this step's result may be
        # where the new value comes from, so it is marked as theirs (see Runner.run_step).
        self.presumed: frozenset[str] = frozenset()
        self.staged: tuple[str, str] | None = None  # a set_secret step's (name, value)

    def run(self, prior: _Prior) -> Any:
        step = self.step
        fetched = self.runner.fetch_secrets(
            self.execution,
            step.index,
            required=step.secret_refs,
            for_redaction=prior.taint | prior.sent | prior.staged.keys(),
            running=self.running,
        )
        # The run reads what it staged itself: a later step can verify the new value.
        self.fetched = Fetched({**fetched.values, **prior.staged}, fetched.policies)
        self.redactor = self.runner.redactor_for(self.execution.id, self.fetched.values)
        scope = Scope(
            secrets=self.fetched.values,
            input=self.execution.input,
            inputs=self.execution.input,
            outputs=prior.outputs,
            steps=prior.results,
            previous=prior.results[-1] if prior.results else None,
        )
        with redacting(self.redactor):
            if step.input is not None:
                scope = dataclasses.replace(scope, input=step.input.evaluate(scope).result)
            if step.kind == SET_SECRET:
                return self._stage(scope)
            if step.expression is not None:
                return step.expression.evaluate(scope).result
            return self._call_tool(scope)

    def _stage(self, scope: Scope) -> Any:
        """Evaluate a set_secret step's value and stage it, after the checks a write by
        the run's key needs and the check that no value moves to a looser policy than the
        secrets it derives from (else a task could launder a use-only value into a
        readable secret). The result names the secret; the value goes only into the
        sealed payload."""
        step, runner = self.step, self.runner
        assert step.target is not None
        assert step.expression is not None
        evaluated = step.expression.evaluate(scope).result
        value, derived = containment.plain(evaluated), containment.taint_of(evaluated)
        if not isinstance(value, str) or not value:
            raise StepFailed("the value of a set_secret step must be non-empty text", "bad_value")
        if len(value.encode()) > runner.max_value_bytes:
            raise StepFailed(
                "the value is larger than a secret may be (STRONGROOM_MAX_VALUE_BYTES)",
                "value_too_large",
            )
        target_policy = runner.check_set_secret(self.execution, step.target)
        looser = sorted(
            name
            for name in derived - {step.target}
            if self.fetched.policy(name).loosenings(target_policy)
        )
        if looser:
            raise StepFailed(
                f"the value derives from secret {_listed(looser)}, whose usage policy is "
                f"tighter than secret {step.target!r}'s: storing it there would loosen it",
                "policy_refused",
            )
        self.staged = (step.target, value)
        self.redactor = runner.redactor_for(self.execution.id, {step.target: value})
        return {"secret": step.target, "staged": True}

    def _call_tool(self, scope: Scope) -> Any:
        step, runner = self.step, self.runner
        assert step.tool is not None
        assert step.operation is not None
        rendered = step.arguments.evaluate(scope) if step.arguments is not None else None
        registry = runner.registry
        operation = registry.operation(step.tool, step.operation)
        uses = containment.classify(
            step.secret_name,
            step.arguments,
            rendered,
            operation.credentials if operation else (),
            operation.echoed if operation else (),
        )
        # Second line at the sink: a secret's value that reached a data position without
        # its mark (it came back in an earlier answer, say) counts as sent as data.
        if uses.data_values:
            scanned = json.dumps(uses.data_values, ensure_ascii=False, default=str)
            uses = uses.with_data(self.redactor.names_in(scanned))
        policies = {name: self.fetched.policy(name) for name in uses.all}
        unscannable = runner.unscannable(self.fetched.values)
        self.answer_taint = containment.answer_taint(uses, unscannable)
        values = self.fetched.values
        self.error_taint = (
            self.answer_taint
            | self.presumed
            | {name for name in uses.credential if "://" in values.get(name, "")}
        )
        self._check_tool(uses, policies)
        held = HeldSecrets(
            runner.store,
            runner.barrier,
            self.execution.tenant_id,
            sent=uses.data,
            restricted=frozenset(n for n in uses.data if policies[n].restricts_destinations),
            stores=operation is not None and operation.stores,
        )
        context = ToolContext(
            runner.tools,
            deadline=time.monotonic() + runner.step_timeout,
            tenant=runner.tenant_name(self.execution.tenant_id),
            destination_guard=_destination_guard(uses, policies),
            on_reach=held.reach,
        )
        credential = self.fetched.values[step.secret_name] if step.secret_name else None
        try:
            with redacting(self.redactor):
                answer = registry.call(
                    step.tool,
                    step.operation,
                    rendered.value if rendered else None,
                    credential,
                    context,
                )
        finally:
            # What the places reached hold, whoever sent it there, marks the answer (and
            # the error) as much as what this call sent.
            elsewhere = held.held()
            self.answer_taint |= elsewhere
            self.error_taint |= elsewhere
        # An answer that quotes a value it was sent (an echo, an error page) is scrubbed
        # where it stands, so no later step can carry the value on unmarked.
        answer = self.redactor.redact_json(answer)
        return Tainted(answer, self.answer_taint) if self.answer_taint else answer

    def _check_tool(self, uses: SecretUses, policies: Mapping[str, SecretPolicy]) -> None:
        step = self.step
        assert step.tool is not None
        assert step.operation is not None
        refused = [
            name for name in uses.all if not policies[name].allows_tool(step.tool, step.operation)
        ]
        if refused:
            raise PolicyRefused(
                f"the usage policy of secret {_listed(refused)} does not allow the tool "
                f"{step.tool}/{step.operation} (allowed_tools)",
                refused,
            )

    def error_message(self, error: ToolError) -> str:
        """What a tool's error may say: nothing of its text when the call carried a secret
        as data (an upstream may quote what it was sent, transformed or not) or a URL as a
        credential (messages quote a URL's origin, a part the redactor cannot know)."""
        if self.error_taint and not isinstance(error, PolicyRefused):
            status = f", HTTP {error.status}" if error.status is not None else ""
            return (
                f"{self.step.tool}/{self.step.operation} failed ({error.code}{status}); the "
                "message is withheld because the call carried values derived from secrets: "
                f"{marker(self.error_taint)}"
            )
        return error.message


def _destination_guard(uses: SecretUses, policies: Mapping[str, SecretPolicy]) -> DestinationGuard:
    """The check a tool makes before reaching each destination: every secret the call
    carries, however, must have a policy that lists it (or no destination list)."""
    restricted = {
        name: policies[name] for name in uses.all if policies[name].restricts_destinations
    }

    def guard(destination: Destination) -> None:
        refused = sorted(
            name
            for name, policy in restricted.items()
            if destination.host is None
            or not policy.allows_destination(destination.host, destination.port)
        )
        if refused:
            # The destination is not named: it may itself be derived from a secret.
            raise PolicyRefused(
                f"the usage policy of secret {_listed(refused)} does not allow sending it to "
                "this destination (allowed_destinations)",
                refused,
            )

    return guard


class Runner:
    """The steps of executions, run against strongroom's store and barrier."""

    def __init__(
        self,
        store: Store,
        barrier: Barrier,
        tools: ToolConfig,
        *,
        step_timeout: float = DEFAULT_STEP_TIMEOUT,
        registry: Registry = REGISTRY,
        limits: TaskLimits = DEFAULT_LIMITS,
        max_value_bytes: int = 64 * 1024,
        observe_step: Callable[[str, float], None] | None = None,
    ) -> None:
        self.store = store
        # Told each step's outcome and duration (the metrics' step latency).
        self.observe_step = observe_step
        self.max_value_bytes = max_value_bytes  # what a set_secret step may store
        self.barrier = barrier
        self.keyring = barrier.keyring
        self.tools = tools
        self.step_timeout = step_timeout
        self.registry = registry
        self.limits = limits
        self._redactors: collections.OrderedDict[str, Redactor] = collections.OrderedDict()
        self._tenants: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- the three calls the engine makes -------------------------------------------------
    def begin(self, execution_id: str) -> int:
        """Mark a queued execution running; its number of steps, or 0 if it is not to run
        (cancelled while queued, already ended, or gone). A running one is being resumed."""
        with self.store.write() as tx:
            execution = tx.executions.by_id(execution_id, for_update=True)
            if execution is None:
                return 0
            if execution.status == QUEUED:
                tx.executions.set_status(execution.id, RUNNING, _now(), only_from=(QUEUED,))
            elif execution.status != RUNNING:
                return 0
        log.info("execution started", extra={"execution_id": execution_id})
        return len(execution.steps)

    def run_step(self, execution_id: str, index: int) -> str:
        """Run step ``index`` unless it already succeeded; the execution's status after it
        (``succeeded`` for the step means: go on), or ``gone``."""
        started = time.perf_counter()
        status = self._run_step(execution_id, index)
        if self.observe_step is not None:
            self.observe_step(status, time.perf_counter() - started)
        return status

    def _run_step(self, execution_id: str, index: int) -> str:
        with self.store.read() as tx:
            execution = tx.executions.by_id(execution_id)
            records = {r.index: r for r in tx.executions.steps(execution_id)}
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
        attempt.presumed = frozenset(
            later.target
            for later in steps[index + 1 :]
            if later.kind == SET_SECRET and later.target
        )
        clock = time.perf_counter()
        try:
            prior = self._prior(execution, steps, records, index)
            result = attempt.run(prior)
            if attempt.presumed:
                # Whatever comes before a set_secret may hold the new value (a provider's
                # answer that creates a key): shown and carried as that secret's.
                marks = containment.taint_of(result) | attempt.presumed
                result = Tainted(containment.plain(result), marks)
            # A tool's answer may quote what it was sent: later steps redact those secrets.
            sent: dict[str, Any] = {}
            if step.tool and step.secret_refs:
                sent["sent"] = sorted(step.secret_refs)
            if attempt.staged is not None:
                sent["staged"] = list(attempt.staged)
            payload = containment.pack(result, **sent)
            output = attempt.redactor.redact_json(containment.shown(result))
            self._check_size(prior, payload, output)
        except StepFailed as failure:
            return self._fail(attempt, started, failure.message, failure.code)
        except ToolError as error:
            return self._fail(
                attempt, started, attempt.error_message(error), error.code, error=error
            )
        except ExpressionError as error:
            return self._fail(attempt, started, str(error), "expression_error")
        except (TypeError, ValueError):
            return self._fail(attempt, started, "the step's result is not JSON", "bad_result")
        except Exception:
            with redacting(attempt.redactor):
                log.exception("step crashed", extra={"execution_id": execution.id, "step": index})
            return self._fail(attempt, started, "internal error while running the step", "internal")
        with self.store.write() as tx:
            current = tx.executions.by_id(execution.id, for_update=True)
            running = current is not None and current.status == RUNNING
            sealed = None
            if running:
                context = step_result_context(execution.tenant_id, execution.id, index)
                sealed = self.keyring.encrypt(context, payload, tx.keyring.active_kek_id())
            tx.executions.save_step(
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

    def _check_size(self, prior: _Prior, payload: bytes, output: Any) -> None:
        """Refuse a result over the step's or the execution's storage budget.

        The refusal names the cap, never the size: a result's size may depend on a
        secret (``'y' * ord(secrets.k[5])``), and the byte count would spell it out.
        """
        limits = self.limits
        if len(payload) > limits.max_result_bytes:
            raise StepFailed(
                f"the step's result is larger than the {limits.max_result_bytes} bytes a step "
                "may store (STRONGROOM_TASK_MAX_RESULT_BYTES)",
                "result_too_large",
            )
        shown = len(json.dumps(output, ensure_ascii=False, default=str))
        total = prior.stored_bytes + len(payload) + shown
        if total > limits.max_execution_bytes:
            raise StepFailed(
                f"the execution would store more than the {limits.max_execution_bytes} bytes "
                "an execution may store (STRONGROOM_TASK_MAX_EXECUTION_BYTES)",
                "execution_too_large",
            )

    def finish(self, execution_id: str) -> str:
        """End the execution: succeeded with the last step's output if every step did;
        wipe the sealed step results whatever the status. Returns the final status."""
        with self.store.write() as tx:
            execution = tx.executions.by_id(execution_id, for_update=True)
            if execution is None:
                return GONE
            status = execution.status
            stored: set[str] = set()
            if status == RUNNING:
                records = tx.executions.steps(execution.id)
                complete = len(records) == len(execution.steps) and all(
                    r.status == SUCCEEDED for r in records
                )
                problem, stored = (
                    self._store_staged(tx, execution, records) if complete else (None, set())
                )
                if complete and problem is None:
                    output = records[-1].output if records else None
                    tx.executions.set_status(
                        execution.id, SUCCEEDED, _now(), only_from=(RUNNING,), output=output
                    )
                    status = SUCCEEDED
                else:
                    error: dict[str, Any] = {
                        "step": None if complete else len(records),
                        "message": problem or "the execution stopped early",
                    }
                    tx.executions.set_status(
                        execution.id, FAILED, _now(), only_from=(RUNNING,), error=error
                    )
                    status = FAILED
            if execution.rotation_of is not None and status in (SUCCEEDED, FAILED, CANCELLED):
                self._record_rotation(tx, execution, status, execution.rotation_of in stored)
            tx.executions.wipe_step_results(execution.id)
        self._forget(execution_id)
        log.info("execution finished", extra={"execution_id": execution_id, "status": status})
        return status

    # -- set_secret: staged in a step, stored when the whole run succeeds --------------------
    def _key_for_write(self, tx: Transaction, execution: ExecutionRecord) -> ApiKeyRecord:
        """The run's key as it is now, if it may still write secrets; else StepFailed."""
        key = tx.apikeys.by_id(execution.created_by) if execution.created_by else None
        if key is None:
            raise StepFailed(
                "a set_secret step needs a run started by an API key with 'secrets:write'",
                "forbidden",
            )
        if key.ended(_now()):
            raise StepFailed(
                "the API key that started this execution has been revoked or has expired: "
                "its executions may set no secret",
                "key_revoked",
            )
        if not grants(key.scopes, KeyScope.SECRETS_WRITE):
            raise StepFailed(
                "the API key that started this execution lacks 'secrets:write': it may set "
                "no secret",
                "forbidden",
            )
        return key

    def check_set_secret(self, execution: ExecutionRecord, name: str) -> SecretPolicy:
        """The policy of secret ``name``, if the run's key may give it a new value now."""
        with self.store.read() as tx:
            key = self._key_for_write(tx, execution)
            secret = tx.secrets.by_name(execution.tenant_id, name)
        if secret is None or (key.rule is not None and not key.rule.admits(name, secret.metadata)):
            raise StepFailed(
                f"secret {name!r} does not exist or is outside the reach of the API key that "
                "started this execution: a set_secret step gives an existing secret a new value",
                "secret_not_found",
            )
        return secret.policy

    def _store_staged(
        self, tx: Transaction, execution: ExecutionRecord, records: list[StepRecord]
    ) -> tuple[str | None, set[str]]:
        """Store every value the run's set_secret steps staged, as new versions, in the
        transaction that marks the run succeeded: the ids of the secrets given one. Or,
        before writing anything, say why none can be stored: then the run fails and every
        secret keeps its current version."""
        staged: dict[str, str] = {}
        for record in records:
            if record.kind != SET_SECRET or record.sealed is None:
                continue
            context = step_result_context(execution.tenant_id, execution.id, record.index)
            try:
                payload = json.loads(self.keyring.decrypt(context, record.sealed))
            except IntegrityFailure:
                return f"the sealed result of steps[{record.index}] failed authentication", set()
            name, value = payload["staged"]
            staged[name] = value  # a later step's value for the same secret wins
        if not staged:
            return None, set()
        try:
            key = self._key_for_write(tx, execution)
        except StepFailed as refused:
            return refused.message, set()
        targets = []
        for name in staged:
            secret = tx.secrets.by_name(execution.tenant_id, name, for_update=True)
            if secret is None or (
                key.rule is not None and not key.rule.admits(name, secret.metadata)
            ):
                why = (
                    f"secret {name!r} no longer exists (or is out of the key's reach): "
                    "no value was stored"
                )
                return why, set()
            targets.append(secret)
        now = _now()
        actor = Actor.on_behalf(execution.tenant_id, key.id, key.name)
        for secret in targets:
            changed = replace(secret, version=secret.version + 1, updated_at=now)
            if execution.rotation_of == secret.id:
                changed = replace(changed, last_rotated_at=now)
            sealed = self.keyring.encrypt(
                value_context(secret.tenant_id, secret.id, changed.version),
                staged[secret.name].encode(),
                tx.keyring.active_kek_id(),
            )
            tx.secrets.update(changed)
            tx.secrets.insert_version(
                StoredVersion(secret.tenant_id, secret.id, changed.version, sealed), now, key.id
            )
            trail.record(
                tx,
                trail.event(
                    actor,
                    Action.UPDATE,
                    "success",
                    secret_name=secret.name,
                    secret_id=secret.id,
                    detail=f"set by execution {execution.id}; version {changed.version}",
                ),
            )
        return None, {secret.id for secret in targets}

    def _record_rotation(
        self, tx: Transaction, execution: ExecutionRecord, status: str, rotated: bool
    ) -> None:
        """Record how a scheduled rotation ended; a failed one says why (its error is
        stored redacted), and the secret keeps its current version."""
        assert execution.rotation_of is not None
        secret = tx.secrets.by_id(execution.tenant_id, execution.rotation_of)
        ended = tx.executions.by_id(execution.id)
        if status == SUCCEEDED and rotated:
            outcome, detail = "success", f"execution {execution.id}"
        else:
            why = (
                (ended.error or {}).get("message")
                if ended and isinstance(ended.error, dict)
                else None
            )
            if status == SUCCEEDED:
                why = "the rotation task set no new value for this secret"
            outcome = "failed"
            detail = (
                f"execution {execution.id} {status}: {why or status}; the current version is kept"
            )
        trail.record(
            tx,
            trail.event(
                Actor.on_behalf(execution.tenant_id, execution.created_by),
                Action.ROTATE,
                outcome,
                secret_name=secret.name if secret else None,
                secret_id=execution.rotation_of,
                detail=detail,
            ),
        )

    def abandon(self, execution_id: str, message: str) -> None:
        """Fail an execution the engine gave up on (its message must hold no value)."""
        with self.store.write() as tx:
            tx.executions.set_status(
                execution_id,
                FAILED,
                _now(),
                only_from=(QUEUED, RUNNING),
                error={"step": None, "message": message},
            )
            tx.executions.wipe_step_results(execution_id)
        self._forget(execution_id)

    # -- parts ----------------------------------------------------------------------------
    def _prior(
        self,
        execution: ExecutionRecord,
        steps: tuple[CompiledStep, ...],
        records: Mapping[int, StepRecord],
        index: int,
    ) -> _Prior:
        results: list[Any] = []
        outputs: dict[str, Any] = {}
        sent: set[str] = set()
        staged: dict[str, str] = {}
        stored_bytes = 0
        for earlier in steps[:index]:
            record = records.get(earlier.index)
            if record is None or record.status != SUCCEEDED or record.sealed is None:
                raise StepFailed(f"the result of steps[{earlier.index}] is not available")
            context = step_result_context(execution.tenant_id, execution.id, earlier.index)
            try:
                plain = self.keyring.decrypt(context, record.sealed)
            except IntegrityFailure:
                raise StepFailed(
                    f"the sealed result of steps[{earlier.index}] failed authentication"
                ) from None
            stored = json.loads(plain)
            result = containment.unpack(stored)
            sent.update(stored.get("sent", ()))
            if "staged" in stored:
                name, value = stored["staged"]
                staged[name] = value
            stored_bytes += len(plain) + len(json.dumps(record.output, ensure_ascii=False))
            results.append(result)
            if earlier.output is not None:
                outputs[earlier.output] = result
        return _Prior(results, outputs, frozenset(sent), stored_bytes, staged)

    def fetch_secrets(
        self,
        execution: ExecutionRecord,
        index: int,
        *,
        required: frozenset[str],
        for_redaction: frozenset[str] = frozenset(),
        running: StepRecord | None = None,
    ) -> Fetched:
        """Decrypt the named secrets of the execution's tenant, each read audited, in the
        transaction that records the step as ``running`` (one transaction fewer per step),
        with their usage policies as they are now.

        ``required`` ones must exist; ``for_redaction`` ones (read by earlier steps) are
        skipped if they have gone since.
        """
        values: dict[str, str] = {}
        policies: dict[str, SecretPolicy] = {}
        missing: list[str] = []
        expired: list[str] = []
        damaged: list[str] = []
        detail = f"execution {execution.id} step {index}"
        names = sorted(required | for_redaction)
        if not names and running is None:
            return Fetched(values, policies)
        with self.store.write() as tx:
            if running is not None:
                tx.executions.save_step(running)
            # The key as it is now, not as it was when the run began: a key narrowed,
            # revoked or expired since may use only what it may use now.
            key = tx.apikeys.by_id(execution.created_by) if execution.created_by else None
            actor = Actor.on_behalf(
                execution.tenant_id, execution.created_by, key.name if key else None
            )
            key_gone = key is not None and key.ended(_now())
            rule = key.rule if key is not None else None
            for name in [] if key_gone else names:
                found = reveal(
                    tx,
                    self.keyring,
                    actor,
                    name,
                    purpose=Purpose.USE,
                    detail=detail,
                    rule=rule,
                    # One an earlier step used is still scrubbed from this step's output.
                    allow_expired=name not in required,
                )
                if found.refusal in (Refusal.MISSING, Refusal.NO_VERSION, Refusal.OUT_OF_REACH):
                    if name in required:
                        missing.append(name)
                    continue
                if found.refusal is Refusal.EXPIRED:
                    expired.append(name)
                    continue
                assert found.secret is not None
                policies[name] = found.secret.policy
                if found.value is None:
                    damaged.append(name)
                else:
                    values[name] = found.value
        if key_gone and names:
            raise StepFailed(
                "the API key that started this execution has been revoked or has expired: "
                "its executions may use no secret",
                "key_revoked",
            )
        if missing:
            listed = ", ".join(repr(name) for name in missing)
            if rule is None:
                raise StepFailed(f"secret {listed} does not exist", "secret_not_found")
            # One message for both, as the API answers a scoped key: whether a secret
            # outside the key's rule exists is not the run's to learn.
            raise StepFailed(
                f"secret {listed} does not exist or is outside the reach of the API key "
                "that started this execution",
                "secret_not_found",
            )
        if expired:
            listed = ", ".join(repr(name) for name in expired)
            raise StepFailed(
                f"secret {listed} has expired: an expired secret is not used", "secret_expired"
            )
        if damaged:
            listed = ", ".join(repr(name) for name in damaged)
            raise StepFailed(f"the stored ciphertext of secret {listed} failed authentication")
        return Fetched(values, policies)

    def redactor_for(self, execution_id: str, values: Mapping[str, str]) -> Redactor:
        """The execution's redactor, extended with ``values`` (built once per execution in
        this process; a value too long to compile is left to taint alone)."""
        cap = self.limits.redact_max_value_chars
        wanted = [(value, name) for name, value in values.items() if len(value) <= cap]
        with self._lock:
            redactor = self._redactors.pop(execution_id, None) or Redactor()
            redactor = redactor.with_values(wanted)
            self._redactors[execution_id] = redactor
            while len(self._redactors) > _REDACTORS_KEPT:
                self._redactors.popitem(last=False)
        return redactor

    def unscannable(self, values: Mapping[str, str]) -> frozenset[str]:
        """The secrets too long for the redactor to look for (see ``redactor_for``)."""
        cap = self.limits.redact_max_value_chars
        return frozenset(name for name, value in values.items() if len(value) > cap)

    def _forget(self, execution_id: str) -> None:
        with self._lock:
            self._redactors.pop(execution_id, None)

    def tenant_name(self, tenant_id: str) -> str | None:
        """The tenant's name (tools keep a tenant's files apart by it); names never change."""
        name = self._tenants.get(tenant_id)
        if name is None:
            with self.store.read() as tx:
                tenant = tx.apikeys.tenant_by_id(tenant_id)
            if tenant is None:
                return None
            name = self._tenants[tenant_id] = tenant.name
        return name

    def _fail(
        self,
        attempt: _StepRun,
        started: dt.datetime,
        message: str,
        code: str,
        *,
        error: ToolError | None = None,
    ) -> str:
        execution, index = attempt.execution, attempt.step.index
        message = attempt.redactor.redact(message)
        now = _now()
        with self.store.write() as tx:
            if isinstance(error, PolicyRefused):
                for name in error.secrets:
                    trail.record(
                        tx,
                        trail.event(
                            Actor.on_behalf(execution.tenant_id, execution.created_by),
                            Action.USE,
                            "forbidden",
                            secret_name=name,
                            detail=f"execution {execution.id} step {index}: "
                            f"{attempt.step.tool}/{attempt.step.operation}",
                        ),
                    )
            tx.executions.save_step(
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
            tx.executions.set_status(
                execution.id,
                FAILED,
                now,
                only_from=(RUNNING,),
                error={"step": index, "code": code, "message": message},
            )
            tx.executions.wipe_step_results(execution.id)
            current = tx.executions.by_id(execution.id)
        self._forget(execution.id)
        with redacting(attempt.redactor):
            log.info(
                "step failed",
                extra={"execution_id": execution.id, "step": index, "code": code},
            )
        return current.status if current is not None else CANCELLED
