"""Throughput of the redactor over ~50 MB of run output with 1,000 secret values.

Builds realistic output (log lines and JSON step results, some non-ASCII), plants
secret values in it in every encoding the redactor knows (plain, URL-quoted,
JSON-escaped, hex, base64 inside longer base64 strings), and times ``Redactor.redact``,
``redact_bytes`` and ``redact_json`` against baselines measured in the same run on the
same text: a plain copy (encoding the text to UTF-8) and a one-pattern ``str.find`` /
``bytes.count``, the least any scan can cost. Every run checks that no planted value is
left in the output. Pure CPU, no server. Run by hand:

    .venv/bin/python bench/redact_throughput.py [--mb 50] [--values 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ahocorasick_rs
from tests.support import encodings

from _common import machine_line, table  # the bench directory is not a package
from strongroom.server.redact import Redactor

WORDS = [
    *("GET", "POST", "PUT", "/v1/items", "/v1/users/42", "/healthz", "status=200"),
    *("status=404", "took=12ms", "request_id=req_1f2e", "user=alice", "user=bob"),
    *("connection", "reset", "retrying", "step=3", "kind=transform", "tool=http", "ok"),
    *("warning", "cache", "miss", "hit", "rows=17", "größe=3", "статус=ok"),
]


COPY = "baseline: text.encode() (a copy)"


def secret_values(count: int, rng: random.Random) -> dict[str, str]:
    """Values shaped like real secrets: API keys, passwords, tokens, a few PEM blocks."""
    punctuated = string.ascii_letters + string.digits + "!@#$%^&*()-_=+/?:;,.<>"
    values: dict[str, str] = {}
    for i in range(count):
        kind = i % 5
        if kind == 0:
            value = "sk-live-" + rng.randbytes(16).hex()
        elif kind == 1:
            value = "".join(rng.choices(punctuated, k=rng.randint(12, 32)))
        elif kind == 2:
            value = base64.urlsafe_b64encode(rng.randbytes(30)).decode().rstrip("=")
        elif kind == 3:
            value = "pässwört-" + "".join(rng.choices("ключсекрет秘密" + string.digits, k=10))
        else:
            body = base64.b64encode(rng.randbytes(90)).decode()
            value = "-----BEGIN KEY-----\n" + body[:64] + "\n" + body[64:] + "\n-----END KEY-----"
        values[f"secret_{i}"] = value
    return values


def encoded(value: str, rng: random.Random) -> str:
    """``value`` as some step could print it."""
    form = rng.randrange(6)
    if form == 0:
        return value
    if form == 1:
        return urllib.parse.quote(value, safe="")
    if form == 2:
        return json.dumps(value)[1:-1]
    if form == 3:
        return value.encode().hex()
    prefix = rng.randbytes(rng.randrange(3)) + b"user:"
    return base64.b64encode(prefix + value.encode()).decode()


def make_text(megabytes: float, values: list[str], rng: random.Random) -> tuple[str, list[str]]:
    """Log and JSON lines, about one in 500 carrying a secret. Returns the text and the
    values planted in it."""
    target = int(megabytes * 1_000_000)
    lines: list[str] = []
    planted: list[str] = []
    size = 0
    while size < target:
        words = " ".join(rng.choices(WORDS, k=rng.randint(6, 14)))
        secret = ""
        if rng.random() < 0.002:
            value = rng.choice(values)
            planted.append(value)
            secret = encoded(value, rng)
        if rng.random() < 0.5:
            line = f"2025-03-01T12:{rng.randrange(60):02d}:{rng.randrange(60):02d}Z INFO {words}"
            line += f" token={secret}" if secret else ""
        else:
            output = {"step": rng.randrange(9), "text": words, "rows": [rng.randrange(99)] * 3}
            if secret:
                output["header"] = f"Bearer {secret}"
            line = json.dumps({"level": "info", "output": output}, ensure_ascii=False)
        lines.append(line)
        size += len(line.encode()) + 1
    return "\n".join(lines) + "\n", planted


def check_no_leaks(redacted: bytes, planted: set[str]) -> None:
    """Fail when any encoding tests/support.py knows of a planted value is left."""
    needles = {needle for value in planted for needle in encodings(value).values()}
    left = ahocorasick_rs.BytesAhoCorasick(list(needles)).find_matches_as_indexes(redacted)
    if left:
        raise SystemExit(f"{len(left)} encodings of planted values were not redacted")


def best_of(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--values", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = random.Random(20250301)
    values = secret_values(args.values, rng)
    text, planted = make_text(args.mb, list(values.values()), rng)
    data = text.encode()
    megabytes = len(data) / 1_000_000
    json_lines = [line for line in text.splitlines() if line.startswith("{")]
    json_docs = [json.loads(line) for line in json_lines[: len(json_lines) // 5]]
    json_mb = sum(len(line.encode()) + 1 for line in json_lines[: len(json_docs)]) / 1_000_000

    build_start = time.perf_counter()
    redactor = Redactor.from_secrets(values)
    redactor.redact("warm up: builds the matcher")
    build_s = time.perf_counter() - build_start
    small = Redactor.from_secrets(dict(list(values.items())[:10]))

    check_no_leaks(redactor.redact(text).encode(), set(planted))
    check_no_leaks(redactor.redact_bytes(data), set(planted))
    markers = redactor.redact(text).count("[REDACTED:")
    ascii_text = text.encode("ascii", "replace").decode()

    rows: list[list[object]] = []
    rates: dict[str, float] = {}

    def row(name: str, size_mb: float, run: Callable[[], object]) -> None:
        seconds = best_of(args.repeat, run)
        rate = rates[name] = size_mb / seconds
        copy = rates.get(COPY, rate)  # the first row is the copy itself
        rows.append([name, round(size_mb, 1), seconds * 1000, rate, f"{copy / rate:.1f}x"])

    needle = "sk-live-ffffffff"
    row(COPY, megabytes, lambda: text.encode())
    row("baseline: str.find, 1 pattern", megabytes, lambda: text.find(needle))
    row("baseline: bytes.count, 1 pattern", megabytes, lambda: data.count(needle.encode()))
    row(f"redact(str), {args.values} values", megabytes, lambda: redactor.redact(text))
    row(f"redact_bytes, {args.values} values", megabytes, lambda: redactor.redact_bytes(data))
    row(
        f"redact(str), {args.values} values, ASCII text",
        megabytes,
        lambda: redactor.redact(ascii_text),
    )
    row("redact(str), 10 values", megabytes, lambda: small.redact(text))
    row(f"redact_json, {args.values} values", json_mb, lambda: redactor.redact_json(json_docs))

    print(f"# redact throughput, {machine_line()}")
    print(
        f"{megabytes:.1f} MB of text, {len(planted)} planted values, {markers} markers; "
        f"{args.values} values, matcher built in {build_s * 1000:.0f} ms; best of {args.repeat}"
    )
    print()
    print(table(["case", "MB", "ms", "MB/s", "time/MB vs copy"], rows))
    print(
        "\ntime/MB vs copy: the case's time per MB over that of encoding the text to UTF-8 "
        "(a copy), measured in the same run: 1.0x = as fast as copying the text."
    )


if __name__ == "__main__":
    main()
