"""Containment: what a task run may show, store and send, decided by taint, not by text.

A value read from ``secrets.`` carries the secret's name with it (``Tainted``), and every
expression that touches it yields a result that carries it too (see ``expressions.evaluate``).
This module is where those marks are acted on, at the three kinds of sink a run has:

- **Showing** (a step's output, the execution's output, an error): :func:`shown` replaces
  each tainted value whole by ``[REDACTED:<names>]``. A template's other slots stay
  readable; nothing derived from a secret is ever shown in part, whatever was done to it
  (sliced, reversed, lower-cased, parsed, counted, compared, used as a mapping key).
- **Storing** a step's full result for later steps (sealed by the keyring):
  :func:`pack` keeps the taint of each slot beside the plain value, by path, and
  :func:`unpack` puts it back, so a value stays tainted from step to step.
- **Sending** to a tool: :func:`classify` sorts the secrets of a call into credential
  uses (``secret_name``, or ``secrets.x`` alone in an argument the tool declares a
  credential slot: a password, an ``Authorization`` header, a webhook URL) and data uses
  (anything else: a prompt, a query, a body, a derived value anywhere). The answer of a
  call is tainted by its data uses, see :func:`answer_taint`; a secret's usage policy
  decides where the call may go, never that its answer may be shown.

Exact-value redaction (``redact.Redactor``) stays as a second line over everything shown,
logged and stored, and scrubs tool answers that quote a secret back.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from ..redact import marker
from .expressions import Rendered, Tainted, Template

EMPTY: Final[frozenset[str]] = frozenset()

# A path into a JSON value: mapping keys and list indexes.
Path = list[str | int]


def shown(value: Any) -> Any:
    """``value`` as a run may show it: each tainted part replaced whole by its marker."""
    if isinstance(value, Tainted):
        return marker(value.secrets) if value.secrets else shown(value.value)
    if isinstance(value, Mapping):
        return {key: shown(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shown(item) for item in value]
    return value


def taint_of(value: Any) -> frozenset[str]:
    """Every secret any part of ``value`` derives from."""
    if isinstance(value, Tainted):
        return value.secrets | taint_of(value.value)
    if isinstance(value, Mapping):
        return EMPTY.union(*(taint_of(item) for item in value.values()))
    if isinstance(value, list | tuple):
        return EMPTY.union(*(taint_of(item) for item in value))
    return EMPTY


def plain(value: Any) -> Any:
    """``value`` without its marks (for a tool, or for JSON)."""
    if isinstance(value, Tainted):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value


def _marks(value: Any, path: Path, found: list[tuple[Path, list[str]]]) -> None:
    if isinstance(value, Tainted):
        if value.secrets:
            found.append((list(path), sorted(value.secrets)))
        _marks(value.value, path, found)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _marks(item, [*path, key], found)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _marks(item, [*path, index], found)


def pack(value: Any, **more: Any) -> bytes:
    """A step result as JSON bytes to seal: the plain value and its taint, by path.

    Raises ``TypeError``/``ValueError`` when the value is not JSON (NaN included).
    """
    found: list[tuple[Path, list[str]]] = []
    _marks(value, [], found)
    document = {"value": plain(value), "taint": found, **more}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def unpack(document: Mapping[str, Any]) -> Any:
    """The value :func:`pack` stored, with its marks back where they were.

    Results sealed before slot-wise taint (``{"value", "secrets"}``) come back tainted
    whole.
    """
    value = document["value"]
    if "secrets" in document:  # the format before slot-wise taint
        names = frozenset(document["secrets"])
        return Tainted(value, names) if names else value
    marks = sorted(document.get("taint", ()), key=lambda mark: len(mark[0]), reverse=True)
    for path, names in marks:  # deepest first, so a mark inside another stays inside it
        value = _wrap(value, list(path), frozenset(names))
    return value


def _wrap(value: Any, path: Path, names: frozenset[str]) -> Any:
    if not path:
        return Tainted(value, names)
    head, rest = path[0], path[1:]
    if isinstance(value, Tainted):
        return Tainted(_wrap(value.value, path, names), value.secrets)
    if isinstance(value, dict) and isinstance(head, str) and head in value:
        return {**value, head: _wrap(value[head], rest, names)}
    if isinstance(value, list) and isinstance(head, int) and 0 <= head < len(value):
        copy = list(value)
        copy[head] = _wrap(copy[head], rest, names)
        return copy
    # A path that no longer fits (it cannot, for what pack wrote): taint the whole.
    return Tainted(value, names)


# -- sending to tools --------------------------------------------------------------------------

_SEGMENT = re.compile(r'\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _segments(location: str) -> list[str] | None:
    """``headers["X-Api-Key"]`` as ``["headers", "X-Api-Key"]`` (None if unparsable)."""
    text = "." + location
    segments: list[str] = []
    position = 0
    while position < len(text):
        match = _SEGMENT.match(text, position)
        if match is None:
            return None
        name, index, quoted = match.groups()
        segments.append(
            name if name is not None else index if index is not None else json.loads(quoted)
        )
        position = match.end()
    return segments


def in_slot(location: str, slots: Iterable[str]) -> bool:
    """Whether an argument location (relative to ``arguments``) is one of ``slots``, where
    ``*`` stands for any one key (``headers.*``)."""
    segments = _segments(location)
    if segments is None:
        return False
    for slot in slots:
        pattern = slot.split(".")
        if len(pattern) == len(segments) and all(
            want in ("*", got) for want, got in zip(pattern, segments, strict=True)
        ):
            return True
    return False


@dataclass(frozen=True)
class SecretUses:
    """The secrets one tool call carries, by how it carries them, and the argument values in
    data positions (to scan for a secret's value that reached them untainted)."""

    credential: frozenset[str] = EMPTY  # authorise the call; the answer is not derived from them
    data: frozenset[str] = EMPTY  # sent as (or inside) data; the answer may be derived from them
    data_values: tuple[Any, ...] = ()
    # credential uses in a slot that is also where the call goes (a webhook URL): the
    # upstream knows its own address and may answer with parts of it (a 404 page quoting
    # the path), parts the redactor cannot know to look for
    echoed: frozenset[str] = EMPTY

    @property
    def all(self) -> frozenset[str]:
        return self.credential | self.data

    def with_data(self, names: Iterable[str]) -> SecretUses:
        return dataclasses.replace(self, data=self.data | frozenset(names))


def classify(
    secret_name: str | None,
    template: Template | None,
    rendered: Rendered | None,
    credential_slots: Iterable[str],
    echoed_slots: Iterable[str] = (),
) -> SecretUses:
    """Sort the secrets of a tool call: ``secret_name`` and a bare ``secrets.x`` in a
    credential slot are credential uses (``echoed`` too when the slot is one of
    ``echoed_slots``); every other tainted argument is a data use."""
    credential: set[str] = {secret_name} if secret_name else set()
    echoed: set[str] = set()
    data: set[str] = set()
    values: list[Any] = []
    if template is not None and rendered is not None:
        prefix = template.location + "."
        slots, echoes = tuple(credential_slots), tuple(echoed_slots)
        for location, part in rendered.parts.items():
            bare = template.expressions[location].bare_secret
            relative = location.removeprefix(prefix)
            if bare is not None and in_slot(relative, slots):
                credential.add(bare)
                if in_slot(relative, echoes):
                    echoed.add(bare)
                continue
            data.update(part.secrets)
            values.append(part.value)
    return SecretUses(frozenset(credential), frozenset(data), tuple(values), frozenset(echoed))


def answer_taint(uses: SecretUses, unscannable: Iterable[str] = ()) -> frozenset[str]:
    """The secrets a tool's answer (or its error) is tainted by.

    Every data use: whatever a destination is sent it may answer with, transformed in any
    way it likes (a database's ``reverse(%s)``, an API quoting a slice of a bad token), so
    an answer is derived from what the call sent. A usage policy that lists a secret's
    destinations limits where it may go, not what comes back. Also the echoed credential
    uses, and a credential too large for the redactor to scan the answer for
    (``unscannable``).
    """
    return frozenset(uses.data | uses.echoed | (uses.credential & set(unscannable)))
