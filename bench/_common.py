"""Shared plumbing for the benchmarks: databases, server processes, load, statistics.

Benchmarks are run by hand (``.venv/bin/python bench/NAME.py``), never by ``make test``.
Everything here talks to 127.0.0.1 only, and every loop is bounded in count or time, so
a benchmark stops by itself even when the server misbehaves.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime as dt
import http.client
import itertools
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.ids import new_id
from strongroom.server.secret_values import value_context
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import ApiKeyRecord, Sealed, SecretRecord

BENCH_DIR = Path(__file__).resolve().parent
STRONGROOM = str(Path(sys.executable).with_name("strongroom"))
HOST = "127.0.0.1"
# A fixed key: bench databases are throw-away, and a fixed key keeps runs comparable.
MASTER_KEY = base64.b64encode(b"b" * 32).decode()
POSTGRES_ADMIN_URL = os.environ.get(
    "STRONGROOM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgres")


# -- databases ------------------------------------------------------------------------------
@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database URL: a SQLite file in ``workdir`` or a new PostgreSQL database.

    The PostgreSQL database is created here and dropped on the way out, so a bench leaves
    nothing behind on the shared server.
    """
    if backend == "sqlite":
        yield f"sqlite:///{workdir / 'strongroom.db'}"
        return
    if backend != "postgres":
        raise ValueError(f"unknown backend {backend!r}")
    import psycopg

    name = f"strongroom_bench_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        base, _, _ = POSTGRES_ADMIN_URL.rpartition("/")
        try:
            yield f"{base}/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settings_for(url: str) -> Settings:
    """Server settings for ``url`` with the bench master key (none read from the env)."""
    return Settings(database_url=url, master_key=SecretStr(MASTER_KEY))


@contextlib.contextmanager
def open_bench_services(url: str) -> Iterator[Services]:
    """Migrated, unsealed services on ``url``, closed on the way out."""
    services = open_services(settings_for(url))
    try:
        yield services
    finally:
        services.store.close()


def issue_key(services: Services, tenant: str = "bench") -> tuple[str, ApiKeyRecord]:
    """An all-scopes API key for ``tenant`` (created if new), as ``strongroom keys`` makes."""
    return create_api_key(services.store, services.barrier, tenant, name="bench")


@dataclass(frozen=True)
class SeedSecret:
    name: str
    value: str
    metadata: dict[str, Any]
    description: str | None = None


def seed(
    services: Services,
    key: ApiKeyRecord,
    secrets_: Iterable[SeedSecret],
    *,
    batch: int = 50_000,
    progress: bool = False,
) -> int:
    """Insert secrets in big transactions, with the rows ``SecretService.create`` writes.

    Each secret gets its row, its metadata index entries and version 1, sealed in-process
    by the server's own keyring (a fresh data key per value, wrapped by the active KEK),
    without the audit event and without HTTP. The rows go ``batch`` per transaction through
    storage's bulk insert (``COPY`` on PostgreSQL, ``executemany`` on SQLite). One thread
    builds and seals the next batch while another writes the last (both drivers release
    the GIL while the database works), so a million secrets take minutes, not hours.
    """
    store, keyring = services.store, services.barrier.keyring
    with store.read() as tx:
        kek_id = tx.keyring.active_kek_id()
    tenant = key.tenant_id

    def build(items: list[SeedSecret]) -> list[tuple[SecretRecord, Sealed]]:
        now = dt.datetime.now(dt.UTC)
        rows = []
        for item in items:
            secret_id = new_id()
            record = SecretRecord(
                secret_id, tenant, item.name, item.description, item.metadata, 1, now, now
            )
            context = value_context(tenant, secret_id, 1)
            rows.append((record, keyring.encrypt(context, item.value.encode(), kek_id)))
        return rows

    writing = 0.0

    def write(rows: list[tuple[SecretRecord, Sealed]]) -> None:
        nonlocal writing
        started = time.perf_counter()
        with store.write() as tx:
            tx.secrets.insert_many(rows, created_by=key.id)
        writing += time.perf_counter() - started

    count = written = 0
    started = time.perf_counter()

    def report() -> None:
        if progress:
            rate = written / (time.perf_counter() - started)
            line = f"    {written:,} secrets written ({rate:,.0f}/s; {writing:.1f} s writing)"
            print(line, flush=True)

    items = iter(secrets_)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as writer:
        in_flight: concurrent.futures.Future[None] | None = None
        while chunk := list(itertools.islice(items, batch)):
            rows = build(chunk)
            if in_flight is not None:
                in_flight.result()  # at most one batch written while the next is built
                written = count
                report()
            in_flight = writer.submit(write, rows)
            count += len(chunk)
        if in_flight is not None:
            in_flight.result()
            written = count
            report()
    return count


