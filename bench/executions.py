"""Engine overhead per step, and executions per second, for a 10-step transform task.

Starts a real ``strongroom serve`` (its DBOS engine in process) on SQLite and on a fresh
PostgreSQL database, creates one secret and a task of 10 ``transform`` steps (the first
builds the guide's URL from the secret, each next one extends the previous result, so
every result is secret-derived and registered for redaction), then measures:

- **latency**: executions run one at a time; from the server's own timestamps, the time
  from ``POST .../executions`` to the end (queue wait included) and the time per step
  (first step's start to last step's end, over 10);
- **throughput**: ``--burst`` executions submitted at once, executions/s until the last
  one has ended (seen by polling the list every 20 ms);
- **baseline**, in the same run: the same 10 expressions compiled once and evaluated in
  this process, chained through ``_``, with no engine, storage, crypto or redaction.

Only 127.0.0.1 is involved; every loop is bounded. Run by hand:

    .venv/bin/python bench/executions.py [--backends sqlite,postgres] [--runs 20] [--burst 50]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench directory is not a package: found via sys.path
    backends_arg,
    database,
    exit_cleanly_on_sigterm,
    issue_key,
    machine_line,
    open_bench_services,
    strongroom_server,
    table,
    wait_for_quiet,
    workdir,
)
from strongroom.server.tasks.expressions import Scope, Tainted, compile_template

STEPS = 10
SECRET = "sk-bench-" + "x" * 40
EXPRESSIONS = [
    "$ f'https://api.example.com/v1?api_key={secrets.api_key}&query={inputs}'",
    *(f"$ f'{{_}}|{n}'" for n in range(1, STEPS)),
]
DONE = {"succeeded", "failed", "cancelled"}


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def wait_done(client: httpx.Client, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Any] = client.get(f"/v1/executions/{execution_id}").json()
        if found["status"] in DONE:
            return found
        time.sleep(0.005)
    raise RuntimeError(f"execution {execution_id} did not end")


def measure_engine(backend: str, runs: int, burst: int, work: Path) -> dict[str, float]:
    with database(backend, work) as url:
        with open_bench_services(url) as services:
            key, _ = issue_key(services)
        with (
            strongroom_server(url, work, STRONGROOM_LOG_LEVEL="WARNING") as server,
            httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client,
        ):
            return _drive(client, runs, burst)


def _drive(client: httpx.Client, runs: int, burst: int) -> dict[str, float]:
    """Latency one at a time, then a burst's throughput, against one server."""
    client.post("/v1/secrets", json={"name": "api_key", "value": SECRET}).raise_for_status()
    steps = [{"kind": "transform", "expression": e} for e in EXPRESSIONS]
    task = client.post("/v1/tasks", json={"steps": steps}).json()
    run_path = f"/v1/tasks/{task['id']}/executions"
    for _ in range(3):  # warm-up: queue discovered, caches filled
        wait_done(client, client.post(run_path, json={"input": "q"}).json()["id"])
    totals, per_step = [], []
    for _ in range(runs):
        done = wait_done(client, client.post(run_path, json={"input": "q"}).json()["id"])
        if done["status"] != "succeeded":
            raise RuntimeError(f"execution {done['id']} ended {done['status']}")
        items = client.get(f"/v1/executions/{done['id']}/steps").json()["items"]
        first = parse_time(items[0]["started_at"])
        last = parse_time(items[-1]["finished_at"])
        totals.append(parse_time(done["updated_at"]) - parse_time(done["created_at"]))
        per_step.append((last - first).total_seconds() / STEPS)
    started = time.perf_counter()
    ids = [client.post(run_path, json={"input": "q"}).json()["id"] for _ in range(burst)]
    pending = set(ids)
    deadline = time.monotonic() + 300
    while pending and time.monotonic() < deadline:
        page = client.get("/v1/executions", params={"limit": burst}).json()["items"]
        ended = {e["id"]: e["status"] for e in page if e["status"] in DONE}
        if any(status != "succeeded" for status in ended.values()):
            raise RuntimeError(f"an execution of the burst did not succeed: {ended}")
        pending -= ended.keys()
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if pending:
        raise RuntimeError(f"{len(pending)} executions of the burst did not end in 300 s")
    return {
        "latency_ms": statistics.median(t.total_seconds() for t in totals) * 1000,
        "step_ms": statistics.median(per_step) * 1000,
        "per_s": burst / elapsed,
    }


def measure_baseline(repeat: int = 2000) -> dict[str, float]:
    """The same 10 expressions, compiled once and chained in this process: no engine,
    storage, crypto or redaction, only the evaluation every step needs anyway."""
    templates = [compile_template(e, f"steps[{n}].expression") for n, e in enumerate(EXPRESSIONS)]
    started = time.perf_counter()
    for _ in range(repeat):
        previous: Tainted | None = None
        for template in templates:
            scope = Scope(secrets={"api_key": SECRET}, inputs="q", input="q", previous=previous)
            previous = template.evaluate(scope).tainted()
    elapsed = time.perf_counter() - started
    return {"step_ms": elapsed / repeat / STEPS * 1000, "per_s": repeat / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=backends_arg, default=("sqlite", "postgres"))
    parser.add_argument("--runs", type=int, default=20, help="executions timed one at a time")
    parser.add_argument("--burst", type=int, default=50, help="executions submitted at once")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="seconds to wait at most for an idle machine before measuring",
    )
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    print(f"# executions: {machine_line()}")
    print(
        f"# {STEPS}-step transform task; {args.runs} executions one at a time, a burst of "
        f"{args.burst}\n"
    )
    print(f"({wait_for_quiet(args.quiet_wait)})", flush=True)
    baseline = measure_baseline()
    print(
        f"  baseline: {baseline['step_ms']:.4f} ms/step, {baseline['per_s']:,.0f} chains/s",
        flush=True,
    )
    rows: list[list[object]] = [
        [
            "baseline: the 10 expressions in-process",
            "-",
            "-",
            baseline["step_ms"],
            "-",
            "1x",
            baseline["per_s"],
            "1x",
        ]
    ]
    with workdir("strongroom-bench-") as work:
        for backend in args.backends:
            print(f"  ({wait_for_quiet(args.quiet_wait)})", flush=True)
            found = measure_engine(backend, args.runs, args.burst, work)
            print(
                f"  {backend}: latency {found['latency_ms']:.1f} ms, "
                f"{found['step_ms']:.2f} ms/step, {found['per_s']:.1f} executions/s",
                flush=True,
            )
            rows.append(
                [
                    "strongroom: execution of the task",
                    backend,
                    found["latency_ms"],
                    found["step_ms"],
                    found["step_ms"] - baseline["step_ms"],
                    f"{found['step_ms'] / baseline['step_ms']:,.0f}x",
                    found["per_s"],
                    f"{found['per_s'] / baseline['per_s']:.4f}x",
                ]
            )
    print()
    print(
        table(
            [
                "case",
                "db",
                "latency p50 ms",
                "ms/step",
                "overhead ms/step",
                "step vs baseline",
                "executions/s",
                "executions/s vs baseline",
            ],
            rows,
        )
    )
    print(
        "\nlatency: POST .../executions to the execution's end (queue wait included), by the "
        "server's timestamps, median of --runs. ms/step: first step's start to last step's "
        "end over 10. overhead = ms/step minus the baseline's: what the engine, storage, "
        "sealing and redaction add to each step. executions/s: a burst of --burst submitted "
        "at once, until the last has ended."
    )


if __name__ == "__main__":
    main()
