"""The fixed table of helpers an expression may call (``len``, ``lower``, ``json_loads``…).

Each helper takes the evaluation's :class:`~.budget.Budget` first, then the call's
positional arguments as plain values (no ``Tainted`` inside); whatever it returns goes
through ``Budget.admit``. A helper that could build something large checks the size
*before* building it. Helpers are pure: no I/O, no clock, no state.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from .budget import Budget
from .errors import ExpressionError, kind


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
