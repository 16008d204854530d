"""Commands that run or administer a server: serve, worker, migrate, keys, master-key.

They read the same ``STRONGROOM_*`` settings as the server and talk to its database
directly, so they need the server extra (``pip install 'strongroom[server]'``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from .common import err, fail

if TYPE_CHECKING:
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
    if dev and settings.master_key is None and settings.master_key_file is None:
        from ..server.crypto.masterkey import create_key_file

        if create_key_file(DEV_MASTER_KEY_FILE):
            err.print(
                f"generated a development master key in {DEV_MASTER_KEY_FILE} (mode 0600). "
                "Keep it: without it the secrets in this database cannot be read.",
                highlight=False,
            )
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
    from ..server.crypto import MasterKeyError, UnsealError
    from ..server.services import open_services
    from ..server.storage import StorageUnavailable

    try:
        return open_services(settings)
    except (MasterKeyError, UnsealError) as exc:
        fail(str(exc), code=2)
    except StorageUnavailable as exc:
        # The database is down, full or read-only: say so, without a traceback.
        fail(f"cannot open the database: {exc}", code=1)


# -- serve and migrate ----------------------------------------------------------------------
@click.command()
@click.option("--host", help="address to listen on [default: STRONGROOM_HOST or 127.0.0.1]")
@click.option("--port", type=int, help="port to listen on [default: STRONGROOM_PORT or 8000]")
@click.option(
    "--dev",
    is_flag=True,
    help="development mode: generate ./data/master.key if no master key is set, and print a "
    "bootstrap API key for tenant 'default' on a database without keys",
)
def serve(host: str | None, port: int | None, dev: bool) -> None:
    """Migrate the database, check the master key, and serve the API."""
    settings = load_settings(dev=dev)
    check_tool_settings(settings)
    from ..server.logs import configure_logging

    configure_logging(settings.log_level)
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
    import uvicorn

    from ..server.app import create_app

    try:
        uvicorn.run(
            create_app(services),
            host=host or settings.host,
            port=settings.port if port is None else port,
            log_config=None,
            access_log=False,
            server_header=False,
            # Client addresses feed the audit trail and the per-address limits: only the
            # proxies named in the settings may set them with X-Forwarded-For (uvicorn
            # would otherwise believe any local client).
            proxy_headers=bool(settings.forwarded_allow_ips),
            forwarded_allow_ips=settings.forwarded_allow_ips or None,
        )
    finally:
        services.close()


def unsealed_services_or_fail(settings: Settings, command: str) -> Services:
    """The services, for a command that needs the unsealed barrier although it serves
    nothing (``keys create``: keys are stored as HMACs under a key the master key wraps),
    with the reason said when no master key is configured."""
    if settings.master_key is None and settings.master_key_file is None:
        from ..server.settings import DEV_MASTER_KEY_FILE

        dev = (
            f" (`serve --dev` keeps its development key in {DEV_MASTER_KEY_FILE}: "
            f"STRONGROOM_MASTER_KEY_FILE={DEV_MASTER_KEY_FILE} strongroom {command} ...)"
            if DEV_MASTER_KEY_FILE.exists()
            else ""
        )
        fail(
            f"`strongroom {command}` needs the master key, since API keys are stored as "
            "HMACs under a key it protects: set STRONGROOM_MASTER_KEY or "
            f"STRONGROOM_MASTER_KEY_FILE{dev}",
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
    try:
        services.engine.start()
    except Exception as exc:
        services.close()
        fail(f"cannot start the execution engine: {type(exc).__name__}: {str(exc)[:300]}")


@click.command()
def worker() -> None:
    """Run task executions without serving HTTP (PostgreSQL: any number, each with its own
    STRONGROOM_EXECUTOR_ID)."""
    import signal
    import threading

    settings = load_settings()
    check_tool_settings(settings)
    from ..server.logs import configure_logging

    configure_logging(settings.log_level)
    services = open_services_or_fail(settings)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    start_engine_or_fail(services)
    err.print(f"worker {settings.executor_id} is running executions", highlight=False)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        services.close()


@click.command()
def migrate() -> None:
    """Apply database migrations (the server also does this when it starts)."""
    settings = load_settings()
    open_migrated_store(settings).close()
    err.print("database is at the newest schema", highlight=False)


# -- keys ---------------------------------------------------------------------------------------
@click.group()
def keys() -> None:
    """Issue, list and revoke API keys."""


@keys.command("create")
@click.option("--tenant", required=True, help="tenant the key acts for (created if new)")
@click.option("--name", "label", help="a label to recognise the key by")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    help="secrets:read, secrets:write, secrets:admin, tasks:run, audit:read or * "
    "(repeatable; default *)",
)
@click.option("--quiet", "-q", is_flag=True, help="print only the key")
def keys_create(tenant: str, label: str | None, scopes: tuple[str, ...], quiet: bool) -> None:
    """Create an API key; it is printed once and stored only as a hash.

    Needs the master key (STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE), as the
    server does: the hash is an HMAC under a key the master key protects.
    """
    from ..server.api.schemas.common import check_name
    from ..server.apikeys import create_api_key

    try:
        check_name(tenant)
    except ValueError as exc:
        fail(f"--tenant: {exc}", code=2)
    services = unsealed_services_or_fail(load_settings(), "keys create")
    try:
        key, record = create_api_key(
            services.store, services.barrier, tenant, name=label, scopes=scopes
        )
    except ValueError as exc:
        fail(str(exc), code=2)
    finally:
        services.store.close()
    if quiet:
        click.echo(key)
        return
    out.print(
        f"Created API key {record.id} for tenant '{record.tenant_name}' "
        f"with scopes {', '.join(record.scopes)}.\nIt is shown only now:\n\n    {key}\n",
        highlight=False,
        soft_wrap=True,
    )


@keys.command("list")
@click.option("--tenant", help="only this tenant's keys")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def keys_list(tenant: str | None, as_json: bool) -> None:
    """List API keys (never the keys themselves)."""
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
            "created_at": r.created_at.isoformat(),
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


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
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


# -- master-key ---------------------------------------------------------------------------------
@click.group("master-key")
def master_key() -> None:
    """Generate a master key, and rotate the key-encryption keys it protects."""


@master_key.command("generate")
@click.option("--file", "path", type=click.Path(path_type=Path), help="write to FILE (mode 0600)")
def master_key_generate(path: Path | None) -> None:
    """Print a new random master key (or write it to a new file)."""
    from ..server.crypto.masterkey import create_key_file, generate_master_key

    private_files()
    if path is None:
        click.echo(generate_master_key())
        return
    if not create_key_file(path):
        fail(f"{path} exists; refusing to overwrite a master key", code=2)
    err.print(f"wrote a new master key to {path}", highlight=False)


@master_key.command("rotate")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="data keys per transaction",
)
def master_key_rotate(batch_size: int) -> None:
    """Add a new key-encryption key and rewrap every data key under it.

    Safe to interrupt: running it again finishes the interrupted rotation. Secrets stay
    readable throughout, by running servers too.
    """
    from ..server.crypto.rotation import rotate

    services = open_services_or_fail(load_settings())
    try:
        report = rotate(
            services.store,
            services.barrier,
            batch_size=batch_size,
            on_batch=lambda n: err.print(f"rewrapped {n} data keys", highlight=False),
        )
    finally:
        services.store.close()
    verb = "resumed and finished" if report.resumed else "finished"
    err.print(
        f"rotation {verb}: {report.rewrapped} data keys rewrapped under KEK "
        f"{report.active_kek_id}; retired KEKs: {report.retired_kek_ids or 'none'}",
        highlight=False,
    )


@master_key.command("status")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def master_key_status(as_json: bool) -> None:
    """Show the keyring: each KEK's state and how many data keys it wraps."""
    services = open_services_or_fail(load_settings())
    try:
        with services.store.read() as tx:
            entries = tx.keyring.entries()
            counts = tx.secrets.count_versions_by_kek()
    finally:
        services.store.close()
    rows: list[dict[str, Any]] = [
        {
            "kek_id": e.id,
            "state": e.state,
            "data_keys": counts.get(e.id, 0),
            "created_at": e.created_at.isoformat(),
        }
        for e in entries
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("KEK", "state", "data keys", "created")
    for row in rows:
        table.add_row(
            str(row["kek_id"]), row["state"], str(row["data_keys"]), row["created_at"][:19]
        )
    out.print(table)
