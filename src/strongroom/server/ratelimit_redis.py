"""The request budgets' schedules kept in Redis, shared by every server that names it.

The same GCRA as the in-process schedules of :mod:`.ratelimit`, run by one Lua script per
check: one round trip reads and updates every limit a check involves (the penalty-box
peek and the address's budget, or the key's budget), atomically, so two servers can never
both take the last request of a budget. The clock is Redis's own (``TIME``), so the clocks
of the servers do not matter. Each schedule is a key that expires at its theoretical
arrival time (a TAT in the past is the same as none), so Redis holds only the identities
active within the longest period. A key is named ``strongroom:rl:{<digest>}:<kind>:...``:
the identity (an address, or an API key's *id*, never a key) is hashed, which bounds the
name's length, and its digest is the hash tag, so a check's keys share one cluster slot.

Redis down or slow: every call has short timeouts (0.25 s to connect or to answer). A
check whose call fails is answered by this process's own schedules instead, as if no
Redis were configured: neither open (no budget at all would let a flood through while
Redis is down, and an attacker able to disturb Redis would lift every limit) nor closed
(refusing everything would turn a Redis outage into a strongroom outage). For
``RETRY_S`` after a failure, checks go straight to the local schedules, so an outage
costs no request a timeout; then one check tries Redis again, and the first that
succeeds ends the outage. One warning is logged when an outage starts and one line when
it ends, never one per request; ``failures`` counts the calls that failed and
``fallbacks`` the checks answered locally (``RateLimiter.shared_failures`` and
``local_fallbacks``).

Why a script and not the ``limits`` library's Redis storage: its moving and sliding
windows take a round trip per limit (three for an address check: the penalty-box test,
then a hit per address limit), cannot take several limits at once atomically, and read
the clock of each server. Measured in one run against one Redis 7.0 on the same 2-core
host (``bench/ratelimit_redis.py``), µs per address check (the penalty box looked at,
``200/second;6000/minute`` spent), p50 / p99, one caller at a time:

- in-process GCRA (the reference): 3.5 / 10;
- this script: 177 / 391 with the blocking client (51x the reference; a bare ``PING``
  is 81 / 227), 279 / 1,563 with the asyncio client;
- ``limits``: moving window 688 / 4,384, sliding window 626 / 4,225 (blocking), moving
  window 729 / 4,692 (asyncio): 3.5 to 3.9 times this script.

With 16 callers at once, checks per second: this script 4,185 (16 threads) and 4,518
(16 tasks on one event loop); ``limits`` 1,330 to 1,660; in-process 175,000.

Why an asyncio client for the middleware, a blocking one for the threadpool: the
middleware runs on the event loop, where a blocking call would stall every request for
up to a timeout; hopping the blocking client onto a worker thread from the loop costs
more than the asyncio client (344 / 1,582 µs; 2,200 checks per second with 16 callers,
half the asyncio client's). The per-key and failed-authentication checks are made by
the authentication dependency, which FastAPI already runs on its threadpool.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

log = logging.getLogger("strongroom.ratelimit")

PREFIX: Final = "strongroom:rl:"
TIMEOUT_S: Final = 0.25  # to connect, and for an answer
RETRY_S: Final = 1.0  # after a failure, how long checks skip Redis before one tries again
MAX_CONNECTIONS: Final = 64  # per client; a caller waits at most TIMEOUT_S for one

# KEYS: the schedules only looked at (the penalty box), then the schedules spent (the budget).
# ARGV[1]: how many KEYS are only looked at; ARGV[2]: "1" to spend even when over budget;
# then for KEYS[i] its interval at ARGV[1 + 2i] and tolerance at ARGV[2 + 2i], in µs.
# Answers {0, 0}: fits (and is counted); {1, µs}: the looked-at schedules are over; {2, µs}:
# the spent ones are over (counted only when forced). TATs are kept in µs of Redis's clock,
# written with 17 digits so that a fractional interval adds up exactly as in a double.
SCRIPT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local looked = tonumber(ARGV[1])
local wait = 0
for i = 1, looked do
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  wait = math.max(wait, tat - now - tonumber(ARGV[2 + 2 * i]))
end
if wait > 0 then
  return {1, math.ceil(wait)}
end
local tats = {}
for i = looked + 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  tats[i] = tat
  wait = math.max(wait, tat - now - tonumber(ARGV[2 + 2 * i]))
end
if wait > 0 and ARGV[2] ~= '1' then
  return {2, math.ceil(wait)}
end
for i = looked + 1, #KEYS do
  local tat = math.max(tats[i], now) + tonumber(ARGV[1 + 2 * i])
  redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', math.ceil((tat - now) / 1000))
end
if wait > 0 then
  return {2, math.ceil(wait)}
end
return {0, 0}
"""

