"""Prometheus metrics: what a process has served, and what the database holds now.

Served on a listener of its own (``STRONGROOM_METRICS_LISTEN``, off by default), never on
the API's port: the numbers are of every tenant (how many secrets expire, how many runs
wait), which no tenant's key may learn, so the listener is for the operator's network
and has no key. Request metrics are labelled by route *template*
(``/v1/secrets/{name}``), never by path, so a secret's name (or a value pasted into a URL)
never becomes a label. The database's numbers are read when Prometheus scrapes, by a
collector, in one read transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .storage import Store

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
        self.registry.register(_DatabaseCollector(store))
        self._server: WSGIServer | None = None

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        template = route or UNMATCHED
        self.requests.labels(method, template, str(status)).inc()
        self.latency.labels(method, template).observe(seconds)

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
