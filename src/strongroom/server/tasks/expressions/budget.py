"""What one evaluation may spend: the :class:`Limits` on an expression's text and on one
run, and the :class:`Budget` that meters time and size as the evaluator and the helpers go.

Values reach the evaluator through :meth:`Budget.inspect` (``Tainted`` stripped, taint
collected, size measured once per object) and every value built goes through
:meth:`Budget.admit`, so no single step can take long or allocate much.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import ExpressionError, kind
from .taint import EMPTY, Tainted


@dataclass(frozen=True)
class Limits:
    """Bounds on an expression's text and on one evaluation; the defaults suit step templates."""

    timeout: float = 0.05  # seconds per evaluation (a whole template shares one)
    max_source_length: int = 10_000  # characters of expression text
    max_nesting: int = 32  # bracket depth, counted on tokens before parsing
    max_operators: int = 256  # operators, keywords and brackets, counted before parsing
    max_depth: int = 64  # depth of the parsed syntax tree
    max_value_depth: int = 100  # nesting of values read or built, and of templates
    max_string_length: int = 1_000_000  # characters in one string built
    max_items: int = 100_000  # elements in a container built, shared ones counted each time
    max_total_chars: int = 10_000_000  # characters across a container built, counted likewise
    max_allocation: int = 10_000_000  # characters and slots built by one evaluation in all
    max_int_bits: int = 4_096  # size of an integer literal or result
    max_format_width: int = 1_000  # width and precision in a format spec


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Info:
    """A value with ``Tainted`` removed, its taint, and its size as a serializer would see it
    (shared parts counted each time they appear)."""

    value: Any
    taint: frozenset[str]
    items: int
    chars: int
    depth: int


_SCALAR = Info(None, EMPTY, 0, 0, 0)


_FLAT_TYPES: Final = frozenset({str, int, float, bool, type(None)})


def _flat_chars(items: Sequence[Any]) -> int | None:
    """The size of a sequence of plain scalars, or None if it holds anything else."""
    types = set(map(type, items))
    if not types <= _FLAT_TYPES:
        return None
    if types <= {str}:
        return sum(map(len, items))
    if types <= {int, bool}:
        return sum(map(int.bit_length, items)) * 3 // 10
    chars = 0
    for item in items:
        if type(item) is str:
            chars += len(item)
        elif type(item) is int:
            chars += item.bit_length() * 3 // 10
    return chars


def _copy(items: Sequence[Any], like: Sequence[Any] | None = None) -> list[Any] | tuple[Any, ...]:
    """A plain list or tuple (as ``like``, else as ``items``) holding ``items``."""
    return tuple(items) if isinstance(like if like is not None else items, tuple) else list(items)


