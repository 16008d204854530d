"""Task definitions: what a task and its steps may say, checked once when the task is made.

A task is ``{name?, description?, steps: [...]}``; ``POST /v1/tasks`` takes it as is or
wrapped as ``{"task": {...}}`` (the product guide shows both). Steps:

- ``transform``: ``expression`` (required: any JSON value, usually one ``$ `` expression),
  ``input``, ``output``.
- ``tool_call``: ``tool`` and ``operation`` (required), ``arguments`` (an object),
  ``secret_name`` (the secret handed to the tool as its credential), ``input``, ``output``.
- ``set_secret``: ``name`` (the secret to give a new value) and ``value`` (required: a
  template giving text), ``input``, ``output``. The value is staged: later steps of the run
  read it as ``secrets.<name>``, and it becomes the secret's new version only when the
  whole run succeeds (see ``runner.py``). It is never shown.

``output`` names the step's result for later steps (``outputs.<name>``). ``input``, the
expression and the arguments are templates (see :mod:`.expressions`).

:func:`parse_task` returns the definition or raises ``ValidationFailed`` with one detail per
problem, located where it sits in the request body (``body.task.steps[0].arguments.
connection.host``). Every problem is found in one pass, so an author fixes them all at once.
:func:`compile_steps` turns stored steps back into compiled ones for a run (the expression
cache makes that cheap).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..._names import name_problem
from ..errors import Detail, ValidationFailed
from .expressions import InvalidTemplate, Template, compile_template
from .tools import REGISTRY

MAX_STEPS: Final = 100
NAME_MAX: Final = 200
DESCRIPTION_MAX: Final = 1000
TRANSFORM: Final = "transform"
TOOL_CALL: Final = "tool_call"
SET_SECRET: Final = "set_secret"  # noqa: S105 - a step kind's name, not a password
STEP_KINDS: Final = (TRANSFORM, TOOL_CALL, SET_SECRET)
_COMMON_FIELDS: Final = frozenset({"kind", "input", "output"})
STEP_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    TRANSFORM: _COMMON_FIELDS | {"expression"},
    TOOL_CALL: _COMMON_FIELDS | {"tool", "operation", "arguments", "secret_name"},
    SET_SECRET: _COMMON_FIELDS | {"name", "value"},
}
_TASK_FIELDS: Final = frozenset({"name", "description", "steps"})


@dataclass(frozen=True)
class CompiledStep:
    """One step with its templates compiled; what a run evaluates."""

    index: int
    kind: str
    input: Template | None
    expression: Template | None  # transform
    tool: str | None  # tool_call
    operation: str | None
    arguments: Template | None
    secret_name: str | None
    output: str | None
    target: str | None = None  # set_secret: the secret it gives a new value

    def templates(self) -> Iterator[Template]:
        for template in (self.input, self.expression, self.arguments):
            if template is not None:
                yield template

    @property
    def secret_refs(self) -> frozenset[str]:
        """Every secret the step reads: its expressions' and its ``secret_name``."""
        refs = frozenset().union(*(t.secret_refs for t in self.templates()))
        return refs | {self.secret_name} if self.secret_name else refs

    def secret_uses(self) -> Iterator[tuple[str, str]]:
        """``(location, secret name)`` for each place the step reads a secret."""
        if self.secret_name:
            yield f"steps[{self.index}].secret_name", self.secret_name
        for template in self.templates():
            for where, expression in template.expressions.items():
                for name in sorted(expression.secret_refs):
                    yield where, name


@dataclass(frozen=True)
class TaskDefinition:
    name: str | None
    description: str | None
    steps: list[dict[str, Any]]  # as given, to store and to show
    compiled: tuple[CompiledStep, ...]


class _Problems:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.details: list[Detail] = []

    def add(self, location: str, message: str) -> None:
        where = self.prefix + location if location else self.prefix.rstrip(".") or "body"
        self.details.append(Detail(where, message))


def task_body(body: Mapping[str, Any]) -> tuple[Any, str]:
    """The task inside a request body and where it sits: ``{"task": {...}}`` or the body."""
    if "task" in body:
        return body["task"], "body.task."
    return body, "body."


def parse_task(body: Mapping[str, Any], *, max_steps: int = MAX_STEPS) -> TaskDefinition:
    """The task a ``POST /v1/tasks`` body defines; ``ValidationFailed`` lists every problem.
    ``max_steps`` is the server's ``STRONGROOM_TASK_MAX_STEPS``."""
    task, prefix = task_body(body)
    problems = _Problems(prefix)
    if prefix == "body.task." and len(body) > 1:
        for key in sorted(set(body) - {"task"}):
            message = "give the task either inside 'task' or at the top level, not both"
            problems.details.append(Detail(f"body.{key}", message))
    if not isinstance(task, Mapping):
        problems.add("", "the task must be a JSON object with a 'steps' list")
        raise _failed(problems.details)
    for key in sorted(set(task) - _TASK_FIELDS):
        problems.add(key, "is not a field of a task (fields: name, description, steps)")
    name = _optional_text(task, "name", NAME_MAX, problems)
    description = _optional_text(task, "description", DESCRIPTION_MAX, problems)
    steps = task.get("steps")
    compiled: list[CompiledStep] = []
    if not isinstance(steps, list):
        problems.add("steps", "is required: a list of steps")
    elif not steps:
        problems.add("steps", "must hold at least one step")
    elif len(steps) > max_steps:
        problems.add(
            "steps", f"has {len(steps)} steps; at most {max_steps} (STRONGROOM_TASK_MAX_STEPS)"
        )
    else:
        outputs: dict[str, int] = {}
        for index, step in enumerate(steps):
            found = _check_step(index, step, problems)
            if found is not None:
                compiled.append(found)
                if found.output is not None:
                    if found.output in outputs:
                        problems.add(
                            f"steps[{index}].output",
                            f"output name {found.output!r} is already used by "
                            f"steps[{outputs[found.output]}]",
                        )
                    outputs.setdefault(found.output, index)
    if problems.details:
        raise _failed(problems.details)
    assert isinstance(steps, list)
    return TaskDefinition(name, description, [dict(s) for s in steps], tuple(compiled))


