"""Import, export and ``run --all`` over 1,000 secrets: batch requests against one request
per secret.

Starts a real ``strongroom serve`` (one uvicorn worker, as shipped) on SQLite and on a
fresh PostgreSQL database and times, through the Python SDK and the CLI's own code:

- **import**: the CLI's batch path (``plan_import`` then ``write_import`` from
  ``strongroom.cli.secrets``: a dry run, then the write, in ``batch_put`` requests of at
  most 1,000 items and ~900 KB), against the reference, one ``upsert`` per secret (what
  ``secrets import --overwrite`` sent before);
- **re-import** of the same values (every one unchanged), both ways;
- **export**: the names from ``list_all`` then ``read_values`` (``batch_get`` per 1,000),
  against the same list then one ``get`` per secret (what ``secrets export`` did);
- **run --all**: ``run``'s fetch (list, its unsafe-name filter, ``read_values``), against
  one ``get`` per secret;
- **the commands themselves**: ``strongroom secrets import``, ``secrets export`` and
  ``run --all -- true`` as processes, beside the start-up of ``strongroom secrets
  --help`` alone (what every command pays before its first request).

Each repetition works in a tenant of its own (1,000 fresh names); the median of
``--repeat`` is kept. The ratio is the reference's time over the batch path's, measured
in the same run on the same machine. The request budgets are lifted (as for every bench,
``_common.server_env``): with the default 100 requests/s per key the reference would take
at least 10 s of 429s and retries, which the ratio leaves out. The target is each batch
operation under 1 s here.

Only 127.0.0.1 is involved; every loop is bounded. Run by hand:

    .venv/bin/python bench/bulk.py [--backends sqlite,postgres] [--secrets 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import collections
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench directory is not a package: found via sys.path
    STRONGROOM,
    Server,
    backends_arg,
    base_env,
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
from strongroom import Strongroom
from strongroom.cli.common import MAX_BATCH, read_values
from strongroom.cli.envfile import render_env
from strongroom.cli.run import unsafe_name
from strongroom.cli.secrets import plan_import, write_import


@dataclass
class Case:
    """One operation's times (s) and request counts, batch path and reference."""

    label: str
    batch_s: list[float] = field(default_factory=list)
    reference_s: list[float] = field(default_factory=list)
    batch_requests: int = 0
    reference_requests: int = 0


@contextmanager
def sdk(server: Server, key: str) -> Iterator[tuple[Strongroom, collections.Counter[str]]]:
    """A client of ``server`` that counts the requests it sends (retries included)."""
    sent: collections.Counter[str] = collections.Counter()

    def count(request: httpx.Request) -> None:
        sent["all"] += 1

    http = httpx.Client(event_hooks={"request": [count]}, timeout=60)
    with http, Strongroom(api_key=key, base_url=server.base_url, http_client=http) as client:
        yield client, sent


def timed(action: Callable[[], object], sent: collections.Counter[str]) -> tuple[float, int]:
    before = sent["all"]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started, sent["all"] - before


def values_for(count: int, value_bytes: int) -> dict[str, str]:
    filler = max(0, value_bytes - 24)
    return {
        f"BULK_{i:05d}": f"v{i:05d}-{secrets.token_hex(8)}-" + "x" * filler for i in range(count)
    }


# -- the batch paths, as the commands take them ------------------------------------------------
def import_batch(client: Strongroom, values: dict[str, str]) -> None:
    plan = plan_import(client, values, overwrite=True)
    write_import(client, values, plan.to_write)


def export_batch(client: Strongroom) -> dict[str, str]:
    listed = list(client.secrets.list_all(page_size=MAX_BATCH))
    names = [s.name for s in listed if s.policy.readable]
    found = read_values(client, names)
    if found.missed:
        raise RuntimeError(f"{len(found.missed)} names read without a value")
    return found.values


