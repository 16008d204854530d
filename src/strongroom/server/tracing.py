"""Request spans to an OpenTelemetry collector over OTLP/HTTP, when
``STRONGROOM_OTEL_ENDPOINT`` is set (the ``otel`` extra); with it unset this module is
never imported and nothing is exported.

FastAPI makes the spans (one per request, named by its method and route template, such
as ``GET /v1/secrets/{name}``); this module hands it a tracer provider of its own (the
process-wide one stays unset) whose exporter keeps only the attributes in
:data:`EXPORTED`. FastAPI also records the request's raw path and query string and the
Host header, where a value pasted into a URL would sit; those, span events, links and
status messages (an exception's text) never leave the process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Status

from .. import __version__

# What a span may say: how the request was made and what became of it, never what it
# named (the route is the template, not the path).
EXPORTED: Final = frozenset(
    {
        "http.request.method",
        "http.route",
        "http.response.status_code",
        "url.scheme",
        "network.protocol.version",
        "error.type",
    }
)
EXPORT_TIMEOUT_SECONDS: Final = 10.0


def tracer_provider(endpoint: str) -> TracerProvider:
    """A tracer provider sending spans to the collector at ``endpoint`` (its base URL:
    spans go to ``<endpoint>/v1/traces``) in batches, from a bounded queue (2048 spans by
    default, ``OTEL_BSP_*``: more are dropped, never buffered without end). Shut it down
    to send the last batch."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": "strongroom", "service.version": __version__})
    )
    exporter = OTLPSpanExporter(endpoint=traces_url(endpoint), timeout=EXPORT_TIMEOUT_SECONDS)
    provider.add_span_processor(BatchSpanProcessor(AllowlistedSpans(exporter)))
    return provider


def traces_url(endpoint: str) -> str:
    """``endpoint`` with the OTLP/HTTP traces path, as OTEL_EXPORTER_OTLP_ENDPOINT is read
    (unless it names that path already)."""
    path = urlsplit(endpoint).path.rstrip("/")
    if path.endswith("/v1/traces"):
        return endpoint
    return endpoint.rstrip("/") + "/v1/traces"


class AllowlistedSpans(SpanExporter):
    """Export each span with only its :data:`EXPORTED` attributes, its status code without
    the message, and no events or links."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([_allowlisted(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _allowlisted(span: ReadableSpan) -> ReadableSpan:
    attributes = {k: v for k, v in (span.attributes or {}).items() if k in EXPORTED}
    return ReadableSpan(
        name=span_name(attributes),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        kind=span.kind,
        status=Status(span.status.status_code),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def span_name(attributes: Mapping[str, object]) -> str:
    """``METHOD /route/{template}`` from the exported attributes themselves (as FastAPI
    names a span), so no name made some other way can carry a path."""
    method = attributes.get("http.request.method")
    method = method if isinstance(method, str) and method != "_OTHER" else "HTTP"
    route = attributes.get("http.route")
    return f"{method} {route}" if isinstance(route, str) else method
