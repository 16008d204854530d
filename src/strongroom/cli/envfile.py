"""``.env`` files: read with python-dotenv's parser, written so that it reads them back.

Reading follows python-dotenv (``export`` prefixes, single and double quotes, comments,
multi-line quoted values), with two choices of ours:

- values are taken literally: ``${VAR}`` is not expanded. Expanding would make an import
  depend on the importing shell's environment (and could copy unrelated variables into
  secrets), and export-then-import could not round-trip.
- an entry is reported and skipped, never guessed at, when its name is not a secret name,
  when it has no ``=`` or an empty value (secrets are never empty), or when the parser
  cannot read the line. Problems name the line and, where the line has an ``=``, the
  name; never a value.

Writing picks, per value, the quoting that python-dotenv reads back exactly:

- single quotes when the value holds no ``'``, ``\\`` or carriage return: then it is
  literal for python-dotenv, POSIX shells and Docker Compose alike (``$``, ``#``, ``"``,
  newlines and any Unicode included);
- double quotes otherwise, escaping ``\\`` ``"`` and writing newline and carriage return
  as ``\\n`` and ``\\r`` (an editor or a text-mode read would turn a raw CR into LF).

A rendered file is parsed back before it is written, and a value that does not come back
exactly is refused (python-dotenv before 1.2.3 misreads a double-quoted value ending in
``\\``, for instance), so an export never silently differs from the server.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._names import NAME_MAX
from .common import is_name

_NEWLINES = re.compile(r"\r\n|\n|\r")
_SINGLE_QUOTE_UNSAFE = frozenset("'\\\r")


@dataclass(frozen=True)
class Problem:
    """An entry that was skipped, and why (never with its value)."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


@dataclass
class Parsed:
    """The usable entries of a file, in file order (a repeated name keeps its last value),
    and the problems of the rest."""

    values: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    repeated: list[Problem] = field(default_factory=list)


class UnrepresentableError(ValueError):
    """A value the .env format (as python-dotenv reads it) cannot carry exactly."""


def _bad_name(name: str) -> str:
    return (
        f"{name!r} is not a secret name (letters, digits and underscores, not starting with "
        f"a digit, at most {NAME_MAX} characters); skipped"
    )


def decode(raw: bytes) -> str:
    """A file's text as python-dotenv reads a file: UTF-8 (a BOM dropped), with universal
    newlines (CRLF and CR read as LF). Raises ``UnicodeDecodeError``."""
    return raw.decode("utf-8-sig").replace("\r\n", "\n").replace("\r", "\n")


def parse_env(text: str) -> Parsed:
    """The entries of a .env file's text, as python-dotenv reads it without interpolation."""
    from dotenv.parser import parse_stream

    parsed = Parsed()
    first_seen: dict[str, int] = {}
    for binding in parse_stream(io.StringIO(text)):
        original = binding.original.string
        # The binding starts at the whitespace before it; count the lines it skipped.
        skipped = original[: len(original) - len(original.lstrip())]
        line = binding.original.line + len(_NEWLINES.findall(skipped))
        if binding.error:
            parsed.problems.append(Problem(line, "python-dotenv cannot parse this line; skipped"))
            continue
        name, value = binding.key, binding.value
        if name is None:  # a comment or blank lines
            continue
        if value is None:
            # Without "=", the token may be a stray value rather than a name: don't echo it.
            parsed.problems.append(Problem(line, "not NAME=VALUE (no '='); skipped"))
        elif not is_name(name):
            parsed.problems.append(Problem(line, _bad_name(name)))
        elif value == "":
            parsed.problems.append(Problem(line, f"{name} has an empty value; skipped"))
        else:
            if name in first_seen:
                parsed.repeated.append(
                    Problem(line, f"{name} repeats line {first_seen[name]}; the later value wins")
                )
                del parsed.values[name]  # keep file order of the value that wins
            first_seen[name] = line
            parsed.values[name] = value
    return parsed


def parse_json(text: str) -> Parsed:
    """The entries of a ``{"NAME": "value"}`` file (what ``export --format json`` writes)."""
    parsed = Parsed()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        parsed.problems.append(Problem(exc.lineno, f"not JSON: {exc.msg}"))
        return parsed
    if not isinstance(document, dict):
        parsed.problems.append(Problem(0, 'not a JSON object of {"NAME": "value"}'))
        return parsed
    for name, value in document.items():
        if not is_name(name):
            parsed.problems.append(Problem(0, _bad_name(name)))
        elif not isinstance(value, str):
            parsed.problems.append(Problem(0, f"{name}: the value is not a string; skipped"))
        elif value == "":
            parsed.problems.append(Problem(0, f"{name} has an empty value; skipped"))
        else:
            parsed.values[name] = value
    return parsed


def quote(value: str) -> str:
    """``value`` quoted for a .env file (see the module docstring for the choice)."""
    if not _SINGLE_QUOTE_UNSAFE.intersection(value):
        return f"'{value}'"
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def render_env(values: Mapping[str, str]) -> str:
    """A .env file of ``values`` that python-dotenv reads back exactly.

    Raises :class:`UnrepresentableError` (naming the secret, never showing the value)
    when one would not come back exactly.
    """
    text = "".join(f"{name}={quote(value)}\n" for name, value in values.items())
    back = parse_env(text)
    for name, value in values.items():
        if back.values.get(name) != value:
            raise UnrepresentableError(
                f"python-dotenv {_dotenv_version()} does not read the value of {name} back "
                "exactly (before 1.2.3 it misreads values ending in a backslash)"
            )
    if back.problems or list(back.values) != list(values):
        raise UnrepresentableError(
            f"python-dotenv {_dotenv_version()} does not read this .env file back exactly"
        )
    return text


def _dotenv_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("python-dotenv")
    except PackageNotFoundError:  # pragma: no cover - imported from a source tree
        return "(unknown version)"


def render_json(values: Mapping[str, str]) -> str:
    """``{"NAME": "value"}`` in name order, with Unicode as itself (UTF-8)."""
    return json.dumps(dict(values), indent=2, ensure_ascii=False) + "\n"
