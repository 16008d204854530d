"""Throughput and latency of ``GET /v1/secrets/{name}``, create and update, against a
bare-FastAPI ceiling.

Starts a real ``strongroom serve`` (one uvicorn worker, as shipped) on SQLite and on a
fresh PostgreSQL database, and the constant-JSON app of ``ceiling_app.py`` under uvicorn
with the same settings, then drives each with wrk over fixed connections for a fixed time
after a warm-up: reads of 1,000 secrets round-robin, creates (``POST /v1/secrets``, a new
name each) and updates (``PATCH`` with a new value, so a new version each). The ratio
column is strongroom's requests/s over the ceiling's for the same method, measured in the
same run on the same machine, so it says what strongroom's own code costs.

Needs wrk (Debian package ``wrk``). Run by hand:

    .venv/bin/python bench/get_by_name.py [--backends sqlite,postgres] [--duration 10]
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench directory is not a package: found via sys.path
    HOST,
    SeedSecret,
    Server,
    WrkResult,
    backends_arg,
    ceiling_server,
    database,
    exit_cleanly_on_sigterm,
    issue_key,
    lua_headers,
    machine_line,
    open_bench_services,
    require_wrk,
    run_wrk,
    seed,
    strongroom_server,
    table,
    wait_for_quiet,
    workdir,
)
from strongroom.server.secret_values import decrypt_value

TEAMS = [f"team-{i:02d}" for i in range(20)]


def names_lua(names: list[str]) -> str:
    return "local names = {" + ",".join(json.dumps(n) for n in names) + "}\n"


def get_script(names: list[str], headers: dict[str, str], prefix: str = "/v1/secrets/") -> str:
    """Round-robin over many names, so one hot row does not flatter the cache."""
    return (
        lua_headers(headers)
        + names_lua(names)
        + "local i = 0\n"
        + "request = function()\n"
        + "  i = i % #names + 1\n"
        + f'  return wrk.format("GET", "{prefix}" .. names[i])\n'
        + "end\n"
    )


def create_script(headers: dict[str, str]) -> str:
    """A new, unique name per request (run id + wrk thread + counter): no 409s.

    Each call makes a fresh run id, since wrk restarts its counters every run.
    """
    run_id = secrets.token_hex(4)
    body_head = '{"name":"'
    body_tail = '","value":"bench-value-0123456789abcdef","metadata":{"environment":"dev"}}'
    # ``tid`` is a global on purpose: thread:set() assigns the thread's global, which a
    # ``local tid`` would shadow (every thread would then make the same names).
    return (
        lua_headers({**headers, "Content-Type": "application/json"})
        + "tid = 0\n"
        + "local threads_made = 0\n"
        + "setup = function(thread)\n"
        + "  threads_made = threads_made + 1\n"
        + '  thread:set("tid", threads_made)\n'
        + "end\n"
        + "local n = 0\n"
        + "request = function()\n"
        + "  n = n + 1\n"
        + f'  local name = "new_{run_id}_" .. tostring(tid) .. "_" .. tostring(n)\n'
        + f"  local body = '{body_head}' .. name .. '{body_tail}'\n"
        + '  return wrk.format("POST", "/v1/secrets", nil, body)\n'
        + "end\n"
    )


def update_script(names: list[str], headers: dict[str, str]) -> str:
    """A new value (so a new sealed version) for each name in turn."""
    return (
        lua_headers({**headers, "Content-Type": "application/json"})
        + names_lua(names)
        + "local i = 0\n"
        + "local n = 0\n"
        + "request = function()\n"
        + "  i = i % #names + 1\n"
        + "  n = n + 1\n"
        + "  local body = '{\"value\":\"updated-' .. tostring(n) .. '\"}'\n"
        + '  return wrk.format("PATCH", "/v1/secrets/" .. names[i], nil, body)\n'
        + "end\n"
    )


def _request(
    server: Server, method: str, path: str, headers: dict[str, str], body: object = None
) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        payload = None if body is None else json.dumps(body)
        sent = {**headers, "Content-Type": "application/json"} if payload else headers
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        answer = response.read()
    finally:
        conn.close()
    return response.status, json.loads(answer) if answer else {}


def check_requests(server: Server, name: str, headers: dict[str, str], value: str) -> None:
    """One request of each kind by hand first: a benchmark of 401s or 404s measures nothing.

    The read answers the seeded value; the create answers 201 and the update 200, each
    with a new version, so the write rows measure writes.
    """
    status, body = _request(server, "GET", f"/v1/secrets/{name}", headers)
    if status != 200 or body.get("value") != value:
        raise RuntimeError(f"GET {name} answered {status}: {str(body)[:300]}")
    fresh = f"check_{secrets.token_hex(4)}"
    status, body = _request(server, "POST", "/v1/secrets", headers, {"name": fresh, "value": "v"})
    if status != 201 or body.get("version") != 1:
        raise RuntimeError(f"POST answered {status}: {str(body)[:300]}")
    status, body = _request(server, "PATCH", f"/v1/secrets/{fresh}", headers, {"value": "w"})
    if status != 200 or body.get("version") != 2:
        raise RuntimeError(f"PATCH answered {status}: {str(body)[:300]}")


class Runner:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work

    def wrk(
        self, label: str, server: Server, script: str | Callable[[], str], connections: int
    ) -> WrkResult:
        """A warm-up run, then ``--repeat`` measured ones; the median by req/s is kept.

        A callable script is made anew for each run (wrk restarts its counters).
        """

        def make() -> str:
            return script() if callable(script) else script

        print(f"  ({wait_for_quiet(self.args.quiet_wait)})", flush=True)
        # Warm-up: imports, connection pools, SQLite page cache, PostgreSQL plans.
        run_wrk(
            "warm-up",
            server.base_url,
            make(),
            self.work,
            connections=connections,
            duration_s=self.args.warmup,
            threads=self.args.threads,
        )
        results: list[WrkResult] = []
        attempts = 0
        # Bounded: a run disturbed by other work on the machine is repeated at most
        # --retries times in all; if every attempt was disturbed, the table says so.
        while len(results) < self.args.repeat and attempts < self.args.repeat + self.args.retries:
            attempts += 1
            result = run_wrk(
                label,
                server.base_url,
                make(),
                self.work,
                connections=connections,
                duration_s=self.args.duration,
                threads=self.args.threads,
                server=server,
            )
            disturbed = result.other_share > self.args.max_other
            print(
                f"  {label:<34} c={connections:<3} {result.rps:>7,.0f} req/s  "
                f"p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:7.2f} ms  "
                f"cpu/req {result.server_cpu_ms:.2f} ms (machine {result.machine_cpu_ms:.2f})  "
                f"other {result.other_share:.0%}  errors {result.errors}  "
                f"non-2xx {result.non_2xx}" + ("  DISTURBED, not kept" if disturbed else ""),
                flush=True,
            )
            if not disturbed:
                results.append(result)
            elif attempts >= self.args.repeat + self.args.retries and not results:
                results.append(result)  # every attempt was disturbed: keep one, flagged
            if disturbed:
                wait_for_quiet(min(self.args.quiet_wait, 30))
        results.sort(key=lambda r: r.rps)
        median = results[len(results) // 2]
        median.rps_min, median.rps_max = results[0].rps, results[-1].rps
        return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=backends_arg, default=("sqlite", "postgres"))
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per run")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument(
        "--repeat", type=int, default=3, help="measured runs per case; the median is reported"
    )
    parser.add_argument("--secrets", type=int, default=1000, help="secrets to read round-robin")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="seconds to wait at most for an idle machine before each run",
    )
    parser.add_argument(
        "--max-other",
        type=float,
        default=0.08,
        help="share of the machine's CPU used by other processes above which a run is redone",
    )
    parser.add_argument(
        "--retries", type=int, default=4, help="extra runs allowed per case for disturbed ones"
    )
    parser.add_argument("--no-writes", action="store_true", help="skip the POST/PATCH runs")
    args = parser.parse_args()
    require_wrk()
    exit_cleanly_on_sigterm()

    c = args.connections
    print(f"# get_by_name: {machine_line()}")
    print(
        f"# wrk -t{args.threads} -c{c} -d{args.duration}s, {args.repeat} runs per case "
        f"after {args.warmup}s warm-up\n"
    )
    rows: list[list[object]] = []
    with workdir("strongroom-bench-") as work:
        runner = Runner(args, work)
        names = [f"bench_secret_{i:05d}" for i in range(args.secrets)]

        print("ceiling (bare FastAPI + uvicorn, constant JSON):", flush=True)
        with ceiling_server(work) as ceiling:
            ceil = runner.wrk("GET constant, sync def", ceiling, get_script(names, {}), c)
            ceil_async = runner.wrk(
                "GET constant, async def", ceiling, get_script(names, {}, "/async/"), c
            )
            ceil_1 = runner.wrk("GET constant, sync def", ceiling, get_script(names, {}), 1)
            if not args.no_writes:
                ceil_post = runner.wrk(
                    "POST constant (create)", ceiling, functools.partial(create_script, {}), c
                )
                ceil_patch = runner.wrk(
                    "PATCH constant (update)", ceiling, update_script(names, {}), c
                )
        rows.append(["ceiling: sync def", "-", *_cols(ceil, ceil)])
        rows.append(["ceiling: async def", "-", *_cols(ceil_async, ceil)])
        rows.append(["ceiling: sync def", "-", *_cols(ceil_1, ceil_1)])
        if not args.no_writes:
            rows.append(["ceiling: create (POST)", "-", *_cols(ceil_post, ceil_post)])
            rows.append(["ceiling: update (PATCH)", "-", *_cols(ceil_patch, ceil_patch)])

        for backend in args.backends:
            print(f"\nstrongroom on {backend}:", flush=True)
            with database(backend, work) as url:
                with open_bench_services(url) as services:
                    key, record = issue_key(services)
                    seed(
                        services,
                        record,
                        (
                            SeedSecret(
                                name,
                                f"value-{i}-{secrets.token_hex(8)}",
                                {"environment": "production", "owner": TEAMS[i % len(TEAMS)]},
                            )
                            for i, name in enumerate(names)
                        ),
                    )
                    with services.store.read() as tx:
                        first = tx.secrets.by_name(record.tenant_id, names[0])
                        assert first is not None
                        stored = tx.secrets.version(first.id, 1)
                        assert stored is not None
                        first_value = decrypt_value(
                            services.barrier.keyring,
                            stored,
                            secret_tenant_id=record.tenant_id,
                            caller_tenant_id=record.tenant_id,
                        )
                auth = {"Authorization": f"Bearer {key}"}
                with strongroom_server(url, work) as server:
                    check_requests(server, names[0], auth, first_value)
                    get = runner.wrk("GET /v1/secrets/{name}", server, get_script(names, auth), c)
                    get_1 = runner.wrk("GET /v1/secrets/{name}", server, get_script(names, auth), 1)
                    health = runner.wrk(
                        "GET /healthz", server, lua_headers({}) + 'wrk.path = "/healthz"\n', c
                    )
                    rows.append(["strongroom: GET secret", backend, *_cols(get, ceil)])
                    rows.append(["strongroom: GET secret", backend, *_cols(get_1, ceil_1)])
                    rows.append(["strongroom: GET /healthz", backend, *_cols(health, ceil)])
                    if not args.no_writes:
                        post = runner.wrk(
                            "POST /v1/secrets",
                            server,
                            functools.partial(create_script, auth),
                            c,
                        )
                        patch = runner.wrk(
                            "PATCH /v1/secrets/{name} (value)",
                            server,
                            update_script(names, auth),
                            c,
                        )
                        rows.append(["strongroom: create (POST)", backend, *_cols(post, ceil_post)])
                        rows.append(
                            ["strongroom: update (PATCH value)", backend, *_cols(patch, ceil_patch)]
                        )

    print()
    print(
        table(
            [
                "target",
                "db",
                "conns",
                "req/s",
                "range",
                "p50 ms",
                "p99 ms",
                "server CPU ms/req",
                "machine CPU ms/req",
                "other load",
                "errors/non-2xx",
                "vs ceiling",
            ],
            rows,
        )
    )
    print(
        "\nreq/s, p50, p99, CPU: the median run of --repeat; range: slowest-fastest run. "
        "vs ceiling = req/s over the sync-def ceiling's for the same method at the same "
        "connection count (1.00 = as fast as a bare FastAPI endpoint). server CPU = the "
        "server process (all threads); machine CPU = every process on the machine "
        "(server, PostgreSQL, wrk), per request; other load = share of the machine used by "
        "none of these."
    )


def _cols(result: WrkResult, ceiling: WrkResult) -> list[object]:
    return [
        result.connections,
        result.rps,
        f"{result.rps_min:,.0f}-{result.rps_max:,.0f}",
        result.p50_ms,
        result.p99_ms,
        result.server_cpu_ms,
        result.machine_cpu_ms,
        f"{result.other_share:.0%}",
        f"{result.errors}/{result.non_2xx}",
        f"{result.rps / ceiling.rps:.2f}x" if ceiling.rps else "-",
    ]


if __name__ == "__main__":
    main()
