"""Request budgets shared through Redis: what one check costs, design against design.

One check is what the middleware does for every request: the address's penalty box
looked at (``10/minute``) and the address's budget spent (``200/second;6000/minute``),
for addresses drawn from a pool of 10,000 so nearly every check is taken. Designs, all
against the same Redis in one run:

- (c) the reference: today's in-process GCRA (``RateLimiter`` without Redis);
- (b) GCRA in one Lua script per check (``RateLimiter`` with ``redis_url``): the blocking
  client (as the threadpool calls it), the asyncio client (as the middleware awaits it),
  and the blocking client hopped onto a worker thread from the event loop;
- (a) the ``limits`` library's Redis storage: the penalty-box ``test`` then a ``hit``
  per address limit (three round trips, not atomic), with its moving window and sliding
  window strategies, blocking and asyncio (``redis.asyncio``).

plus, as the floor of any design over Redis, a bare ``PING`` round trip. Each is timed
sequentially (one caller) and under concurrency (``--callers`` threads for a blocking
client, as many tasks on one event loop for an asyncio one), in ``--rounds`` rounds that
take the designs in turn, so a machine that gets busier mid-run weighs on all alike.
Reports µs per check (p50, p99 over all rounds), checks per second, and each p50 as a
ratio to (c) in the same mode. Every key is written under a prefix of this run and
removed at the end. Run by hand:

    .venv/bin/python bench/ratelimit_redis.py [--redis redis://127.0.0.1:6379/0]
        [--checks 4000] [--callers 16] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import secrets
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio.to_thread
import redis
from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage as AsyncRedisStorage
from limits.aio.strategies import MovingWindowRateLimiter as AsyncMovingWindow
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.strategies import RateLimiter as LimitsStrategy

# The bench directory is not a package.
from _common import machine_busy_s, machine_line, percentile, table, wait_for_quiet
from strongroom.server.ratelimit import RateLimiter

PER_ADDRESS = "200/second;6000/minute"
AUTH_FAILURES = "10/minute"
ADDRESSES = 10_000

Check = Callable[[str], object]
AsyncCheck = Callable[[str], Awaitable[object]]


@dataclass
class Timing:
    samples_us: list[float] = field(default_factory=list)
    wall_s: float = 0.0

    def add(self, other: Timing) -> None:
        self.samples_us += other.samples_us
        self.wall_s += other.wall_s

    def row(self) -> tuple[float, float, float]:
        p50 = percentile(self.samples_us, 50)
        p99 = percentile(self.samples_us, 99)
        return p50, p99, len(self.samples_us) / self.wall_s


def addresses(seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{n % 256}" for n in range(ADDRESSES)]


# -- timing ---------------------------------------------------------------------------------
def threaded(check: Check, checks: int, callers: int, pool: list[str]) -> Timing:
    """``checks`` checks by ``callers`` threads at once (one: sequential)."""
    per_caller = max(1, checks // callers)
    start = threading.Barrier(callers + 1)

    def caller(index: int) -> list[float]:
        mine = pool[index::callers]
        for address in mine[:20]:  # warm: connections made, the script loaded
            check(address)
        start.wait()
        samples = []
        for n in range(per_caller):
            t0 = time.perf_counter()
            check(mine[n % len(mine)])
            samples.append((time.perf_counter() - t0) * 1e6)
        return samples

    with ThreadPoolExecutor(callers) as executor:
        futures = [executor.submit(caller, i) for i in range(callers)]
        start.wait()
        started = time.perf_counter()
        results = [f.result(timeout=300) for f in futures]
        wall = time.perf_counter() - started
    return Timing([s for r in results for s in r], wall)


async def on_loop(check: AsyncCheck, checks: int, callers: int, pool: list[str]) -> Timing:
    """``checks`` checks by ``callers`` tasks at once on the running loop."""
    for address in pool[:20]:
        await check(address)
    per_caller = max(1, checks // callers)

    async def caller(index: int) -> list[float]:
        mine = pool[index::callers]
        samples = []
        for n in range(per_caller):
            t0 = time.perf_counter()
            await check(mine[n % len(mine)])
            samples.append((time.perf_counter() - t0) * 1e6)
        return samples

    started = time.perf_counter()
    results = await asyncio.gather(*(caller(i) for i in range(callers)))
    return Timing([s for r in results for s in r], time.perf_counter() - started)


# -- the designs ----------------------------------------------------------------------------
def limits_check(strategy: LimitsStrategy, prefix: str) -> Check:
    """(a): the penalty box tested, then each address limit hit (the cheapest order; a
    refusal by the second limit has already spent the first)."""
    box = parse_many(AUTH_FAILURES)
    budget = parse_many(PER_ADDRESS)

    def check(address: str) -> bool:
        if not all(strategy.test(item, prefix, "box", address) for item in box):
            return False
        return all(strategy.hit(item, prefix, "address", address) for item in budget)

    return check


def limits_async_check(strategy: AsyncMovingWindow, prefix: str) -> AsyncCheck:
    box: list[RateLimitItem] = parse_many(AUTH_FAILURES)
    budget: list[RateLimitItem] = parse_many(PER_ADDRESS)

    async def check(address: str) -> bool:
        for item in box:
            if not await strategy.test(item, prefix, "box", address):
                return False
        for item in budget:
            if not await strategy.hit(item, prefix, "address", address):
                return False
        return True

    return check


def limiter(url: str | None, prefix: str) -> RateLimiter:
    return RateLimiter(
        per_key="off",
        per_address=PER_ADDRESS,
        auth_failures=AUTH_FAILURES,
        redis_url=url,
        redis_prefix=prefix,
    )


@dataclass
class Design:
    name: str
    check: Check | None = None  # blocking: timed on threads
    check_async: AsyncCheck | None = None  # timed as tasks on the loop


def designs(
    url: str, prefix: str, limits_prefix: str, loop: asyncio.AbstractEventLoop
) -> list[Design]:
    shared = limiter(url, prefix)
    ping = redis.Redis.from_url(url)

    async def hopped(address: str) -> object:
        return await anyio.to_thread.run_sync(shared.address_request, address)

    storage = RedisStorage(url, key_prefix=limits_prefix)

    async def async_limits() -> AsyncCheck:
        async_storage = AsyncRedisStorage(
            url.replace("redis://", "async+redis://", 1),
            implementation="redispy",
            key_prefix=limits_prefix,
        )
        return limits_async_check(AsyncMovingWindow(async_storage), "strongroom")

    return [
        Design(REFERENCE, check=limiter(None, prefix).address_request),
        Design("(floor) Redis PING, blocking client", check=lambda _: ping.ping()),
        Design("(b) Lua GCRA, blocking client", check=shared.address_request),
        Design("(b) Lua GCRA, asyncio client", check_async=shared.address_request_async),
        Design("(b) Lua GCRA, blocking client on a worker thread", check_async=hopped),
        Design(
            "(a) limits moving window, blocking client",
            check=limits_check(MovingWindowRateLimiter(storage), "strongroom"),
        ),
        Design(
            "(a) limits sliding window, blocking client",
            check=limits_check(SlidingWindowCounterRateLimiter(storage), "strongroom"),
        ),
        Design(
            "(a) limits moving window, asyncio client",
            check_async=loop.run_until_complete(async_limits()),
        ),
    ]


REFERENCE = "(c) in-process GCRA"


def measure(url: str, checks: int, callers: int, rounds: int) -> dict[tuple[str, int], Timing]:
    run = secrets.token_hex(4)
    prefix = f"strongroom:rl:bench-{run}:"
    limits_prefix = f"strongroom-bench-{run}"
    loop = asyncio.new_event_loop()  # one loop for the run, as a server has
    results: dict[tuple[str, int], Timing] = {}
    seed = itertools.count()
    try:
        every = designs(url, prefix, limits_prefix, loop)
        for round_ in range(rounds):
            for design in every:
                for n in (1, callers):
                    pool = addresses(next(seed))
                    if design.check is not None:
                        timing = threaded(design.check, checks // rounds, n, pool)
                    else:
                        assert design.check_async is not None
                        timing = loop.run_until_complete(
                            on_loop(design.check_async, checks // rounds, n, pool)
                        )
                    results.setdefault((design.name, n), Timing()).add(timing)
            print(f"  round {round_ + 1} of {rounds} done", flush=True)
    finally:
        loop.close()
        cleanup(url, [prefix, limits_prefix])
    return results


def cleanup(url: str, prefixes: list[str]) -> None:
    client = redis.Redis.from_url(url)
    try:
        for prefix in prefixes:
            batch = list(client.scan_iter(f"{prefix}*", count=1000))
            for start in range(0, len(batch), 1000):
                client.delete(*batch[start : start + 1000])
    finally:
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--checks", type=int, default=4000, help="checks per measurement")
    parser.add_argument("--callers", type=int, default=16, help="concurrent callers")
    parser.add_argument("--rounds", type=int, default=4, help="rounds over the designs")
    options = parser.parse_args()
    server = redis.Redis.from_url(options.redis)
    version = server.info("server")["redis_version"]
    server.close()
    print(f"# shared request budgets, {machine_line()}; Redis {version} at {options.redis}")
    print(f"# {wait_for_quiet()}", flush=True)
    busy, started = machine_busy_s(), time.monotonic()
    results = measure(options.redis, options.checks, options.callers, options.rounds)
    share = (machine_busy_s() - busy) / ((time.monotonic() - started) * (os.cpu_count() or 1))
    print(f"# the machine was {share:.0%} busy during the run (this bench and Redis included)")
    rows = []
    for (design, n), timing in results.items():
        p50, p99, rate = timing.row()
        reference = results[(REFERENCE, n)].row()[0]
        mode = "1 (sequential)" if n == 1 else str(n)
        rows.append((design, mode, f"{p50:.1f}", f"{p99:.1f}", f"{rate:,.0f}", p50 / reference))
    rows.sort(key=lambda row: row[1] != "1 (sequential)")
    print()
    print(table(["design", "callers", "p50 µs", "p99 µs", "checks/s", "p50 vs (c)"], rows))


if __name__ == "__main__":
    main()
