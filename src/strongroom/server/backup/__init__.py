"""Backups: a consistent snapshot of strongroom's database in one file, taken while
servers keep serving and writing, and its restore.

A backup is one uncompressed tar file, mode 0600::

    strongroom.sqlite        SQLite: the database, by SQLite's online backup API
    strongroom.dbos.sqlite   SQLite: the execution engine's state beside it, when it exists
    strongroom.pgdump        PostgreSQL: pg_dump's custom format (the ``dbos`` schema included)
    manifest.json            format version, strongroom version, schema revision, backend,
                             creation time, each member's size and SHA-256, row counts

One tar rather than a directory: one file to copy, encrypt, upload and rename into place
atomically, which any tar tool lists and reads (``tar xOf BACKUP manifest.json``).
Uncompressed: its bulk is ciphertext, which does not compress, or pg_dump's output, which
is compressed already; and an uncompressed tar lets a restore read the manifest and each
member's header without reading the members. The manifest comes last, since its
checksums are those of the members written before it.

What a backup never holds is the master key: the database holds ciphertext, the KEKs
wrapped under the master key and the barrier's verifier, none of which opens without
it. A backup is useless without the master key, which is backed up separately; a backup
file alone reveals no secret value. Its checksums detect damage, not a forger: keep
backups where only operators can write.

Consistency: SQLite's backup API copies pages under a read transaction held on the
source for the whole copy, so the copy is the database as of one commit (WAL lets the
servers write meanwhile; without that transaction a write between two steps would
restart the copy). The engine's state (its own file, in a rollback journal) is copied
first, in one step: its snapshot is then never newer than the database's, so an
execution it knows is one the database knows, and one the database knows but the engine
does not is enqueued again when a server starts (``DurableEngine.reconcile``). On
PostgreSQL, pg_dump runs in a snapshot exported by a repeatable-read transaction, in
which the manifest's schema revision and row counts are read too.

This package holds no click: ``cli/backup.py`` shows progress and says what happened.
:mod:`.archive` owns the file and its manifest, :mod:`.sqlite` and :mod:`.postgres` how
each database is copied out and back.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import postgres, sqlite
from .archive import (
    BackupError,
    BackupFile,
    Contents,
    Manifest,
    Progress,
    check_restorable,
    describe_counts,
    no_progress,
    open_backup,
)
from .postgres import pg_command_line


@dataclass(frozen=True)
class BackupReport:
    """A backup written: where, how large (bytes), and its manifest."""

    path: Path
    size: int
    manifest: Manifest


def create_backup(
    url: str, path: Path, *, force: bool = False, progress: Progress = no_progress
) -> BackupReport:
    """Write a backup of the database ``url`` names to ``path`` while it stays in use."""
    backend = _backend(url)
    with BackupFile(path, force=force) as out:
        if backend == "sqlite":
            manifest, size = sqlite.backup(sqlite.database_path(url), out, progress)
        else:
            manifest, size = postgres.backup(url, out, progress)
    return BackupReport(path, size, manifest)


def restore_backup(
    url: str,
    path: Path,
    *,
    force: bool = False,
    gone_after: float = 15.0,
    progress: Progress = no_progress,
) -> Manifest:
    """Restore the backup at ``path`` into the database ``url`` names, as it was when the
    backup was made (at the backup's schema revision: the caller migrates it).

    Refused, with nothing changed, for a damaged backup, one of a newer schema or the other
    backend, a database in use, or one not empty without ``force``. ``gone_after``: seconds
    after which a process that stopped beating counts as gone (PostgreSQL).
    """
    backend = _backend(url)
    with open_backup(path) as archive:
        check_restorable(archive.manifest, backend)
        if backend == "sqlite":
            sqlite.restore(sqlite.database_path(url), archive, force, progress)
        else:
            postgres.restore(url, archive, force, gone_after, progress)
        return archive.manifest


def describe_database(url: str) -> Contents:
    """What the database ``url`` names holds (nothing, for a SQLite file not there yet)."""
    if _backend(url) == "sqlite":
        return sqlite.contents(sqlite.database_path(url))
    return postgres.contents(url)


def _backend(url: str) -> str:
    if url.startswith("sqlite:///"):
        return "sqlite"
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return "postgresql"
    raise BackupError("STRONGROOM_DATABASE_URL must start with sqlite:/// or postgresql://")


__all__ = [
    "BackupError",
    "BackupReport",
    "Contents",
    "Manifest",
    "Progress",
    "create_backup",
    "describe_counts",
    "describe_database",
    "pg_command_line",
    "restore_backup",
]
