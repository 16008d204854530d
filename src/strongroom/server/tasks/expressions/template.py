"""Templates: step fields (any JSON value) with ``$ `` expressions inside, compiled at task
creation and rendered per run under one deadline, keeping taint slot by slot.

``{"url": "$ f'...{secrets.k}'", "city": "$ input"}`` renders with a marked ``url`` and a
clean ``city``, so a later step reading ``outputs.x.city`` is clean.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .budget import DEFAULT_LIMITS, Budget, Limits
from .compiled import Expression, compile_expression
from .errors import ExpressionError, kind
from .evaluate import Evaluation, Scope
from .syntax import is_expression
from .taint import EMPTY, Tainted


def _child(location: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{location}[{key}]"
    if key.isidentifier():
        return f"{location}.{key}" if location else key
    return f"{location}[{json.dumps(key)}]"


def find_expressions(
    value: Any, location: str = "", limits: Limits = DEFAULT_LIMITS
) -> Iterator[tuple[str, str]]:
    """Each ``(location, text)`` of an expression inside a JSON-shaped value, in order.

    Mapping keys are never expressions. Values other than JSON types, and nesting deeper
    than ``limits.max_value_depth``, raise ``ExpressionError`` at their location.
    """

    def walk(item: Any, where: str, depth: int) -> Iterator[tuple[str, str]]:
        if depth > limits.max_value_depth:
            raise ExpressionError(
                f"value is nested more than {limits.max_value_depth} levels deep", where
            )
        if isinstance(item, str):
            if is_expression(item):
                yield where, item
        elif isinstance(item, Mapping):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise ExpressionError(f"mapping keys must be text, not {kind(key)}", where)
                yield from walk(child, _child(where, key), depth + 1)
        elif isinstance(item, list | tuple):
            for index, child in enumerate(item):
                yield from walk(child, _child(where, index), depth + 1)
        elif item is not None and not isinstance(item, int | float):
            raise ExpressionError(f"values of type {kind(item)} are not supported", where)

    return walk(value, location, 0)


class InvalidTemplate(ExpressionError):
    """Every problem in a template, one ``ExpressionError`` per location, in ``errors``."""

    def __init__(self, errors: Sequence[ExpressionError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.message + more, first.location)
        self.errors = tuple(errors)


@dataclass(frozen=True, repr=False)
class Rendered:
    """A template's value with every expression replaced by its result.

    ``value`` is plain (what a tool is given); ``result`` is the same value with each
    secret-derived expression result wrapped in :class:`Tainted` where it stands, so a step
    result keeps its taint slot by slot and a later step reading a clean slot of it is clean.
    """

    value: Any
    secrets: frozenset[str]
    parts: Mapping[str, Tainted]  # each expression's own result, by location
    result: Any = None

    def tainted(self) -> Tainted:
        return Tainted(self.value, self.secrets)

    def __repr__(self) -> str:
        return f"Rendered(<{kind(self.value)}>, secrets={sorted(self.secrets)!r})"


@dataclass(frozen=True)
class Template:
    """A step field (any JSON value) with its expressions compiled; see ``compile_template``."""

    location: str
    expressions: Mapping[str, Expression]  # by location
    limits: Limits
    _shape: Any = field(repr=False)  # the value, each expression string replaced by its location

    @property
    def secret_refs(self) -> frozenset[str]:
        return EMPTY.union(*(e.secret_refs for e in self.expressions.values()))

    @property
    def names(self) -> frozenset[str]:
        return EMPTY.union(*(e.names for e in self.expressions.values()))

    def evaluate(self, scope: Scope, *, timeout: float | None = None) -> Rendered:
        """All expressions under one deadline; an error carries the failing location."""
        evaluation = Evaluation(scope, Budget(self.limits, timeout))
        parts: dict[str, Tainted] = {}

        def build(item: Any) -> Any:
            if isinstance(item, _Slot):
                try:
                    expression = self.expressions[item.location]
                    parts[item.location] = evaluation.run(expression.body)
                except ExpressionError as exc:
                    raise exc.at(item.location) from None
                return parts[item.location].value
            if isinstance(item, dict):
                return {key: build(child) for key, child in item.items()}
            if isinstance(item, list):
                return [build(child) for child in item]
            return item

        def marked(item: Any) -> Any:
            if isinstance(item, _Slot):
                part = parts[item.location]
                return part if part.secrets else part.value
            if isinstance(item, dict):
                return {key: marked(child) for key, child in item.items()}
            if isinstance(item, list):
                return [marked(child) for child in item]
            return item

        value = build(self._shape)
        taint = EMPTY.union(*(part.secrets for part in parts.values()))
        result = marked(self._shape) if taint else value
        return Rendered(value, taint, MappingProxyType(parts), result)


@dataclass(frozen=True, slots=True)
class _Slot:
    location: str


def compile_template(value: Any, location: str = "", limits: Limits = DEFAULT_LIMITS) -> Template:
    """Compile every expression in ``value``; ``InvalidTemplate`` lists each bad location."""
    expressions: dict[str, Expression] = {}
    errors: list[ExpressionError] = []
    try:
        for where, text in find_expressions(value, location, limits):
            try:
                expressions[where] = compile_expression(text, limits)
            except ExpressionError as exc:
                errors.append(exc.at(where))
    except ExpressionError as exc:
        errors.append(exc)
    if errors:
        raise InvalidTemplate(errors)

    def shape(item: Any, where: str) -> Any:
        if where in expressions and isinstance(item, str):
            return _Slot(where)
        if isinstance(item, Mapping):
            return {key: shape(child, _child(where, key)) for key, child in item.items()}
        if isinstance(item, list | tuple):
            return [shape(child, _child(where, index)) for index, child in enumerate(item)]
        return item

    return Template(location, MappingProxyType(expressions), limits, shape(value, location))
