"""Prometheus metrics: what a process has served, and what the database holds now.

Served on a listener of its own (``STRONGROOM_METRICS_LISTEN``, off by default), never on
the API's port: the numbers are of every tenant (how many secrets expire, how many runs
wait), which no tenant's key may learn, so the listener is for the operator's network
and has no key. Request metrics are labelled by route *template*
(``/v1/secrets/{name}``), never by path, so a secret's name (or a value pasted into a URL)
never becomes a label. The database's numbers are read when Prometheus scrapes, by a
collector, in one read transaction.

One :class:`Metrics` per process's services (``Services.metrics``), so a worker counts its
steps as a server counts its requests. Reads, writes, rotations and failed
authentications are counted from the audit trail as it commits (a store audit sink): one
place that sees every such event, labelled by action and outcome, both from fixed sets.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .storage import AuditEvent, Store

if TYPE_CHECKING:
    from .ratelimit import RateLimiter

log = logging.getLogger("strongroom.metrics")

EXPIRING_WINDOW = dt.timedelta(days=7)
# Route-template label for a request that matched no route: a 404's path is the caller's
# text, not a label.
UNMATCHED = "unmatched"


class _DatabaseCollector(Collector):
    """The database's numbers at scrape time: expiring secrets, due rotations, the queue."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = dt.datetime.now(dt.UTC)
        try:
            with self.store.read() as tx:
                expired, expiring = tx.secrets.count_expiring(now, now + EXPIRING_WINDOW)
                due = tx.secrets.count_rotations_due(now)
                unfinished = tx.executions.count_unfinished()
            in_use, idle = self.store.connections()
        except Exception:
            # A scrape while the database is away: the process's own metrics still answer.
            log.warning("metrics: the database could not be read", exc_info=True)
            return
        yield GaugeMetricFamily(
            "strongroom_secrets_expired", "live secrets past their expires_at", value=expired
        )
        yield GaugeMetricFamily(
            "strongroom_secrets_expiring",
            "live secrets whose expires_at is within the next 7 days",
            value=expiring,
        )
        yield GaugeMetricFamily(
            "strongroom_rotations_due", "secrets whose scheduled rotation is due", value=due
        )
        queue = GaugeMetricFamily(
            "strongroom_executions", "executions queued and running", labels=["status"]
        )
        for status, count in sorted(unfinished.items()):
            queue.add_metric([status], count)
        yield queue
        pool = GaugeMetricFamily(
            "strongroom_database_connections",
            "this process's pooled database connections (the engine's own pool apart)",
            labels=["state"],
        )
        pool.add_metric(["in_use"], in_use)
        pool.add_metric(["idle"], idle)
        yield pool


class _SharedBudgetCollector(Collector):
    """How often Redis, which keeps the request budgets shared, could not answer (the
    limiter then falls back to this process's own budgets): read at scrape time."""

    def __init__(self) -> None:
        self.limiter: RateLimiter | None = None

    def collect(self) -> Iterator[CounterMetricFamily]:
        limiter = self.limiter
        if limiter is None or not limiter.shared:
            return
        yield CounterMetricFamily(
            "strongroom_ratelimit_redis_failures",
            "calls to Redis for a request budget that failed (refused, timed out, an error)",
            value=limiter.shared_failures,
        )
        yield CounterMetricFamily(
            "strongroom_ratelimit_local_fallbacks",
            "budget checks answered by this process alone because Redis could not answer",
            value=limiter.local_fallbacks,
        )


class Metrics:
    """One process's registry (not the library's global one, so that several apps in one
    process, as in tests, keep theirs apart)."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "strongroom_http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "strongroom_http_request_duration_seconds",
            "time to answer, by method and route template",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.rate_limited = Counter(
            "strongroom_http_rate_limited",
            "requests refused with 429 (a key's, an address's or the failed-authentication "
            "budget spent), by route template",
            ["route"],
            registry=self.registry,
        )
        self.events = Counter(
            "strongroom_audit_events",
            "audited events committed by this process (secret.read: values revealed, "
            "secret.create/update: writes, secret.rotate: rotation progress, auth.authenticate/"
            "unauthorized: failed authentications), by action and outcome",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.steps = Histogram(
            "strongroom_execution_step_duration_seconds",
            "time one task step took in this process, by the execution's status after it",
            ["status"],
            registry=self.registry,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300),
        )
        self.registry.register(_DatabaseCollector(store))
        self._budgets = _SharedBudgetCollector()
        self.registry.register(self._budgets)
        self._server: WSGIServer | None = None

    def watch(self, limiter: RateLimiter) -> None:
        """Report the shared-budget failures of ``limiter`` (the app's)."""
        self._budgets.limiter = limiter

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        template = route or UNMATCHED
        self.requests.labels(method, template, str(status)).inc()
        self.latency.labels(method, template).observe(seconds)
        if status == 429:
            self.rate_limited.labels(template).inc()

    def count_event(self, event: AuditEvent) -> None:
        """The store's audit sink: called once per committed audit event."""
        self.events.labels(event.action, event.outcome).inc()

    def observe_step(self, status: str, seconds: float) -> None:
        self.steps.labels(status).observe(seconds)

    def serve(self, listen: str) -> tuple[str, int]:
        """Serve ``/metrics`` on ``host:port`` (port 0: any free one) in a daemon thread;
        the address it listens on."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(
            int(port), addr=host.strip("[]"), registry=self.registry
        )
        self._server = server
        bound_host, bound_port = str(server.server_address[0]), int(server.server_address[1])
        log.info("metrics listening", extra={"address": f"{bound_host}:{bound_port}"})
        return bound_host, bound_port

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
