"""Commands that run or administer a server: serve, worker, migrate, the database form of
keys (the commands are in :mod:`.keys`) and, in :mod:`.master_key`, master-key.

They read the same ``STRONGROOM_*`` settings as the server and talk to its database
directly, so they need the server extra (``pip install 'strongroom[server]'``). With no
master key configured, each uses the development key ``serve --dev`` keeps in
``data/master.key`` when that file exists.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from .common import err, fail

if TYPE_CHECKING:
    from ..server.listen import TlsFiles
    from ..server.services import Services
    from ..server.settings import Settings
    from ..server.storage import Store

out = Console()


def private_files() -> None:
    """Make what this process creates private to its user (umask 077): the database and
    its -wal and -shm files, the execution engine's state database, a new data directory
    and key file. Secrets in them are encrypted, but their names, metadata, audit trail
    and API key hashes are not, and none of it is anybody else's business."""
    os.umask(0o077)


def load_settings(*, dev: bool = False) -> Settings:
    private_files()
    try:
        from ..server.settings import DEV_MASTER_KEY_FILE, Settings
    except ImportError:
        fail("the server is not installed: pip install 'strongroom[server]'")
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"STRONGROOM_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        fail(f"invalid settings: {problems}")
    if settings.master_key is None and settings.master_key_file is None:
        from ..server.crypto.masterkey import create_key_file

        if dev and create_key_file(DEV_MASTER_KEY_FILE):
            err.print(
                f"generated a development master key in {DEV_MASTER_KEY_FILE} (mode 0600). "
                "Keep it: without it the secrets in this database cannot be read.",
                highlight=False,
            )
        elif DEV_MASTER_KEY_FILE.exists():
            # What `serve --dev` made here before: every command finds it, as the server
            # does, so `make run` and then `strongroom master-key status` agree.
            err.print(
                "no STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE: using the "
                f"development master key in {DEV_MASTER_KEY_FILE}",
                highlight=False,
            )
        if DEV_MASTER_KEY_FILE.exists():
            settings = settings.model_copy(update={"master_key_file": DEV_MASTER_KEY_FILE})
    return settings


def open_migrated_store(settings: Settings) -> Store:
    from ..server.storage import StorageUnavailable, open_store

    try:
        store = open_store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        store.migrate()
    except (ValueError, StorageUnavailable) as exc:
        fail(str(exc))
    except Exception as exc:  # the driver's own error, e.g. PostgreSQL refused us
        fail(f"cannot open the database: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    return store


def open_services_or_fail(settings: Settings) -> Services:
    from ..server.audit_file import AuditFileError
    from ..server.crypto import MasterKeyError, UnsealError
    from ..server.services import open_services
    from ..server.storage import StorageUnavailable

    try:
        services = open_services(settings)
    except (MasterKeyError, UnsealError, AuditFileError) as exc:
        fail(str(exc), code=2)
    except StorageUnavailable as exc:
        # The database is down, full or read-only: say so, without a traceback.
        fail(f"cannot open the database: {exc}", code=1)
    # A command that ends without closing its services still leaves the barrier's
    # holders (else its row would count as a live holder of its keys a while).
    atexit.register(_leave_holders, services)
    return services


def _leave_holders(services: Services) -> None:
    # At exit, quietly: a row left behind counts as gone after a few heartbeats.
    with contextlib.suppress(Exception):
        services.barrier.release()


# -- serve and migrate ----------------------------------------------------------------------
@click.command()
@click.option("--host", help="address to listen on [default: STRONGROOM_HOST or 127.0.0.1]")
@click.option("--port", type=int, help="port to listen on [default: STRONGROOM_PORT or 8000]")
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    help="serve HTTPS with this PEM certificate chain [default: STRONGROOM_TLS_CERT]",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="the certificate's PEM private key, unencrypted [default: STRONGROOM_TLS_KEY]",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="allow plain HTTP on a non-loopback address, behind a proxy that terminates TLS "
    "[default: STRONGROOM_INSECURE_HTTP]",
)
@click.option(
    "--dev",
    is_flag=True,
    help="development mode: generate ./data/master.key if no master key is set, and print a "
    "bootstrap API key for tenant 'default' on a database without keys",
)
def serve(
    host: str | None,
    port: int | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    dev: bool,
) -> None:
    """Migrate the database, check the master key, and serve the API.

    Plain HTTP is for loopback addresses; on any other, give a certificate and its key
    (HTTPS), or --insecure behind a proxy that terminates TLS.
    """
    settings = load_settings(dev=dev)
    host = host or settings.host
    port = settings.port if port is None else port
    tls, plain_on_network = check_listening_or_fail(
        host,
        tls_cert or settings.tls_cert,
        tls_key or settings.tls_key,
        insecure=insecure or settings.insecure_http,
    )
    check_tool_settings(settings)
    check_tracing_or_fail(settings)
    from ..server.logs import configure_logging

    configure_logging(settings.log_level)
    if plain_on_network:
        serve_log().warning(
            "serving plain HTTP on a non-loopback address (--insecure): only a proxy that "
            "terminates TLS in front of this server keeps API keys and values off the wire",
            extra={"host": host},
        )
    # The port first: a server that cannot listen stops before it issues the one-time
    # bootstrap key (or touches the database at all).
    sockets = bind_or_fail(host, port)
    services = open_services_or_fail(settings)
    if dev:
        from ..server.apikeys import bootstrap_key

        key = bootstrap_key(services.store, services.barrier)
        if key is not None:
            out.print(
                "\n[bold]Bootstrap API key for tenant 'default'[/] (shown once, every scope):\n"
                f"\n    {key}\n\n"
                f"    export STRONGROOM_API_KEY={key}\n",
                highlight=False,
                soft_wrap=True,
            )
    try:
        run_server(services, sockets, host, tls)
    finally:
        services.close()
        for sock in sockets:
            sock.close()


