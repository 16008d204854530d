"""Latency of listing secrets, filtered by metadata and not, at 10,000 to 1,000,000 secrets.

One tenant holds N secrets with varied metadata (environment production 60% / staging
25% / dev 15%, owner one of 20 teams, tier, region, and a rare compliance tag on 0.5%),
seeded in bulk with the rows the storage verbs write (see ``_common.seed``), not through
HTTP. One database grows through every size, so the same cases are timed at each: the
curve, not one point. A real ``strongroom serve`` answers sequential requests on one
keep-alive connection; each case reports p50/p99 and its ratio to ``/healthz`` on the
same server (the cost of HTTP + FastAPI + one database round trip). The ceiling app's
constant endpoint, timed the same way, is the floor of HTTP itself.

Run by hand:

    .venv/bin/python bench/list_filter.py [--backends sqlite,postgres]
        [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import http.client
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
    HOST,
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
from strongroom.server.metadata_entries import metadata_entry_hash

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
RARE_SHARE = 0.005  # secrets tagged compliance=pci


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
        if rng.random() < RARE_SHARE:
            metadata["compliance"] = "pci"
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


def _team_hashed_after_production() -> str:
    """A team whose filter entry sorts after production's by hash.

    A multi-entry filter used to be driven by the entry with the lowest hash; with this
    team the least selective entry (production, 60%) comes first in that order.
    """
    production = metadata_entry_hash("environment", "production")
    return next(t for t in TEAMS if metadata_entry_hash("owner", t) > production)


TEAM_AFTER = _team_hashed_after_production()
PRODUCTION = {"environment": "production"}
CASES = (
    Case("unfiltered", None, 0),
    Case("unfiltered", None, 5000),
    Case("environment=production (60%)", PRODUCTION, 0),
    Case("environment=production (60%)", PRODUCTION, 5000),
    Case("owner=team-07 (5%)", {"owner": "team-07"}, 0),
    Case("production + team-07 (3%)", {**PRODUCTION, "owner": "team-07"}, 0),
    # The same selectivity, but production's entry hashes first (see above).
    Case(f"production + {TEAM_AFTER} (3%)", {**PRODUCTION, "owner": TEAM_AFTER}, 0),
    Case(f"production + {TEAM_AFTER} (3%)", {**PRODUCTION, "owner": TEAM_AFTER}, 200),
    Case("production + compliance=pci (0.3%)", {**PRODUCTION, "compliance": "pci"}, 0),
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


Curve = dict[tuple[str, str, int], dict[int, Timing]]


def check_page(case: Case, page: dict[str, Any]) -> None:
    """A fast answer is worth nothing if it is wrong: order and filter, on every case."""
    names = [item["name"] for item in page["items"]]
    if names != sorted(names):
        raise RuntimeError(f"{case.label}: names not in code-point order")
    for item in page["items"]:
        if any(item["metadata"].get(k) != v for k, v in (case.metadata or {}).items()):
            raise RuntimeError(f"{case.label}: {item['name']} does not match the filter")


def check_value(server: Server, auth: dict[str, str]) -> None:
    """The bulk-sealed values open in the server: read the first seeded secret back."""
    first = next(secrets_to_seed(0, 1))
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        conn.request("GET", f"/v1/secrets/{first.name}", headers=auth)
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200 or json.loads(body).get("value") != first.value:
        raise RuntimeError(f"GET {first.name} answered {response.status}, not its value")


def measure(
    server: Server,
    auth: dict[str, str],
    args: argparse.Namespace,
    backend: str,
    size: int,
    curve: Curve,
) -> list[list[object]]:
    rows: list[list[object]] = []
    health, _ = timed_case(server, "GET /healthz", "/healthz", {}, args)
    rows.append([backend, size, "GET /healthz (baseline)", "-", "-", *_cols(health, health)])
    curve.setdefault((backend, "GET /healthz (baseline)", -1), {})[size] = health
    for case in CASES:
        timing, body = timed_case(server, case.label, case.path(), auth, args)
        page = json.loads(body)
        check_page(case, page)
        shown = f"{len(page['items'])}{'+' if page['has_more'] else ''}"
        rows.append([backend, size, case.label, case.offset, shown, *_cols(timing, health)])
        curve.setdefault((backend, case.label, case.offset), {})[size] = timing
        print(
            f"  {size:>9,} {case.label:<36} offset {case.offset:<5} "
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


def curve_table(curve: Curve, sizes: list[int]) -> str:
    """One row per case: p50 at every size, and how much the largest costs over the smallest."""
    headers = ["db", "request (limit 100)", "offset", *(f"p50 ms at {n:,}" for n in sizes)]
    headers.append(f"{sizes[-1]:,} / {sizes[0]:,}")
    rows: list[list[object]] = []
    for (backend, label, offset), by_size in curve.items():
        p50s = [by_size[n].p50 if n in by_size else float("nan") for n in sizes]
        growth = f"{p50s[-1] / p50s[0]:.2f}x" if p50s[0] else "-"
        rows.append([backend, label, offset if offset >= 0 else "-", *p50s, growth])
    return table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=backends_arg, default=("sqlite", "postgres"))
    parser.add_argument(
        "--sizes",
        type=lambda v: sorted(int(x) for x in v.split(",")),
        default=[10_000, 100_000, 1_000_000],
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
    seeding: list[list[object]] = []
    curve: Curve = {}
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
                    added = seed(services, record, secrets_to_seed(seeded, size), progress=True)
                    took = time.perf_counter() - started
                    vacuum_s = 0.0
                    if backend == "postgres":
                        vacuum_analyze(url)
                        vacuum_s = time.perf_counter() - started - took
                    seeded += added
                    seeding.append([backend, seeded, added, took, added / took, vacuum_s])
                    print(
                        f"  seeded {added:,} to {seeded:,} secrets in {took:.1f} s "
                        f"({added / took:,.0f}/s), VACUUM ANALYZE {vacuum_s:.1f} s",
                        flush=True,
                    )
                    print(f"  ({wait_for_quiet(args.quiet_wait)})", flush=True)
                    with strongroom_server(url, work) as server:
                        check_value(server, auth)
                        rows += measure(server, auth, args, backend, size, curve)

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
    print()
    print(curve_table(curve, args.sizes))
    print(
        "\nThe curve: each case's p50 at every size, and the largest size's over the "
        "smallest's (1.00x = flat)."
    )
    print()
    print(
        table(
            ["db", "secrets", "added", "seconds", "secrets/s", "VACUUM ANALYZE s"],
            seeding,
        )
    )


if __name__ == "__main__":
    main()
