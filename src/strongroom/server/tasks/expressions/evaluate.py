"""Running a checked ``$ `` expression against a scope, under a budget, tracking taint.

Lookups (``x.y``, ``x[k]``, names) return values as the scope holds them, which may still
contain ``Tainted`` deeper down; everything else works on plain values, obtained through
``Budget.inspect``, which strips ``Tainted`` and adds its secrets to the taint. Every node
checks the deadline; every value built goes through ``Budget.admit``.
"""

from __future__ import annotations

import ast
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .budget import Budget
from .errors import ExpressionError, WithheldError, kind
from .helpers import HELPERS
from .syntax import (
    BINARY,
    COMPARE,
    CONVERSIONS,
    FORMAT_SPEC,
    ONLY_MAPPINGS,
    UNARY,
    describe,
    is_secrets,
)
from .taint import EMPTY, Tainted

SecretSource = Mapping[str, str] | Callable[[str], str]
Value = tuple[Any, frozenset[str]]


@dataclass(frozen=True, repr=False)
class Scope:
    """What expressions can read. ``previous`` is ``_``, the previous step's result."""

    secrets: SecretSource = field(default_factory=dict)
    input: Any = None
    inputs: Any = None
    outputs: Mapping[str, Any] = field(default_factory=dict)
    steps: Sequence[Any] = ()
    previous: Any = None

    def __repr__(self) -> str:  # a scope holds secrets and secret-derived values
        return "Scope(<hidden>)"


class _SecretSourceFailed(Exception):
    """Carries an error the secret source raised past the evaluator's own error handling."""

    def __init__(self, error: Exception) -> None:
        self.error = error