def run_all_batch(client: Strongroom) -> dict[str, str]:
    names = [
        s.name for s in client.secrets.list_all(page_size=MAX_BATCH) if not unsafe_name(s.name)
    ]
    return read_values(client, names).values


# -- the references: one request per secret -----------------------------------------------------
def import_each(client: Strongroom, values: dict[str, str]) -> None:
    for name, value in values.items():
        client.secrets.upsert(name, value)


def export_each(client: Strongroom) -> dict[str, str]:
    listed = list(client.secrets.list_all(page_size=MAX_BATCH))
    return {s.name: client.secrets.get(s.name).value for s in listed if s.policy.readable}


def run_all_each(client: Strongroom) -> dict[str, str]:
    listed = client.secrets.list_all(page_size=MAX_BATCH)
    return {s.name: client.secrets.get(s.name).value for s in listed if not unsafe_name(s.name)}


Importer = Callable[[Strongroom, dict[str, str]], None]
Reader = Callable[[Strongroom], dict[str, str]]
BATCH: tuple[Importer, Reader, Reader] = (import_batch, export_batch, run_all_batch)
EACH: tuple[Importer, Reader, Reader] = (import_each, export_each, run_all_each)


def one_round(
    server: Server, key: str, values: dict[str, str], path: tuple[Importer, Reader, Reader]
) -> dict[str, tuple[float, int]]:
    """Each operation once, in a tenant still empty: seconds and requests sent."""
    importer, exporter, fetcher = path
    with sdk(server, key) as (client, sent):
        return {
            "import": timed(lambda: importer(client, values), sent),
            "re-import (unchanged)": timed(lambda: importer(client, values), sent),
            "export": timed(lambda: check(exporter(client), values), sent),
            "run --all fetch": timed(lambda: check(fetcher(client), values), sent),
        }


