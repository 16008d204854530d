"""What an expression evaluation runs with: limits, the one error type, tainted values, the
budget that meters time and size, and the fixed table of helper functions.

Helpers get plain values (no ``Tainted`` inside) and the evaluation's ``Budget``; whatever
they return goes through ``Budget.admit``. Helpers that could build something large check the
size *before* building it, so no single step can take long or allocate much.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

EMPTY: Final[frozenset[str]] = frozenset()


class ExpressionError(Exception):
    """Why an expression was refused or stopped.

    ``message`` may quote the expression's text (which is not secret) but never a value the
    evaluation computed or read. ``location`` is a field path such as ``arguments.url``.
    """

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    def at(self, location: str) -> ExpressionError:
        """The same problem, reported at ``location``."""
        return ExpressionError(self.message, location)


class WithheldError(ExpressionError):
    """An evaluation failed after it had read a secret-derived value: the reason is not
    given, since it could describe the value. ``secrets`` names what was read."""

    def __init__(self, secrets: frozenset[str], location: str = "") -> None:
        names = ", ".join(sorted(secrets))
        super().__init__(
            f"the expression failed on a value derived from secrets ({names}); the reason "
            "is withheld because it could describe the value",
            location,
        )
        self.secrets = secrets

    def at(self, location: str) -> ExpressionError:
        return WithheldError(self.secrets, location)


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
class Tainted:
    """A value and the names of the secrets it was derived from (``frozenset()``: none).

    Evaluation returns one; an engine puts it into the next step's scope as is (as ``_``, in
    ``outputs`` or ``steps``, at any depth) so taint follows the data from step to step.
    The repr hides the value, which may hold a secret.
    """

    value: Any
    secrets: frozenset[str] = EMPTY

    def __repr__(self) -> str:
        return f"Tainted(<{type(self.value).__name__}>, secrets={sorted(self.secrets)!r})"


def kind(value: object) -> str:
    """A value's type, for messages that must not show the value."""
    return "None" if value is None else type(value).__name__


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


# -- helpers ---------------------------------------------------------------------------------
# Each takes the budget first, then the positional arguments of the call, all plain values.


def _text(name: str, value: Any, budget: Budget) -> str:
    if not isinstance(value, str):
        raise ExpressionError(f"{name}() needs text, not {kind(value)}")
    if len(value) > budget.limits.max_string_length:
        raise ExpressionError(
            f"{name}() accepts text of at most {budget.limits.max_string_length} characters"
        )
    return value


def _integer(name: str, value: Any) -> int:
    if not isinstance(value, int):
        raise ExpressionError(f"{name}() needs an integer, not {kind(value)}")
    return value


def _number(name: str, value: Any) -> int | float:
    if not isinstance(value, int | float):
        raise ExpressionError(f"{name}() needs a number, not {kind(value)}")
    return value


def _len(budget: Budget, value: Any) -> int:
    if not isinstance(value, str | list | tuple | dict):
        raise ExpressionError(f"len() needs text, a list or a mapping, not {kind(value)}")
    return len(value)


def _str(budget: Budget, value: Any) -> str:
    return value if isinstance(value, str) else budget.render(value, str, "str")


def _int(budget: Budget, value: Any, base: Any = None) -> int:
    if base is not None:
        base = _integer("int", base)
        if base != 0 and not 2 <= base <= 36:
            raise ExpressionError("int() base must be 0 or between 2 and 36")
        value = _text("int", value, budget)
    try:
        if isinstance(value, str):
            if len(value) > budget.limits.max_int_bits + 8:
                raise ExpressionError("int() text is too long for an integer")
            return int(value, 10 if base is None else base)
        if isinstance(value, int | float):
            return int(value)
    except (ValueError, OverflowError):
        raise ExpressionError("int() could not convert the value") from None
    raise ExpressionError(f"int() needs text or a number, not {kind(value)}")


def _float(budget: Budget, value: Any) -> float:
    try:
        if isinstance(value, str):
            return float(_text("float", value, budget))
        if isinstance(value, int | float):
            return float(value)
    except (ValueError, OverflowError):
        raise ExpressionError("float() could not convert the value") from None
    raise ExpressionError(f"float() needs text or a number, not {kind(value)}")


