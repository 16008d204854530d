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
import base64
import contextlib
import datetime as dt
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from strongroom.server.tasks.expressions import Scope, Tainted, compile_template

STRONGROOM = str(Path(sys.executable).with_name("strongroom"))
MASTER_KEY = base64.b64encode(b"b" * 32).decode()
POSTGRES_ADMIN_URL = os.environ.get(
    "STRONGROOM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
STEPS = 10
SECRET = "sk-bench-" + "x" * 40
EXPRESSIONS = [
    "$ f'https://api.example.com/v1?api_key={secrets.api_key}&query={inputs}'",
    *(f"$ f'{{_}}|{n}'" for n in range(1, STEPS)),
]
DONE = {"succeeded", "failed", "cancelled"}


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'strongroom.db'}"
        return
    import psycopg

    name = f"strongroom_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES_ADMIN_URL.rpartition('/')[0]}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def server(url: str, workdir: Path) -> Iterator[tuple[str, str]]:
    """A ``strongroom serve`` process on ``url``; yields its base URL and an API key."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "STRONGROOM_DATABASE_URL": url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_LOG_LEVEL": "WARNING",
    }
    key = subprocess.run(
        [STRONGROOM, "keys", "create", "--tenant", "bench", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    port = free_port()
    with (workdir / f"server-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [STRONGROOM, "serve", "--port", str(port)], env=env, stdout=log, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        else:
            raise RuntimeError("server did not start")
        yield base, key
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_done(client: httpx.Client, execution_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Any] = client.get(f"/v1/executions/{execution_id}").json()
        if found["status"] in DONE:
            return found
        time.sleep(0.005)
    raise RuntimeError(f"execution {execution_id} did not end")


def measure_engine(backend: str, runs: int, burst: int) -> dict[str, float]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        database(backend, Path(tmp)) as url,
        server(url, Path(tmp)) as (base, key),
    ):
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"})
        client.post("/v1/secrets", json={"name": "api_key", "value": SECRET})
        steps = [{"kind": "transform", "expression": e} for e in EXPRESSIONS]
        task = client.post("/v1/tasks", json={"steps": steps}).json()
        run_path = f"/v1/tasks/{task['id']}/executions"
        for _ in range(3):  # warm-up: queue discovered, caches filled
            wait_done(client, client.post(run_path, json={"input": "q"}).json()["id"])
        totals, per_step = [], []
        for _ in range(runs):
            done = wait_done(client, client.post(run_path, json={"input": "q"}).json()["id"])
            assert done["status"] == "succeeded", done
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
            pending -= {e["id"] for e in page if e["status"] in DONE}
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        client.close()
    return {
        "latency_ms": statistics.median(t.total_seconds() for t in totals) * 1000,
        "step_ms": statistics.median(per_step) * 1000,
        "per_s": burst / elapsed,
    }


def measure_baseline(repeat: int = 2000) -> dict[str, float]:
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
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=50)
    args = parser.parse_args()
    print(f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    baseline = measure_baseline()
    print(f"{'':28} {'latency ms':>11} {'ms/step':>9} {'executions/s':>13}")
    label = "baseline (in process)"
    print(f"{label:28} {'':>11} {baseline['step_ms']:9.3f} {baseline['per_s']:13.1f}")
    for backend in args.backends.split(","):
        found = measure_engine(backend, args.runs, args.burst)
        print(
            f"{'engine on ' + backend:28} {found['latency_ms']:11.1f} {found['step_ms']:9.2f}"
            f" {found['per_s']:13.1f}"
        )


if __name__ == "__main__":
    main()