def command(args: list[str], env: dict[str, str]) -> float:
    """Seconds one ``strongroom`` process takes, start-up included; it must exit 0."""
    started = time.perf_counter()
    done = subprocess.run(
        [STRONGROOM, *args],
        env={**base_env(), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=300,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"strongroom {' '.join(args)} exited {done.returncode}: {done.stderr!r}")
    return elapsed


def measure(backend: str, args: argparse.Namespace, work: Path) -> tuple[list[Case], list[Case]]:
    """The SDK cases (batch and reference) and the command cases (start-up as reference)."""
    cases = {
        name: Case(name)
        for name in ("import", "re-import (unchanged)", "export", "run --all fetch")
    }
    commands = {
        name: Case(name) for name in ("secrets import", "secrets export", "run --all -- true")
    }
    startup: list[float] = []
    with database(backend, work) as url:
        with open_bench_services(url) as services:
            keys = [
                (
                    issue_key(services, f"bench_batch_{r}")[0],
                    issue_key(services, f"bench_each_{r}")[0],
                )
                for r in range(args.repeat + 1)
            ]
            command_keys = [issue_key(services, f"bench_cli_{r}")[0] for r in range(args.repeat)]
        with strongroom_server(url, work, STRONGROOM_LOG_LEVEL="WARNING") as server:
            for r, (batch_key, each_key) in enumerate(keys):
                warm_up = r == 0  # imports, pools, caches, query plans: not kept
                print(f"  ({wait_for_quiet(args.quiet_wait)})", flush=True)
                values = values_for(args.secrets, args.value_bytes)
                for reference, key in ((False, batch_key), (True, each_key)):
                    path = EACH if reference else BATCH
                    for label, (seconds, requests) in one_round(server, key, values, path).items():
                        if warm_up:
                            continue
                        case = cases[label]
                        if reference:
                            case.reference_s.append(seconds)
                            case.reference_requests = requests
                        else:
                            case.batch_s.append(seconds)
                            case.batch_requests = requests
                line = ", ".join(
                    f"{c.label} {c.batch_s[-1]:.2f} s / {c.reference_s[-1]:.2f} s"
                    for c in cases.values()
                    if c.batch_s
                )
                print(f"  {'warm-up' if warm_up else f'run {r}'}: {line or 'done'}", flush=True)
            for key in command_keys:
                env = {"STRONGROOM_API_KEY": key, "STRONGROOM_BASE_URL": server.base_url}
                file = work / f"import-{secrets.token_hex(4)}.env"
                file.write_text(render_env(values_for(args.secrets, args.value_bytes)))
                file.chmod(0o600)
                startup.append(command(["secrets", "--help"], {}))
                commands["secrets import"].batch_s.append(
                    command(["secrets", "import", str(file)], env)
                )
                commands["secrets export"].batch_s.append(
                    command(["secrets", "export", "-o", str(work / "out.env")], env)
                )
                commands["run --all -- true"].batch_s.append(
                    command(["run", "--all", "--", "true"], env)
                )
                file.unlink()
    for case in commands.values():
        case.reference_s = startup  # what the command pays before its first request
    return list(cases.values()), list(commands.values())


def check(found: dict[str, str], expected: dict[str, str]) -> None:
    """A benchmark of wrong answers measures nothing: every value, exactly."""
    if found != expected:
        missing = len(expected.keys() - found.keys())
        raise RuntimeError(f"read {len(found)} values, {missing} missing or different")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=backends_arg, default=("sqlite", "postgres"))
    parser.add_argument("--secrets", type=int, default=1000, help="secrets per operation")
    parser.add_argument("--value-bytes", type=int, default=64, help="bytes per value (ASCII)")
    parser.add_argument("--repeat", type=int, default=3, help="measured runs; the median is kept")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="seconds to wait at most for an idle machine before each run",
    )
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    print(f"# bulk: {machine_line()}")
    print(
        f"# {args.secrets:,} secrets of {args.value_bytes} bytes per operation, "
        f"{args.repeat} runs after a warm-up, median\n"
    )
    rows: list[list[object]] = []
    command_rows: list[list[object]] = []
    with workdir("strongroom-bench-") as work:
        for backend in args.backends:
            print(f"strongroom on {backend}:", flush=True)
            cases, commands = measure(backend, args, work)
            for case in cases:
                batch = statistics.median(case.batch_s)
                reference = statistics.median(case.reference_s)
                rows.append(
                    [
                        case.label,
                        backend,
                        batch,
                        f"{min(case.batch_s):.2f}-{max(case.batch_s):.2f}",
                        reference,
                        f"{reference / batch:.1f}x",
                        f"{case.batch_requests} / {case.reference_requests}",
                        "yes" if batch < 1 else "NO",
                    ]
                )
            for case in commands:
                took = statistics.median(case.batch_s)
                command_rows.append(
                    [
                        f"strongroom {case.label}",
                        backend,
                        took,
                        f"{min(case.batch_s):.2f}-{max(case.batch_s):.2f}",
                        statistics.median(case.reference_s),
                        took - statistics.median(case.reference_s),
                    ]
                )
    print()
    headers = [
        "operation",
        "db",
        "batch s",
        "range",
        "one per secret s",
        "ratio",
        "requests (batch / one each)",
        "under 1 s",
    ]
    print(table(headers, rows))
    print(
        "\nbatch s: the CLI's batch path through the SDK (median of --repeat; range: fastest-"
        "slowest). one per secret s: the same result with a request per secret, in the same "
        "run. ratio = one per secret over batch. Request budgets are lifted; with the "
        "default per-key budget the one-per-secret reference would also wait out 429s.\n"
    )
    headers = ["command", "db", "s", "range", "start-up alone s", "s past start-up"]
    print(table(headers, command_rows))
    print(
        "\ncommand: the `strongroom` process over the same number of secrets (in a tenant "
        "of its own), start-up included; start-up alone: `strongroom secrets --help`."
    )


if __name__ == "__main__":
    main()
