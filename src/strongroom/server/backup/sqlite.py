"""SQLite: the database and the execution engine's state beside it, copied page by page
with SQLite's backup API, out of a live database and into one no process has open."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
import tempfile
import urllib.parse
from pathlib import Path
from typing import Final

from .archive import (
    CHUNK,
    FORGET_HOLDERS,
    SQLITE_DATABASE,
    SQLITE_ENGINE_STATE,
    Archive,
    BackupError,
    BackupFile,
    Contents,
    Manifest,
    Member,
    Progress,
    check_space,
    counts_of,
    refuse_overwrite,
    write_archive,
)

# Pages per step of SQLite's backup: only how often progress is reported, since the
# source's read transaction keeps the copy from restarting between steps.
PAGES_PER_STEP: Final = 4096


def database_path(url: str) -> Path:
    """The file a ``sqlite:///PATH`` URL names."""
    path = url.removeprefix("sqlite:///")
    if path == ":memory:" or not path:
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(path)


def _engine_state_path(database: Path) -> Path:
    """The execution engine's state database beside ``database``: the name the store
    gives it (``SQLiteStore.system_database_url``)."""
    from ..storage.sqlite import SQLiteStore

    store = SQLiteStore(str(database))
    try:
        return Path(store.system_database_url().removeprefix("sqlite:///"))
    finally:
        store.close()


def _connect(path: Path, *, timeout: float = 30.0) -> sqlite3.Connection:
    # Autocommit: this code says where its transactions begin and end.
    return sqlite3.connect(path, isolation_level=None, timeout=timeout)


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    return [str(name) for (name,) in rows]


def _read(conn: sqlite3.Connection) -> tuple[list[str], str | None, dict[str, int]]:
    """Every table, strongroom's schema revision (None: not strongroom's) and its row
    counts, as ``conn`` sees them."""
    tables = _tables(conn)
    revision = None
    if "alembic_version" in tables:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = str(row[0]) if row else None

    def count(table: str) -> int:
        # Table names come from COUNTED, never from input.
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    return tables, revision, counts_of(tables, count)


def contents(database: Path) -> Contents:
    """What the database file holds, and whether the engine's state beside it exists."""
    tables: list[str] = []
    revision: str | None = None
    counts: dict[str, int] = {}
    if database.is_file() and database.stat().st_size > 0:
        conn = _connect(database)
        try:
            tables, revision, counts = _read(conn)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"cannot read the SQLite database {database}: {exc}") from None
        finally:
            conn.close()
    engine_state = _engine_state_path(database)
    extra = 1 if engine_state.is_file() and engine_state.stat().st_size > 0 else 0
    return Contents(str(database), len(tables) + extra, revision, counts)


def _copy(
    source: sqlite3.Connection,
    target: sqlite3.Connection,
    what: str,
    progress: Progress,
    *,
    pages: int = PAGES_PER_STEP,
) -> None:
    def step(_status: int, remaining: int, total: int) -> None:
        progress(what, total - remaining, total)

    source.backup(target, pages=pages, progress=step, sleep=0.05)


def backup(database: Path, out: BackupFile, progress: Progress) -> tuple[Manifest, int]:
    """Copy the database and the engine's state out while servers use them, and write
    the archive; its manifest and size."""
    if not database.is_file():
        raise BackupError(f"there is no SQLite database at {database}")
    engine_state = _engine_state_path(database)
    sizes = [database, Path(f"{database}-wal"), engine_state]
    estimate = sum(p.stat().st_size for p in sizes if p.is_file())
    # A staged copy, then the archive: twice the database while it runs.
    check_space(out.parent, 2 * estimate + CHUNK, "the backup")
    created = dt.datetime.now(dt.UTC)
    staged: list[tuple[str, Path]] = []
    if engine_state.is_file():
        # All at once (one step): it is small, and its rollback journal would let a write
        # between steps restart the copy; its readers block its writers only meanwhile.
        staged_state = out.temp(".dbos")
        source = _connect(engine_state)
        target = _connect(staged_state)
        try:
            _copy(
                source, target, "copying the execution engine's state (pages)", progress, pages=-1
            )
        finally:
            target.close()
            source.close()
        staged.append((SQLITE_ENGINE_STATE, staged_state))
    staged_database = out.temp(".db")
    source = _connect(database)
    try:
        # The read transaction held for the whole copy: one commit's database, in steps
        # that never restart, while WAL lets the servers write on.
        source.execute("BEGIN")
        _, revision, counts = _read(source)
        if revision is None:
            raise BackupError(f"{database} holds no strongroom database: nothing to back up")
        target = _connect(staged_database)
        try:
            _copy(source, target, "copying the database (pages)", progress)
        finally:
            target.close()
        source.execute("COMMIT")
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"cannot copy the SQLite database {database}: {exc}") from None
    finally:
        source.close()
    staged.insert(0, (SQLITE_DATABASE, staged_database))

    def finish(members: tuple[Member, ...]) -> Manifest:
        return Manifest("sqlite", revision, created, members, counts)

    return write_archive(out, staged, finish, progress)


