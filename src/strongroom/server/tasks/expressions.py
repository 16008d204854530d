"""``$ `` expressions in task steps: a small allowlist evaluator over Python's ``ast``.

A string that starts with ``"$ "`` is an expression wherever it appears in a step's
``expression``, ``input`` or ``arguments``; other strings are literals. Expressions read a
fixed scope (``secrets``, ``input``, ``inputs``, ``outputs``, ``steps``, ``_``) and can use
literals, f-strings, lookups on mappings and sequences, slices, arithmetic, comparisons,
``and``/``or``/``not``, ``a if c else b`` and calls to the helpers in ``HELPERS`` (``len,
str, int, float, bool, lower, upper, strip, startswith, endswith, join, split, replace,
json_dumps, json_loads, urlencode, quote, b64encode, b64decode, min, max, abs, round,
get``). Nothing else: no attribute access on live objects (``x.y`` is the lookup
``x['y']`` on a mapping; ``'a'.upper()`` is refused, ``upper('a')`` is the way), no
lambdas, comprehensions, assignments or starred arguments. We do not use simpleeval or
asteval: the first ran ``4000000**4000000`` for 30 s, the second exposes ``open()``.

Use, at task creation and then per run::

    template = compile_template(step["arguments"], "arguments")   # raises InvalidTemplate
    template.secret_refs              # frozenset of secret names: fetch only these
    rendered = template.evaluate(Scope(secrets=fetched, input=..., outputs=..., previous=...))
    rendered.value, rendered.secrets  # the arguments, and the secrets they derive from
    rendered.parts                    # each expression's own Tainted result, by location
    rendered.result                   # the value with each secret-derived slot Tainted

Public API:

- ``is_expression(value) -> bool``
- ``compile_expression(text, limits=DEFAULT_LIMITS) -> Expression`` (cached if short; the text
  includes the ``$ `` prefix) with ``.secret_refs``, ``.names`` and
  ``.evaluate(scope, *, timeout=None) -> Tainted``.
- ``find_expressions(value, location="") -> Iterator[(location, text)]``: every expression in
  a JSON-shaped value, at paths like ``arguments.messages[0].content``.
- ``compile_template(value, location="", limits=DEFAULT_LIMITS) -> Template``: compiles every
  expression, raising ``InvalidTemplate`` whose ``.errors`` hold one ``ExpressionError`` per
  bad location. ``Template.evaluate(scope, *, timeout=None) -> Rendered``.
- ``Scope(secrets, input, inputs, outputs, steps, previous)``; ``previous`` is ``_``.
  ``secrets`` is a ``Mapping[str, str]`` or a callable ``name -> value`` raising ``KeyError``
  when absent; only referenced names are read, each once per evaluation, and time spent
  there does not count against the deadline. Other scope values are JSON-like (None, bool,
  int, float, str, list, tuple, any Mapping) and may hold ``Tainted`` at any depth.
- ``Tainted(value, secrets)``: results are returned as ``Tainted``, and an engine puts them
  back into later scopes unchanged, so taint is carried across steps. Taint is conservative:
  a result carries every secret any evaluated operand derived from (a condition included).
- ``ExpressionError(message, location)``: the one error type (``InvalidTemplate`` and
  ``WithheldError`` are subclasses). Messages may quote the expression text but never a
  value; once an evaluation has read a secret-derived value, an error says only that it
  failed (``WithheldError``), since its reason could describe the value.
- ``Expression.bare_secret``: the name when the expression is ``secrets.x`` alone (a tool
  may take it as a credential, see ``containment.classify``).
- ``Limits``: the bounds, see ``expression_runtime.Limits``.

Decisions:

- ``secrets`` may only be read with a constant name (``secrets.x``, ``secrets['x']``); a
  dynamic lookup (``secrets[input]``) or the bare mapping is refused when the task is
  created, so the secrets a task can touch are known up front and nothing else is decrypted.
- Before parsing, the text's length, bracket depth and operator count are bounded on tokens,
  so the C parser cannot be driven deep; after parsing, the tree's depth is bounded again
  before anything walks it recursively.
- Every evaluation has a deadline checked at each node and while scanning values. Steps that
  could be expensive are bounded before they run: ``**`` by the result's bits, repetition by
  the result's size, f-string widths and precisions, helpers by their output size, and any
  container built by its size counting shared parts (so ``[[0]*1000]*1000`` is refused and
  a later ``==`` or ``json_dumps`` on it cannot take long).
- Results may share parts with scope values; tuples stay tuples.

This module is the public face; ``expression_syntax`` parses and checks the text,
``expression_eval`` evaluates it, and ``expression_runtime`` holds the limits, the error
type, ``Tainted``, the budget and the helper functions.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from .expression_eval import Evaluation, Scope, SecretSource
from .expression_runtime import (
    DEFAULT_LIMITS,
    EMPTY,
    HELPERS,
    Budget,
    ExpressionError,
    Limits,
    Tainted,
    WithheldError,
    kind,
)
from .expression_syntax import SCOPE_NAMES, check, parse

__all__ = [
    "DEFAULT_LIMITS",
    "HELPERS",
    "PREFIX",
    "SCOPE_NAMES",
    "Expression",
    "ExpressionError",
    "InvalidTemplate",
    "Limits",
    "Rendered",
    "Scope",
    "SecretSource",
    "Tainted",
    "Template",
    "WithheldError",
    "compile_expression",
    "compile_template",
    "find_expressions",
    "is_expression",
]

PREFIX: Final = "$ "


def is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


# -- compiled expressions ------------------------------------------------------------------------


class Expression:
    """A ``$ `` expression, parsed and checked once, evaluated per run (immutable)."""

    __slots__ = ("_body", "bare_secret", "limits", "names", "secret_refs", "source", "text")

    def __init__(self, text: str, limits: Limits = DEFAULT_LIMITS) -> None:
        source = text.removeprefix(PREFIX).strip()
        if not source:
            raise ExpressionError("empty expression")
        body = parse(source, limits)
        reads = check(body, limits)
        self.text = text
        self.source = source
        self.limits = limits
        self.secret_refs: frozenset[str] = reads.secrets
        self.names: frozenset[str] = reads.names
        # ``secrets.x`` alone: the value as it is, which a tool may take as a credential
        self.bare_secret: str | None = _bare_secret(body)
        self._body: ast.expr = body

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def evaluate(self, scope: Scope, *, timeout: float | None = None) -> Tainted:
        """The value and the secrets it derives from; ``ExpressionError`` if refused or late."""
        return Evaluation(scope, Budget(self.limits, timeout)).run(self._body)


def _bare_secret(body: ast.expr) -> str | None:
    """The secret's name when the expression is only ``secrets.x`` or ``secrets['x']``."""
    match body:
        case ast.Attribute(value=ast.Name(id="secrets"), attr=name):
            return name
        case ast.Subscript(value=ast.Name(id="secrets"), slice=ast.Constant(value=str(name))):
            return name
    return None


# A tree takes ~200 bytes per character of text: cache the short texts steps are made of
# (at most ~50 MB), and compile long ones afresh (a few ms) rather than let them fill memory.
_CACHED_LENGTH: Final = 1_000


@functools.lru_cache(maxsize=256)
def _compile(text: str, limits: Limits) -> Expression:
    return Expression(text, limits)


def compile_expression(text: str, limits: Limits = DEFAULT_LIMITS) -> Expression:
    """Parse and check ``text`` (``"$ ..."``); a short text compiles once per process."""
    if not is_expression(text):
        raise ExpressionError(f"an expression starts with {PREFIX!r}")
    return _compile(text, limits) if len(text) <= _CACHED_LENGTH else Expression(text, limits)


# -- templates: expressions inside JSON-shaped step fields ---------------------------------------


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
                    parts[item.location] = evaluation.run(expression._body)
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
