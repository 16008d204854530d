"""The tool interface: named operations, their arguments' specifications, and calls.

A task step ``{"kind": "tool_call", "tool": T, "operation": O, "arguments": A,
"secret_name": S}`` meets this module twice:

- **At task creation** the engine calls ``registry.validate(T, O, A)``. ``A`` is the
  arguments as written, so an expression (``expressions.is_expression``) has a value
  only known at run time: it stands for "some value" and passes every type check.
  The answer is a list of :class:`Problem`, one per bad argument, with a location relative
  to the step (``"tool"``, ``"operation"``, ``"arguments.connection.host"``); the engine
  prefixes ``steps[i].``. Messages name arguments and never repeat a value.
- **At run time** the engine evaluates ``A`` and calls
  ``registry.call(T, O, evaluated, credential, context)`` where ``credential`` is the
  plaintext of secret ``S`` (``None`` without one). The arguments are checked again, now
  with real types (an expression may have produced a number where a string belongs), then
  the operation runs synchronously, bounded by its own timeouts and by
  ``context.deadline``. It returns a JSON-able value (the step's result) or raises
  :class:`ToolError`.

Arguments and results are checked here; what a call may raise is in :mod:`.errors`, what
it is given besides its arguments in :mod:`.context`, and which tools exist (and the
settings each declares) in :mod:`.registry`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from ..expressions import is_expression
from .config import ToolSettings
from .context import ToolContext
from .errors import InvalidArguments, Problem, ToolError

JSON: TypeAlias = "bool | int | float | str | list[JSON] | dict[str, JSON] | None"

# -- argument specifications ---------------------------------------------------------------

Kind = Literal["string", "integer", "number", "boolean", "object", "array", "null"]

_ARTICLE = {"integer": "an integer", "object": "an object", "array": "an array"}


def _kind_of(value: object) -> Kind | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return None


def _fits(kind: Kind | None, kinds: tuple[Kind, ...]) -> bool:
    # an integer is a number too; a float with no fraction is not an integer
    return kind in kinds or (kind == "integer" and "number" in kinds)


@dataclass(frozen=True)
class Arg:
    """What one argument may be. No ``kinds`` means any JSON value.

    ``fields`` describes an object's known keys (others are problems unless ``open``);
    ``values`` describes every item of an array, or every value of an object that has no
    ``fields`` (a map such as HTTP headers). ``choices`` compare case-insensitively.
    """

    kinds: tuple[Kind, ...] = ()
    required: bool = False
    fields: Mapping[str, Arg] | None = None
    open: bool = False
    values: Arg | None = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def check(self, value: object, location: str, *, run_time: bool) -> list[Problem]:
        """Problems of ``value`` at ``location``; before run time expressions fit anything."""
        if not run_time and is_expression(value):
            return []
        kind = _kind_of(value)
        if self.kinds and not _fits(kind, self.kinds):
            names = [_ARTICLE.get(k, f"a {k}") for k in self.kinds]
            return [Problem(location, f"must be {' or '.join(names)}")]
        if isinstance(value, str) and self.choices and not self._chosen(value):
            return [Problem(location, f"must be one of {', '.join(self.choices)}")]
        if kind in ("integer", "number"):
            return self._check_range(value, location)
        if isinstance(value, Mapping):
            return self._check_object(value, location, run_time=run_time)
        if isinstance(value, list | tuple) and self.values is not None:
            problems: list[Problem] = []
            for index, item in enumerate(value):
                problems += self.values.check(item, f"{location}[{index}]", run_time=run_time)
            return problems
        return []

    def _chosen(self, value: str) -> bool:
        return value.casefold() in {c.casefold() for c in self.choices}

    def _check_range(self, value: object, location: str) -> list[Problem]:
        assert isinstance(value, int | float)
        if isinstance(value, float) and not math.isfinite(value):
            return [Problem(location, "must be a finite number")]
        if self.minimum is not None and value < self.minimum:
            return [Problem(location, f"must be at least {self.minimum:g}")]
        if self.maximum is not None and value > self.maximum:
            return [Problem(location, f"must be at most {self.maximum:g}")]
        return []

    def _check_object(
        self, value: Mapping[Any, Any], location: str, *, run_time: bool
    ) -> list[Problem]:
        problems: list[Problem] = []
        if self.fields is not None:
            for name, spec in self.fields.items():
                if spec.required and name not in value:
                    problems.append(Problem(f"{location}.{name}", "is required"))
        for key, item in value.items():
            where = f"{location}.{key}"
            if not isinstance(key, str):
                problems.append(Problem(location, "keys must be strings"))
            elif self.fields is not None and key in self.fields:
                problems += self.fields[key].check(item, where, run_time=run_time)
            elif self.fields is not None and not self.open:
                problems.append(Problem(where, "is not an argument of this operation"))
            elif self.values is not None:
                problems += self.values.check(item, where, run_time=run_time)
        return problems


# -- tools --------------------------------------------------------------------------------

Runner = Callable[[dict[str, Any], str | None, ToolContext], JSON]
CrossCheck = Callable[[Mapping[str, Any]], list[Problem]]


@dataclass(frozen=True)
class Operation:
    """One operation of a tool.

    ``arguments`` is the spec of the arguments object (location ``arguments``);
    ``cross_check`` adds problems that involve several arguments (it sees the arguments
    only once they fit the spec, and must treat expression strings as unknown);
    ``run`` does the work with evaluated arguments, the credential and the context.
    ``credentials`` names the argument paths (``*`` for any one key) where a bare
    ``$ secrets.x`` is a credential that authorises the call, like ``secret_name``: the
    answer is not tainted by it (see ``tasks/containment.py``). Anything else that carries a
    secret, there or elsewhere, is data. ``echoed`` names the credential slots that are
    also the call's address (a webhook URL): the upstream may quote its own address back,
    so an answer is tainted by a secret there after all. ``stores`` says the destination
    keeps what it is sent (a database): see ``tasks/held.py``.
    """

    name: str
    arguments: Arg
    run: Runner
    cross_check: CrossCheck | None = None
    credentials: tuple[str, ...] = ()
    echoed: tuple[str, ...] = ()
    stores: bool = False

    def problems(self, arguments: object, *, run_time: bool) -> list[Problem]:
        if arguments is None:
            arguments = {}
        problems = self.arguments.check(arguments, "arguments", run_time=run_time)
        if not problems and self.cross_check is not None and isinstance(arguments, Mapping):
            problems = self.cross_check(arguments)
        return problems


@dataclass(frozen=True)
class Tool:
    """A named set of operations, e.g. ``openai`` with ``chat``, and the server settings
    the tool declares for itself (a :class:`~.config.ToolSettings` subclass, or ``None``)."""

    name: str
    operations: Mapping[str, Operation] = field(default_factory=dict)
    settings: type[ToolSettings] | None = None

    @classmethod
    def of(
        cls, name: str, *operations: Operation, settings: type[ToolSettings] | None = None
    ) -> Tool:
        return cls(name, {op.name: op for op in operations}, settings)

    def validate(self, operation: str, arguments: object) -> list[Problem]:
        """Problems of a step as written (expressions unevaluated); empty when it is fine."""
        op = self.operations.get(operation)
        if op is None:
            known = ", ".join(sorted(self.operations))
            return [Problem("operation", f"tool {self.name} has no such operation (has {known})")]
        return op.problems(arguments, run_time=False)

    def call(
        self,
        operation: str,
        arguments: Mapping[str, Any] | None,
        credential: str | None,
        context: ToolContext,
    ) -> JSON:
        """Run ``operation`` with evaluated ``arguments``; raises :class:`ToolError`."""
        op = self.operations.get(operation)
        if op is None:
            raise ToolError(f"tool {self.name} has no operation {operation}")
        problems = op.problems(arguments, run_time=True)
        if problems:
            raise InvalidArguments(problems)
        return op.run(dict(arguments or {}), credential, context)
