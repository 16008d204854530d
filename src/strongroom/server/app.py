"""The ASGI application: routes, middleware and error envelope over the services, and the
lifespan that starts and stops this process's execution engine, barrier heartbeat and
audit pruner."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .api import audit as audit_routes
from .api import health
from .api import julep as julep_routes
from .api import keys as key_routes
from .api import secrets as secret_routes
from .api import sessions as session_routes
from .api import tasks as task_routes
from .api.docs import install_docs
from .api.errors import install_error_handlers
from .api.middleware import AddressLimit, BodyLimit, HeaderLimit, RequestContext
from .ratelimit import RateLimiter
from .services import Services
from .settings import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider


def create_app(services: Services, *, run_engine: bool = True) -> FastAPI:
    """The whole server over ``services``: routes, limits, error envelope, and (unless
    ``run_engine`` is False, for an app that only answers requests, as in-process tests
    use it) this process's execution engine, barrier heartbeat and audit pruner (past
    STRONGROOM_AUDIT_RETENTION_DAYS), started and stopped with the app."""

    tracing = request_tracing(services.settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            async with processes():
                yield
        finally:
            if tracing is not None:
                # The last batch of spans leaves before the process ends.
                await run_in_threadpool(tracing.shutdown)

    @asynccontextmanager
    async def processes() -> AsyncIterator[None]:
        if not run_engine:
            yield
            return
        services.heartbeat.start()
        services.pruner.start()
        if services.settings.metrics_listen:
            metrics.serve(services.settings.metrics_listen)
        try:
            # DBOS's launch does blocking I/O (its database, recovery): off the event loop.
            await run_in_threadpool(services.engine.start)
            try:
                yield
            finally:
                await run_in_threadpool(services.engine.stop)
        finally:
            metrics.stop()
            await run_in_threadpool(services.pruner.stop)
            await run_in_threadpool(services.heartbeat.stop)

    app = FastAPI(
        lifespan=lifespan,
        title="strongroom",
        version=__version__,
        description="Self-hosted secrets service for automation.",
        # A JSON API: a body without a Content-Type is read as JSON too.
        strict_content_type=False,
        # FastAPI's built-in OpenTelemetry: request spans only, and only to the collector of
        # STRONGROOM_OTEL_ENDPOINT (through tracing.py, which keeps paths and queries out).
        # Its logs and operation spans would record validation inputs and exception
        # messages, where a request's secret value can sit.
        telemetry={
            "tracing": tracing is not None,
            "tracer_provider": tracing,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        },
        # The docs page (Swagger UI) is served without a CDN by api/docs.py.
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.run_engine = run_engine
    app.state.metrics = metrics = services.metrics
    settings = services.settings
    app.state.limiter = limiter = RateLimiter(
        per_key=settings.rate_limit_per_key,
        per_address=settings.rate_limit_per_address,
        auth_failures=settings.rate_limit_auth_failures,
        redis_url=settings.redis_url,
    )
    metrics.watch(limiter)
    install_error_handlers(app)
    install_docs(app)
    app.include_router(health.router)
    app.include_router(secret_routes.batch_router)
    app.include_router(secret_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(session_routes.router)
    app.include_router(key_routes.router)
    app.include_router(task_routes.router)
    app.include_router(task_routes.executions_router)
    app.include_router(julep_routes.router)
    # Added last runs first: the request id exists before anything is refused, oversized
    # headers are refused before the address is counted, and an address over its budget
    # before its body is read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AddressLimit, limiter=limiter)
    app.add_middleware(HeaderLimit)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


def request_tracing(settings: Settings) -> TracerProvider | None:
    """The tracer provider of request spans, when STRONGROOM_OTEL_ENDPOINT is set; without
    it nothing of OpenTelemetry's SDK is imported."""
    if not settings.otel_endpoint:
        return None
    from .tracing import tracer_provider

    return tracer_provider(settings.otel_endpoint)
