"""``strongroom backup`` and ``strongroom restore``: the server's database to one file and
back, with the server's settings, as the other server commands (:mod:`.server_commands`).

What is in a backup and how it is made consistent is :mod:`..server.backup`'s; here are
the progress display, the master key's checks around a restore, and what is said. A
backup never holds the master key, and both commands say so.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import fail, say
from .progress import Bar, progress_bar
from .server_commands import load_settings, open_migrated_store

if TYPE_CHECKING:
    from ..server.backup import Progress
    from ..server.settings import Settings

MASTER_KEY_ELSEWHERE = (
    "The backup holds no master key: back the master key up separately (and keep it "
    "apart from the backups). Without it this backup cannot be read."
)


class _Shown:
    """Progress of a backup or restore: a bar on a terminal, else a line per stage."""

    def __init__(self, bar: Bar) -> None:
        self.bar = bar
        self.stage: str | None = None

    def __call__(self, what: str, done: int, total: int) -> None:
        if what != self.stage:
            self.stage = what
            if not self.bar.live:
                say(what.split(" (")[0])
        self.bar.update(description=what, completed=done, total=max(total, done, 1))


@contextmanager
def _progress(description: str) -> Iterator[Progress]:
    with progress_bar(description) as bar:
        yield _Shown(bar)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="replace PATH if it exists")
def backup(path: Path, force: bool) -> None:
    """Write a consistent snapshot of the server's database to PATH, one file (mode 0600),
    while servers keep serving.

    SQLite: the database and the execution engine's state beside it; PostgreSQL: pg_dump's
    custom format (pg_dump of the server's major version or newer must be installed). The
    master key is never in a backup: back it up separately.
    """
    from ..server.backup import BackupError, create_backup, describe_counts

    settings = load_settings()
    try:
        with _progress("backing up") as shown:
            report = create_backup(settings.database_url, path, force=force, progress=shown)
    except BackupError as exc:
        fail(str(exc))
    manifest = report.manifest
    say(
        f"wrote {path} ({report.size} bytes): {manifest.backend} database at schema revision "
        f"{manifest.schema_revision}; {describe_counts(manifest.counts)}"
    )
    say(MASTER_KEY_ELSEWHERE)


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--force", is_flag=True, help="overwrite a database that is not empty (says what it holds)"
)
def restore(path: Path, force: bool) -> None:
    """Restore the backup at PATH into the server's database, bring it to this version's
    schema, and check the configured master key opens it.

    Stop every server and worker on the database first. Refused for a damaged backup, one
    of a newer strongroom, or a database not empty (unless --force). Exit 2 when the master
    key cannot open the restored data.
    """
    from ..server.backup import BackupError, describe_database, restore_backup
    from ..server.crypto.heartbeat import gone_after

    settings = load_settings()
    _check_master_key(settings)
    try:
        with _progress("restoring") as shown:
            manifest = restore_backup(
                settings.database_url,
                path,
                force=force,
                gone_after=gone_after(settings.barrier_heartbeat_seconds),
                progress=shown,
            )
    except BackupError as exc:
        fail(str(exc))
    say(f"restored {manifest.describe()}")
    open_migrated_store(settings).close()
    _check_unseals(settings, path)
    try:
        contents = describe_database(settings.database_url)
    except BackupError as exc:
        fail(str(exc))
    differ = {k: (v, contents.counts.get(k)) for k, v in manifest.counts.items()}
    differ = {k: pair for k, pair in differ.items() if pair[0] != pair[1]}
    if differ:
        said = ", ".join(
            f"{k}: {want} in the backup, {got} restored" for k, (want, got) in differ.items()
        )
        fail(f"the restored database does not hold what the backup says it holds: {said}")
    say(
        f"{contents.describe()}; the configured master key opens it. Start the servers and "
        "workers on it."
    )


def _check_master_key(settings: Settings) -> None:
    """Refuse before anything is overwritten when no usable master key is configured: the
    restore ends by checking that the key opens what was restored."""
    from ..server.crypto import MasterKeyError
    from ..server.crypto.masterkey import load_master_keys

    value = settings.master_key.get_secret_value() if settings.master_key else None
    try:
        load_master_keys(value, settings.master_key_file)
    except MasterKeyError as exc:
        fail(
            f"{exc}. A restore checks that the master key the backup was made under opens "
            "it: configure that key first",
            code=2,
        )


def _check_unseals(settings: Settings, path: Path) -> None:
    """Open the restored barrier with the configured master key (exit 2 if it cannot)."""
    from ..server.crypto import MasterKeyError, UnsealError
    from ..server.services import open_services

    try:
        services = open_services(settings)
    except (MasterKeyError, UnsealError) as exc:
        fail(
            f"the data of {path} was restored, but the configured master key cannot read it: "
            f"{exc}. Configure the master key this backup was made under "
            "(STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE); without it the restored "
            "secrets cannot be read",
            code=2,
        )
    except Exception as exc:
        fail(f"the data was restored, but opening it failed: {type(exc).__name__}: {exc}")
    services.close()
