"""The redactor: every value, in every encoding, at any place, becomes its marker."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import copy
import html
import io
import json
import logging
import pickle
import re
import string
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from strongroom.server.logs import JSONFormatter
from strongroom.server.redact import (
    MIN_ENCODED_LENGTH,
    MIN_LENGTH,
    RedactingFilter,
    Redactor,
    current_redactor,
    redacting,
)

from .support import canary, encodings, find_leaks

UNICODE = "pässwörd-ключ-🔑-秘密"
PUNCTUATED = 'p@ss/w0rd&"<q>+ \\x%=?#'
MULTILINE = (
    "-----BEGIN KEY-----\nMIIBOgIBAAJBAKj34GkxFhD9\r\nZ0123456789abcdefXYZ\n-----END KEY-----\n"
)
VALUES = [canary("plain"), UNICODE, PUNCTUATED, MULTILINE, "sk-" + "Zz9_" * 10]


def leaks(value: str, text: str | bytes) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    return find_leaks(value, data)


# -- every encoding ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", VALUES, ids=["canary", "unicode", "punctuated", "pem", "key"])
def test_every_encoding_from_support_is_redacted(value: str) -> None:
    redactor = Redactor.from_secrets({"api_key": value})
    forms = encodings(value)
    assert {"plain", "url", "url_plus", "hex", "base64_0", "base64_1", "base64_2"} <= set(forms)
    for name, encoded in forms.items():
        text = "before:" + encoded.decode() + ":after"
        redacted = redactor.redact(text)
        assert leaks(value, redacted) == [], name
        assert "[REDACTED:api_key]" in redacted, name
        assert redacted.startswith("before:") and redacted.endswith(":after"), name
        as_bytes = redactor.redact_bytes(b"\xff\xfe" + encoded + b"\x00")
        assert leaks(value, as_bytes) == [], name


def _own_encodings(value: str) -> dict[str, str]:
    """Spellings the redactor promises beyond tests/support.py."""
    raw = value.encode()
    ascii_json = json.dumps(value)[1:-1]
    return {
        "quote_default_safe": urllib.parse.quote(value),
        "quote_lower_percent": re.sub(
            "%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(value, safe="")
        ),
        "json_ascii": ascii_json,
        "json_unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "json_twice": json.dumps(ascii_json)[1:-1],
        "json_slashes": ascii_json.replace("/", "\\/"),
        "html": html.escape(value),
        "hex_lower": raw.hex(),
        "hex_upper": raw.hex().upper(),
        "base64_whole": base64.b64encode(raw).decode(),
        "base64url_unpadded": base64.urlsafe_b64encode(raw).decode().rstrip("="),
    }


@pytest.mark.parametrize("value", VALUES, ids=["canary", "unicode", "punctuated", "pem", "key"])
def test_own_encodings_are_redacted(value: str) -> None:
    redactor = Redactor.from_secrets({"s": value})
    for name, encoded in _own_encodings(value).items():
        redacted = redactor.redact(f"<{encoded}>")
        assert encoded not in redacted, name
        assert redacted == "<[REDACTED:s]>", name


@pytest.mark.parametrize(
    "value",
    [canary(), UNICODE, PUNCTUATED, "abcdefghij"],
    ids=["canary", "unicode", "punctuated", "short"],
)
@pytest.mark.parametrize("altchars", [None, b"-_"], ids=["standard", "urlsafe"])
def test_value_inside_longer_base64_is_found_at_every_offset(
    value: str, altchars: bytes | None
) -> None:
    redactor = Redactor.from_secrets({"s": value})
    for before in range(7):
        for after in range(4):
            data = b"\x01" * before + value.encode() + b"\xfe" * after
            encoded = base64.b64encode(data, altchars).decode()
            redacted = redactor.redact(f"Authorization: Basic {encoded}\n")
            assert leaks(value, redacted) == [], (before, after)
            assert "[REDACTED:s]" in redacted


def test_jwt_payload_is_redacted() -> None:
    token = canary("jwt")
    payload = base64.urlsafe_b64encode(json.dumps({"sub": "u1", "tok": token}).encode())
    jwt = "eyJhbGciOiJIUzI1NiJ9." + payload.decode().rstrip("=") + ".c2lnbmF0dXJl"
    redacted = Redactor.from_secrets({"jwt_secret": token}).redact(jwt)
    assert leaks(token, redacted) == []
    assert "[REDACTED:jwt_secret]" in redacted


def test_value_in_json_in_a_json_string_is_redacted() -> None:
    value = 'quote"and\\backslash'
    text = json.dumps({"log": json.dumps({"password": value})})
    redacted = Redactor.from_secrets({"pw": value}).redact(text)
    assert "quote" not in redacted and "backslash" not in redacted
    assert "[REDACTED:pw]" in redacted


# -- positions and structures -----------------------------------------------------------------
def test_values_mid_word_and_repeated() -> None:
    value = canary()
    redactor = Redactor.from_secrets({"k": value})
    text = f"{value}xx{value}{value}yy{value}"
    assert redactor.redact(text) == "[REDACTED:k]xx[REDACTED:k][REDACTED:k]yy[REDACTED:k]"


def test_redact_json_walks_keys_values_and_nesting() -> None:
    key, pin = canary("key"), "12345678"
    redactor = Redactor.from_secrets({"key": key, "pin": pin})
    doc = {
        key: {"nested": [key, f"Bearer {key}", {"deeper": (key, 1, 2.5, True, None)}]},
        "pin": int(pin),
        "count": 3,
        "encoded": base64.b64encode(key.encode()).decode(),
    }
    original = copy.deepcopy(doc)
    redacted = redactor.redact_json(doc)
    assert doc == original  # a copy; the input is untouched
    assert redacted == {
        "[REDACTED:key]": {
            "nested": [
                "[REDACTED:key]",
                "Bearer [REDACTED:key]",
                {"deeper": ["[REDACTED:key]", 1, 2.5, True, None]},
            ]
        },
        "pin": "[REDACTED:pin]",
        "count": 3,
        "encoded": "[REDACTED:key]",
    }
    assert leaks(key, json.dumps(redacted)) == []


def test_redact_json_turns_other_objects_into_redacted_strings() -> None:
    value = canary()

    class Holder:
        def __str__(self) -> str:
            return f"Holder({value})"

    redactor = Redactor.from_secrets({"v": value})
    assert redactor.redact_json([Holder()]) == ["Holder([REDACTED:v])"]
    assert redactor.redact_json({1: value.encode()}) == {1: b"[REDACTED:v]"}


def test_redact_json_renames_keys_in_place_and_handles_scalars() -> None:
    value = canary()
    redactor = Redactor.from_secrets({"v": value, "n": "31337"})
    doc = {"a": 1, value: 2, "z": {31337: value}}
    redacted = redactor.redact_json(doc)
    assert list(redacted) == ["a", "[REDACTED:v]", "z"]
    assert redacted["z"] == {"[REDACTED:n]": "[REDACTED:v]"}
    assert redactor.redact_json(value) == "[REDACTED:v]"
    assert redactor.redact_json(31337) == "[REDACTED:n]"
    assert redactor.redact_json(313370) == "[REDACTED:n]0"  # digits are text too
    assert redactor.redact_json(4242) == 4242
    assert redactor.redact_json(None) is None


def test_redact_json_checks_each_string_alone() -> None:
    value = "first-half\nsecond-half"
    redactor = Redactor.from_secrets({"v": value})
    # the two lines of the value, each in its own string, are redacted as lines
    assert redactor.redact_json(["first-half", "second-half"]) == ["[REDACTED:v]"] * 2
    # but a value that only appears across two strings is in neither
    glued = Redactor.from_secrets({"g": "abc-def-ghi"})
    assert glued.redact_json(["xx abc-d", "ef-ghi yy"]) == ["xx abc-d", "ef-ghi yy"]
    # strings that contain NUL (the separator of the one-pass check) are fine too
    assert glued.redact_json(["a\0b", "abc-def-ghi\0", "\0"]) == ["a\0b", "[REDACTED:g]\0", "\0"]


# -- overlapping, derived and shared values ---------------------------------------------------
def test_secret_containing_another_is_redacted_whole_under_its_name() -> None:
    inner = canary("inner")
    outer = f"postgresql://app:{inner}@db:5432/app"
    redactor = Redactor.from_secrets({"db_password": inner, "db_url": outer})
    assert redactor.redact(f"url={outer};") == "url=[REDACTED:db_url];"
    assert redactor.redact(f"pw={inner};") == "pw=[REDACTED:db_password];"


def test_overlapping_secrets_leave_no_tail() -> None:
    redactor = Redactor.from_secrets({"a": "alpha-bravo", "b": "bravo-charlie"})
    redacted = redactor.redact("x alpha-bravo-charlie y")
    assert redacted == "x [REDACTED:a,b] y"


def test_adjacent_secrets_get_a_marker_each() -> None:
    redactor = Redactor.from_secrets({"a": "alpha-one", "b": "bravo-two"})
    assert redactor.redact("alpha-onebravo-two") == "[REDACTED:a][REDACTED:b]"


def test_two_secrets_sharing_a_value_are_both_named() -> None:
    redactor = Redactor.from_secrets({"prod_key": "same-value", "test_key": "same-value"})
    assert redactor.redact("k=same-value") == "k=[REDACTED:prod_key,test_key]"


def test_derived_values() -> None:
    api_key = canary("api")
    url = f"https://api.example.com/v1?api_key={api_key}&query=x"
    upper = api_key.upper()
    basic = base64.b64encode(b"admin:hunter2-pass").decode()
    redactor = Redactor.from_secrets(
        {"api_key": api_key, "db_user": "admin", "db_password": "hunter2-pass"},
        derived=[(upper, "api_key"), (basic, {"db_user", "db_password"})],
    )
    assert redactor.redact(f"GET {url}") == (
        "GET https://api.example.com/v1?api_key=[REDACTED:api_key]&query=x"
    )
    assert redactor.redact(f"shout {upper}") == "shout [REDACTED:api_key]"
    assert redactor.redact(f"Basic {basic}") == "Basic [REDACTED:db_password,db_user]"
    # a derived value that contains a secret is named after its own sources
    later = redactor.with_values([(f"key={api_key};v=2", ["api_key", "version"])])
    assert later.redact(f"key={api_key};v=2") == "[REDACTED:api_key,version]"


def test_with_values_returns_a_new_redactor() -> None:
    first = Redactor.from_secrets({"a": "alpha-value"})
    second = first.with_values([("derived-value", "a")])
    assert first.redact("derived-value") == "derived-value"
    assert second.redact("derived-value alpha-value") == "[REDACTED:a] [REDACTED:a]"
    assert first.with_values([("", "a"), ("  ", "a")]) is first
    assert second.names == frozenset({"a"})


# -- short, empty and multi-line values -------------------------------------------------------
def test_short_value_is_redacted_only_as_a_whole_token() -> None:
    redactor = Redactor.from_secrets({"pin": "123"})
    assert redactor.redact("pin=123;") == "pin=[REDACTED:pin];"
    assert redactor.redact('{"pin": "123"}') == '{"pin": "[REDACTED:pin]"}'
    assert redactor.redact("123") == "[REDACTED:pin]"
    assert redactor.redact("pin_123") == "pin_[REDACTED:pin]"
    assert redactor.redact("order 1234, a123, é123, 123ß") == "order 1234, a123, é123, 123ß"
    assert redactor.redact("€123") == "€[REDACTED:pin]"


def test_short_value_next_to_a_marker_is_a_token() -> None:
    redactor = Redactor.from_secrets({"pin": "77", "key": "long-secret"})
    redacted = redactor.redact("long-secret77 long-secretx77")
    assert redacted == "[REDACTED:key][REDACTED:pin] [REDACTED:key]x77"
    assert redactor.redact(redacted) == redacted


def test_value_of_min_length_is_redacted_everywhere() -> None:
    value = "wxyz"
    assert len(value) == MIN_LENGTH
    redactor = Redactor.from_secrets({"w": value})
    assert redactor.redact("awxyzb") == "a[REDACTED:w]b"
    assert redactor.redact("7778797a 7778797A") == "[REDACTED:w] [REDACTED:w]"  # hex: 8 chars
    assert redactor.redact("d3h5eg==") == "[REDACTED:w]"  # whole base64
    # the base64 fragments of a 4-character value are shorter than MIN_ENCODED_LENGTH
    assert len("d3h5") < MIN_ENCODED_LENGTH
    assert redactor.redact("d3h5") == "d3h5"


def test_empty_and_blank_values_are_never_patterns() -> None:
    redactor = Redactor.from_secrets({"empty": "", "blank": "  \n\t "})
    text = "  \n\t  some text  \n\t "
    assert redactor.redact(text) == text
    assert redactor.names == frozenset()


def test_multiline_value_lines_are_redacted_one_by_one() -> None:
    redactor = Redactor.from_secrets({"pem": MULTILINE})
    assert redactor.redact(MULTILINE) == "[REDACTED:pem]"
    for line in MULTILINE.splitlines():
        redacted = redactor.redact(f"log: {line.strip()}\n")
        assert redacted == "log: [REDACTED:pem]\n"
    crlf = MULTILINE.replace("\n", "\r\n")
    assert leaks(MULTILINE, redactor.redact(crlf)) == []
    assert "BEGIN" not in redactor.redact(crlf)


def test_short_lines_of_a_multiline_value_are_not_patterns() -> None:
    value = '{\n  "token": "abcdef123456"\n}\n'
    redactor = Redactor.from_secrets({"cfg": value})
    assert redactor.redact("{ } x") == "{ } x"
    assert redactor.redact('"token": "abcdef123456"') == "[REDACTED:cfg]"


def test_value_with_trailing_newline_is_found_stripped() -> None:
    redactor = Redactor.from_secrets({"k": "secret-from-echo\n"})
    assert redactor.redact('"secret-from-echo"') == '"[REDACTED:k]"'


# -- unicode ----------------------------------------------------------------------------------
def test_unicode_value_and_text() -> None:
    redactor = Redactor.from_secrets({"u": UNICODE})
    ascii_json = json.dumps(UNICODE)[1:-1]
    assert "\\ud83d\\udd11" in ascii_json
    text = f"ключ: {UNICODE} — {ascii_json} — {urllib.parse.quote(UNICODE)} ✓"
    assert redactor.redact(text) == "ключ: [REDACTED:u] — [REDACTED:u] — [REDACTED:u] ✓"


def test_text_that_is_not_valid_unicode_does_not_break_redaction() -> None:
    value = canary()
    redactor = Redactor.from_secrets({"v": value})
    assert redactor.redact(f"\udcff{value}\ud800") == "\udcff[REDACTED:v]\ud800"
    assert redactor.redact_bytes(b"\xff" + value.encode() + b"\xc3") == b"\xff[REDACTED:v]\xc3"


def test_many_values() -> None:
    values = {f"s{i}": canary(f"v{i}") for i in range(1000)}
    redactor = Redactor.from_secrets(values)
    text = " ".join(f"{name}={value}" for name, value in values.items())
    expected = " ".join(f"{name}=[REDACTED:{name}]" for name in values)
    assert redactor.redact(text) == expected


# -- the redactor itself never shows a value ------------------------------------------------
def test_repr_pickle_and_errors_never_show_a_value() -> None:
    value = canary()
    redactor = Redactor.from_secrets({"api_key": value}, derived=[(value + "x", "api_key")])
    assert repr(redactor) == "<Redactor values=2 names=[api_key]>"
    with pytest.raises(TypeError) as caught:
        pickle.dumps(redactor)
    assert value not in str(caught.value)
    assert copy.deepcopy(redactor) is redactor
    with pytest.raises(ValueError, match="secret names") as no_names:
        redactor.with_values([(value, [])])
    assert value not in str(no_names.value)
    with pytest.raises(TypeError, match="must be str") as not_str:
        Redactor.from_secrets({}, derived=[(value.encode(), "api_key")])  # type: ignore[list-item]
    assert value not in str(not_str.value)
    with pytest.raises(TypeError):
        redactor.redact(value.encode())  # type: ignore[arg-type]


def test_concurrent_first_use_builds_one_matcher() -> None:
    value = canary()
    redactor = Redactor.from_secrets({f"s{i}": f"{value}-{i}" for i in range(50)})
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(redactor.redact(f"{value}-7")))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["[REDACTED:s7]"] * 8


# -- the logging filter -----------------------------------------------------------------------
@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A real logger whose handler writes to a StringIO through a RedactingFilter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"strongroom.test.redact.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_filter_redacts_message_args_and_exception(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    value = canary()
    redactor = Redactor.from_secrets({"api_key": value})
    with redacting(redactor):
        logger.info(f"plain {value}")
        logger.info("args %s and %r", value, {"k": value})
        try:
            raise ValueError(f"bad key {value}")
        except ValueError:
            logger.exception("call failed for %s", value)
    assert current_redactor.get() is None
    output = stream.getvalue()
    assert leaks(value, output) == []
    assert "INFO plain [REDACTED:api_key]" in output
    assert "INFO args [REDACTED:api_key] and {'k': '[REDACTED:api_key]'}" in output
    assert "ERROR call failed for [REDACTED:api_key]" in output
    assert "Traceback (most recent call last)" in output
    assert "ValueError: bad key [REDACTED:api_key]" in output


def test_filter_scrubs_extra_fields_and_child_loggers(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    value = canary()
    handler = logger.handlers[0]
    handler.setFormatter(logging.Formatter("%(message)s %(detail)s"))
    child = logger.getChild("step")  # propagates to the parent's handler and its filter
    with redacting(Redactor.from_secrets({"k": value})):
        child.warning("step %d done", 3, extra={"detail": {"token": value}})
    assert stream.getvalue() == "step 3 done {'token': '[REDACTED:k]'}\n"


def test_filter_is_inactive_outside_a_run_and_can_hold_a_fixed_redactor(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    value = canary()
    logger.info("outside %s", value)
    assert f"outside {value}" in stream.getvalue()
    fixed = io.StringIO()
    handler = logging.StreamHandler(fixed)
    handler.addFilter(RedactingFilter(Redactor.from_secrets({"k": value})))
    logger.addHandler(handler)
    try:
        logger.info("fixed %s", value)
    finally:
        logger.removeHandler(handler)
    assert fixed.getvalue() == "fixed [REDACTED:k]\n"


def test_filter_never_makes_logging_raise(
    logged: tuple[logging.Logger, io.StringIO],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logger, stream = logged
    value = canary()

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError(value)

        def __repr__(self) -> str:
            raise RuntimeError(value)

    with redacting(Redactor.from_secrets({"k": value})):
        logger.info("%d items", value)  # wrong format: logging would print args raw
        logger.info("%s", Unprintable())
        logger.info(Unprintable())

        def broken(self: Redactor, text: str) -> str:
            raise RuntimeError("redactor bug")

        monkeypatch.setattr(Redactor, "redact", broken)
        logger.info("after the bug %s", value)
    output = stream.getvalue()
    assert leaks(value, output) == []
    assert "INFO %d items (args: ('[REDACTED:k]',))" in output
    assert "<unprintable Unprintable>" in output
    assert "INFO [log message withheld: redaction failed]" in output
    captured = capsys.readouterr()
    assert "Logging error" not in captured.err
    assert value not in captured.err


def test_filter_with_the_server_json_formatter(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    logger.handlers[0].setFormatter(JSONFormatter())
    value = canary()
    with redacting(Redactor.from_secrets({"k": value})):
        try:
            raise KeyError(value)
        except KeyError:
            logger.exception("lookup %s", value, extra={"args_seen": [value]})
    entry = json.loads(stream.getvalue())
    assert entry["message"] == "lookup [REDACTED:k]"
    assert entry["args_seen"] == ["[REDACTED:k]"]
    assert leaks(value, stream.getvalue()) == []


def test_context_follows_asyncio_tasks_and_copied_contexts(
    logged: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = logged
    value = canary()

    async def step() -> None:
        await asyncio.sleep(0)
        logger.info("task %s", value)

    async def run() -> None:
        with redacting(Redactor.from_secrets({"k": value})):
            await asyncio.gather(step(), asyncio.to_thread(logger.info, "thread %s", value))
            context = contextvars.copy_context()
            thread = threading.Thread(target=context.run, args=(logger.info, "copied %s", value))
            thread.start()
            thread.join()

    asyncio.run(run())
    assert sorted(stream.getvalue().splitlines()) == [
        "INFO copied [REDACTED:k]",
        "INFO task [REDACTED:k]",
        "INFO thread [REDACTED:k]",
    ]


# -- properties -------------------------------------------------------------------------------
long_values = st.text(min_size=MIN_LENGTH, max_size=40).filter(
    lambda value: len(value.strip()) >= MIN_LENGTH and not {"[", "]"} & set(value)
)


@settings(max_examples=300, deadline=None)
@given(value=long_values, before=st.text(max_size=60), after=st.text(max_size=60))
def test_property_embedded_value_never_leaks(value: str, before: str, after: str) -> None:
    assume(value not in "[REDACTED:s]")
    redactor = Redactor.from_secrets({"s": value})
    redacted = redactor.redact(before + value + after)
    assert value not in redacted
    assert leaks(value, redacted) == []
    assert leaks(value, redactor.redact_bytes((before + value + after).encode())) == []


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.text(string.ascii_letters, min_size=1, max_size=30), max_size=5),
    text=st.text(st.characters(exclude_categories=("L", "N", "Cs")), max_size=200),
)
def test_property_text_without_secrets_is_unchanged(values: list[str], text: str) -> None:
    redactor = Redactor.from_secrets({f"s{i}": value for i, value in enumerate(values)})
    assert redactor.redact(text) is text
    assert redactor.redact_bytes(text.encode()) == text.encode()


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=300), seed=st.binary(min_size=8, max_size=8))
def test_property_random_text_is_unchanged(text: str, seed: bytes) -> None:
    redactor = Redactor.from_secrets({"k": f"sk-{seed.hex()}", "p": "7" + seed.hex()[:2]})
    assume(f"7{seed.hex()[:2]}" not in text)
    assert redactor.redact(text) == text


@settings(max_examples=300, deadline=None)
@given(
    values=st.lists(
        st.text(st.characters(exclude_characters="[]", codec="utf-8"), max_size=12),
        min_size=1,
        max_size=3,
    ),
    chunks=st.lists(st.one_of(st.text(max_size=8), st.integers(0, 2)), max_size=12),
)
def test_property_redaction_is_idempotent(values: list[str], chunks: list[str | int]) -> None:
    redactor = Redactor.from_secrets({f"s{i}": value for i, value in enumerate(values)})
    text = "".join(
        chunk if isinstance(chunk, str) else values[chunk % len(values)] for chunk in chunks
    )
    once = redactor.redact(text)
    assert redactor.redact(once) == once


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3),
    texts=st.lists(
        st.lists(st.one_of(st.text(max_size=6), st.integers(0, 2), st.just("\0"))).map(tuple),
        max_size=8,
    ),
)
def test_property_redact_json_agrees_with_redact(
    values: list[str], texts: list[tuple[str | int, ...]]
) -> None:
    redactor = Redactor.from_secrets({f"s{i}": value for i, value in enumerate(values)})
    strings = [
        "".join(part if isinstance(part, str) else values[part % len(values)] for part in text)
        for text in texts
    ]
    assert redactor.redact_json(strings) == [redactor.redact(text) for text in strings]
    assert redactor.redact_json({"k": strings}) == {"k": [redactor.redact(t) for t in strings]}


# -- properties over many values at once --------------------------------------------------
def claimed_forms(value: str) -> set[str]:
    """Every spelling the module docstring promises to redact for ``value``, written out
    here independently of the implementation (and tests/support.py's, which it covers)."""
    if len(value.strip()) < MIN_LENGTH:
        return set()  # a short value: redacted only as a whole token
    pieces = {value, value.strip(), *(line.strip() for line in value.splitlines())}
    forms = {form.decode() for form in encodings(value).values()}
    for piece in (piece for piece in pieces if len(piece) >= MIN_LENGTH):
        ascii_json = json.dumps(piece)[1:-1]
        unicode_json = json.dumps(piece, ensure_ascii=False)[1:-1]
        quoted = [
            urllib.parse.quote(piece, safe=""),
            urllib.parse.quote_plus(piece),
            urllib.parse.quote(piece),
        ]
        forms.update(
            {piece, html.escape(piece), ascii_json, unicode_json, json.dumps(ascii_json)[1:-1]}
        )
        forms.update(quoted)
        forms.update(re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), q) for q in quoted)
        for escaped in (ascii_json, unicode_json):
            forms.add(escaped.replace("/", "\\/"))
            go = escaped.replace("<", "\\u003c").replace(">", "\\u003e")
            forms.add(go.replace("&", "\\u0026"))
        raw = piece.encode()
        encoded = {raw.hex(), raw.hex().upper()}
        for altchars in (None, b"-_"):
            whole = base64.b64encode(raw, altchars).decode()
            encoded.update((whole, whole.rstrip("=")))
            for skip in range(3):
                aligned = raw[skip:]
                stable = base64.b64encode(aligned[: len(aligned) // 3 * 3], altchars).decode()
                encoded.update((stable, stable[:-4]))
        forms.update(form for form in encoded if len(form) >= MIN_ENCODED_LENGTH)
    return forms


def unmarked(text: str) -> str:
    """``text`` with each marker replaced by a character no value here holds, so that what
    is left can be searched without a marker's own letters matching."""
    return re.sub(r"\[REDACTED:[^\]]*\]", "\x01", text)


# Values as hostile as text gets: unicode, regex and JSON metacharacters, newlines and
# other line breaks, and (drawn from a small alphabet) prefixes and overlaps of each other.
# Not "[" or "]" (the documented exception to idempotence) nor "\x01" (see unmarked).
HOSTILE_CHARS = st.characters(codec="utf-8", exclude_characters="[]\x01")
VALUE_TEXT = st.one_of(
    st.text(HOSTILE_CHARS, min_size=1, max_size=16),
    st.text(st.sampled_from("ab\\.*+?(){}|^$\"'/\n\r\t %&<>=é🔑"), min_size=1, max_size=10),
)
ENCODERS = [
    lambda v: v,
    lambda v: urllib.parse.quote(v, safe=""),
    lambda v: urllib.parse.quote_plus(v),
    lambda v: json.dumps(v)[1:-1],
    lambda v: json.dumps(json.dumps(v))[1:-1],
    lambda v: html.escape(v),
    lambda v: v.encode().hex(),
    lambda v: base64.b64encode(v.encode()).decode(),
    lambda v: base64.b64encode(b"\x07" + v.encode()).decode(),
    lambda v: base64.urlsafe_b64encode(b"ab" + v.encode()).decode().rstrip("="),
    lambda v: v.strip(),
    lambda v: (v.splitlines() or [v])[0].strip(),  # a line alone, as outputs split them
    lambda v: (v.splitlines() or [v])[-1],
]


@st.composite
def texts_with_values(draw: st.DrawFn) -> tuple[list[str], str]:
    values = draw(st.lists(VALUE_TEXT, min_size=1, max_size=4))
    if draw(st.booleans()):  # a value that begins with, ends with, or sits inside another
        base = values[0]
        cut = draw(st.integers(0, len(base)))
        values.append(draw(st.sampled_from([base[:cut], base[cut:], "x" + base + "y"])) or "z")
    parts = draw(
        st.lists(
            st.one_of(
                st.text(HOSTILE_CHARS, max_size=12),
                st.tuples(st.integers(0, len(values) - 1), st.integers(0, len(ENCODERS) - 1)),
            ),
            max_size=10,
        )
    )
    text = "".join(
        part if isinstance(part, str) else ENCODERS[part[1]](values[part[0]]) for part in parts
    )
    return values, text


@settings(max_examples=400, deadline=None)
@given(texts_with_values())
def test_property_no_value_nor_claimed_form_survives(case: tuple[list[str], str]) -> None:
    values, text = case
    redactor = Redactor.from_secrets({f"s{i}": value for i, value in enumerate(values)})
    redacted = redactor.redact(text)
    left = unmarked(redacted)
    for value in values:
        for form in claimed_forms(value):
            assert form not in left, (value, form)
    assert redactor.redact(redacted) == redacted  # idempotent
    assert redactor.redact_bytes(text.encode()) == redacted.encode()


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUE_TEXT, min_size=1, max_size=4), text=st.text(max_size=200))
def test_property_text_holding_no_value_is_returned_unchanged(values: list[str], text: str) -> None:
    """Whatever the values, text holding none of them (in any claimed spelling, or as a
    short value anywhere) is left exactly as it is."""
    assume("[REDACTED:" not in text)
    for value in values:
        assume(all(form not in text for form in claimed_forms(value)))
        assume(not value.strip() or value.strip() not in text)
    redactor = Redactor.from_secrets({f"s{i}": value for i, value in enumerate(values)})
    assert redactor.redact(text) == text
    assert redactor.redact_json({"t": [text, text]}) == {"t": [text, text]}


