"""Redaction: scrub every secret value of a run, and its usual re-spellings, out of text.

Everything a task run lets out (step outputs, the execution output, error messages, log
lines) passes through a :class:`Redactor` built from the secret values the run resolved,
so a value shows as ``[REDACTED:<name>]`` however it was printed.

API::

    redactor = Redactor.from_secrets({"api_key": key}, derived=[(url, {"api_key"})])
    redactor = redactor.with_values([(token, {"db_user", "db_password"})])  # a new one
    redactor.redact("GET /?k=...")           # str -> str
    redactor.redact_bytes(b"...")            # bytes -> bytes
    redactor.redact_json({"k": ["..."]})     # a redacted copy; keys are scrubbed too
    redactor.names                           # frozenset of the secret names it knows

    with redacting(redactor):                # sets ``current_redactor`` for the run
        log.info("called %s", url)           # scrubbed by a RedactingFilter on the handler

A redactor is immutable: ``with_values`` returns a new one, and each builds its matcher
once, on first use. It never shows a value: its ``repr`` gives counts and names, it
refuses to be pickled (so it cannot end up in a checkpoint), and no exception raised
here quotes a value.

What is matched, for each value and each *piece* of it (the value, the value stripped
of surrounding whitespace, and each stripped line of a multi-line value, as GitHub
Actions registers lines, because outputs are often split on newlines):

- the piece itself, and in lower case (a host name or a URL's origin is printed
  lower-cased); URL-quoted three ways (``quote(safe='')``, ``quote_plus``,
  ``quote`` with its default safe ``/``), each also with lower-case ``%xx``; the inside
  of ``json.dumps`` with and without ``ensure_ascii``, with ``/`` escaped (PHP),
  with ``<>&`` escaped (Go), and escaped twice (JSON inside a JSON string); HTML-escaped;
- its UTF-8 bytes in hex (lower and upper case) and in base64, standard and URL-safe
  alphabets: the whole encoding, with and without padding, and the stable middle of the
  encoding at each of the three byte offsets, i.e. the characters of
  ``b64encode(prefix + piece)`` that depend on the piece alone, for prefixes of length
  0, 1 and 2, so a value embedded in a longer base64 string (a basic-auth header, a
  JSON web token, a data URL) is found too; and each of those less its last 4-character
  group, the more cautious fragment a leak detector looks for (tests/support.py's), which
  also catches an encoded value that a truncated output cut short.

Rules for short values, chosen to keep a secrets service safe without turning every
output into confetti:

- empty and whitespace-only values are never patterns;
- a piece is a pattern with all its text forms when it has at least ``MIN_LENGTH`` (4)
  characters; base64 and hex forms only when the encoded fragment has at least
  ``MIN_ENCODED_LENGTH`` (8) characters, since a shorter fragment is random noise that
  would match everywhere (base64 of a 4-character value is still caught whole);
- a value of 1 to 3 characters (after stripping) is not dropped, unlike a tool that
  warns and moves on: it is redacted wherever it stands as a whole token, that is with
  no letter or digit right before or after it (``pin=123`` and ``"123"`` are redacted,
  ``1234`` and ``a123`` are not). GitHub Actions masks even a one-character value
  everywhere; that hides more and reads worse, and a 1-3 character secret is guessable
  anyway. Lines of a multi-line value shorter than ``MIN_LENGTH`` are not patterns
  (a ``}`` line of a JSON secret must not redact every brace).

How matches are replaced: all occurrences of all patterns are found in one pass
(Aho-Corasick over UTF-8 bytes, ``ahocorasick_rs``), overlapping ones included, and
each run of overlapping matches becomes one marker. So a secret that contains another
is redacted whole under its own name, as leftmost-longest matching would do, and unlike
leftmost-longest, two secrets that overlap in the text leave no tail of either behind.
The marker names the secrets of the maximal matches of the run (those not inside
another), sorted and joined by commas: a derived value registered with
``{"db_user", "db_password"}`` shows as ``[REDACTED:db_password,db_user]``, and so do two
secrets that share a value. A marker of names this redactor knows is left alone when
the text is redacted again (even for a value that happens to be part of its own
marker), and a short value is a token when its neighbours are markers, so redacting
twice gives the same text as redacting once.

Logging: put a :class:`RedactingFilter` on the handlers (a logger's own filters miss
its children's records); while a run is inside ``redacting(...)`` every record is
scrubbed before any formatter sees it. The filter formats the exception into
``exc_text`` and clears ``exc_info``, so a formatter that re-formats ``exc_info``
itself instead of using ``exc_text`` prints no traceback for such records.

Not covered: a value split, reversed, hashed or otherwise transformed. In task runs that
is not this module's job: a value derived from a secret is marked and never shown at all
(``tasks/containment.py``), and this redactor, which holds only the secrets' own values,
is the second line behind it. Redacting twice gives the same text except for a value that
begins or ends with ``[`` or ``]`` and so can run into the edge of a marker (it is then
redacted again, which leaks nothing).
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import contextvars
import html
import itertools
import json
import logging
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import ahocorasick_rs

__all__ = [
    "MIN_ENCODED_LENGTH",
    "MIN_LENGTH",
    "RedactingFilter",
    "Redactor",
    "current_redactor",
    "marker",
    "redacting",
]

MIN_LENGTH: Final = 4
MIN_ENCODED_LENGTH: Final = 8
# A DFA scans about three times as fast as the contiguous NFA (some 600 against 200 MB/s
# here), but past this many patterns (about fifty values) its memory and build time grow
# fast: some 30 MB and 90 ms at 2,000 patterns, where the NFA needs under 1 MB and 9 ms.
# Its build time also grows faster than the bytes of the patterns when a value repeats
# itself: the forms of "ab" * 2048 (50 KB) take 2.4 s, of "ab" * 8192 (200 KB) 40 s, with
# the GIL held; the NFA builds either in under 10 ms. So a DFA only for small pattern sets.
_DFA_MAX_PATTERNS: Final = 1000
_DFA_MAX_BYTES: Final = 8 * 1024

# ``surrogatepass`` so that any ``str`` (even one with lone surrogates) round-trips.
_UTF8: Final = "utf-8"
_ERRORS: Final = "surrogatepass"

# A value and the name (or names) of the secret(s) it is, or was derived from.
NamedValue = tuple[str, str | Iterable[str]]


def marker(names: Iterable[str]) -> str:
    """What a redacted value shows as: ``[REDACTED:<names, sorted, comma-separated>]``."""
    return "[REDACTED:" + ",".join(sorted(names)) + "]"


# -- what is a pattern ----------------------------------------------------------------------
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def _text_forms(piece: str) -> set[str]:
    """The piece as URL-quoting, JSON-escaping and HTML-escaping would print it, and in
    lower case (host names and URL origins are printed lower-cased)."""
    forms = {piece, piece.lower(), html.escape(piece)}
    for quoted in (
        urllib.parse.quote(piece, safe="", errors=_ERRORS),
        urllib.parse.quote_plus(piece, errors=_ERRORS),
        urllib.parse.quote(piece, errors=_ERRORS),
    ):
        forms.add(quoted)
        forms.add(_PERCENT.sub(lambda m: m.group().lower(), quoted))
    ascii_json = json.dumps(piece)[1:-1]
    unicode_json = json.dumps(piece, ensure_ascii=False)[1:-1]
    forms.update((ascii_json, unicode_json, json.dumps(ascii_json)[1:-1]))
    for escaped in (ascii_json, unicode_json):
        forms.add(escaped.replace("/", "\\/"))
        forms.add(escaped.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    return forms


def _encoded_forms(raw: bytes) -> set[bytes]:
    """Hex and base64 spellings of ``raw`` that are long enough to mean something."""
    forms = {raw.hex().encode(), raw.hex().upper().encode()}
    for altchars in (None, b"-_"):
        whole = base64.b64encode(raw, altchars)
        forms.update((whole, whole.rstrip(b"=")))
        for skip in range(3):
            # Starting ``skip`` bytes in, whole 3-byte groups encode to characters that no
            # neighbouring byte affects: the part every b64(prefix + raw) contains.
            aligned = raw[skip:]
            stable = base64.b64encode(aligned[: len(aligned) // 3 * 3], altchars)
            forms.update((stable, stable[:-4]))
    return {form for form in forms if len(form) >= MIN_ENCODED_LENGTH}


def _pieces(value: str) -> tuple[set[str], str | None]:
    """The parts of ``value`` to match with all their forms, and a short value to match
    only as a whole token (or None)."""
    stripped = value.strip()
    if not stripped:
        return set(), None
    if len(stripped) < MIN_LENGTH:
        return set(), stripped
    pieces = {value, stripped}
    pieces.update(line.strip() for line in value.splitlines())
    return {piece for piece in pieces if len(piece) >= MIN_LENGTH}, None


# -- the compiled matcher -------------------------------------------------------------------
_MARKER_START: Final = b"[REDACTED:"
_KEEP: Final[frozenset[str]] = frozenset()  # the names of a span left as it is

# (start, end, names) over the UTF-8 bytes; end is exclusive.
_Span = tuple[int, int, frozenset[str]]
# Where redact_json copied a text: (container, key, text, whether the text is the key).
_Place = tuple[Any, Any, str, bool]


@dataclass(frozen=True, slots=True)
class _Matcher:
    automaton: ahocorasick_rs.BytesAhoCorasick
    names: tuple[frozenset[str], ...]  # per pattern
    token_only: tuple[bool, ...]  # per pattern: a short value, matched as a whole token
    marker_start: int  # the pattern ``[REDACTED:``, the start of a marker
    known: frozenset[bytes]  # every name, as a marker spells it
    label_window: int  # no marker of known names is longer than this
    markers: dict[frozenset[str], bytes]  # grows as new combinations of names show up

    def marker(self, names: frozenset[str]) -> bytes:
        found = self.markers.get(names)
        if found is None:
            found = self.markers[names] = marker(names).encode(_UTF8, _ERRORS)
        return found

    def marker_end(self, data: bytes, start: int) -> int | None:
        """The end of the marker of known names at ``start``, if there is one there."""
        label = start + len(_MARKER_START)
        close = data.find(b"]", label, label + self.label_window)
        if close <= label:
            return None
        if all(name in self.known for name in data[label:close].split(b",")):
            return close + 1
        return None


def _compile(sources: tuple[tuple[str, frozenset[str]], ...]) -> _Matcher:
    by_pattern: dict[bytes, set[str]] = {}
    tokens: set[bytes] = set()
    for value, names in sources:
        pieces, short = _pieces(value)
        found: set[bytes] = set()
        for piece in pieces:
            found.update(form.encode(_UTF8, _ERRORS) for form in _text_forms(piece))
            found.update(_encoded_forms(piece.encode(_UTF8, _ERRORS)))
        if short is not None:
            raw = short.encode(_UTF8, _ERRORS)
            found.add(raw)
            tokens.add(raw)
        for pattern in found:
            by_pattern.setdefault(pattern, set()).update(names)
    by_pattern.setdefault(_MARKER_START, set())
    patterns = list(by_pattern)
    implementation = (
        ahocorasick_rs.Implementation.DFA
        if len(patterns) <= _DFA_MAX_PATTERNS and sum(map(len, patterns)) <= _DFA_MAX_BYTES
        else ahocorasick_rs.Implementation.ContiguousNFA
    )
    known = {name.encode(_UTF8, _ERRORS) for _, names in sources for name in names}
    return _Matcher(
        automaton=ahocorasick_rs.BytesAhoCorasick(
            patterns, matchkind=ahocorasick_rs.MatchKind.Standard, implementation=implementation
        ),
        names=tuple(frozenset(by_pattern[p]) for p in patterns),
        token_only=tuple(p in tokens for p in patterns),
        marker_start=patterns.index(_MARKER_START),
        known=frozenset(known),
        label_window=sum(len(name) + 1 for name in known) + 1,
        markers={},
    )


def _merge(matches: list[_Span]) -> list[_Span]:
    """Runs of overlapping matches, each named by its maximal matches (those not inside
    another); a run whose maximal matches are all kept markers is kept too."""
    runs: list[_Span] = []
    run_start = run_end = -1
    run_names: set[str] = set()
    for start, end, names in sorted(matches, key=lambda match: (match[0], -match[1])):
        if start < run_end:  # overlaps the current run
            if end > run_end:  # and is not inside an earlier match: a maximal one
                run_end = end
                run_names |= names
            continue
        if run_end >= 0:
            runs.append((run_start, run_end, frozenset(run_names)))
        run_start, run_end, run_names = start, end, set(names)
    if run_end >= 0:
        runs.append((run_start, run_end, frozenset(run_names)))
    return runs


def _covered_by(runs: list[_Span]) -> Callable[[int], bool]:
    """Whether a byte lies in one of the redacted (not kept) ``runs``, sorted and disjoint."""
    redacted = [run for run in runs if run[2]]
    starts = [run[0] for run in redacted]

    def covered(index: int) -> bool:
        at = bisect.bisect_right(starts, index) - 1
        return at >= 0 and index < redacted[at][1]

    return covered


def _is_token(data: bytes, start: int, end: int, covered: Callable[[int], bool]) -> bool:
    """Whether ``data[start:end]`` has no letter or digit right before or after it, once
    the ``covered`` bytes are markers (whose brackets are not letters)."""
    if start > 0 and not covered(start - 1):
        begin = start - 1
        while begin > 0 and start - begin < 4 and 0x80 <= data[begin] < 0xC0:
            begin -= 1  # back over UTF-8 continuation bytes to the character's start
        if data[begin:start].decode(_UTF8, "replace")[-1:].isalnum():
            return False
    if end < len(data) and not covered(end):
        lead = data[end]
        width = 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        if data[end : end + width].decode(_UTF8, "replace")[:1].isalnum():
            return False
    return True


def _with_tokens(data: bytes, matches: list[_Span], tokens: list[_Span]) -> list[_Span]:
    """Runs of ``matches`` plus the short-value matches that stand as tokens.

    Redacting a token turns its neighbours into marker brackets, which can make another
    short match a token; repeating until nothing changes is what makes redacting twice
    give the same text.
    """
    runs = _merge(matches)
    pending = tokens
    while pending:
        covered = _covered_by(runs)
        accepted: list[_Span] = []
        rest: list[_Span] = []
        for token in pending:
            (accepted if _is_token(data, token[0], token[1], covered) else rest).append(token)
        if not accepted:
            break
        matches = matches + accepted
        runs = _merge(matches)
        pending = rest
    return runs


# -- the redactor ---------------------------------------------------------------------------
def _normalise(value: str, names: str | Iterable[str]) -> tuple[str, frozenset[str]]:
    named = frozenset((names,) if isinstance(names, str) else names)
    if not named or not all(isinstance(name, str) and name for name in named):
        raise ValueError("each value needs one or more non-empty secret names")
    if not isinstance(value, str):
        shown = ",".join(sorted(named))
        raise TypeError(f"the value for {shown} must be str, not {type(value).__name__}")
    return value, named


class Redactor:
    """Replaces secret values, and their encodings, with ``[REDACTED:<name>]`` markers."""

    __slots__ = ("_lock", "_matcher", "_sources")

    def __init__(self, values: Iterable[NamedValue] = ()) -> None:
        sources = (_normalise(value, names) for value, names in values)
        self._sources = tuple(source for source in sources if source[0].strip())
        self._matcher: _Matcher | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_secrets(
        cls, secrets: Mapping[str, str], derived: Iterable[NamedValue] = ()
    ) -> Redactor:
        """A redactor for ``{name: value}`` plus values derived from them, each given with
        the name (or names) of the secrets it was built from."""
        return cls([*((value, name) for name, value in secrets.items()), *derived])

    def with_values(self, values: Iterable[NamedValue]) -> Redactor:
        """A new redactor that also covers ``values`` (this one is left as it is)."""
        present = set(self._sources)
        added = tuple(source for source in Redactor(values)._sources if source not in present)
        if not added:  # nothing new: keep this redactor and the matcher it has built
            return self
        new = Redactor()
        new._sources = self._sources + added
        return new

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for _, names in self._sources for name in names)

    def _compiled(self) -> _Matcher:
        matcher = self._matcher
        if matcher is None:
            with self._lock:
                if self._matcher is None:
                    self._matcher = _compile(self._sources)
                matcher = self._matcher
        return matcher

    def _redact(self, data: bytes) -> bytes | None:
        """``data`` redacted, or None when there was nothing to redact."""
        matcher = self._compiled()
        runs = self._runs(matcher, data)
        if not runs:
            return None
        parts: list[bytes] = []
        copied = 0  # data[:copied] is in parts
        for start, end, names in runs:
            if names:
                parts += (data[copied:start], matcher.marker(names))
                copied = end
        if not parts:
            return None
        parts.append(data[copied:])
        return b"".join(parts)

    def names_in(self, text: str) -> frozenset[str]:
        """The names of the secrets whose values (or their encodings) ``text`` holds."""
        if not self._sources or not text:
            return frozenset()
        runs = self._runs(self._compiled(), text.encode(_UTF8, _ERRORS))
        return frozenset().union(*(names for _, _, names in runs))

    @staticmethod
    def _runs(matcher: _Matcher, data: bytes) -> list[_Span]:
        """The spans of ``data`` to replace, each with its names (empty: a kept marker)."""
        found = matcher.automaton.find_matches_as_indexes(data, overlapping=True)
        if not found:
            return []
        matches: list[_Span] = []
        tokens: list[_Span] = []
        for pattern, start, end in found:
            if pattern == matcher.marker_start:
                kept_end = matcher.marker_end(data, start)
                if kept_end is not None:
                    matches.append((start, kept_end, _KEEP))
            names = matcher.names[pattern]
            if names:
                (tokens if matcher.token_only[pattern] else matches).append((start, end, names))
        return _with_tokens(data, matches, tokens) if tokens else _merge(matches)

    def redact(self, text: str) -> str:
        """``text`` with every secret value and encoding replaced by its marker."""
        if not isinstance(text, str):
            raise TypeError(f"redact() takes str, not {type(text).__name__}")
        if not self._sources:
            return text
        redacted = self._redact(text.encode(_UTF8, _ERRORS))
        return text if redacted is None else redacted.decode(_UTF8, _ERRORS)

    def redact_bytes(self, data: bytes | bytearray | memoryview) -> bytes:
        """Like :meth:`redact`, over UTF-8 (or any ASCII-compatible) bytes."""
        raw = bytes(data)
        if not self._sources:
            return raw
        redacted = self._redact(raw)
        return raw if redacted is None else redacted

    def redact_json(self, obj: object) -> Any:
        """A redacted copy of a JSON-like value: strings (dict keys too) are redacted,
        tuples become lists, and a number whose digits spell a value becomes its marker.
        Anything else is turned into a redacted string rather than passed through. (Two
        keys that redact to the same marker become one key, the later value winning.)

        One matcher pass over all the strings at once finds the few that need redacting,
        so a document costs one walk of its structure and one scan of its text.
        """
        root: list[Any] = [None]
        places: list[_Place] = []
        self._copy_json(obj, root, 0, places)
        for index in self._affected([place[2] for place in places]):
            container, key, text, is_key = places[index]
            redacted = self.redact(text)
            if redacted == text:
                continue
            if is_key:  # rename in place, keeping the order of the keys
                items = list(container.items())
                container.clear()
                container.update((redacted if k == key else k, v) for k, v in items)
            else:
                container[key] = redacted
        return root[0]

    def _copy_json(self, obj: object, container: Any, key: Any, places: list[_Place]) -> None:
        """Copy ``obj`` into ``container[key]``, noting every text to check in ``places``."""
        if type(obj) is str or isinstance(obj, str):
            container[key] = obj
            places.append((container, key, obj, False))
        elif obj is None or isinstance(obj, bool):
            container[key] = obj
        elif isinstance(obj, int):
            container[key] = obj
            places.append((container, key, int.__repr__(obj), False))
        elif isinstance(obj, float):
            container[key] = obj
            places.append((container, key, float.__repr__(obj), False))
        elif isinstance(obj, Mapping):
            copied: dict[Any, Any] = {}
            container[key] = copied
            # values first: a key renamed by redaction must not move its value's place
            for item_key, value in obj.items():
                if type(value) is str:  # the common case, without a call
                    copied[item_key] = value
                    places.append((copied, item_key, value, False))
                else:
                    self._copy_json(value, copied, item_key, places)
            for item_key in copied:
                if type(item_key) is str:
                    places.append((copied, item_key, item_key, True))
                elif not (item_key is None or isinstance(item_key, bool)):
                    places.append((copied, item_key, str(item_key), True))
        elif isinstance(obj, list | tuple):
            items: list[Any] = list(obj)
            container[key] = items
            for index, item in enumerate(items):
                if type(item) is str:
                    places.append((items, index, item, False))
                else:
                    self._copy_json(item, items, index, places)
        elif isinstance(obj, bytes | bytearray | memoryview):
            container[key] = self.redact_bytes(obj)
        else:
            text = str(obj)
            container[key] = text
            places.append((container, key, text, False))

    def _affected(self, texts: list[str]) -> list[int]:
        """Indexes of the ``texts`` that some pattern may touch, found in one pass."""
        if not texts or not self._sources:
            return []
        data = "\0".join(texts).encode(_UTF8, _ERRORS)
        found = self._compiled().automaton.find_matches_as_indexes(data, overlapping=True)
        if not found:
            return []
        offsets = sorted({at for _, start, end in found for at in (start, end - 1)})
        # a match across two texts flags both; redacting each alone then decides
        if data.count(b"\0") == len(texts) - 1:  # texts are told apart by counting NULs
            affected, index, counted = set(), 0, 0
            for at in offsets:
                index += data.count(b"\0", counted, at)
                counted = at
                affected.add(index)
            return sorted(affected)
        lengths = (len(text.encode(_UTF8, _ERRORS)) + 1 for text in texts[:-1])
        starts = list(itertools.accumulate(lengths, initial=0))
        return sorted({bisect.bisect_right(starts, at) - 1 for at in offsets})

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.names))
        return f"<Redactor values={len(self._sources)} names=[{names}]>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Redactor holds secret values and cannot be pickled")

    def __copy__(self) -> Redactor:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, object]) -> Redactor:
        return self


# -- logging --------------------------------------------------------------------------------
current_redactor: contextvars.ContextVar[Redactor | None] = contextvars.ContextVar(
    "strongroom_redactor", default=None
)


@contextlib.contextmanager
def redacting(redactor: Redactor) -> Iterator[Redactor]:
    """Make ``redactor`` the current one (for :class:`RedactingFilter`) inside the block.

    Context variables follow asyncio tasks and ``asyncio.to_thread``, not a thread
    started by hand: code that starts one must copy the context into it.
    """
    token = current_redactor.set(redactor)
    try:
        yield redactor
    finally:
        current_redactor.reset(token)


# Attributes every LogRecord has; anything else was passed through ``extra=``.
_STANDARD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
}
_WITHHELD: Final = "[log message withheld: redaction failed]"
_EXCEPTION_FORMATTER: Final = logging.Formatter()


def _safe_str(obj: object, convert: Any = str) -> str:
    try:
        return str(convert(obj))
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


class RedactingFilter(logging.Filter):
    """Redacts each log record with the current run's redactor (or a fixed one).

    Attach it to handlers, not loggers: a logger's filters miss the records its children
    propagate to it. It merges ``msg % args`` into ``msg``, redacts the message, the
    formatted exception (then drops ``exc_info``: its frames hold live values, and a
    formatter would re-format it unredacted), ``stack_info`` and ``extra=`` fields.
    It never raises and never drops a record: if redacting fails, the message is
    replaced with a notice.
    """

    def __init__(self, redactor: Redactor | None = None, name: str = "") -> None:
        super().__init__(name)
        self._fixed = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not super().filter(record):  # the standard by-logger-name filter
            return False
        redactor = self._fixed if self._fixed is not None else current_redactor.get()
        if redactor is None:
            return True
        try:
            _scrub(record, redactor)
        except Exception:
            _withhold(record)
        return True


def _scrub(record: logging.LogRecord, redactor: Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging would print msg and args raw
        message = f"{_safe_str(record.msg)} (args: {_safe_str(record.args, repr)})"
    record.msg = redactor.redact(message)
    record.args = None
    if record.exc_info is not None and not record.exc_text:
        record.exc_text = _EXCEPTION_FORMATTER.formatException(record.exc_info)
    record.exc_info = None
    if record.exc_text:
        record.exc_text = redactor.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)
    for key, value in list(vars(record).items()):
        if key == "message" and isinstance(value, str):
            record.message = record.msg
        elif key == "color_message":  # uvicorn's coloured copy of msg, formatted with args
            record.__dict__[key] = record.msg
        elif key not in _STANDARD_ATTRS:
            setattr(record, key, redactor.redact_json(value))


def _withhold(record: logging.LogRecord) -> None:
    for key in list(vars(record)):
        if key not in _STANDARD_ATTRS:
            with contextlib.suppress(Exception):
                setattr(record, key, _WITHHELD)
    record.msg, record.args = _WITHHELD, None
    record.exc_info = record.exc_text = record.stack_info = None
    with contextlib.suppress(AttributeError):
        del record.message
