"""Canary values and a scanner that finds any form of them in bytes.

A canary is a planted secret value that cannot occur anywhere by chance, and neither can
any 4-character slice of it: alphabetic canaries are built from consonants that are no
hexadecimal digits (``ghjklmnpqrstvwxz`` in both cases), every 4-character window holds
one of the letters English and code seldom put next to other consonants (``jqvwxz``),
and no 4-character window (in any case, forwards or backwards) is one that occurs in the
project's own text (its sources, tests, documents, and the engine's package), which is
what logs and answers are made of. Numeric and hexadecimal canaries (for ``int(...)``)
are long enough that their decimal, hex, octal and binary forms, and their slices of 12
characters or more, are as unique.

:func:`forms` lists every form of a value to search for: cased, reversed, strided
(``[::2]``), every 4-character slice (a longer slice contains one), hex, base64 (both
alphabets, the three alignments), URL-quoted, JSON-escaped and, for numbers, the value
nearby (``±k``) and in other bases. :class:`Scanner` searches bytes for all of them in
one Aho-Corasick pass (``ahocorasick_rs``). Random bytes and base64 of random bytes
(ciphertext, keys) hold 4-character runs of any letters by chance, so a match shorter
than 8 characters counts only inside text: with printable bytes around it and not inside
a long base64-looking run. Matches of 8 characters or more count everywhere.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import os
import re
import secrets as random
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ahocorasick_rs

LETTERS = "ghjklmnpqrstvwxz"
ALPHABET = LETTERS + LETTERS.upper()
RARE = "jqvwxz"
RARE_BOTH = RARE + RARE.upper()
SHORT = 4  # the shortest slice searched for
LONG = 8  # a match at least this long counts wherever it is
NUMERIC_SLICE = 12  # digits and hex digits: slices at least this long
NUMERIC_NEAR = 16  # decimal forms searched for: the value ± this much

_ROOT = Path(__file__).resolve().parent.parent
_RUN = re.compile(rf"[{ALPHABET}]{{{SHORT},}}".encode())
_B64_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=_-")


# -- what the project's text is made of ----------
def _corpus_files() -> Iterator[Path]:
    for folder, patterns in (
        (_ROOT / "src", ("*.py",)),
        (_ROOT / "tests", ("*.py",)),
        (_ROOT / "docs", ("*.md",)),
        (_ROOT / "bench", ("*.py",)),
    ):
        for pattern in patterns:
            yield from folder.rglob(pattern)
    yield _ROOT / "README.md"
    try:
        import dbos

        yield from Path(dbos.__file__).parent.rglob("*.py")
    except ImportError:  # pragma: no cover - the engine is a dependency
        pass


@functools.cache
def blocked_windows() -> frozenset[str]:
    """Every 4-letter window of canary letters (lower-cased) in the project's own text and
    its engine's: a canary holding one could be 'found' in a log line or an answer."""
    found: set[str] = set()
    for path in _corpus_files():
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for match in _RUN.finditer(data):
            run = match.group().decode().lower()
            found.update(run[i : i + SHORT] for i in range(len(run) - SHORT + 1))
    return frozenset(found)


# -- making canaries ----------
def _windows(text: str) -> set[str]:
    low = text.lower()
    forward = {low[i : i + SHORT] for i in range(len(low) - SHORT + 1)}
    return forward | {w[::-1] for w in forward}


def alpha(length: int = 40, prefix: str = "Qz", suffix: str = "Xj") -> str:
    """A canary of canary letters (``length`` in all, prefix and suffix included)."""
    assert length >= len(prefix) + len(suffix) + SHORT
    blocked = blocked_windows()
    for _ in range(10_000):
        chars = list(prefix)
        while len(chars) < length - len(suffix):
            tail = chars[-3:]
            pool = ALPHABET if any(c in RARE_BOTH for c in tail) else RARE_BOTH
            chars.append(random.choice(pool))
        value = "".join(chars) + suffix
        windows = [value[i : i + SHORT] for i in range(len(value) - SHORT + 1)]
        if all(any(c in RARE_BOTH for c in w) for w in windows) and not (_windows(value) & blocked):
            return value
    raise AssertionError("could not make a canary")  # pragma: no cover


