"""Master-key rotation: how long rewrapping every data key takes, per 100,000 secrets.

Seeds N secrets (default 100,000) in one tenant (see ``_common.seed``), then runs
``strongroom.server.crypto.rotation.rotate`` exactly as ``strongroom master-key rotate``
does: the same services, the same batch size (500), a callback after every batch. Set
against it, in the same run, on the same rows:

- **crypto alone**: unwrapping and rewrapping the same number of data keys in-process
  (``Keyring.rewrap``), no database;
- **storage verbs alone**: rotation's own batches through the same storage verbs
  (``sealed_under``, ``replace_wrapped_deks``, a commit per batch) with no crypto:
  each version's KEK id is moved to a placeholder and its wrapped key written back
  unchanged, then one statement moves them all back;
- **bare SQL**: a keyset walk over the primary key reading 500 (id, version, KEK id,
  wrapped key) rows at a time and writing each row's wrapped key back unchanged, in one
  ``executemany`` per batch, a commit per batch: about the least a pass over every row
  can cost through SQLAlchemy and this driver.

So the table shows where the time goes. The rotation's per-batch timestamps also give
its speed over the first and the last tenth of the rows, which tells a pass whose batches
get slower as it advances from one that keeps its pace.

Run by hand:

    .venv/bin/python bench/rotation.py [--backends sqlite,postgres] [-n 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from sqlalchemy.engine import Engine

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
from strongroom.server.crypto import SealContext
from strongroom.server.crypto.rotation import rotate
from strongroom.server.secret_values import decrypt_value
from strongroom.server.services import Services
from strongroom.server.storage import Sealed, SealedRow, StoredVersion, schema
from strongroom.server.storage.sql import SQLStore

BATCH = 500  # `strongroom master-key rotate`'s default --batch-size
PLACEHOLDER_KEK = 1_000_000  # never a keyring entry: storage-only moves park versions here


def vacuum_analyze(url: str) -> None:
    """What autovacuum would have done by the time a real table reached this size."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")


def secrets_to_seed(count: int) -> Iterator[SeedSecret]:
    for i in range(count):
        yield SeedSecret(f"svc_{i * 7919 % count:07d}_{i}", f"value-{i:07d}-" + "v" * 24, {})


def engine_of(services: Services) -> Engine:
    """The engine under the store, for the baselines that bypass storage."""
    assert isinstance(services.store, SQLStore)  # both backends are
    return services.store.engine


def all_sealed(services: Services) -> list[SealedRow]:
    """Every sealed row, read once, outside any timing (the crypto baseline's input)."""
    with services.store.read() as tx:
        return tx.keyring.sealed_under([e.id for e in tx.keyring.entries()], 10**9)


def crypto_only(services: Services, rows: list[SealedRow]) -> float:
    """Unwrap and rewrap every data key in-process, under the active KEK; seconds."""
    keyring = services.barrier.keyring
    with services.store.read() as tx:
        active = tx.keyring.active_kek_id()
    started = time.perf_counter()
    for row in rows:
        keyring.rewrap(SealContext(row.kind, row.parts), row.sealed, active)
    return time.perf_counter() - started


def storage_only(services: Services, kek_id: int, batch: int) -> float:
    """Rotation's batches through the storage verbs, without crypto; seconds.

    Each version moves to a placeholder KEK id (so the next batch finds the next rows,
    as rotation's does) with its wrapped key unchanged; afterwards, untimed, one
    statement moves them all back, so the real rotation starts from the same state.
    """
    store = services.store
    started = time.perf_counter()
    while True:
        with store.write() as tx:
            found = tx.keyring.sealed_under([kek_id], batch)
            tx.keyring.replace_wrapped_deks(
                [
                    (row, Sealed(PLACEHOLDER_KEK, row.sealed.wrapped_dek, row.sealed.ciphertext))
                    for row in found
                ]
            )
        if not found:
            break
    took = time.perf_counter() - started
    v = schema.secret_versions
    with engine_of(services).begin() as conn:
        conn.execute(v.update().where(v.c.kek_id == PLACEHOLDER_KEK).values(kek_id=kek_id))
    return took


def bare_sql(services: Services, batch: int) -> float:
    """Read and rewrite every wrapped key, ``batch`` rows a transaction, by primary key;
    seconds. The updates of a batch go in one ``executemany``."""
    v = schema.secret_versions
    engine = engine_of(services)
    select = (
        sa.select(v.c.secret_id, v.c.version, v.c.kek_id, v.c.wrapped_dek)
        .where(
            sa.tuple_(v.c.secret_id, v.c.version)
            > sa.tuple_(sa.bindparam("after_id"), sa.bindparam("after_version"))
        )
        .order_by(v.c.secret_id, v.c.version)
        .limit(batch)
    )
    update = (
        v.update()
        .where(
            v.c.secret_id == sa.bindparam("b_id"),
            v.c.version == sa.bindparam("b_version"),
            v.c.kek_id == sa.bindparam("b_kek"),
        )
        .values(wrapped_dek=sa.bindparam("b_wrapped"))
    )
    after: tuple[str, int] = ("", 0)
    started = time.perf_counter()
    while True:
        with engine.begin() as conn:
            rows = conn.execute(select, {"after_id": after[0], "after_version": after[1]}).all()
            if rows:
                conn.execute(
                    update,
                    [
                        {
                            "b_id": row.secret_id,
                            "b_version": row.version,
                            "b_kek": row.kek_id,
                            "b_wrapped": row.wrapped_dek,
                        }
                        for row in rows
                    ],
                )
        if not rows:
            break
        after = (rows[-1].secret_id, rows[-1].version)
    return time.perf_counter() - started