class Budget:
    """The time and size allowance of one evaluation; every loop and every build consults it."""

    def __init__(self, limits: Limits, timeout: float | None = None) -> None:
        self.limits = limits
        self.timeout = limits.timeout if timeout is None else timeout
        self.deadline = time.monotonic() + self.timeout
        self.allocated = 0
        # id -> (object, info); the object is kept so its id is not reused while we run
        self._seen: dict[int, tuple[object, Info]] = {}

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise ExpressionError(
                f"expression took longer than {self.timeout * 1000:g} ms and was stopped"
            )

    def pause(self, seconds: float) -> None:
        """Give back time spent outside the evaluator (fetching a secret)."""
        self.deadline += seconds

    def charge(self, units: int) -> None:
        self.allocated += units
        if self.allocated > self.limits.max_allocation:
            raise ExpressionError(
                f"expression built more than {self.limits.max_allocation} characters "
                "and items in all"
            )

    def check_length(self, length: int, what: str = "text") -> None:
        if length > self.limits.max_string_length:
            raise ExpressionError(
                f"{what} would be longer than {self.limits.max_string_length} characters"
            )

    def check_items(self, count: int) -> None:
        if count > self.limits.max_items:
            raise ExpressionError(
                f"a list or mapping would hold more than {self.limits.max_items} items"
            )

    def inspect(self, value: Any, depth: int = 0) -> Info:
        """``value`` with every ``Tainted`` inside removed (copying only what holds one), the
        union of their taint, and its size. Scope values reach the evaluator through here."""
        if isinstance(value, Tainted):
            inner = self.inspect(value.value, depth)
            taint = inner.taint | value.secrets
            return Info(inner.value, taint, inner.items, inner.chars, inner.depth)
        if value is None or type(value) in (bool, float):
            return _SCALAR if value is None else Info(value, EMPTY, 0, 0, 0)
        if isinstance(value, str):
            text = value if type(value) is str else str.__str__(value)
            return Info(text, EMPTY, 0, len(text), 0)
        if isinstance(value, int):
            plain_int = value if type(value) is int else int.__index__(value)
            return Info(plain_int, EMPTY, 0, plain_int.bit_length() * 3 // 10, 0)
        seen = self._seen.get(id(value))
        if seen is not None:
            return seen[1]
        if depth >= self.limits.max_value_depth:
            raise ExpressionError(
                f"values nested more than {self.limits.max_value_depth} levels deep "
                "are not supported"
            )
        self.check_time()
        plain: Any = value
        if isinstance(value, list | tuple | Mapping):
            members = [*value.keys(), *value.values()] if isinstance(value, Mapping) else value
            flat = _flat_chars(members)
            if flat is not None:  # the common case, sized without a call per item
                if type(value) not in (list, tuple, dict):
                    plain = dict(value) if isinstance(value, Mapping) else _copy(value)
                info = Info(plain, EMPTY, len(value), flat, 1)
                self._seen[id(value)] = (value, info)
                return info
        if isinstance(value, list | tuple):
            infos = self._inspect_all(value, depth)
            changed = type(value) not in (list, tuple) or any(
                info.value is not item for info, item in zip(infos, value, strict=True)
            )
            if changed:
                plain = _copy([info.value for info in infos], like=value)
        elif isinstance(value, Mapping):
            keys = self._inspect_all(list(value.keys()), depth)
            infos = self._inspect_all(list(value.values()), depth)
            if type(value) is not dict or any(
                info.value is not item for info, item in zip(infos, value.values(), strict=True)
            ):
                plain = dict(zip([k.value for k in keys], [i.value for i in infos], strict=True))
            infos = keys + infos
        else:
            raise ExpressionError(f"values of type {kind(value)} are not supported in expressions")
        info = Info(
            plain,
            EMPTY.union(*(i.taint for i in infos)),
            len(value) + sum(i.items for i in infos),
            sum(i.chars for i in infos),
            1 + max((i.depth for i in infos), default=0),
        )
        self._seen[id(value)] = (value, info)
        if plain is not value:
            self._seen[id(plain)] = (plain, info)
        return info

    def _inspect_all(self, items: list[Any] | tuple[Any, ...], depth: int) -> list[Info]:
        infos = []
        for index, item in enumerate(items):
            if index % 256 == 255:
                self.check_time()
            infos.append(self.inspect(item, depth + 1))
        return infos

    def admit(self, value: Any) -> Any:
        """Check a value the evaluator or a helper just built, and charge it."""
        self.check_time()
        if isinstance(value, str):
            self.check_length(len(value))
            self.charge(len(value))
        elif isinstance(value, bool) or value is None or isinstance(value, float):
            pass
        elif isinstance(value, int):
            if value.bit_length() > self.limits.max_int_bits:
                raise ExpressionError(
                    f"integer result would be larger than {self.limits.max_int_bits} bits"
                )
        elif isinstance(value, list | tuple | dict):
            info = self.inspect(value)
            self.check_items(info.items)
            if info.chars > self.limits.max_total_chars:
                raise ExpressionError(
                    f"a list or mapping would hold more than {self.limits.max_total_chars} "
                    "characters"
                )
            self.charge(len(value))
        elif isinstance(value, complex):
            raise ExpressionError("complex numbers are not supported in expressions")
        else:
            raise ExpressionError(f"values of type {kind(value)} are not supported in expressions")
        return value

    def render(self, value: Any, how: Callable[[Any], str], name: str) -> str:
        """``how(value)`` (str, repr, json.dumps…) once the value is known to be small enough."""
        info = self.inspect(value)
        self.check_length(info.items + info.chars, f"{name}() result")
        try:
            return how(value)
        except (TypeError, ValueError, OverflowError, RecursionError):
            raise ExpressionError(f"{name}() could not convert the value") from None
