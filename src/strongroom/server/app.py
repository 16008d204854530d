"""The ASGI application and the start-up sequence that opens, migrates and unseals."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI

from .. import __version__
from .api import audit as audit_routes
from .api import health
from .api import julep as julep_routes
from .api import secrets as secret_routes
from .api import tasks as task_routes
from .api.deps import Services
from .api.errors import install_error_handlers
from .api.middleware import AddressLimit, BodyLimit, HeaderLimit, RequestContext
from .crypto import Keyring, load_master_key
from .crypto.masterkey import key_file_is_private
from .ratelimit import RateLimiter
from .secrets import SecretService
from .settings import Settings
from .storage import Store, open_store
from .tasks.limits import TaskLimits
from .tasks.runner import Runner
from .tasks.service import TaskService
from .tasks.tools import EgressPolicy, Protected, ToolConfig

if TYPE_CHECKING:
    from .tasks.engine import DurableEngine

log = logging.getLogger("strongroom.server")


def open_services(settings: Settings, *, master_key: bytes | None = None) -> Services:
    """Open the database, apply migrations, and unseal the keyring with the master key.

    Raises :class:`~strongroom.server.crypto.MasterKeyError` or
    :class:`~strongroom.server.crypto.WrongMasterKey` before anything is served.
    """
    if master_key is None:
        key_file = settings.master_key_file
        shared_key_file = (
            settings.master_key is None
            and key_file is not None
            and key_file.exists()
            and not key_file_is_private(key_file)
        )
        if shared_key_file:
            log.warning(
                "the master key file is readable by other users; chmod 600 it",
                extra={"path": str(key_file)},
            )
        master_key = load_master_key(
            settings.master_key.get_secret_value() if settings.master_key else None,
            settings.master_key_file,
        )
    store: Store = open_store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        store.migrate()
        keyring = Keyring(master_key, store)
        keyring.unseal()
    except BaseException:
        store.close()
        raise
    tasks = TaskService(store, limits=task_limits(settings))
    return Services(settings, store, keyring, SecretService(store, keyring), tasks)


def task_limits(settings: Settings) -> TaskLimits:
    """The bounds on task work, from the server settings (``STRONGROOM_TASK_*``)."""
    return TaskLimits(
        max_steps=settings.task_max_steps,
        max_result_bytes=settings.task_max_result_bytes,
        max_execution_bytes=settings.task_max_execution_bytes,
        concurrency=settings.task_concurrency,
        concurrency_per_tenant=settings.task_concurrency_per_tenant,
    )


def tool_config(settings: Settings) -> ToolConfig:
    """What task tools may reach and where, from the server settings.

    ``protected`` is the server's own database (its PostgreSQL host and port, by name and
    by every address; or SQLite's data directory) and its master key file: refused to every
    tool whatever ``STRONGROOM_EGRESS_ALLOW`` says, since a task that reached them would
    read every tenant's rows and could write itself API keys. ``ValueError`` (a refusal to
    start) for a bad allow-list, a database host that does not resolve, or a tool SQLite
    directory that is, contains or is inside the data directory: such a directory would
    hand the server's own files to tasks, and is a mistake to say at once.
    """
    protected = Protected.of_server(settings.database_url, [settings.master_key_file])
    sqlite_dir = settings.tool_sqlite_dir
    if sqlite_dir is not None:
        clash = protected.overlaps(sqlite_dir)
        if clash is not None:
            raise ValueError(
                f"STRONGROOM_TOOL_SQLITE_DIR ({sqlite_dir}) must be apart from strongroom's own "
                f"files ({clash}): it is, contains or is inside them, so tasks could open the "
                "server's database; give task SQLite files a directory of their own"
            )
    return ToolConfig(
        egress=EgressPolicy.parse(settings.egress_allow),
        openai_base_url=settings.openai_base_url,
        sqlite_dir=sqlite_dir,
        protected=protected,
        max_response_bytes=settings.task_max_result_bytes,
    )


def start_engine(services: Services) -> DurableEngine:
    """Start this process's execution engine; executions created here go to it."""
    from .tasks.engine import DurableEngine

    settings = services.settings
    runner = Runner(
        services.store, services.keyring, tool_config(settings), limits=task_limits(settings)
    )
    engine = DurableEngine(runner, settings.executor_id)
    engine.start()
    services.tasks.engine = engine
    return engine


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="strongroom",
        version=__version__,
        description="Self-hosted secrets service for automation.",
        # A JSON API: a body without a Content-Type is read as JSON too.
        strict_content_type=False,
        # FastAPI's built-in OpenTelemetry would record validation inputs and exception
        # messages, where a request's secret value can sit: request spans only.
        telemetry={"logs": False, "operation_spans": False, "auto_configure": False},
    )
    app.state.services = services
    settings = services.settings
    app.state.limiter = limiter = RateLimiter(
        per_key=settings.rate_limit_per_key,
        per_address=settings.rate_limit_per_address,
        auth_failures=settings.rate_limit_auth_failures,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(secret_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(task_routes.router)
    app.include_router(task_routes.executions_router)
    app.include_router(julep_routes.router)
    # Added last runs first: the request id exists before anything is refused, oversized
    # headers are refused before the address is counted, and an address over its budget
    # before its body is read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(AddressLimit, limiter=limiter)
    app.add_middleware(HeaderLimit)
    app.add_middleware(RequestContext)
    return app
