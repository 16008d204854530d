"""Where a ``GET /v1/secrets/{name}`` spends its time, layer by layer, without HTTP.

Times, in-process and on each backend, the pieces one GET is made of: the API key
look-up (a read transaction), the secret and version look-ups, the decryption, and the
whole ``SecretService.get`` (a write transaction that also records the audit event).
Set against ``get_by_name.py``'s server CPU per request, the difference is what HTTP,
FastAPI, the middleware, the logs and the threadpool hops cost.

Run by hand:

    .venv/bin/python bench/get_breakdown.py [--backends sqlite,postgres] [--calls 2000]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # the bench directory is not a package: found via sys.path
    SeedSecret,
    backends_arg,
    database,
    exit_cleanly_on_sigterm,
    issue_key,
    machine_line,
    open_bench_services,
    seed,
    table,
    wait_for_quiet,
    workdir,
)
from strongroom.server import trail
from strongroom.server.auth import Caller
from strongroom.server.secret_values import decrypt_value
from strongroom.server.services import Services
from strongroom.server.trail import Action


def timed(calls: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds per call, after a short warm-up."""
    for _ in range(min(100, calls)):
        fn()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    return (
        (time.perf_counter() - wall) * 1000 / calls,
        (time.process_time() - cpu) * 1000 / calls,
    )


def pieces_of_a_get(services: Services, calls: int, backend: str) -> list[list[object]]:
    """Time each piece on an open, seeded store; one row per piece."""
    key, record = issue_key(services)
    names = [f"bench_secret_{i:05d}" for i in range(1000)]
    seed(services, record, (SeedSecret(n, "v" * 32, {"environment": "production"}) for n in names))
    caller = Caller(record.tenant_id, record.tenant_name, record.id, record.scopes)
    key_hash = services.barrier.hash_api_key(key)
    store = services.store
    turn = itertools.cycle(names)
    with store.read() as tx:
        first = tx.secrets.by_name(record.tenant_id, names[0])
        assert first is not None
        stored = tx.secrets.version(first.id, 1)
        assert stored is not None

    def empty_read() -> None:
        with store.read():
            pass

    def empty_write() -> None:
        with store.write():
            pass

    def authenticate() -> None:
        with store.read() as tx:
            tx.apikeys.by_hash(key_hash)

    def look_up() -> None:
        with store.read() as tx:
            secret = tx.secrets.by_name(record.tenant_id, next(turn))
            assert secret is not None
            tx.secrets.version(secret.id, 1)

    def audit_only() -> None:
        with store.write() as tx:
            trail.record(tx, trail.event(caller.actor, Action.READ, "success"))

    def service_get() -> None:
        services.secrets.get(caller, next(turn))

    pieces: list[tuple[str, Callable[[], object]]] = [
        ("empty read transaction", empty_read),
        ("empty write transaction", empty_write),
        ("API key look-up (read tx)", authenticate),
        ("secret + version look-up (read tx)", look_up),
        (
            "decrypt_value (decrypt DEK + value)",
            lambda: decrypt_value(
                services.barrier.keyring,
                stored,
                secret_tenant_id=record.tenant_id,
                caller_tenant_id=record.tenant_id,
            ),
        ),
        ("audit event alone (write tx, commit)", audit_only),
        ("SecretService.get (write tx + audit)", service_get),
    ]
    print(f"{backend}: {wait_for_quiet()}", flush=True)
    rows: list[list[object]] = []
    for label, fn in pieces:
        wall, cpu = timed(calls, fn)
        rows.append([backend, label, wall, cpu])
        print(f"  {label:<40} {wall:6.3f} ms wall  {cpu:6.3f} ms CPU", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=backends_arg, default=("sqlite", "postgres"))
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per piece")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    print(f"# get_breakdown: {machine_line()}")
    print(f"# {args.calls} sequential in-process calls per piece, one thread\n")
    rows: list[list[object]] = []
    with workdir("strongroom-bench-") as work:
        for backend in args.backends:
            with database(backend, work) as url, open_bench_services(url) as services:
                rows += pieces_of_a_get(services, args.calls, backend)
    print()
    print(table(["db", "piece of one GET", "wall ms/call", "CPU ms/call"], rows))
    print(
        "\nOne HTTP GET = API key look-up + SecretService.get, plus FastAPI, middleware, "
        "two log lines and three threadpool hops."
    )


if __name__ == "__main__":
    main()