def numeric(digits: int = 18) -> str:
    """A decimal canary (``int(secrets.pin) + 1``)."""
    return str(random.randbelow(9 * 10 ** (digits - 1)) + 10 ** (digits - 1))


def hexadecimal(length: int = 32) -> str:
    """A hexadecimal canary (``int(secrets.hex, 16)``), holding letters and digits both."""
    while True:
        value = os.urandom(length // 2).hex()
        if re.search("[a-f]", value) and re.search("[0-9]", value) and value[0] != "0":
            return value


def basic_auth() -> tuple[str, str, str]:
    """``user:password``, its user and its password."""
    user, password = alpha(20, "Jq", "Wx"), alpha(28, "Zv", "Qj")
    return f"{user}:{password}", user, password


def service_json() -> tuple[str, str, str]:
    """A JSON credential, its client id and its client secret."""
    client_id, client_secret = alpha(22, "Vz", "Jw"), alpha(36, "Xq", "Zz")
    value = json.dumps({"client_id": client_id, "client_secret": client_secret})
    return value, client_id, client_secret


# -- the forms of a value ----------
def _cases(name: str, text: str) -> dict[str, str]:
    return {
        name: text,
        f"{name}.lower": text.lower(),
        f"{name}.upper": text.upper(),
        f"{name}.swapcase": text.swapcase(),
    }


def _b64(name: str, raw: bytes) -> dict[str, bytes]:
    """Base64 and URL-safe base64 of ``raw`` at the three alignments: the characters of
    ``b64encode(prefix + raw)`` that depend on ``raw`` alone (as tests/support.py does)."""
    found: dict[str, bytes] = {}
    for alphabet, encode in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
        for shift in range(3):
            encoded = encode(b"\x00" * shift + raw)
            start = {0: 0, 1: 4, 2: 4}[shift]
            found[f"{name}.{alphabet}{shift}"] = encoded[start : len(encoded) - 4]
    return found


def _text_encodings(name: str, text: str) -> dict[str, bytes]:
    raw = text.encode()
    found = {
        f"{name}.hex": raw.hex().encode(),
        f"{name}.HEX": raw.hex().upper().encode(),
        f"{name}.url": urllib.parse.quote(text, safe="").encode(),
        f"{name}.url_plus": urllib.parse.quote_plus(text).encode(),
        f"{name}.url_path": urllib.parse.quote(text).encode(),
        f"{name}.json": json.dumps(text).encode()[1:-1],
        f"{name}.json_twice": json.dumps(json.dumps(text)[1:-1]).encode()[1:-1],
        f"{name}.html": html.escape(text).encode(),
    }
    found.update(_b64(name, raw))
    return found


def _alpha_forms(value: str) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    reverse = value[::-1]
    texts = {**_cases("value", value), **_cases("reversed", reverse)}
    for step in (2, 3):
        for offset in range(step):
            strided = value[offset::step]
            texts.update(_cases(f"stride[{offset}::{step}]", strided))
            texts.update(_cases(f"stride[{offset}::{step}].reversed", strided[::-1]))
    for name, text in texts.items():
        found[name] = text.encode()
    for name in ("value", "value.lower", "value.upper", "reversed"):
        found.update(_text_encodings(name, texts[name]))
    for origin, text in (("value", value), ("reversed", reverse)):
        for i in range(len(text) - SHORT + 1):
            for cased, piece in _cases(f"{origin}[{i}:{i + SHORT}]", text[i : i + SHORT]).items():
                found[cased] = piece.encode()
    return found


def _digit_slices(name: str, text: str) -> dict[str, bytes]:
    return {
        f"{name}[{i}:{i + NUMERIC_SLICE}]": text[i : i + NUMERIC_SLICE].encode()
        for i in range(len(text) - NUMERIC_SLICE + 1)
    }


def _number_forms(name: str, number: int) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for k in range(-NUMERIC_NEAR, NUMERIC_NEAR + 1):
        found[f"{name}{k:+d}" if k else name] = str(number + k).encode()
    decimal = str(number)
    found.update(_digit_slices(f"{name}.decimal", decimal))
    found.update(_digit_slices(f"{name}.decimal.reversed", decimal[::-1]))
    found[f"{name}.grouped"] = f"{number:,}".encode()
    found[f"{name}+1.grouped"] = f"{number + 1:,}".encode()
    found[f"{name}.underscored"] = f"{number:_}".encode()
    found[f"{name}.float"] = repr(float(number)).encode()
    for base, spelled in (("x", f"{number:x}"), ("o", f"{number:o}"), ("b", f"{number:b}")):
        found[f"{name}.base_{base}"] = spelled.encode()
        found.update(_digit_slices(f"{name}.base_{base}", spelled))
    found[f"{name}.base_X"] = f"{number:X}".encode()
    return found


def kind_of(value: str) -> str:
    if value.isdigit():
        return "numeric"
    if re.fullmatch(r"[0-9a-fA-F]+", value):
        return "hex"
    if re.fullmatch(f"[{ALPHABET}]+", value):
        return "alpha"
    return "whole"


def forms(value: str) -> dict[str, bytes]:
    """Every form of ``value`` to search for, by name (a name says how it was made).

    - alphabetic canaries: the value, reversed, strided by 2 and 3, each in four cases;
      every 4-character slice of the value and of its reverse, in four cases; hex, base64
      and URL-safe base64 (three alignments), URL- and JSON-quoted, of the value, its
      lower and upper case and its reverse;
    - numeric canaries: the decimal and the decimals ±1..±16, grouped, as a float, in hex,
      octal and binary, and every slice of 12 digits or more (forwards and backwards);
    - hexadecimal canaries: the text in both cases and reversed, its slices of 12 or more,
      and the number it spells as numeric canaries are searched for;
    - any other value (``user:password``, JSON, a URL): the whole value in four cases and
      reversed, with its encodings. Its canary parts are canaries of their own.
    """
    kind = kind_of(value)
    if kind == "alpha":
        found = _alpha_forms(value)
    elif kind == "numeric":
        found = {"value.reversed": value[::-1].encode()}
        found.update(_number_forms("value", int(value)))
        found.update(_text_encodings("value", value))
    elif kind == "hex":
        found = {name: text.encode() for name, text in _cases("value", value).items()}
        found["reversed"] = value[::-1].encode()
        found.update(_digit_slices("value.lower", value.lower()))
        found.update(_digit_slices("value.upper", value.upper()))
        found.update(_text_encodings("value", value))
        found.update(_number_forms("int16", int(value, 16)))
    else:
        texts = {**_cases("value", value), **_cases("reversed", value[::-1])}
        found = {name: text.encode() for name, text in texts.items()}
        found.update(_text_encodings("value", value))
        found.update(_text_encodings("value.lower", value.lower()))
    return {name: needle for name, needle in found.items() if len(needle) >= SHORT}


# -- the scanner ----------
@dataclass(frozen=True)
class Canary:
    """A planted value: ``label`` names it in reports (``k``, ``basic_auth.password``)."""

    label: str
    value: str


@dataclass(frozen=True)
class Hit:
    label: str
    form: str
    start: int
    end: int
    context: str  # 40 bytes around, the match masked

    def __str__(self) -> str:
        return f"{self.label} as {self.form} ({self.end - self.start} bytes): {self.context}"


@dataclass
class Scanner:
    """Finds every form of every canary in bytes, in one pass."""

    canaries: list[Canary]
    _needles: list[bytes] = field(default_factory=list, repr=False)
    _meta: list[tuple[str, str]] = field(default_factory=list, repr=False)
    _automaton: ahocorasick_rs.BytesAhoCorasick | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        seen: dict[bytes, int] = {}
        for canary in self.canaries:
            for form, needle in forms(canary.value).items():
                if needle in seen:
                    continue  # the first canary and form that spells it names it
                seen[needle] = len(self._needles)
                self._needles.append(needle)
                self._meta.append((canary.label, form))
        self._automaton = ahocorasick_rs.BytesAhoCorasick(self._needles)

    def __len__(self) -> int:
        return len(self._needles)

    def scan(self, haystack: bytes) -> list[Hit]:
        """The forms found in ``haystack``: matches of a canary that overlap or touch are
        one hit (a leaked 10-character slice is one hit of 10 bytes, not seven)."""
        assert self._automaton is not None
        raw = self._automaton.find_matches_as_indexes(haystack, overlapping=True)
        spans: dict[str, list[tuple[int, int, str]]] = {}
        for index, start, end in raw:
            label, form = self._meta[index]
            spans.setdefault(label, []).append((start, end, form))
        merged_by_label: dict[str, list[tuple[int, int, str, int]]] = {}
        for label, found in spans.items():
            found.sort()
            merged: list[tuple[int, int, str, int]] = []  # start, end, longest form, its length
            for start, end, form in found:
                if merged and start <= merged[-1][1]:
                    first, last, best, size = merged[-1]
                    if end - start > size:
                        best, size = form, end - start
                    merged[-1] = (first, max(last, end), best, size)
                else:
                    merged.append((start, end, form, end - start))
            merged = [
                (start, end, form if size == end - start else f"slices from {form}", size)
                for start, end, form, size in merged
            ]
            merged_by_label[label] = merged
        # A long match (a canary, or 8 characters of one) is that canary's: the 4-character
        # slices of another canary that fall inside it by chance are not hits of their own.
        long_spans = [
            (start, end, label)
            for label, merged in merged_by_label.items()
            for start, end, _, _ in merged
            if end - start >= LONG
        ]
        hits: list[Hit] = []
        for label, merged in merged_by_label.items():
            for start, end, form, _ in merged:
                if end - start < LONG and (
                    not _in_text(haystack, start, end)
                    or any(s < end and start < e and o != label for s, e, o in long_spans)
                ):
                    continue
                hits.append(Hit(label, form, start, end, _context(haystack, start, end, label)))
        hits.sort(key=lambda hit: hit.start)
        return hits

    def findings(self, places: Iterable[tuple[str, bytes]]) -> list[str]:
        """One readable line per hit, naming the place it was found in."""
        return [f"{place}: {hit}" for place, data in places for hit in self.scan(data)]


def _in_text(haystack: bytes, start: int, end: int, around: int = 8) -> bool:
    """Whether a short match stands in text: printable bytes around it, and not inside a
    long run of base64 characters holding digits (a key, a token, a ciphertext)."""
    window = haystack[max(0, start - around) : end + around]
    if any(not (32 <= b < 127 or b in (9, 10, 13)) for b in window):
        return False
    b64 = _B64_CHARS
    left, floor = start, max(0, start - 64)
    while left > floor and haystack[left - 1] in b64:
        left -= 1
    right, ceiling = end, min(len(haystack), end + 64)
    while right < ceiling and haystack[right] in b64:
        right += 1
    return not (right - left >= 24 and re.search(rb"[0-9]", haystack[left:right]))


def _context(haystack: bytes, start: int, end: int, label: str, width: int = 40) -> str:
    before = haystack[max(0, start - width // 2) : start]
    after = haystack[end : end + width // 2]
    masked = f"<{label}:{end - start}>".encode()
    return repr(before + masked + after)