def serve_log() -> logging.Logger:
    return logging.getLogger("strongroom.serve")


def check_listening_or_fail(
    host: str, cert: Path | None, key: Path | None, *, insecure: bool
) -> tuple[TlsFiles | None, bool]:
    """The TLS files to serve with, and whether this is plain HTTP on a network address
    allowed by ``insecure``; a refusal (exit 2) for half a TLS setting, unusable files,
    or plain HTTP on a network address without ``insecure``."""
    from ..server.listen import ListenRefused, check_plain_http, tls_files

    try:
        tls = tls_files(cert, key)
        return tls, check_plain_http(host, tls=tls is not None, insecure=insecure)
    except ListenRefused as exc:
        fail(str(exc), code=2)


def check_tracing_or_fail(settings: Settings) -> None:
    """With STRONGROOM_OTEL_ENDPOINT set, the ``otel`` extra must be there: said at once."""
    if not settings.otel_endpoint:
        return
    try:
        from ..server import tracing  # noqa: F401
    except ImportError:
        fail(
            "STRONGROOM_OTEL_ENDPOINT is set but OpenTelemetry is not installed: "
            "pip install 'strongroom[otel]'",
            code=2,
        )


def bind_or_fail(host: str, port: int) -> list[socket.socket]:
    from ..server.listen import ListenRefused, bind

    try:
        return bind(host, port)
    except ListenRefused as exc:
        fail(str(exc))


def run_server(
    services: Services, sockets: list[socket.socket], host: str, tls: TlsFiles | None
) -> None:
    """Serve the app on the bound ``sockets`` until a signal stops it."""
    import uvicorn

    from ..server.app import create_app
    from ..server.listen import url_of

    url = url_of(sockets, host, tls=tls is not None)
    settings = services.settings

    class Server(uvicorn.Server):
        # uvicorn says where it listens only for sockets it bound itself.
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started:
                serve_log().info(f"serving on {url}", extra={"url": url})

    config = uvicorn.Config(
        create_app(services),
        host=host,
        port=int(sockets[0].getsockname()[1]),
        log_config=None,
        access_log=False,
        server_header=False,
        # Client addresses feed the audit trail and the per-address limits: only the
        # proxies named in the settings may set them with X-Forwarded-For (uvicorn
        # would otherwise believe any local client).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        ssl_certfile=tls.cert if tls else None,
        ssl_keyfile=tls.key if tls else None,
        # None: Python's defaults, TLS 1.2 and up with forward-secret AEAD ciphers only.
        ssl_ciphers=None,
    )
    server = Server(config)
    # uvicorn shuts down on SIGTERM, then raises the signal again under the handler it
    # found: with the default one the process would die there, before the caller's
    # ``finally`` leaves the barrier holders and closes the database. This handler ends
    # it as an exit instead. Ctrl-C comes back as KeyboardInterrupt: taken quietly, as
    # uvicorn.run takes it.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(3)  # uvicorn's startup failure, as uvicorn.run exits with it


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def unsealed_services_or_fail(settings: Settings, command: str) -> Services:
    """The services, for a command that needs the unsealed barrier although it serves
    nothing (``keys create``: keys are stored as HMACs under a key the master key wraps),
    with the reason said when no master key is configured (nor a development key found:
    see :func:`load_settings`)."""
    if settings.master_key is None and settings.master_key_file is None:
        fail(
            f"`strongroom {command}` needs the master key, since API keys are stored as "
            "HMACs under a key it protects: set STRONGROOM_MASTER_KEY or "
            "STRONGROOM_MASTER_KEY_FILE",
            code=2,
        )
    return open_services_or_fail(settings)


def check_tool_settings(settings: Settings) -> None:
    """Refuse to start, before the database is opened, on task-tool settings that cannot
    work or would expose the server's own files (a tool SQLite directory overlapping the
    data directory, a bad STRONGROOM_EGRESS_ALLOW): said at once, not at the first task."""
    from ..server.services import tool_config

    try:
        tool_config(settings)
    except ValueError as exc:
        fail(str(exc), code=2)