def _bool(budget: Budget, value: Any) -> bool:
    return bool(value)


def _cased(name: str, value: Any, budget: Budget) -> str:
    """Text to change the case of: non-ASCII case mapping is slow and can triple the length."""
    text = _text(name, value, budget)
    most = budget.limits.max_string_length // 4
    if not text.isascii() and len(text) > most:
        raise ExpressionError(f"{name}() accepts non-ASCII text of at most {most} characters")
    return text


def _lower(budget: Budget, value: Any) -> str:
    return _cased("lower", value, budget).lower()


def _upper(budget: Budget, value: Any) -> str:
    return _cased("upper", value, budget).upper()


def _strip(budget: Budget, value: Any, chars: Any = None) -> str:
    if chars is not None:
        chars = _text("strip", chars, budget)
    return _text("strip", value, budget).strip(chars)


def _startswith(budget: Budget, value: Any, prefix: Any) -> bool:
    return _text("startswith", value, budget).startswith(_text("startswith", prefix, budget))


def _endswith(budget: Budget, value: Any, suffix: Any) -> bool:
    return _text("endswith", value, budget).endswith(_text("endswith", suffix, budget))


def _join(budget: Budget, separator: Any, items: Any) -> str:
    glue = _text("join", separator, budget)
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        raise ExpressionError("join() needs a separator and a list of texts")
    texts: list[str] = list(items)
    budget.check_length(
        sum(len(text) for text in texts) + len(glue) * max(len(texts) - 1, 0), "join() result"
    )
    return glue.join(texts)


def _split(budget: Budget, value: Any, separator: Any = None, maxsplit: Any = -1) -> list[str]:
    text = _text("split", value, budget)
    if separator is not None and not _text("split", separator, budget):
        raise ExpressionError("split() separator cannot be empty")
    most = _integer("split", maxsplit)
    cap = budget.limits.max_items
    parts = text.split(separator, cap if most < 0 or most > cap else most)
    budget.check_items(len(parts))
    budget.charge(len(text))
    return parts


def _replace(budget: Budget, value: Any, old: Any, new: Any, count: Any = -1) -> str:
    text, before, after = (_text("replace", v, budget) for v in (value, old, new))
    most = _integer("replace", count)
    found = text.count(before)
    if most >= 0:
        found = min(found, most)
    budget.check_length(len(text) + found * (len(after) - len(before)), "replace() result")
    return text.replace(before, after, most)


def _json_dumps(budget: Budget, value: Any) -> str:
    return budget.render(value, lambda v: json.dumps(v, allow_nan=False), "json_dumps")