def base_env() -> dict[str, str]:
    """PATH, HOME and PYTHONPATH (which may point at a snapshot of src/, see the docs)."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def server_env(url: str, **extra: str) -> dict[str, str]:
    """Only what the server needs: no STRONGROOM_* from the caller's shell leaks in."""
    return {
        **base_env(),
        "STRONGROOM_DATABASE_URL": url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        # One key from one address at thousands of requests/s is exactly what the request
        # budgets refuse. They are set far above what one process can serve, so the
        # bench measures the work and not refusals, while each request still pays for
        # its budget checks as it would in production.
        "STRONGROOM_RATE_LIMIT_PER_KEY": "100000/second",
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "100000/second",
        **extra,
    }


# -- server processes -----------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process on a loopback port; stop() is always safe to call."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    db_name: str | None = None  # the PostgreSQL database it serves, for CPU accounting

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _start(name: str, argv: list[str], env: dict[str, str], workdir: Path, port: int) -> Server:
    log_path = workdir / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, process, port, log_path)
    try:
        wait_ready(server)
    except BaseException:
        server.stop()
        raise
    return server


def wait_ready(server: Server, path: str = "/healthz", timeout: float = 30) -> None:
    """Poll until the server answers 200 (readiness, not a sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited early:\n{server.log_tail()}")
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(HOST, server.port, timeout=1)
            try:
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not become ready:\n{server.log_tail()}")


@contextlib.contextmanager
def strongroom_server(url: str, workdir: Path, **env: str) -> Iterator[Server]:
    """``strongroom serve`` exactly as shipped: one uvicorn worker, default log level."""
    port = free_port()
    argv = [STRONGROOM, "serve", "--host", HOST, "--port", str(port)]
    server = _start("strongroom", argv, server_env(url, **env), workdir, port)
    if url.startswith("postgres"):
        server.db_name = url.rpartition("/")[2]
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def ceiling_server(workdir: Path) -> Iterator[Server]:
    """The bare FastAPI app of ``ceiling_app.py``, under uvicorn with the same settings."""
    port = free_port()
    argv = [sys.executable, str(BENCH_DIR / "ceiling_app.py"), "--port", str(port)]
    server = _start("ceiling", argv, base_env(), workdir, port)
    try:
        yield server
    finally:
        server.stop()


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so servers are stopped and databases dropped."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- CPU accounting -------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process, all its threads (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle: server, database, wrk, the rest."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK


def wait_for_quiet(max_wait_s: float = 120, threshold: float = 0.15) -> str:
    """Wait (bounded) until the machine is mostly idle, and say how busy it was.

    On a shared 2-core machine another process's test run halves what a benchmark sees;
    the header line this returns makes such a run recognisable.
    """
    deadline = time.monotonic() + max_wait_s
    busy = 1.0
    while True:
        start_busy, start = machine_busy_s(), time.monotonic()
        time.sleep(2)
        elapsed = (time.monotonic() - start) * (os.cpu_count() or 1)
        busy = (machine_busy_s() - start_busy) / elapsed
        if busy <= threshold or time.monotonic() >= deadline:
            break
    verdict = "quiet" if busy <= threshold else "BUSY: numbers below are pessimistic"
    return f"machine {busy:.0%} busy before the run ({verdict})"


def postgres_cpu_s(db_name: str | None) -> float:
    """CPU seconds of the PostgreSQL processes working for ``db_name`` (0 without one).

    Those are the backends whose title names the database, and the server's shared
    helpers (WAL writer, checkpointer...), whose titles name no client. Other processes'
    backends on other databases count as "other". A backend that exits during the run
    takes its CPU with it; a server's pooled connections stay, so this is close.
    """
    if db_name is None:
        return 0.0
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text()
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        name, _, rest = stat.partition("(")[2].rpartition(")")
        if name != "postgres":
            continue
        is_client_backend = "(" in title  # "postgres: USER DB 127.0.0.1(PORT) idle"
        if is_client_backend and f" {db_name} " not in title:
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


def children_cpu_s() -> float:
    """CPU seconds of this process's finished children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass
class CpuSample:
    server_s: float
    machine_s: float
    postgres_s: float
    children_s: float
    own_s: float
    wall_s: float

    @classmethod
    def take(cls, server: Server) -> CpuSample:
        return cls(
            process_cpu_s(server.process.pid),
            machine_busy_s(),
            postgres_cpu_s(server.db_name),
            children_cpu_s(),
            time.process_time(),
            time.monotonic(),
        )

    def other_share(self, later: CpuSample) -> float:
        """Share of the machine that went to neither server, database, wrk nor this bench.

        Another test run on the same two cores shows up here; runs where it is
        high are redone rather than reported.
        """
        ours = (
            (later.server_s - self.server_s)
            + (later.postgres_s - self.postgres_s)
            + (later.children_s - self.children_s)
            + (later.own_s - self.own_s)
        )
        spent = later.machine_s - self.machine_s
        capacity = (later.wall_s - self.wall_s) * (os.cpu_count() or 1)
        return max(0.0, spent - ours) / capacity if capacity > 0 else 0.0