def start_engine_or_fail(services: Services) -> None:
    from ..server.tasks.executors import ExecutorIdInUse

    try:
        services.engine.start()
    except ExecutorIdInUse as exc:
        services.close()
        fail(str(exc), code=2)
    except Exception as exc:
        services.close()
        fail(f"cannot start the execution engine: {type(exc).__name__}: {str(exc)[:300]}")


@click.command()
def worker() -> None:
    """Run task executions without serving HTTP (PostgreSQL: any number; each takes a
    unique executor id unless STRONGROOM_EXECUTOR_ID names one)."""
    import threading

    settings = load_settings()
    check_tool_settings(settings)
    from ..server.logs import configure_logging

    configure_logging(settings.log_level)
    services = open_services_or_fail(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    services.heartbeat.start()
    services.pruner.start()
    start_engine_or_fail(services)
    # A log line (JSON, as every line a running server or worker writes), not plain text.
    logging.getLogger("strongroom.worker").info(
        f"worker {services.engine.executor_id} is running executions",
        extra={"executor_id": services.engine.executor_id},
    )
    try:
        # A signal wakes the wait (its handler sets the event); no timer ticks meanwhile.
        while not stop.wait(3600):
            pass
    finally:
        services.metrics.stop()
        services.close()


@click.command()
def migrate() -> None:
    """Apply database migrations (the server also does this when it starts)."""
    settings = load_settings()
    open_migrated_store(settings).close()
    err.print("database is at the newest schema", highlight=False)


# -- keys: the database form ---------------------------------------------------------------------
# `strongroom keys` (cli/keys.py) works through the API when a key is configured, and on the
# database with these otherwise (and with --tenant or --database): how the first key is made.
def create_key_in_database(
    tenant: str,
    label: str | None,
    scopes: tuple[str, ...],
    quiet: bool,
    *,
    names: tuple[str, ...] = (),
    wheres: tuple[str, ...] = (),
    expires_at: dt.datetime | None = None,
) -> None:
    """Create an API key of ``tenant``; it is printed once and stored only as a hash.

    Needs the master key (STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE), as the
    server does: the hash is an HMAC under a key the master key protects.
    """
    from ..server.api.schemas.common import check_name
    from ..server.apikeys import create_api_key
    from ..server.rules import ResourceRule, RuleError

    try:
        check_name(tenant)
    except ValueError as exc:
        fail(f"--tenant: {exc}", code=2)
    try:
        rule = ResourceRule.from_cli(names, wheres)
    except RuleError as exc:
        fail(f"--names/--where: {exc.message}", code=2)
    services = unsealed_services_or_fail(load_settings(), "keys create")
    try:
        key, record = create_api_key(
            services.store,
            services.barrier,
            tenant,
            name=label,
            scopes=scopes,
            rule=rule,
            expires_at=expires_at,
        )
    except ValueError as exc:
        fail(str(exc), code=2)
    finally:
        services.store.close()
    if quiet:
        click.echo(key)
        return
    limits = "".join(
        [
            f"; reaches {rule.describe()}" if rule else "",
            f"; expires {record.expires_at.isoformat()}" if record.expires_at else "",
        ]
    )
    out.print(
        f"Created API key {record.id} for tenant '{record.tenant_name}' "
        f"with scopes {', '.join(record.scopes)}{limits}.\nIt is shown only now:\n\n    {key}\n",
        highlight=False,
        soft_wrap=True,
    )


def list_keys_in_database(tenant: str | None, as_json: bool) -> None:
    """List API keys of every tenant, or of ``tenant`` (never the keys themselves)."""
    from ..server.apikeys import list_api_keys

    store = open_migrated_store(load_settings())
    try:
        records = list_api_keys(store, tenant)
    finally:
        store.close()
    rows: list[dict[str, Any]] = [
        {
            "id": r.id,
            "tenant": r.tenant_name,
            "name": r.name,
            "hint": r.hint,
            "scopes": list(r.scopes),
            "rule": r.rule.as_dict() if r.rule else None,
            "created_at": r.created_at.isoformat(),
            "expires_at": r.expires_at.isoformat() if r.expires_at else None,
            "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
        }
        for r in records
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("id", "tenant", "name", "key", "scopes", "created", "revoked")
    for row in rows:
        table.add_row(
            row["id"],
            row["tenant"],
            row["name"] or "",
            row["hint"],
            " ".join(row["scopes"]),
            row["created_at"][:19],
            (row["revoked_at"] or "")[:19],
        )
    out.print(table)


def revoke_key_in_database(key_id: str) -> None:
    """Revoke an API key by id; it stops working at once."""
    from ..server.apikeys import revoke_api_key

    store = open_migrated_store(load_settings())
    try:
        revoked = revoke_api_key(store, key_id)
    finally:
        store.close()
    if not revoked:
        fail(f"no active API key has id {key_id!r}", code=3)
    err.print(f"revoked API key {key_id}", highlight=False)