def rotation(services: Services, batch: int, count: int) -> tuple[float, float, float]:
    """``rotate`` as the CLI runs it; seconds, and secrets/s over the first and last tenth."""
    marks: list[tuple[int, float]] = [(0, time.perf_counter())]
    report = rotate(
        services.store,
        services.barrier,
        batch_size=batch,
        on_batch=lambda n: marks.append((n, time.perf_counter())),
    )
    took = time.perf_counter() - marks[0][1]
    if report.rewrapped != count:
        raise RuntimeError(f"rotation rewrapped {report.rewrapped} data keys, not {count}")
    return took, _rate(marks, 0.0, 0.1), _rate(marks, 0.9, 1.0)


def _rate(marks: list[tuple[int, float]], start: float, stop: float) -> float:
    """Secrets/s between the batches that ended nearest to the given shares of the total."""
    total = marks[-1][0]

    def nearest(share: float) -> tuple[int, float]:
        return min(marks, key=lambda m: abs(m[0] - share * total))

    (n0, t0), (n1, t1) = nearest(start), nearest(stop)
    return (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def check_values(services: Services, rows: list[SealedRow], sample: int = 200) -> None:
    """After the rotation, values still open, under the new KEK, and are the seeded ones."""
    keyring = services.barrier.keyring
    step = max(1, len(rows) // sample)
    with services.store.read() as tx:
        active = tx.keyring.active_kek_id()
        for row in rows[::step]:
            secret_id, version = str(row.key[0]), int(row.key[1])
            after = tx.secrets.version(secret_id, version)
            assert after is not None
            if after.sealed.kek_id != active:
                raise RuntimeError("a data key was left under a retired KEK")
            tenant = row.tenant_id  # what a caller of the seeded tenant passes
            opened = decrypt_value(keyring, after, secret_tenant_id=tenant, caller_tenant_id=tenant)
            before = StoredVersion(tenant, secret_id, version, row.sealed)
            if opened != decrypt_value(
                keyring, before, secret_tenant_id=tenant, caller_tenant_id=tenant
            ):
                raise RuntimeError("a value changed in the rotation")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", type=backends_arg, default=("sqlite", "postgres"))
    parser.add_argument("-n", "--secrets", type=int, default=100_000, help="secrets to seed")
    parser.add_argument("--batch-size", type=int, default=BATCH, help="data keys per transaction")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=120,
        help="seconds to wait at most for an idle machine before measuring",
    )
    args = parser.parse_args()
    exit_cleanly_on_sigterm()

    n = args.secrets
    print(f"# rotation: {machine_line()}")
    print(f"# {n:,} secrets, one version each; batches of {args.batch_size}\n")
    rows: list[list[object]] = []
    with workdir("strongroom-bench-") as work:
        for backend in args.backends:
            print(f"{backend}:", flush=True)
            with database(backend, work) as url, open_bench_services(url) as services:
                _, record = issue_key(services)
                started = time.perf_counter()
                seed(services, record, secrets_to_seed(n), progress=True)
                if backend == "postgres":
                    vacuum_analyze(url)
                print(f"  seeded in {time.perf_counter() - started:.1f} s", flush=True)
                sealed = all_sealed(services)
                assert len(sealed) == n
                kek_id = sealed[0].sealed.kek_id

                print(f"  ({wait_for_quiet(args.quiet_wait)})", flush=True)
                crypto_s = crypto_only(services, sealed)
                print(f"  crypto alone: {crypto_s:.2f} s", flush=True)
                storage_s = storage_only(services, kek_id, args.batch_size)
                print(f"  storage verbs alone: {storage_s:.2f} s", flush=True)
                bare_s = bare_sql(services, args.batch_size)
                print(f"  bare SQL: {bare_s:.2f} s", flush=True)
                rotate_s, first_rate, last_rate = rotation(services, args.batch_size, n)
                print(
                    f"  rotate: {rotate_s:.2f} s ({first_rate:,.0f}/s over the first tenth, "
                    f"{last_rate:,.0f}/s over the last)",
                    flush=True,
                )
                check_values(services, sealed)

                pace = f"{first_rate:,.0f} → {last_rate:,.0f}/s"
                for case, seconds, extra in (
                    ("rotate (as `master-key rotate`)", rotate_s, pace),
                    ("baseline: crypto alone (unwrap + rewrap)", crypto_s, ""),
                    ("baseline: storage verbs alone, no crypto", storage_s, ""),
                    ("baseline: bare SQL pass (read + update)", bare_s, ""),
                ):
                    rows.append(
                        [
                            *(backend, n, case, seconds, n / seconds, seconds * 100_000 / n),
                            *(f"{seconds / rotate_s:.0%}", extra),
                        ]
                    )
    print()
    print(
        table(
            [
                "db",
                "secrets",
                "case",
                "seconds",
                "secrets/s",
                "s per 100k",
                "of rotate",
                "first → last tenth",
            ],
            rows,
        )
    )
    print(
        "\n'of rotate': the case's time over the rotation's, measured on the same rows in the "
        "same run. 'first → last tenth': the rotation's pace over the first and the last "
        "10% of the rows (equal = a pass that keeps its pace as it advances)."
    )


if __name__ == "__main__":
    main()