# -- wrk ------------------------------------------------------------------------------------
# wrk's done() hook prints one JSON line; parsing it beats scraping wrk's human output.
_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
"""


@dataclass
class WrkResult:
    label: str
    connections: int
    requests: int
    duration_s: float
    errors: int
    non_2xx: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_ms: float = float("nan")
    machine_cpu_ms: float = float("nan")
    other_share: float = 0.0
    rps_min: float = float("nan")
    rps_max: float = float("nan")

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        sys.exit(
            "this benchmark needs wrk (Debian package 'wrk'): "
            "apt-get update && apt-get install -y wrk"
        )
    return found


def lua_headers(headers: dict[str, str]) -> str:
    return "".join(f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items())


def run_wrk(
    label: str,
    url: str,
    script: str,
    workdir: Path,
    *,
    connections: int,
    duration_s: float,
    threads: int = 1,
    server: Server | None = None,
) -> WrkResult:
    """One bounded wrk run (``-d``, plus a hard timeout) against a loopback URL.

    With ``server``, also the CPU milliseconds per request spent by that process and by
    the whole machine (2 cores shared by server, database and wrk), and the share of the
    machine that other processes took meanwhile.
    """
    if not url.startswith(f"http://{HOST}:"):
        raise ValueError("benchmarks send traffic to 127.0.0.1 only")
    path = workdir / f"wrk-{secrets.token_hex(4)}.lua"
    path.write_text(script + _WRK_DONE)
    argv = [
        require_wrk(),
        f"-t{min(threads, connections)}",  # wrk refuses more threads than connections
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "5s",
        "-s",
        str(path),
        url,
    ]
    before = CpuSample.take(server) if server else None
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60, check=False)
    after = CpuSample.take(server) if server else None
    line = next((x for x in out.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    cpu: dict[str, float] = {}
    if before and after and data["requests"]:
        per_request_ms = 1000 / data["requests"]
        cpu["server_cpu_ms"] = (after.server_s - before.server_s) * per_request_ms
        cpu["machine_cpu_ms"] = (after.machine_s - before.machine_s) * per_request_ms
        cpu["other_share"] = before.other_share(after)
    return WrkResult(
        label=label,
        connections=connections,
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        errors=data["connect"] + data["read"] + data["write"] + data["timeout"],
        non_2xx=data["status"],
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        **cpu,
    )


# -- sequential latency (one keep-alive connection) -----------------------------------------
@dataclass
class Timing:
    label: str
    samples_ms: list[float] = field(default_factory=list)
    other_share: float = 0.0

    @property
    def p50(self) -> float:
        return percentile(self.samples_ms, 50)

    @property
    def p99(self) -> float:
        return percentile(self.samples_ms, 99)


def time_requests(
    label: str,
    port: int,
    path: str,
    headers: dict[str, str],
    *,
    count: int,
    warmup: int = 20,
) -> tuple[Timing, bytes]:
    """``count`` sequential GETs on one keep-alive connection; each must answer 200.

    The stdlib client adds far less per request than httpx, so it blurs the server's
    time least; the baseline request pays the same client cost.
    """
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    timing = Timing(label)
    body = b""
    try:
        for i in range(warmup + count):
            started = time.perf_counter()
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:300]!r}")
            if i >= warmup:
                timing.samples_ms.append(elapsed)
    finally:
        conn.close()
    return timing, body


# -- statistics and tables ------------------------------------------------------------------
def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually observed."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table, so the output pastes straight into docs/benchmarks.md."""
    cells = [[str(h) for h in headers], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |"

    rule = "| " + " | ".join("-" * w for w in widths) + " |"
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(value: object) -> str:
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def machine_line() -> str:
    """When, where, and which strongroom source: the tree under edit, or a snapshot."""
    import strongroom

    source = Path(strongroom.__file__).resolve().parent.parent
    revision = ""
    if source.is_relative_to(BENCH_DIR.parent):  # the work tree, not a snapshot
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            head = subprocess.run(
                ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            revision = f" at HEAD {head} (plus any uncommitted edits)" if head else ""
    return (
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.machine()}; "
        f"strongroom from {source}{revision}"
    )


def backends_arg(value: str) -> tuple[str, ...]:
    chosen = tuple(b.strip() for b in value.split(",") if b.strip())
    for name in chosen:
        if name not in BACKENDS:
            raise SystemExit(f"unknown backend {name!r}; choose from {', '.join(BACKENDS)}")
    return chosen