def _wal_mode(header: bytes) -> bool:
    """Whether a SQLite file with this header is in WAL mode (its read version is 2)."""
    return len(header) >= 20 and header[18] == 2


def _lock(path: Path, wal: bool) -> sqlite3.Connection:
    """A connection that holds ``path`` exclusively until it closes; refused at once
    while any other connection has it open (a server, a worker, a command)."""
    conn = _connect(path, timeout=0)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        # The mode the restored file will be in, so that no journal of the other kind is
        # left beside it; changing it needs the file to itself, as the lock below does.
        conn.execute(f"PRAGMA journal_mode={'WAL' if wal else 'DELETE'}")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        conn.close()
        if "locked" in str(exc) or "busy" in str(exc):
            raise BackupError(
                f"{path} is in use (a server, worker or command has it open): stop every "
                "process using it, then restore"
            ) from None
        raise BackupError(f"cannot open {path}: {exc}") from None
    return conn


def restore(database: Path, archive: Archive, force: bool, progress: Progress) -> None:
    """Write the backup's files over ``database`` and the engine's state beside it, while
    no other process has either open."""
    refuse_overwrite(contents(database), force)
    engine_state = _engine_state_path(database)
    members = {m.name: m for m in archive.manifest.members}
    directory = database.absolute().parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_space(directory, 2 * sum(m.size for m in members.values()) + CHUNK, "the restore")
    targets = [(SQLITE_DATABASE, database), (SQLITE_ENGINE_STATE, engine_state)]
    new = [target for _, target in targets if not target.exists()]
    staged: dict[str, Path] = {}
    locks: dict[str, sqlite3.Connection] = {}
    restored = False
    try:
        # Both files held first (refused at once if in use), so that no process opens
        # either until the restore is done; then every member is checked before any
        # page is written.
        for name, target in targets:
            if name in members or target.exists():
                wal = name in members and _wal_mode(archive.head(members[name], 20))
                locks[name] = _lock(target, wal)
        for name, _ in targets:
            if name in members:
                fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{database.name}.restore-")
                os.close(fd)
                staged[name] = Path(temp)
                archive.extract(members[name], staged[name], progress)
        for name, target in targets:
            if name not in staged:
                continue
            uri = f"file:{urllib.parse.quote(str(staged[name].absolute()))}?immutable=1"
            source = sqlite3.connect(uri, uri=True)
            try:
                _copy(source, locks[name], f"restoring {name} (pages)", progress)
            except sqlite3.DatabaseError as exc:
                raise BackupError(f"cannot restore {name} into {target}: {exc}") from None
            finally:
                source.close()
        restored_database = locks[SQLITE_DATABASE]
        if "barrier_holders" in _tables(restored_database):
            restored_database.execute(FORGET_HOLDERS)
        restored = True
    finally:
        for conn in locks.values():
            conn.close()
        for staged_file in staged.values():
            _remove(staged_file)
        if not restored:
            # Refused or failed: a file this restore made is not left looking like a
            # database.
            for target in new:
                _remove(target)
    if SQLITE_ENGINE_STATE not in staged:
        # A database never served has no engine state: none of another database's either.
        _remove(engine_state)


def _remove(path: Path) -> None:
    """Remove a SQLite file and the journal files beside it."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
