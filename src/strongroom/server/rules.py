"""Resource rules: which of its tenant's secrets an API key reaches.

A key's scopes say what it may do; its rule says to which secrets. A rule holds
secret-name globs (``ci_*``, ``stripe_?ey``: a name must match one of them) and a metadata
selector (``environment=staging``: a secret's metadata must hold every entry). A key
without a rule reaches every secret of its tenant, as keys always did.

The rule is checked by the services on every path to a secret (list, get, versions,
write, rename, delete, the Julep routes, a task step's use, the audit trail) and pushed
into the listing's SQL, so that pages and ``has_more`` count only what the key reaches.

Globs are matched here rather than with :mod:`fnmatch`: fnmatch gives ``[`` a meaning
names cannot use, and no library answers the question key issuance needs — is every name
one glob matches also matched by another (:func:`glob_within`)?
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .metadata_entries import metadata_entry_hash

GLOB_PATTERN = re.compile(r"[A-Za-z0-9_*?]{1,128}")
MAX_GLOBS = 16
MAX_SELECTOR_ENTRIES = 16
MAX_SELECTOR_VALUE_CHARS = 256

Scalar = str | int | float | bool | None


class RuleError(ValueError):
    """A rule as given cannot be a rule; ``location`` says which part (``names[1]``)."""

    def __init__(self, location: str, message: str) -> None:
        super().__init__(message)
        self.location = location
        self.message = message


def glob_problem(glob: str) -> str | None:
    """Why ``glob`` cannot be a name glob, or None when it can."""
    if not GLOB_PATTERN.fullmatch(glob):
        if "/" in glob or "." in glob or "-" in glob:
            return (
                f"glob {glob!r} holds a character no secret name has: names are "
                "identifiers (letters, digits, underscores), so a family of secrets is "
                "named by a prefix such as ci_*"
            )
        return (
            f"glob {glob!r} is not a name glob: 1 to 128 letters, digits, underscores, "
            "'*' (any run of characters) and '?' (one character)"
        )
    return None


def glob_match(name: str, glob: str) -> bool:
    """Whether ``name`` matches ``glob`` (``*`` any run, ``?`` one character).

    The two-pointer walk that returns to the last ``*`` on a mismatch: at most
    len(name) x len(glob) steps, where a regular expression of many ``.*`` can take
    exponential time on a crafted name.
    """
    n = g = 0
    star, resume = -1, 0
    while n < len(name):
        if g < len(glob) and (glob[g] == "?" or glob[g] == name[n]):
            n, g = n + 1, g + 1
        elif g < len(glob) and glob[g] == "*":
            star, resume = g, n
            g += 1
        elif star >= 0:
            resume += 1
            n, g = resume, star + 1
        else:
            return False
    return all(c == "*" for c in glob[g:])


def glob_within(inner: str, outer: str) -> bool:
    """Whether every name ``inner`` matches, ``outer`` matches too.

    Sound, and exact for the globs people write: ``inner`` is read as text in which its
    own wildcards are symbols, and ``outer`` must match that text with each of its ``*``
    absorbing any run of symbols (wildcards included), each ``?`` one character or
    ``?``, and each letter only itself. Then any name ``inner`` matches is matched by
    ``outer``, since each wildcard of ``inner`` lies inside a ``*`` (or meets a ``?``) of
    ``outer``. ``ab*`` is within ``a*``; ``a*`` is not within ``ab*``.

    The positions of ``outer`` reached so far are the bits of one integer, so each
    character of ``inner`` costs a few integer operations, not a row of a table: a key
    asking for 16 long globs against 16 must not hold a worker for half a second.
    """
    stars = questions = 0
    letters: dict[str, int] = {}
    for j, o in enumerate(outer):
        bit = 1 << j
        if o == "*":
            stars |= bit
        elif o == "?":
            questions |= bit
        else:
            letters[o] = letters.get(o, 0) | bit

    def closure(reached: int) -> int:  # a star may also match nothing
        while True:
            wider = reached | ((reached & stars) << 1)
            if wider == reached:
                return reached
            reached = wider

    reached = closure(1)
    for n in inner:
        step = reached & stars  # a star absorbs it, and stays
        if n != "*":
            step |= (reached & questions) << 1
        if n not in "*?":
            step |= (reached & letters.get(n, 0)) << 1
        reached = closure(step)
        if not reached:
            return False
    return bool(reached >> len(outer) & 1)


def _entry(key: str, value: Any) -> bytes:
    return metadata_entry_hash(key, value)


@dataclass(frozen=True)
class ResourceRule:
    """The secrets a key reaches: a name matching one of ``names`` (any name when empty)
    whose metadata holds every entry of ``metadata``."""

    names: tuple[str, ...] = ()
    metadata: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.names and not self.metadata:
            raise RuleError("", "a rule needs name globs, a metadata selector, or both")

    # -- what it reaches --------------------------------------------------------------
    def admits_name(self, name: str) -> bool:
        """Whether a secret of this name can be in reach (its metadata decides the rest)."""
        return not self.names or any(glob_match(name, glob) for glob in self.names)

    def admits_metadata(self, metadata: Mapping[str, Any]) -> bool:
        return all(
            key in metadata and _entry(key, metadata[key]) == _entry(key, wanted)
            for key, wanted in self.metadata.items()
        )

    def admits(self, name: str, metadata: Mapping[str, Any]) -> bool:
        return self.admits_name(name) and self.admits_metadata(metadata)

    def within(self, other: ResourceRule | None) -> bool:
        """Whether every secret this rule reaches, ``other`` reaches too (None: all)."""
        if other is None:
            return True
        if other.names:  # every glob of this rule within one of other's (none: any name)
            if not self.names:
                return False
            if not all(
                any(glob_within(mine, theirs) for theirs in other.names) for mine in self.names
            ):
                return False
        return all(
            key in self.metadata and _entry(key, self.metadata[key]) == _entry(key, wanted)
            for key, wanted in other.metadata.items()
        )

    def selector_entries(self) -> list[bytes]:
        """The selector as the listing's metadata index stores entries."""
        return [_entry(key, value) for key, value in self.metadata.items()]

    def describe(self) -> str:
        """The rule in words, for an error message to its own key."""
        parts = []
        if self.names:
            parts.append("names matching " + " or ".join(self.names))
        if self.metadata:
            entries = ", ".join(f"{k}={json.dumps(v)}" for k, v in self.metadata.items())
            parts.append(f"metadata {entries}")
        return " with ".join(parts)

    # -- stored and wire forms ----------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({"names": list(self.names), "metadata": dict(self.metadata)})

    def as_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "metadata": dict(self.metadata)}

    @classmethod
    def from_json(cls, text: str | None) -> ResourceRule | None:
        if text is None:
            return None
        data = json.loads(text)
        return cls(tuple(data.get("names", ())), dict(data.get("metadata", {})))

    @classmethod
    def parse(cls, given: Mapping[str, Any]) -> ResourceRule:
        """A rule from its wire form ``{"names": [...], "metadata": {...}}``, every part
        checked; a :class:`RuleError` says which part is wrong."""
        unknown = sorted(set(given) - {"names", "metadata"})
        if unknown:
            raise RuleError(unknown[0], f"unknown rule field {unknown[0]!r}: names, metadata")
        names = given.get("names") or []
        metadata = given.get("metadata") or {}
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise RuleError("names", "names must be a list of name globs")
        if len(names) > MAX_GLOBS:
            raise RuleError("names", f"a rule holds at most {MAX_GLOBS} name globs")
        for i, glob in enumerate(names):
            problem = glob_problem(glob)
            if problem:
                raise RuleError(f"names[{i}]", problem)
        if not isinstance(metadata, dict):
            raise RuleError("metadata", 'metadata must be an object, e.g. {"environment": "ci"}')
        if len(metadata) > MAX_SELECTOR_ENTRIES:
            raise RuleError("metadata", f"a selector holds at most {MAX_SELECTOR_ENTRIES} entries")
        for key, value in metadata.items():
            if not isinstance(value, str | int | float | bool) or (
                isinstance(value, str) and len(value) > MAX_SELECTOR_VALUE_CHARS
            ):
                raise RuleError(
                    f"metadata.{key}",
                    "a selector value is a string (at most "
                    f"{MAX_SELECTOR_VALUE_CHARS} characters), number or boolean",
                )
            if not key or len(key) > MAX_SELECTOR_VALUE_CHARS:
                raise RuleError("metadata", "a selector key is 1 to 256 characters")
        try:
            return cls(tuple(dict.fromkeys(names)), dict(metadata))
        except RuleError as exc:
            raise RuleError(exc.location, exc.message) from None

    @classmethod
    def from_cli(cls, names: tuple[str, ...], selectors: tuple[str, ...]) -> ResourceRule | None:
        """The rule of ``--names ci_*`` and ``--where environment=staging`` options."""
        if not names and not selectors:
            return None
        metadata: dict[str, Any] = {}
        for entry in selectors:
            key, sep, value = entry.partition("=")
            if not sep or not key:
                raise RuleError("metadata", f"selector {entry!r} is not KEY=VALUE")
            metadata[key] = value
        return cls.parse({"names": list(names), "metadata": metadata})


def rule_within(inner: ResourceRule | None, outer: ResourceRule | None) -> bool:
    """Whether a key of rule ``inner`` reaches no secret one of rule ``outer`` does not."""
    if inner is None:
        return outer is None
    return inner.within(outer)
