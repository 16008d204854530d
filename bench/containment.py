"""Containment: the old worst case, a 128-byte task that used to freeze the whole API.

The task is two ``transform`` steps, ``$ lower(secrets.api_key) * N`` then ``$ 1``. Before
taint-based containment, every step rebuilt an Aho-Corasick redactor over every
secret-derived value, holding the GIL while it did (super-linear in the value's length),
so one such execution stalled ``/healthz`` and every other tenant's requests for seconds
to minutes. Now a derived value is hidden by its taint and the redactor compiles only the
secrets' own values, once per execution.

Against a real ``strongroom serve`` (SQLite by default; PostgreSQL with ``--postgres``),
with one secret of 40 characters, for each ``N`` of ``--multipliers`` (10,000, 25,000 and
30,000; 25,000 x 40 = 1,000,000 characters is the longest text an expression may build,
so at 30,000 the first step is expected to fail with an ``expression_error``), ``--runs``
executions one after another:

- each execution's status, its wall time (the server's ``created_at`` to ``updated_at``,
  queue wait included) and each step's time (its ``started_at`` to ``finished_at``), and a
  check of what it shows (the derived value as ``[REDACTED:api_key]``, the second step 1);
- ``/healthz`` latency (p50, p99, max) sampled from a separate process, one request at a
  time every ``--interval-ms`` on one keep-alive connection, all through the runs, and
  reported over the requests that overlapped an execution; set against ``/healthz``
  sampled the same way for ``--idle-s`` seconds on the same server, idle, in the same run
  (the ratio columns), and sampled again after the cases;
- the share of the machine's CPU that other processes took meanwhile ("other load").

Then, in a separate process with no server running, the redactor's own cost: building
``Redactor([(secret, "api_key")])`` (what the runner now compiles) and one ``redact`` over
the output text of the largest ``N`` (1.2 MB at N = 30,000), against the same with the
derived value registered too (as the old runner did) at growing lengths. That build grows
faster than the value: each length whose build is predicted (from the two before it) to
take over ``--old-budget-s`` seconds is skipped and its prediction printed instead. And,
for the worst the runner still compiles, a secret value as long as its cap
(``TaskLimits.redact_max_value_chars``) alone: random, and repeating a 40-character chunk.

Prints Markdown tables and writes the numbers as JSON into ``bench/results/`` (or ``--out``).
Only 127.0.0.1 is involved; every loop is bounded. Run by hand:

    .venv/bin/python bench/containment.py [--backends sqlite,postgres] [--postgres URL]
    .venv/bin/python bench/containment.py --quick    # a smoke run (~10 s), numbers meaningless
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import math
import multiprocessing
import multiprocessing.connection
import os
import random
import statistics
import string
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx

import _common
from _common import (  # the bench directory is not a package: found via sys.path
    BENCH_DIR,
    HOST,
    Server,
    backends_arg,
    database,
    exit_cleanly_on_sigterm,
    issue_key,
    machine_busy_s,
    machine_line,
    open_bench_services,
    percentile,
    postgres_cpu_s,
    process_cpu_s,
    strongroom_server,
    table,
    wait_for_quiet,
    workdir,
)

SECRET_NAME = "api_key"
SECRET = "sk-Bench-0123456789-ABCDEFGHIJ-klmnopqrs"  # 40 characters, mixed case
assert len(SECRET) == 40
MARKER = f"[REDACTED:{SECRET_NAME}]"
DONE = {"succeeded", "failed", "cancelled"}
# Lengths of the derived value registered with the old runner's redactor, in multiples of
# the secret (each a prefix of the 1.2 MB output): 1k, 2k, 4k, 9.3k, 16k, 31k chars, then
# the outputs of N = 2,500 / 10,000 / 25,000 / 30,000.
OLD_MULTIPLES = (25, 50, 100, 232, 400, 775, 2_500, 10_000, 25_000, 30_000)


def task_steps(multiplier: int) -> list[dict[str, str]]:
    return [
        {"kind": "transform", "expression": f"$ lower(secrets.{SECRET_NAME}) * {multiplier}"},
        {"kind": "transform", "expression": "$ 1"},
    ]


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# -- /healthz, sampled from another process --------------------------------------------------
Sample = tuple[float, float, int]  # (sent, as epoch seconds; latency ms; HTTP status or 0)


def _sampler(port: int, interval_s: float, pipe: multiprocessing.connection.Connection) -> None:
    """Child process: on "start", GET /healthz every ``interval_s`` (one keep-alive
    connection, a request never overlapping the last) until "stop", then send back the
    samples. "quit" ends it. A request that fails counts with status 0 and the time it
    took to fail; each lasts at most 60 s."""
    pipe.send("ready")
    while pipe.recv() == "start":
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        samples: list[Sample] = []
        next_at = time.monotonic()
        stop = False
        while not stop:
            wall, sent = time.time(), time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection(HOST, port, timeout=60)
            samples.append((wall, (time.perf_counter() - sent) * 1000, status))
            next_at = max(next_at + interval_s, time.monotonic())
            stop = pipe.poll(max(0.0, next_at - time.monotonic()))
        pipe.recv()  # the "stop"
        conn.close()
        pipe.send(samples)


class HealthSampler:
    """A long-lived child process sampling /healthz between ``start()`` and ``stop()``."""

    def __init__(self, port: int, interval_s: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process = context.Process(target=_sampler, args=(port, interval_s, child), daemon=True)
        self.process.start()
        child.close()
        if not self._pipe.poll(60) or self._pipe.recv() != "ready":
            raise RuntimeError("the /healthz sampler did not start")

    def start(self) -> None:
        self._pipe.send("start")

    def stop(self) -> list[Sample]:
        self._pipe.send("stop")
        if not self._pipe.poll(90):
            raise RuntimeError("the /healthz sampler did not answer")
        samples: list[Sample] = self._pipe.recv()
        return samples

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._pipe.send("quit")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


# -- CPU: what other processes took ----------------------------------------------------------
class Window:
    """CPU of the machine against that of the server, its database, the sampler and this
    bench over a measured window: the rest is other load."""

    def __init__(self, server: Server, sampler: HealthSampler) -> None:
        self.pids = [server.process.pid, sampler.process.pid]
        self.db_name = server.db_name
        self.before = self._take()

    def _take(self) -> tuple[float, float, float]:
        ours = sum(process_cpu_s(pid) for pid in self.pids) + postgres_cpu_s(self.db_name)
        return machine_busy_s(), ours + time.process_time(), time.monotonic()

    def other_share(self) -> float:
        machine, ours, wall = self._take()
        capacity = (wall - self.before[2]) * (os.cpu_count() or 1)
        other = (machine - self.before[0]) - (ours - self.before[1])
        return max(0.0, other) / capacity if capacity > 0 else 0.0


def latency(samples: list[Sample]) -> dict[str, Any]:
    times = [ms for _, ms, _ in samples]
    return {
        "requests": len(samples),
        "failed": sum(1 for _, _, status in samples if status != 200),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times, default=float("nan")),
    }


def during(samples: list[Sample], spans: list[tuple[float, float]]) -> list[Sample]:
    """The samples whose request overlapped one of ``spans`` (epoch seconds, same clock
    as the server's timestamps: one machine)."""
    return [
        sample
        for sample in samples
        if any(sample[0] <= end and sample[0] + sample[1] / 1000 >= start for start, end in spans)
    ]


# -- executions ------------------------------------------------------------------------------
def wait_done(client: httpx.Client, execution_id: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Any] = client.get(f"/v1/executions/{execution_id}").json()
        if found["status"] in DONE:
            return found
        time.sleep(0.02)
    client.post(f"/v1/executions/{execution_id}/cancel")
    raise RuntimeError(f"execution {execution_id} did not end in {timeout:g} s (cancelled)")


def run_once(client: httpx.Client, run_path: str, timeout: float) -> dict[str, Any]:
    """One execution, from POST to its end; its times, status and what it shows."""
    execution = client.post(run_path, json={"input": None})
    execution.raise_for_status()
    done = wait_done(client, execution.json()["id"], timeout)
    steps = client.get(f"/v1/executions/{done['id']}/steps").json()["items"]
    step_ms = [
        (parse_time(s["finished_at"]) - parse_time(s["started_at"])).total_seconds() * 1000
        for s in steps
        if s.get("finished_at") and s.get("started_at")
    ]
    outputs = [s.get("output") for s in steps]
    error = done.get("error") or next((s.get("error") for s in steps if s.get("error")), None)
    created, updated = parse_time(done["created_at"]), parse_time(done["updated_at"])
    return {
        "status": done["status"],
        "error": error,
        "outputs_as_expected": done["status"] == "succeeded" and outputs == [MARKER, 1],
        "outputs": [
            o if not isinstance(o, str) or len(o) <= 60 else o[:60] + "..." for o in outputs
        ],
        "span": (created.timestamp(), updated.timestamp()),
        "execution_s": (updated - created).total_seconds(),
        "step_ms": step_ms,
    }


def run_case(
    client: httpx.Client,
    server: Server,
    sampler: HealthSampler,
    multiplier: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """``args.runs`` executions of the task with ``multiplier``, one after another, with
    /healthz sampled all along; its latency is reported over the requests that overlapped
    an execution (queued or running)."""
    task = client.post("/v1/tasks", json={"steps": task_steps(multiplier)})
    task.raise_for_status()
    run_path = f"/v1/tasks/{task.json()['id']}/executions"
    window = Window(server, sampler)
    sampler.start()
    started = time.monotonic()
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(args.runs):
            runs.append(run_once(client, run_path, args.timeout_s))
    finally:
        samples = sampler.stop()
    window_s = time.monotonic() - started
    other = window.other_share()
    spans = [run["span"] for run in runs]
    statuses = sorted({run["status"] for run in runs})
    errors = sorted({json.dumps(run["error"], sort_keys=True) for run in runs if run["error"]})
    steps = max(len(run["step_ms"]) for run in runs)
    return {
        "multiplier": multiplier,
        "value_chars": len(SECRET) * multiplier,
        "runs": len(runs),
        "statuses": statuses,
        "errors": [json.loads(e) for e in errors],
        "outputs_as_expected": sum(run["outputs_as_expected"] for run in runs),
        "outputs": runs[-1]["outputs"],
        "execution_s_p50": statistics.median(run["execution_s"] for run in runs),
        "execution_s_max": max(run["execution_s"] for run in runs),
        "step_ms_p50": [
            statistics.median(run["step_ms"][i] for run in runs if len(run["step_ms"]) > i)
            for i in range(steps)
        ],
        "step_ms_max": [
            max(run["step_ms"][i] for run in runs if len(run["step_ms"]) > i) for i in range(steps)
        ],
        "window_s": window_s,
        "busy_share": sum(end - start for start, end in spans) / window_s,
        "healthz": latency(during(samples, spans)),
        "healthz_window": latency(samples),
        "other_share": other,
        "each": [{k: v for k, v in run.items() if k != "outputs"} for run in runs],
    }


def measure_server(
    backend: str, args: argparse.Namespace, work: Path
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    with database(backend, work) as url:
        with open_bench_services(url) as services:
            key, _ = issue_key(services)
        with (
            strongroom_server(url, work) as server,
            httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as client,
        ):
            secret = client.post("/v1/secrets", json={"name": SECRET_NAME, "value": SECRET})
            secret.raise_for_status()
            # A warm-up execution (queue discovered, code paths loaded), not measured.
            warm = client.post("/v1/tasks", json={"steps": task_steps(1)}).json()
            first = client.post(f"/v1/tasks/{warm['id']}/executions", json={"input": None})
            wait_done(client, first.json()["id"], 60)
            sampler = HealthSampler(server.port, args.interval_ms / 1000)
            try:
                idle = idle_reference(server, sampler, args.idle_s)
                print(f"  {backend}: idle /healthz {_brief(idle)}", flush=True)
                cases = []
                for multiplier in args.multipliers:
                    found = run_case(client, server, sampler, multiplier, args)
                    cases.append(found)
                    steps = ", ".join(f"{ms:,.1f}" for ms in found["step_ms_p50"])
                    print(
                        f"  {backend}: * {multiplier}: {'/'.join(found['statuses'])}, "
                        f"{found['execution_s_p50']:.3f} s p50 (steps {steps} ms); /healthz "
                        f"during: {_brief(found['healthz'])}",
                        flush=True,
                    )
                idle_after = idle_reference(server, sampler, args.idle_s)
                print(f"  {backend}: idle /healthz again {_brief(idle_after)}", flush=True)
            finally:
                sampler.close()
    return {"before": idle, "after": idle_after}, cases


def idle_reference(server: Server, sampler: HealthSampler, seconds: float) -> dict[str, Any]:
    """/healthz sampled on the idle server: nothing else is asked of it meanwhile."""
    window = Window(server, sampler)
    sampler.start()
    time.sleep(seconds)
    return {**latency(sampler.stop()), "other_share": window.other_share()}


def _brief(found: dict[str, Any]) -> str:
    return (
        f"p50 {found['p50_ms']:.2f} / p99 {found['p99_ms']:.2f} / max {found['max_ms']:.2f} ms "
        f"over {found['requests']} requests"
    )


# -- the redactor, in-process ----------------------------------------------------------------
def _redactor_costs(
    multiplier: int,
    budget_s: float,
    long_secrets: bool,
    pipe: multiprocessing.connection.Connection,
) -> None:
    """Child process: the secret-alone build and redact, then the old runner's (secret +
    derived value) at growing lengths, each result sent as soon as it is known."""
    from strongroom.server.redact import Redactor

    text = SECRET.lower() * multiplier

    def cost(values: list[tuple[str, str]]) -> dict[str, Any]:
        started = time.perf_counter()
        redactor = Redactor(values)
        redactor.redact("warm up: builds the matcher")
        built = time.perf_counter()
        redacted = redactor.redact(text)
        return {
            "build_s": built - started,
            "redact_s": time.perf_counter() - built,
            "markers": redacted.count("[REDACTED:"),
            "chars_left": len(redacted),
        }

    # markers: how many the exact-value redactor put into the text (it holds the secret
    # lower-cased 30,000 times); in a run, the value's taint is what hides it.
    pipe.send({"case": "secret", "chars": len(SECRET), **cost([(SECRET, SECRET_NAME)])})
    if long_secrets:
        # The longest secret value the runner still compiles: one of random characters, and
        # one that repeats a 40-character chunk (the redactor's automaton builds slowly for
        # long repetitive patterns, see docs/benchmarks.md).
        from strongroom.server.tasks.limits import DEFAULT_LIMITS

        cap = getattr(DEFAULT_LIMITS, "redact_max_value_chars", 16 * 1024)
        rng = random.Random(20261205)
        alphabet = string.ascii_letters + string.digits
        for kind, value in (
            ("random", "".join(rng.choices(alphabet, k=cap))),
            ("repetitive", (SECRET * (cap // len(SECRET) + 1))[:cap]),
        ):
            found = cost([(value, SECRET_NAME)])
            pipe.send({"case": f"long {kind}", "chars": cap, **found})
    measured: list[tuple[int, float]] = []
    for multiple in OLD_MULTIPLES:
        if multiple > multiplier:
            break
        chars = len(SECRET) * multiple
        predicted = _predict(measured, chars)
        if predicted is not None and predicted > budget_s:
            pipe.send({"case": "old", "chars": chars, "skipped": True, "predicted_s": predicted})
            continue
        pipe.send({"case": "old", "chars": chars, "started": True, "predicted_s": predicted})
        found = cost([(SECRET, SECRET_NAME), (text[:chars], SECRET_NAME)])
        measured.append((chars, found["build_s"]))
        pipe.send({"case": "old", "chars": chars, **found})
    pipe.send(None)


def _predict(measured: list[tuple[int, float]], chars: int) -> float | None:
    """The build time at ``chars``, by the power law through the last two lengths measured
    (at least linear); None before two have been."""
    if len(measured) < 2:
        return None
    (n1, t1), (n2, t2) = measured[-2], measured[-1]
    exponent = max(1.0, math.log(max(t2, 1e-6) / max(t1, 1e-6)) / math.log(n2 / n1))
    return t2 * (chars / n2) ** exponent


def measure_redactor(
    multiplier: int, budget_s: float, long_secrets: bool = True
) -> list[dict[str, Any]]:
    """Run ``_redactor_costs`` in a child; a build that overruns twice its budget (a
    prediction gone wrong) is killed and reported as such."""
    context = multiprocessing.get_context("spawn")
    pipe, child = context.Pipe()
    process = context.Process(
        target=_redactor_costs, args=(multiplier, budget_s, long_secrets, child)
    )
    process.start()
    child.close()
    rows: list[dict[str, Any]] = []
    pending: dict[str, Any] | None = None
    try:
        while True:
            limit = 2 * budget_s + 30
            if not pipe.poll(limit):
                if pending is not None:
                    rows.append({**pending, "killed_after_s": limit})
                break
            found = pipe.recv()
            if found is None:
                break
            if found.get("started"):
                pending = found
                continue
            pending = None
            rows.append(found)
            print(f"  redactor: {_redactor_line(found)}", flush=True)
    except EOFError:
        if pending is not None:
            rows.append({**pending, "crashed": True})
    finally:
        if process.is_alive():
            process.kill()
        process.join(10)
    return rows


def _label(case: str) -> str:
    if case == "secret":
        return "secret alone (what the runner compiles now)"
    if case.startswith("long "):
        return f"a {case.removeprefix('long ')} secret at the runner's cap, alone"
    return "secret + derived value (the old runner)"


def _redactor_line(found: dict[str, Any]) -> str:
    what = _label(found["case"])
    if found.get("skipped"):
        predicted = _seconds(found["predicted_s"])
        return f"{what} of {found['chars']:,} chars: skipped (predicted {predicted})"
    return (
        f"{what} of {found['chars']:,} chars: build {found['build_s'] * 1000:,.1f} ms, "
        f"redact {found['redact_s'] * 1000:,.1f} ms"
    )


# -- output ----------------------------------------------------------------------------------
def server_table(results: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]]) -> str:
    rows: list[list[object]] = []
    for backend, (idle, cases) in results.items():
        reference = idle["before"]

        def health_cells(
            found: dict[str, Any], reference: dict[str, Any] = reference
        ) -> list[object]:
            failed = f" ({found['failed']} failed)" if found["failed"] else ""
            return [
                f"{found['requests']:,}{failed}",
                found["p50_ms"],
                found["p99_ms"],
                found["max_ms"],
                *(f"{found[k] / reference[k]:.2f}x" for k in ("p50_ms", "p99_ms", "max_ms")),
            ]

        rows.append(
            [
                "idle server (reference)",
                backend,
                "-",
                "-",
                "-",
                "-",
                *health_cells(reference),
                f"{reference['other_share']:.0%}",
            ]
        )
        for case in cases:
            steps = [
                f"{p50:,.1f} ({most:,.1f})"
                for p50, most in zip(case["step_ms_p50"], case["step_ms_max"], strict=True)
            ]
            steps += ["-"] * (2 - len(steps))
            rows.append(
                [
                    f"* {case['multiplier']:,} ({case['value_chars']:,} chars)",
                    backend,
                    _status(case),
                    f"{case['execution_s_p50'] * 1000:,.0f} "
                    f"({case['execution_s_max'] * 1000:,.0f})",
                    *steps,
                    *health_cells(case["healthz"]),
                    f"{case['other_share']:.0%}",
                ]
            )
        rows.append(
            [
                "idle server again, after the cases",
                backend,
                "-",
                "-",
                "-",
                "-",
                *health_cells(idle["after"]),
                f"{idle['after']['other_share']:.0%}",
            ]
        )
    return table(
        [
            "case: lower(secrets.api_key) * N, then 1",
            "db",
            "executions",
            "execution ms p50 (max)",
            "step 1 ms p50 (max)",
            "step 2 ms p50 (max)",
            "/healthz requests",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p50 vs idle",
            "p99 vs idle",
            "max vs idle",
            "other load",
        ],
        rows,
    )


def _status(case: dict[str, Any]) -> str:
    """How the runs ended ("20 succeeded"; error codes in brackets)."""
    parts = []
    for status in case["statuses"]:
        count = sum(1 for run in case["each"] if run["status"] == status)
        parts.append(f"{count} {status}")
    text = ", ".join(parts)
    codes = sorted({e.get("code", "?") for e in case["errors"] if isinstance(e, dict)})
    if codes:
        text += f" ({', '.join(codes)})"
    succeeded = sum(1 for run in case["each"] if run["status"] == "succeeded")
    if case["outputs_as_expected"] != succeeded:
        text += f", {succeeded - case['outputs_as_expected']} with a WRONG OUTPUT"
    return text


def _seconds(value: float) -> str:
    return f"{value:,.0f} s" if value >= 10 else f"{value:.1f} s"


def redactor_table(rows: list[dict[str, Any]], text_chars: int) -> str:
    alone = next((r for r in rows if r["case"] == "secret"), None)
    build_ref = alone["build_s"] if alone else float("nan")
    total_ref = alone["build_s"] + alone["redact_s"] if alone else float("nan")
    out: list[list[object]] = []
    for row in rows:
        label = _label(row["case"])
        chars = row["chars"] + (len(SECRET) if row["case"] == "old" else 0)
        if row.get("skipped"):
            skipped = f"skipped: predicted {_seconds(row['predicted_s'])}"
            out.append([label, chars, skipped, "-", "-", "-", "-", "-"])
        elif "killed_after_s" in row or row.get("crashed"):
            killed = row.get("killed_after_s")
            why = f"killed after {killed:.0f} s" if killed else "crashed"
            out.append([label, chars, why, "-", "-", "-", "-", "-"])
        else:
            total = row["build_s"] + row["redact_s"]
            out.append(
                [
                    label,
                    chars,
                    row["build_s"] * 1000,
                    f"{row['build_s'] / build_ref:,.0f}x",
                    row["redact_s"] * 1000,
                    total * 1000,
                    f"{total / total_ref:,.1f}x",
                    f"{row['markers']:,} / {row['chars_left']:,}",
                ]
            )
    return table(
        [
            "redactor",
            "chars registered",
            "build ms",
            "build vs secret alone",
            f"redact {text_chars:,} chars ms",
            "build + redact ms",
            "vs secret alone",
            "markers / chars left",
        ],
        out,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backends",
        type=backends_arg,
        default=None,
        help="sqlite,postgres (default: sqlite, plus postgres with --postgres)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        nargs="?",
        const=_common.POSTGRES_ADMIN_URL,
        default=None,
        help="also run on PostgreSQL: an admin URL, where a database is created and dropped "
        "(default: STRONGROOM_BENCH_POSTGRES_URL or the local server)",
    )
    parser.add_argument(
        "--multipliers",
        default="10000,25000,30000",
        help="the N of each case, comma-separated (25,000 x 40 characters is the longest text "
        "an expression may build)",
    )
    parser.add_argument("--runs", type=int, default=20, help="executions per case, one at a time")
    parser.add_argument("--idle-s", type=float, default=10, help="seconds of idle /healthz")
    parser.add_argument(
        "--interval-ms",
        type=float,
        default=10,
        help="one /healthz request every this many ms (at most)",
    )
    parser.add_argument("--timeout-s", type=float, default=300, help="per execution")
    parser.add_argument(
        "--old-budget-s",
        type=float,
        default=60,
        help="skip old-redactor lengths predicted to build for longer",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="seconds to wait at most for an idle machine (0: do not wait)",
    )
    parser.add_argument("--out", type=Path, default=None, help="the JSON file to write")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (~10 s): N = 10000, 3 runs, 0.5 s idle, 0.2 s old-redactor budget",
    )
    args = parser.parse_args()
    if args.quick:
        args.multipliers, args.runs, args.idle_s = "10000", 3, 0.5
        args.old_budget_s, args.quiet_wait = 0.2, 0
        args.timeout_s = min(args.timeout_s, 60)
    args.multipliers = [int(m) for m in str(args.multipliers).split(",") if m.strip()]
    backends = args.backends or ("sqlite",)
    if args.postgres:
        _common.POSTGRES_ADMIN_URL = args.postgres  # read by _common.database
        backends = tuple(dict.fromkeys((*backends, "postgres")))
    exit_cleanly_on_sigterm()

    print(f"# containment: {machine_line()}")
    print(
        f"# secret of {len(SECRET)} chars; task: lower(secrets.{SECRET_NAME}) * N, then 1; "
        f"N = {', '.join(f'{m:,}' for m in args.multipliers)}; /healthz every "
        f"{args.interval_ms:g} ms, idle reference {args.idle_s:g} s\n",
        flush=True,
    )
    busy = {}
    results: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    with workdir("strongroom-bench-") as work:
        for backend in backends:
            if args.quiet_wait > 0:
                busy[backend] = wait_for_quiet(args.quiet_wait)
                print(f"  ({busy[backend]})", flush=True)
            results[backend] = measure_server(backend, args, work)
    largest = max(args.multipliers)
    if args.quiet_wait > 0:
        busy["redactor"] = wait_for_quiet(args.quiet_wait)
        print(f"  ({busy['redactor']})", flush=True)
    redactor = measure_redactor(largest, args.old_budget_s, long_secrets=not args.quick)

    print()
    print(server_table(results))
    print(
        f"\nexecutions: --runs ({args.runs}) per case, one after another. execution ms: the "
        "server's created_at to updated_at (queue wait included); step ms: each step's "
        "started_at to finished_at; p50 and max over the runs. /healthz: one GET at a time "
        f"(every {args.interval_ms:g} ms at most) on one keep-alive connection from a separate "
        "process, over the requests that overlapped an execution; vs idle: over the same "
        f"server's /healthz sampled the same way for {args.idle_s:g} s before the cases, in the "
        "same run. other load: the share of the machine's CPU spent by none of the server, its "
        "database, the sampler or the bench over the case."
    )
    print()
    print(redactor_table(redactor, len(SECRET) * largest))
    print(
        "\nIn-process, in a child process, no server running: build = Redactor([...]) plus "
        "its first use (the matcher is built then, holding the GIL); then one redact() over "
        f"the output text of N = {largest:,} (the secret lower-cased, {largest:,} times). "
        "markers / chars left: what that redact() left of the text. skipped: the build "
        "predicted (power law through the two lengths before it) to take over "
        f"{args.old_budget_s:g} s."
    )

    document = {
        "bench": "containment",
        "machine": machine_line(),
        "when": dt.datetime.now(dt.UTC).isoformat(),
        "machine_before": busy,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "secret_chars": len(SECRET),
        "server": {b: {"idle_healthz": i, "cases": c} for b, (i, c) in results.items()},
        "redactor": redactor,
    }
    out = (
        args.out
        or BENCH_DIR / "results" / f"containment-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