JSON_DOCS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(HOSTILE_CHARS, max_size=12)
    | st.integers(0, 3),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(HOSTILE_CHARS, max_size=8), children, max_size=4)
    ),
    max_leaves=15,
)


def assert_same_shape(redactor: Redactor, before: Any, after: Any) -> None:
    """``after`` is ``before`` with each text redacted alone, and nothing else changed."""
    if isinstance(before, str):
        assert after == redactor.redact(before)
    elif before is None or isinstance(before, bool):
        assert after is before
    elif isinstance(before, int | float):
        digits = redactor.redact(type(before).__repr__(before))
        assert after == before if digits == repr(before) else after == digits
    elif isinstance(before, list | tuple):
        assert isinstance(after, list)
        assert len(after) == len(before)
        for item_before, item_after in zip(before, after, strict=True):
            assert_same_shape(redactor, item_before, item_after)
    else:
        assert isinstance(after, dict)
        keys = {key: redactor.redact(key) for key in before}
        if len(set(keys.values())) == len(keys):  # no two keys redact to one marker
            assert list(after) == list(keys.values())  # same keys, same order
            for key, value in before.items():
                assert_same_shape(redactor, value, after[keys[key]])
        else:
            assert set(after) == set(keys.values())


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUE_TEXT, min_size=1, max_size=3), doc=JSON_DOCS, data=st.data())
def test_property_redact_json_keeps_the_structure(
    values: list[str], doc: Any, data: st.DataObject
) -> None:
    """Lists stay lists of the same length, mappings keep their keys in order, scalars stay
    where they were; only texts (and numbers whose digits spell a value) change, each as
    redact() would change it alone."""
    # put the values into the document: as strings, inside strings, and as keys
    placed = json.loads(json.dumps(doc))  # a plain copy to write into (tuples are lists)

    def plant(node: Any) -> Any:
        if isinstance(node, str) and data.draw(st.booleans()):
            value = values[data.draw(st.integers(0, len(values) - 1))]
            return node + value + node
        if isinstance(node, list):
            return [plant(item) for item in node]
        if isinstance(node, dict):
            return {plant(key): plant(item) for key, item in node.items()}
        return node

    placed = plant(placed)
    redactor = Redactor.from_secrets({f"s{i}": value for i, value in enumerate(values)})
    before = copy.deepcopy(placed)
    after = redactor.redact_json(placed)
    assert placed == before  # the input is not touched
    assert_same_shape(redactor, placed, after)
    for text in _strings(after):
        for value in values:
            for form in claimed_forms(value):
                assert form not in unmarked(text), (value, form)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _strings(key)
            yield from _strings(item)


def test_a_long_value_that_repeats_itself_compiles_at_once() -> None:
    """The forms of a 16 KiB value that repeats a short run took the DFA 40 s to build with
    the GIL held (the whole server stalled); past a few KiB of patterns the NFA is used,
    which builds them in milliseconds."""
    value = "ab" * 8192
    started = time.perf_counter()
    redactor = Redactor([(value, "big")])
    assert redactor.redact(f"x {value} y") == "x [REDACTED:big] y"
    assert time.perf_counter() - started < 2.0