FITS: Final = 0
LOOKED_OVER: Final = 1
SPENT_OVER: Final = 2


class GcraLimit(Protocol):
    """What the script needs of a limit (``ratelimit.Limit``)."""

    @property
    def interval_s(self) -> float: ...

    @property
    def tolerance_s(self) -> float: ...


class SharedBudget:
    """One budget as the script takes it: key suffixes and arguments, worked out once.

    The suffix names the limit's place and value (``:key:0:100/1s``), so servers that
    disagree on a budget keep apart schedules rather than misread each other's.
    """

    def __init__(self, kind: str, limits: Sequence[GcraLimit]) -> None:
        self.suffixes = tuple(f":{kind}:{n}:{limit}" for n, limit in enumerate(limits))
        self.args = tuple(
            value
            for limit in limits
            for value in (limit.interval_s * 1_000_000, limit.tolerance_s * 1_000_000)
        )

    def __bool__(self) -> bool:
        return bool(self.suffixes)


class Verdict(NamedTuple):
    """A check's answer: ``FITS``, ``LOOKED_OVER`` or ``SPENT_OVER``, and the wait."""

    outcome: int
    wait_s: float

    @property
    def looked_over(self) -> bool:
        """Refused by the schedules only looked at (the penalty box)."""
        return self.outcome == LOOKED_OVER

    @property
    def spent_over(self) -> bool:
        """Refused by the budget the check spends from."""
        return self.outcome == SPENT_OVER


FITS_NOW: Final = Verdict(FITS, 0.0)


def identity_tag(identity: str) -> str:
    """The hashed identity in a key's name: 32 hex digits whatever the identity's length."""
    digest = hashlib.blake2b(
        identity.encode("utf-8", "surrogatepass"), digest_size=16, person=b"strongroom-rl"
    )
    return digest.hexdigest()


def key_names(prefix: str, identity: str, budget: SharedBudget) -> list[str]:
    """The Redis keys of ``identity``'s schedules in ``budget``."""
    head = f"{prefix}{{{identity_tag(identity)}}}"
    return [head + suffix for suffix in budget.suffixes]


def redacted(url: str) -> str:
    """``url`` without its user and password: what a log line may say of it."""
    parts = urlsplit(url)
    place = parts.hostname or parts.path or "?"
    if parts.port is not None:
        place = f"{place}:{parts.port}"
    return f"{parts.scheme}://{place}{parts.path if parts.hostname else ''}"