class Evaluation:
    """One run of one or more expressions over one scope, under one budget."""

    def __init__(self, scope: Scope, budget: Budget) -> None:
        self.scope = scope
        self.budget = budget
        self.limits = budget.limits
        self._secrets: dict[str, str] = {}
        # Every secret whose value (or a value derived from it) this evaluation has looked
        # at so far. Once it is not empty, why an evaluation failed may depend on a secret
        # ("index out of range", "could not convert"), so the reason is withheld.
        self.touched: frozenset[str] = EMPTY

    def run(self, body: ast.expr) -> Tainted:
        """Evaluate one checked tree; errors are ``ExpressionError`` or the secret source's."""
        try:
            value, taint = self._eval(body)
        except _SecretSourceFailed as failed:
            raise failed.error from None
        except ExpressionError as error:
            raise self._withheld(error) from None
        except RecursionError:
            raise self._withheld(
                ExpressionError("expression is nested too deeply to evaluate")
            ) from None
        except MemoryError:
            raise self._withheld(ExpressionError("expression ran out of memory")) from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            # a path without its own message; the exception's text may hold a value
            raise self._withheld(
                ExpressionError(f"evaluation failed ({type(exc).__name__})")
            ) from None
        return Tainted(value, taint)

    def _withheld(self, error: ExpressionError) -> ExpressionError:
        """``error``, or, once a secret-derived value was read, one that says only that the
        expression failed: the reason could describe the value (its length, its first
        character, whether it parses as a number), one refusal at a time."""
        if not self.touched:
            return error
        return WithheldError(self.touched, error.location)

    def _see(self, taint: frozenset[str]) -> frozenset[str]:
        if taint:
            self.touched |= taint
        return taint

    def _eval(self, node: ast.expr) -> Value:
        self.budget.check_time()
        match node:
            case ast.Constant(value=value):
                return value, EMPTY
            case ast.Name() | ast.Attribute() | ast.Subscript():
                raw, taint = self._ref(node)
                info = self.budget.inspect(raw)
                return info.value, self._see(taint | info.taint)
            case ast.JoinedStr():
                return self._fstring(node)
            case ast.List(elts=elements) | ast.Tuple(elts=elements):
                values, taint = self._eval_all(elements)
                built = values if isinstance(node, ast.List) else tuple(values)
                return self.budget.admit(built), taint
            case ast.Dict(keys=keys, values=values):
                return self._dict(keys, values)
            case ast.BinOp(left=left, op=op, right=right):
                (a, left_taint), (b, right_taint) = self._eval(left), self._eval(right)
                return self._binary(op, a, b), left_taint | right_taint
            case ast.UnaryOp(op=op, operand=operand):
                value, taint = self._eval(operand)
                symbol, function = UNARY[type(op)]
                try:
                    return self.budget.admit(function(value)), taint
                except TypeError:
                    raise ExpressionError(f"bad operand type for {symbol}: {kind(value)}") from None
            case ast.BoolOp(op=op, values=values):
                taint = EMPTY
                for value_node in values:
                    value, value_taint = self._eval(value_node)
                    taint |= value_taint
                    if bool(value) is isinstance(op, ast.Or):
                        break
                return value, taint
            case ast.Compare():
                return self._compare(node)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                condition, condition_taint = self._eval(test)
                value, taint = self._eval(body if condition else orelse)
                return value, condition_taint | taint
            case ast.Call(func=ast.Name(id=name), args=args):
                values, taint = self._eval_all(args)
                try:
                    result = HELPERS[name].function(self.budget, *values)
                except (TypeError, ValueError, ArithmeticError, LookupError):
                    raise ExpressionError(f"{name}() could not handle its arguments") from None
                return self.budget.admit(result), taint
        raise ExpressionError(f"{type(node).__name__} is not allowed in expressions")

    def _eval_all(self, nodes: list[ast.expr]) -> tuple[list[Any], frozenset[str]]:
        values, taint = [], EMPTY
        for node in nodes:
            value, value_taint = self._eval(node)
            values.append(value)
            taint |= value_taint
        return values, taint

    def _dict(self, keys: list[ast.expr | None], values: list[ast.expr]) -> Value:
        built: dict[Any, Any] = {}
        taint = EMPTY
        for key_node, value_node in zip(keys, values, strict=True):
            assert key_node is not None  # refused when checked
            (key, key_taint), (value, value_taint) = self._eval(key_node), self._eval(value_node)
            try:
                built[key] = value
            except TypeError:
                raise ExpressionError(f"a mapping key cannot be of type {kind(key)}") from None
            taint |= key_taint | value_taint
        return self.budget.admit(built), taint

    # -- lookups: values as stored in the scope, which may hold Tainted deeper down --------------

    def _ref(self, node: ast.expr) -> Value:
        match node:
            case ast.Name(id=name):
                return _unwrap(self._scope_value(name), EMPTY)
            case ast.Attribute(value=base, attr=attr):
                if is_secrets(base):
                    return self._secret(attr)
                container, taint = self._ref(base)
                self._see(taint | self._inner_taint(container))
                if not isinstance(container, Mapping):
                    raise ExpressionError(
                        f"{ONLY_MAPPINGS}; {describe(base)} is of type {kind(container)}"
                    )
                try:
                    found = container[attr]
                except KeyError:
                    raise ExpressionError(f"{describe(base)} has no key {attr!r}") from None
                return _unwrap(found, taint)
            case ast.Subscript(value=base, slice=index):
                if is_secrets(base):
                    assert isinstance(index, ast.Constant)  # refused otherwise when checked
                    return self._secret(str(index.value))
                container, taint = self._ref(base)
                self._see(taint | self._inner_taint(container))
                if isinstance(index, ast.Slice):
                    return self._slice(container, index, taint)
                key, key_taint = self._eval(index)
                return _unwrap(self._lookup(container, key, base, index), taint | key_taint)
        return self._eval(node)

    def _inner_taint(self, container: Any) -> frozenset[str]:
        """The taint inside a container about to be looked into: whether a key or an index
        exists in it is itself derived from what it holds."""
        if isinstance(container, Mapping | list | tuple):
            return self.budget.inspect(container).taint
        return EMPTY

    def _scope_value(self, name: str) -> Any:
        scope = self.scope
        return {
            "input": scope.input,
            "inputs": scope.inputs,
            "outputs": scope.outputs,
            "steps": scope.steps,
            "_": scope.previous,
        }[name]

    def _lookup(self, container: Any, key: Any, base: ast.expr, index: ast.expr) -> Any:
        shown = f" {ast.unparse(index)}" if isinstance(index, ast.Constant) else ""
        if isinstance(container, Mapping):
            try:
                return container[key]
            except KeyError:
                raise ExpressionError(f"{describe(base)} has no key{shown}") from None
            except TypeError:
                raise ExpressionError(f"a mapping key cannot be of type {kind(key)}") from None
        if isinstance(container, list | tuple | str):
            if not isinstance(key, int):
                raise ExpressionError(
                    f"{kind(container)} indices must be integers, not {kind(key)}"
                )
            try:
                return container[key]
            except IndexError:
                raise ExpressionError(
                    f"index{shown} is out of range for {describe(base)}"
                ) from None
        raise ExpressionError(
            f"{describe(base)} is of type {kind(container)}, which cannot be indexed"
        )

    def _slice(self, container: Any, index: ast.Slice, taint: frozenset[str]) -> Value:
        bounds: list[int | None] = []
        for part in (index.lower, index.upper, index.step):
            if part is None:
                bounds.append(None)
                continue
            bound, bound_taint = self._eval(part)
            if bound is not None and not isinstance(bound, int):
                raise ExpressionError(f"slice bounds must be integers or None, not {kind(bound)}")
            bounds.append(bound)
            taint |= bound_taint
        if not isinstance(container, list | tuple | str):
            raise ExpressionError(
                f"only text, lists and tuples can be sliced, not {kind(container)}"
            )
        if bounds[2] == 0:
            raise ExpressionError("slice step cannot be zero")
        result = container[slice(*bounds)]
        self.budget.charge(len(result))
        return result, taint

    def _secret(self, name: str) -> Value:
        value = self._secrets.get(name)
        if value is None:
            source, started = self.scope.secrets, time.monotonic()
            try:
                value = source[name] if isinstance(source, Mapping) else source(name)
            except KeyError:
                raise ExpressionError(f"secret {name!r} is not available") from None
            except ExpressionError:
                raise
            except Exception as exc:
                raise _SecretSourceFailed(exc) from exc
            finally:
                self.budget.pause(time.monotonic() - started)
            if not isinstance(value, str):
                raise ExpressionError(f"secret {name!r} is not text")
            self._secrets[name] = value
        return value, self._see(frozenset((name,)))

    # -- operators -------------------------------------------------------------------------

    def _binary(self, op: ast.operator, left: Any, right: Any) -> Any:
        symbol, function = BINARY[type(op)]
        self._bound(op, left, right)
        try:
            return self.budget.admit(function(left, right))
        except ZeroDivisionError:
            raise ExpressionError("division by zero") from None
        except OverflowError:
            raise ExpressionError(f"number too large for {symbol}") from None
        except TypeError:
            raise ExpressionError(
                f"unsupported operand types for {symbol}: {kind(left)} and {kind(right)}"
            ) from None

    def _bound(self, op: ast.operator, left: Any, right: Any) -> None:
        """Refuse a result too large to build before building it."""
        bits = self.limits.max_int_bits
        sequence = (str, list, tuple)
        if isinstance(op, ast.Add) and isinstance(left, sequence) and type(left) is type(right):
            size = len(left) + len(right)
        elif isinstance(op, ast.Mult) and isinstance(left, sequence) and isinstance(right, int):
            size = len(left) * max(right, 0)
        elif isinstance(op, ast.Mult) and isinstance(right, sequence) and isinstance(left, int):
            size, left = len(right) * max(left, 0), right
        elif isinstance(op, ast.Mult) and isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > bits:
                raise ExpressionError(f"integer result would be larger than {bits} bits")
            return
        elif isinstance(op, ast.Pow) and isinstance(left, int) and isinstance(right, int):
            if (
                right > 0
                and abs(left) > 1
                and (right > bits or right * math.log2(abs(left)) > bits)
            ):
                raise ExpressionError(f"exponent too large: the result would exceed {bits} bits")
            return
        elif isinstance(op, ast.Mod) and isinstance(left, str):
            raise ExpressionError("'%' formatting is not supported; use an f-string")
        else:
            return
        if isinstance(left, str):
            self.budget.check_length(size)
        else:
            self.budget.check_items(size)

    def _compare(self, node: ast.Compare) -> Value:
        left, taint = self._eval(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right, right_taint = self._eval(right_node)
            taint |= right_taint
            symbol, function = COMPARE[type(op)]
            try:
                holds = bool(function(left, right))
            except TypeError:
                raise ExpressionError(
                    f"cannot compare {kind(left)} and {kind(right)} with {symbol!r}"
                ) from None
            if not holds:
                return False, taint
            left = right
        return True, taint

    # -- f-strings -------------------------------------------------------------------------

    def _fstring(self, node: ast.JoinedStr) -> Value:
        parts: list[str] = []
        taint, length = EMPTY, 0
        for part in node.values:
            if isinstance(part, ast.Constant):
                text = str(part.value)
            else:
                assert isinstance(part, ast.FormattedValue)
                text, part_taint = self._formatted(part)
                taint |= part_taint
            length += len(text)
            self.budget.check_length(length, "f-string result")
            parts.append(text)
        return self.budget.admit("".join(parts)), taint

    def _formatted(self, node: ast.FormattedValue) -> Value:
        value, taint = self._eval(node.value)
        if node.conversion in CONVERSIONS:
            name, how = CONVERSIONS[node.conversion]
            value = self.budget.render(value, how, name)
        spec = ""
        if isinstance(node.format_spec, ast.JoinedStr):
            spec, spec_taint = self._fstring(node.format_spec)
            taint |= spec_taint
        if not spec:
            return (
                value if isinstance(value, str) else self.budget.render(value, str, "str")
            ), taint
        self._check_spec(spec)
        if not isinstance(value, str | int | float):
            raise ExpressionError(f"a format spec applies to text and numbers, not {kind(value)}")
        try:
            return format(value, spec), taint
        except (ValueError, TypeError, OverflowError):
            raise ExpressionError(
                f"invalid format spec for a value of type {kind(value)}"
            ) from None

    def _check_spec(self, spec: str) -> None:
        match = FORMAT_SPEC.fullmatch(spec) if len(spec) <= 40 else None
        if match is None:
            raise ExpressionError("invalid format spec")
        for size in (match["width"], match["precision"]):
            if size and (len(size) > 9 or int(size) > self.limits.max_format_width):
                raise ExpressionError(
                    f"format width and precision are limited to {self.limits.max_format_width}"
                )


def _unwrap(value: Any, taint: frozenset[str]) -> Value:
    while isinstance(value, Tainted):
        taint |= value.secrets
        value = value.value
    return value, taint
