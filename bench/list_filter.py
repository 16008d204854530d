"""Latency of listing secrets, filtered by metadata and not, at 10,000 and 100,000 secrets.

One tenant holds N secrets with varied metadata (environment production 60% / staging
25% / dev 15%, owner one of 20 teams, tier, region), seeded straight through the storage
verbs rather than HTTP. A real ``strongroom serve`` then answers sequential requests on
one keep-alive connection; each case reports p50/p99 and its ratio to ``/healthz`` on the
same server (the cost of HTTP + FastAPI + one database round trip). The ceiling app's
constant endpoint, timed the same way, is the floor of HTTP itself.

Run by hand:

    .venv/bin/python bench/list_filter.py [--backends sqlite,postgres] [--sizes 10000,100000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench directory is not a package: found via sys.path
    CpuSample,
    SeedSecret,
    Server,
    Timing,
    backends_arg,
    ceiling_server,
    database,
    exit_cleanly_on_sigterm,
    issue_key,
    machine_line,
    open_bench_services,
    seed,
    strongroom_server,
    table,
    time_requests,
    wait_for_quiet,
    workdir,
)

ENVIRONMENTS = (("production", 60), ("staging", 25), ("dev", 15))
TEAMS = [f"team-{i:02d}" for i in range(20)]
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
SERVICES = (
    "billing",
    "checkout",
    "search",
    "auth",
    "ledger",
    "mailer",
    "reports",
    "gateway",
    "catalog",
    "payments",
)
KINDS = ("db_password", "api_token", "signing_key", "webhook_secret", "tls_key")


def secrets_to_seed(start: int, stop: int) -> Iterator[SeedSecret]:
    """Deterministic secrets ``start``..``stop``; names do not sort in insertion order."""
    rng = random.Random(start * 7919 + 1)
    envs = [e for e, _ in ENVIRONMENTS]
    weights = [w for _, w in ENVIRONMENTS]
    for i in range(start, stop):
        name = f"{rng.choice(SERVICES)}_{rng.choice(KINDS)}_{rng.getrandbits(40):010x}_{i}"
        metadata: dict[str, Any] = {
            "environment": rng.choices(envs, weights)[0],
            "owner": rng.choice(TEAMS),
            "tier": rng.randint(1, 3),
            "region": rng.choice(REGIONS),
        }
        yield SeedSecret(name, f"{rng.getrandbits(128):032x}", metadata, f"secret number {i}")


@dataclass(frozen=True)
class Case:
    label: str
    metadata: dict[str, Any] | None
    offset: int
    limit: int = 100

    def path(self) -> str:
        query: dict[str, str | int] = {"limit": self.limit, "offset": self.offset}
        if self.metadata is not None:
            query["metadata"] = json.dumps(self.metadata, separators=(",", ":"))
        return "/v1/secrets?" + urllib.parse.urlencode(query)


CASES = (
    Case("unfiltered", None, 0),
    Case("unfiltered", None, 5000),
    Case("environment=production (60%)", {"environment": "production"}, 0),
    Case("environment=production (60%)", {"environment": "production"}, 5000),
    Case("owner=team-07 (5%)", {"owner": "team-07"}, 0),
    Case("production + team-07 (3%)", {"environment": "production", "owner": "team-07"}, 0),
    Case("environment=nowhere (0%)", {"environment": "nowhere"}, 0),
)


def vacuum_analyze(url: str) -> None:
    """What autovacuum would have done by the time a real table reached this size."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def timed_case(
    server: Server, label: str, path: str, headers: dict[str, str], args: argparse.Namespace
) -> tuple[Timing, bytes]:
    """Time one case; redo it (bounded) while other processes took the machine."""
    for attempt in range(1 + args.retries):
        before = CpuSample.take(server)
        timing, body = time_requests(label, server.port, path, headers, count=args.requests)
        timing.other_share = before.other_share(CpuSample.take(server))
        if timing.other_share <= args.max_other:
            break
        print(f"  {label}: other load {timing.other_share:.0%}, redoing", flush=True)
        if attempt < args.retries:
            wait_for_quiet(min(args.quiet_wait, 30))
    return timing, body


def measure(
    server: Server, auth: dict[str, str], args: argparse.Namespace, backend: str, size: int
) -> list[list[object]]:
    rows: list[list[object]] = []
    health, _ = timed_case(server, "GET /healthz", "/healthz", {}, args)
    rows.append([backend, size, "GET /healthz (baseline)", "-", "-", *_cols(health, health)])
    for case in CASES:
        timing, body = timed_case(server, case.label, case.path(), auth, args)
        page = json.loads(body)
        shown = f"{len(page['items'])}{'+' if page['has_more'] else ''}"
        rows.append([backend, size, case.label, case.offset, shown, *_cols(timing, health)])
        print(
            f"  {size:>7,} {case.label:<32} offset {case.offset:<5} "
            f"p50 {timing.p50:8.2f} ms  p99 {timing.p99:8.2f} ms  items {shown}  "
            f"other load {timing.other_share:.0%}",
            flush=True,
        )
    return rows


def _cols(timing: Timing, baseline: Timing) -> list[object]:
    return [
        timing.p50,
        timing.p99,
        f"{timing.p50 / baseline.p50:.1f}x",
        f"{timing.other_share:.0%}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=backends_arg, default=("sqlite", "postgres"))
    parser.add_argument(
        "--sizes",
        type=lambda v: sorted(int(x) for x in v.split(",")),
        default=[10_000, 100_000],
        help="secret counts, ascending; each grows the same database",
    )
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.08,
        help="share of the machine's CPU used by other processes above which a case is redone",
    )
    parser.add_argument("--retries", type=int, default=3, help="redos allowed per case")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="seconds to wait at most for an idle machine before measuring",
    )
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    print(f"# list_filter: {machine_line()}")
    print(f"# {args.requests} sequential requests per case on one keep-alive connection\n")
    rows: list[list[object]] = []
    with workdir("strongroom-bench-") as work:
        print(f"({wait_for_quiet(args.quiet_wait)})", flush=True)
        with ceiling_server(work) as ceiling:
            floor, _ = timed_case(ceiling, "ceiling", "/healthz", {}, args)
        rows.append(["-", "-", "ceiling app: constant JSON", "-", "-", *_cols(floor, floor)])
        for backend in args.backends:
            print(f"strongroom on {backend}:", flush=True)
            with database(backend, work) as url, open_bench_services(url) as services:
                key, record = issue_key(services)
                auth = {"Authorization": f"Bearer {key}"}
                seeded = 0
                for size in args.sizes:
                    started = time.perf_counter()
                    seeded += seed(services, record, secrets_to_seed(seeded, size))
                    if backend == "postgres":
                        vacuum_analyze(url)
                    took = time.perf_counter() - started
                    print(f"  seeded to {seeded:,} secrets in {took:.1f} s", flush=True)
                    print(f"  ({wait_for_quiet(args.quiet_wait)})", flush=True)
                    with strongroom_server(url, work) as server:
                        rows += measure(server, auth, args, backend, size)

    print()
    print(
        table(
            [
                "db",
                "secrets",
                "request (limit 100)",
                "offset",
                "items",
                "p50 ms",
                "p99 ms",
                "p50 vs healthz",
                "other load",
            ],
            rows,
        )
    )
    print(
        "\nitems: rows on the page ('+' = has_more). Baseline: /healthz on the same server. "
        "other load: share of the machine used by processes other than server, database "
        "and this bench while the case ran."
    )


if __name__ == "__main__":
    main()