class SharedSchedules:
    """The three budgets' schedules in Redis, with its health: a check Redis cannot answer
    answers None, and the caller uses its own schedules. Safe to use from threads and
    from event loops at once: a blocking client serves threads (FastAPI's threadpool), an
    asyncio one each loop."""

    def __init__(
        self,
        url: str,
        *,
        per_key: Sequence[GcraLimit],
        per_address: Sequence[GcraLimit],
        auth_failures: Sequence[GcraLimit],
        prefix: str = PREFIX,
        timeout_s: float = TIMEOUT_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self.key_budget = SharedBudget("key", per_key)
        self.address_budget = SharedBudget("address", per_address)
        self.box_budget = SharedBudget("auth-failures", auth_failures)
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.failures = 0
        self.fallbacks = 0
        self._lock = threading.Lock()
        self._down = False
        self._retry_at = 0.0
        self._password = urlsplit(url).password
        # A stale pooled connection (Redis restarted) fails once on a refused write: one
        # retry on a fresh connection, never after a timeout (that would double the wait).
        try:
            self.where = redacted(url)
            pool = redis.BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                socket_timeout=timeout_s,
                retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
        except ValueError:
            # Not the URL itself in the message: it may hold a password.
            raise ValueError(
                "STRONGROOM_REDIS_URL is not a Redis URL: write redis://HOST:PORT/DB, "
                "rediss://HOST:PORT/DB or unix:///PATH"
            ) from None
        self._pool = pool
        self._client = redis.Redis(connection_pool=pool)
        self._script = self._client.register_script(SCRIPT)
        self._on_loop: _LoopClient | None = None

    # -- the checks -------------------------------------------------------------------------
    def address(self, who: str) -> Verdict | None:
        """A request from address ``who``: its penalty box looked at, its budget spent."""
        if not (self.address_budget or self.box_budget):
            return FITS_NOW
        return self.wait(who, self.box_budget, self.address_budget)

    async def address_async(self, who: str) -> Verdict | None:
        """:meth:`address` without blocking the event loop."""
        if not (self.address_budget or self.box_budget):
            return FITS_NOW
        return await self.wait_async(who, self.box_budget, self.address_budget)

    def key(self, key_id: str) -> Verdict | None:
        """A request with the API key ``key_id``: its budget spent."""
        if not self.key_budget:
            return FITS_NOW
        return self.wait(key_id, None, self.key_budget)

    def failed(self, who: str) -> bool:
        """A failed authentication from ``who`` counted in its box (False: not counted)."""
        if not self.box_budget:
            return True
        return self.wait(who, None, self.box_budget, force=True) is not None

    # -- the call ---------------------------------------------------------------------------
    def _call(
        self, who: str, looked: SharedBudget | None, spent: SharedBudget, force: bool
    ) -> tuple[list[str], list[int | float]]:
        keys = key_names(self.prefix, who, looked) if looked else []
        count = len(keys)
        keys += key_names(self.prefix, who, spent)
        args: list[int | float] = [count, 1 if force else 0]
        if looked:
            args += looked.args
        args += spent.args
        return keys, args

    def wait(
        self, who: str, looked: SharedBudget | None, spent: SharedBudget, *, force: bool = False
    ) -> Verdict | None:
        """Check ``who`` against ``looked`` (only read) then ``spent`` (counted when it
        fits, or always with ``force``); None when Redis could not answer."""
        if not self._ready():
            return None
        keys, args = self._call(who, looked, spent, force)
        try:
            answer = self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        return self._answered(answer)

    async def wait_async(
        self, who: str, looked: SharedBudget | None, spent: SharedBudget, *, force: bool = False
    ) -> Verdict | None:
        """:meth:`wait` for a caller on an event loop: the round trip does not block it."""
        if not self._ready():
            return None
        keys, args = self._call(who, looked, spent, force)
        try:
            answer = await self._loop_script()(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        return self._answered(answer)

    def _loop_script(self) -> AsyncScript:
        """The script on this event loop's client: an asyncio connection belongs to the
        loop that made it (one loop in a server; a test client may start others)."""
        loop = asyncio.get_running_loop()
        held = self._on_loop
        if held is None or held.loop is not loop:
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                self.url,
                max_connections=MAX_CONNECTIONS,
                timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                socket_timeout=self.timeout_s,
                retry=AsyncRetry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
            )
            client = redis.asyncio.Redis(connection_pool=pool)
            held = self._on_loop = _LoopClient(loop, client, client.register_script(SCRIPT))
        return held.script

    def _answered(self, answer: object) -> Verdict:
        self._up()
        assert isinstance(answer, list)
        outcome, wait_us = answer
        return Verdict(int(outcome), int(wait_us) / 1_000_000)

    # -- health -----------------------------------------------------------------------------
    def _ready(self) -> bool:
        """Whether to try Redis: always while it answers; during an outage, once per
        ``retry_s`` (the caller that claims the try), the others answer locally."""
        if not self._down:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._retry_at:
                self.fallbacks += 1
                return False
            self._retry_at = now + self.retry_s
            return True

    def _failed(self, exc: BaseException) -> None:
        with self._lock:
            self.failures += 1
            self.fallbacks += 1
            self._retry_at = time.monotonic() + self.retry_s
            if self._down:
                return
            self._down = True
        reason = str(exc)[:200]
        if self._password:
            for written in {self._password, unquote(self._password)}:
                reason = reason.replace(written, "***")
        log.warning(
            "shared request budgets unavailable (%s: %s, Redis at %s): this process "
            "counts its own until Redis answers again",
            type(exc).__name__,
            reason,
            self.where,
        )

    def _up(self) -> None:
        if not self._down:
            return
        with self._lock:
            if not self._down:
                return
            self._down = False
        log.warning("shared request budgets are back (Redis at %s answers)", self.where)

    def close(self) -> None:
        """Close the blocking client's connections (a later call opens new ones)."""
        self._pool.disconnect()

    async def aclose(self) -> None:
        """Close this event loop's connections too."""
        held = self._on_loop
        if held is not None and held.loop is asyncio.get_running_loop():
            self._on_loop = None
            await held.client.aclose()
            await held.client.connection_pool.disconnect()
        self.close()


class _LoopClient(NamedTuple):
    loop: asyncio.AbstractEventLoop
    client: redis.asyncio.Redis
    script: AsyncScript