def _json_loads(budget: Budget, value: Any) -> Any:
    text = _text("json_loads", value, budget)
    # Parsing cannot be interrupted: past a quarter of the text limit, bound the item count
    # from the separators (commas in strings count too, erring on the side of refusing).
    items = budget.limits.max_items
    if len(text) > budget.limits.max_string_length // 4 and (
        text.count(",") + text.count("[") + text.count("{") > items
    ):
        raise ExpressionError(f"json_loads() text holds more than {items} items")
    max_digits = budget.limits.max_int_bits * 3 // 10 + 2

    def parse_int(digits: str) -> int:
        if len(digits) > max_digits:
            raise ValueError("integer too long")
        return int(digits)

    try:
        result = json.loads(text, parse_int=parse_int)
    except json.JSONDecodeError as exc:
        raise ExpressionError(
            f"json_loads() could not parse the text (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):
        raise ExpressionError("json_loads() could not parse the text") from None
    info = budget.inspect(result)
    budget.charge(info.items + info.chars)
    return result


def _urlencode(budget: Budget, value: Any) -> str:
    if not isinstance(value, dict):
        raise ExpressionError(f"urlencode() needs a mapping, not {kind(value)}")
    pairs: list[str] = []
    length = 0
    for key, item in value.items():
        for part in item if isinstance(item, list | tuple) else [item]:
            if isinstance(part, list | tuple | dict) or isinstance(key, tuple):
                raise ExpressionError("urlencode() values must be texts, numbers or lists of them")
            name, text = str(key), str(part)
            length += (len(name.encode()) + len(text.encode())) * 3 + 2  # at most, once quoted
            budget.check_length(length, "urlencode() result")
            pairs.append(f"{urllib.parse.quote_plus(name)}={urllib.parse.quote_plus(text)}")
            if len(pairs) % 256 == 0:
                budget.check_time()
    return "&".join(pairs)


def _quote(budget: Budget, value: Any, safe: Any = "/") -> str:
    data = _text("quote", value, budget).encode()
    budget.check_length(len(data) * 3, "quote() result")
    return urllib.parse.quote(data, safe=_text("quote", safe, budget))


def _b64encode(budget: Budget, value: Any) -> str:
    data = _text("b64encode", value, budget).encode()
    budget.check_length((len(data) + 2) // 3 * 4, "b64encode() result")
    return base64.b64encode(data).decode("ascii")


def _b64decode(budget: Budget, value: Any) -> str:
    try:
        data = base64.b64decode(_text("b64decode", value, budget), validate=True)
    except (ValueError, binascii.Error):
        raise ExpressionError("b64decode() could not decode the text") from None
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise ExpressionError("b64decode() produced bytes that are not UTF-8 text") from None


def _extreme(name: str, pick: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    items: Any = args
    if len(args) == 1:
        items = args[0]
        if not isinstance(items, list | tuple | str):
            raise ExpressionError(f"{name}() of one argument needs a list or text")
    if not items:
        raise ExpressionError(f"{name}() of an empty list")
    try:
        return pick(items)
    except TypeError:
        raise ExpressionError(f"{name}() needs values that compare with each other") from None


def _min(budget: Budget, *args: Any) -> Any:
    return _extreme("min", min, args)


def _max(budget: Budget, *args: Any) -> Any:
    return _extreme("max", max, args)


def _abs(budget: Budget, value: Any) -> int | float:
    return abs(_number("abs", value))


def _round(budget: Budget, value: Any, digits: Any = None) -> int | float:
    number = _number("round", value)
    if digits is None:
        try:
            return round(number)
        except (ValueError, OverflowError):
            raise ExpressionError("round() could not round the value") from None
    places = _integer("round", digits)
    if abs(places) > 1_000:
        raise ExpressionError("round() digits must be between -1000 and 1000")
    return round(number, places)


def _get(budget: Budget, mapping: Any, key: Any, default: Any = None) -> Any:
    if not isinstance(mapping, dict):
        raise ExpressionError(f"get() needs a mapping, not {kind(mapping)}")
    try:
        return mapping.get(key, default)
    except TypeError:
        raise ExpressionError(f"get() cannot look up a key of type {kind(key)}") from None


@dataclass(frozen=True, slots=True)
class Helper:
    function: Callable[..., Any]
    min_args: int
    max_args: int | None  # None: any number

    def arity(self) -> str:
        if self.max_args == self.min_args:
            return f"{self.min_args} argument{'s' if self.min_args != 1 else ''}"
        if self.max_args is None:
            return f"at least {self.min_args} argument{'s' if self.min_args != 1 else ''}"
        return f"{self.min_args} to {self.max_args} arguments"


HELPERS: Final[Mapping[str, Helper]] = MappingProxyType(
    {
        "abs": Helper(_abs, 1, 1),
        "b64decode": Helper(_b64decode, 1, 1),
        "b64encode": Helper(_b64encode, 1, 1),
        "bool": Helper(_bool, 1, 1),
        "endswith": Helper(_endswith, 2, 2),
        "float": Helper(_float, 1, 1),
        "get": Helper(_get, 2, 3),
        "int": Helper(_int, 1, 2),
        "join": Helper(_join, 2, 2),
        "json_dumps": Helper(_json_dumps, 1, 1),
        "json_loads": Helper(_json_loads, 1, 1),
        "len": Helper(_len, 1, 1),
        "lower": Helper(_lower, 1, 1),
        "max": Helper(_max, 1, None),
        "min": Helper(_min, 1, None),
        "quote": Helper(_quote, 1, 2),
        "replace": Helper(_replace, 3, 4),
        "round": Helper(_round, 1, 2),
        "split": Helper(_split, 1, 3),
        "startswith": Helper(_startswith, 2, 2),
        "str": Helper(_str, 1, 1),
        "strip": Helper(_strip, 1, 2),
        "upper": Helper(_upper, 1, 1),
        "urlencode": Helper(_urlencode, 1, 1),
    }
)