def compile_steps(steps: list[dict[str, Any]]) -> tuple[CompiledStep, ...]:
    """Stored steps compiled for a run (they were checked when the task was made)."""
    problems = _Problems("")
    compiled = []
    for index, step in enumerate(steps):
        found = _check_step(index, step, problems)
        if found is not None:
            compiled.append(found)
    if problems.details:
        raise _failed(problems.details)
    return tuple(compiled)


def _failed(details: list[Detail]) -> ValidationFailed:
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return ValidationFailed(f"{first.location}: {first.message}{more}", details)


def _optional_text(task: Mapping[str, Any], key: str, limit: int, problems: _Problems) -> Any:
    value = task.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(key, "must be a string or null")
        return None
    if len(value) > limit:
        problems.add(key, f"is longer than {limit} characters")
    return value


def _identifier(step: Mapping[str, Any], key: str, where: str, problems: _Problems) -> str | None:
    value = step.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(f"{where}.{key}", "must be a string")
        return None
    problem = name_problem(value)
    if problem:
        problems.add(f"{where}.{key}", problem.replace("name ", f"{key} ", 1))
        return None
    return value


def _template(
    step: Mapping[str, Any], key: str, where: str, problems: _Problems
) -> Template | None:
    if key not in step:
        return None
    try:
        template = compile_template(step[key], f"{where}.{key}")
    except InvalidTemplate as exc:
        for error in exc.errors:
            problems.add(error.location or f"{where}.{key}", error.message)
        return None
    for location, expression in template.expressions.items():
        for name in sorted(expression.secret_refs):
            problem = name_problem(name)
            if problem:
                problems.add(location, f"secrets[{name!r}]: not a secret name ({problem})")
    return template


def _check_step(index: int, step: Any, problems: _Problems) -> CompiledStep | None:
    where = f"steps[{index}]"
    if not isinstance(step, Mapping):
        problems.add(where, "a step must be a JSON object")
        return None
    kind = step.get("kind")
    if kind not in STEP_KINDS:
        message = "is required" if kind is None else "is not a known step kind"
        problems.add(f"{where}.kind", f"{message} (kinds: {', '.join(STEP_KINDS)})")
        return None
    for key in sorted(set(step) - STEP_FIELDS[kind]):
        fields = ", ".join(sorted(STEP_FIELDS[kind]))
        problems.add(f"{where}.{key}", f"is not a field of a {kind} step (fields: {fields})")
    before = len(problems.details)
    output = _identifier(step, "output", where, problems)
    input_template = _template(step, "input", where, problems)
    if kind == TRANSFORM:
        if "expression" not in step:
            problems.add(f"{where}.expression", "is required")
        expression = _template(step, "expression", where, problems)
        if len(problems.details) > before:
            return None
        return CompiledStep(index, kind, input_template, expression, None, None, None, None, output)
    if kind == SET_SECRET:
        for key in ("name", "value"):
            if key not in step:
                problems.add(f"{where}.{key}", "is required")
        target = _identifier(step, "name", where, problems)
        value = _template(step, "value", where, problems)
        if len(problems.details) > before:
            return None
        return CompiledStep(
            index, kind, input_template, value, None, None, None, None, output, target
        )
    tool, operation = step.get("tool"), step.get("operation")
    for key, value in (("tool", tool), ("operation", operation)):
        if not isinstance(value, str):
            problems.add(f"{where}.{key}", "is required: a string")
    arguments = step.get("arguments")
    if arguments is not None and not isinstance(arguments, Mapping):
        problems.add(f"{where}.arguments", "must be an object")
    elif isinstance(tool, str) and isinstance(operation, str):
        for problem in REGISTRY.validate(tool, operation, arguments):
            problems.add(f"{where}.{problem.location}", problem.message)
    arguments_template = _template(step, "arguments", where, problems)
    secret_name = _identifier(step, "secret_name", where, problems)
    if len(problems.details) > before:
        return None
    assert isinstance(tool, str)
    assert isinstance(operation, str)
    return CompiledStep(
        index,
        kind,
        input_template,
        None,
        tool,
        operation,
        arguments_template,
        secret_name,
        output,
    )
