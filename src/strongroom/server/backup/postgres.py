"""PostgreSQL: pg_dump's custom format, taken in a snapshot exported by the transaction
that reads the manifest's facts, and pg_restore in one transaction. The client programs
come from the machine, never with a password on their command line."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .archive import (
    CHUNK,
    COUNTED,
    FORGET_HOLDERS,
    PG_DUMP,
    Archive,
    BackupError,
    BackupFile,
    Contents,
    Manifest,
    Member,
    Progress,
    check_space,
    counts_of,
    known_revision,
    refuse_overwrite,
    write_archive,
)


def _libpq_url(url: str) -> str:
    """``url`` in libpq's spelling (strongroom also accepts SQLAlchemy's)."""
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url.removeprefix(prefix)
    return url


def _connect(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """A connection, or a :class:`BackupError` saying why there is none."""
    try:
        return psycopg.connect(_libpq_url(url), connect_timeout=10)
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackupError(f"cannot connect to {_where(url)}: {first}") from None


def _where(url: str) -> str:
    """The database ``url`` names, for a message: never its user or password."""
    params = conninfo_to_dict(_libpq_url(url))
    return (
        f"database {params.get('dbname', '?')!s} on "
        f"{params.get('host', 'localhost')!s}:{params.get('port', 5432)!s}"
    )


def pg_command_line(url: str) -> tuple[str, dict[str, str]]:
    """What a PostgreSQL client program is given to reach ``url``: the connection string
    without its password, for ``--dbname`` (a command line is visible to every local user
    in ``ps``), and the environment, with the password in ``PGPASSWORD``."""
    params = conninfo_to_dict(_libpq_url(url))
    if "sslpassword" in params:
        raise BackupError(
            "the database URL holds sslpassword, which a client program could only be given "
            "on its command line: use a client key without a passphrase"
        )
    password = params.pop("password", None)
    # Not strongroom's own settings (the master key among them): the program needs none.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRONGROOM_")}
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def _client_program(name: str) -> tuple[str, int, str]:
    """The path, major version and version text of the client program ``name``."""
    path = shutil.which(name)
    if path is None:
        raise BackupError(
            f"{name} is not installed (or not on PATH): install the PostgreSQL client "
            "programs of the server's major version or newer (Debian: postgresql-client-NN)"
        )
    try:
        found = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"cannot run {path} --version: {exc}") from None
    match = re.search(r"(\d+)(?:\.(\d+))?", found)
    if match is None:
        raise BackupError(f"cannot tell {path}'s version from {found.strip()[:80]!r}")
    return path, int(match.group(1)), match.group(0)


def _major(version: str) -> int:
    """The major version of a version text such as ``15.20``; 0 for none."""
    match = re.match(r"\d+", version)
    return int(match.group(0)) if match else 0


def _tables(conn: psycopg.Connection[tuple[Any, ...]]) -> list[tuple[str, str]]:
    """Every table of every schema but the system's: strongroom's, the engine's, others'."""
    return [
        (str(schema), str(name))
        for schema, name in conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    ]


def _read(
    conn: psycopg.Connection[tuple[Any, ...]],
) -> tuple[list[tuple[str, str]], str | None, dict[str, int]]:
    """Every table, strongroom's schema revision and its row counts, as seen by ``conn``
    (strongroom's tables are those its search path finds)."""
    tables = _tables(conn)
    found = conn.execute("SELECT to_regclass('alembic_version') IS NOT NULL").fetchone()
    revision = None
    if found and found[0]:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        revision = str(row[0]) if row else None
    ours = [
        name
        for name in COUNTED
        if (row := conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone())
        and row[0]
    ]

    def count(table: str) -> int:
        # Table names come from COUNTED, never from input.
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        return int(row[0]) if row else 0

    return tables, revision, counts_of(ours, count)


def _contents(conn: psycopg.Connection[tuple[Any, ...]], where: str) -> Contents:
    """What the database ``conn`` is connected to holds."""
    tables, revision, counts = _read(conn)
    return Contents(where, len(tables), revision, counts)


def contents(url: str) -> Contents:
    """What the database ``url`` names holds."""
    with _connect(url) as conn:
        return _contents(conn, _where(url))


def _server_version(conn: psycopg.Connection[tuple[Any, ...]]) -> tuple[int, str]:
    """The server's major version and its version text."""
    row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    number = int(row[0]) if row else 0
    text = conn.execute("SELECT current_setting('server_version')").fetchone()
    return number // 10000, str(text[0]).split()[0] if text else str(number)


class _Tool:
    """A PostgreSQL client program running, its verbose lines counted as progress and
    its other lines kept for the error it may end with."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
        )
        self.lines: deque[str] = deque(maxlen=40)
        self.problems: deque[str] = deque(maxlen=20)

    def run(self, what: str, total: int, progress: Progress) -> None:
        assert self.process.stderr is not None
        for done, said in enumerate(self.process.stderr, start=1):
            line = said.rstrip()
            self.lines.append(line)
            if re.search(r"\b(error|warning|fatal|detail|hint):", line, re.IGNORECASE):
                self.problems.append(line)
            progress(what, min(done, total), total)
        code = self.process.wait()
        if code != 0:
            said = "\n".join(self.problems or self.lines) or "(nothing on stderr)"
            raise BackupError(f"{what.split(' (')[0]} failed (exit {code}):\n{said[:4000]}")


def backup(url: str, out: BackupFile, progress: Progress) -> tuple[Manifest, int]:
    """pg_dump the database while servers use it, and write the archive; its manifest and
    size."""
    pg_dump, dump_major, dump_version = _client_program("pg_dump")
    with _connect(url) as conn:
        server_major, server_version = _server_version(conn)
        conn.rollback()  # the snapshot's transaction must be the next one
        if dump_major < server_major:
            raise BackupError(
                f"pg_dump {dump_version} is older than the server (PostgreSQL "
                f"{server_version}): install the client programs of version {server_major} "
                "or newer"
            )
        # One snapshot for pg_dump and for what the manifest says of it.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        snapshot = str(row[0])
        tables, revision, counts = _read(conn)
        if revision is None:
            raise BackupError(f"{_where(url)} holds no strongroom database: nothing to back up")
        size = conn.execute(
            "SELECT coalesce(sum(pg_table_size(c.oid)), 0) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'm')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchone()
        # pg_dump's file, then the archive: at most twice the tables' data.
        check_space(out.parent, 2 * int(size[0] if size else 0) + CHUNK, "the backup")
        created = dt.datetime.now(dt.UTC)
        staged = out.temp(".pgdump")
        conninfo, env = pg_command_line(url)
        tool = _Tool(
            [
                pg_dump,
                "--format=custom",
                "--no-owner",
                "--verbose",
                f"--snapshot={snapshot}",
                f"--file={staged}",
                f"--dbname={conninfo}",
            ],
            env,
        )
        # pg_dump says a line or so per object; a table has a few.
        tool.run("pg_dump (objects)", max(1, 4 * len(tables)), progress)
        conn.rollback()
    tools = {"pg_dump": dump_version, "server": server_version}

    def finish(members: tuple[Member, ...]) -> Manifest:
        return Manifest("postgresql", revision, created, members, counts, tools=tools)

    return write_archive(out, [(PG_DUMP, staged)], finish, progress)


# A table in ``pg_restore --list``: "215; 1259 16390 TABLE public secrets postgres".
_TABLE_ENTRY = re.compile(r"^\d+; \d+ \d+ TABLE (\S+) (\S+) ", re.MULTILINE)


def _strongroom_tables(conn: psycopg.Connection[tuple[Any, ...]]) -> set[tuple[str, str]]:
    """The tables of the database that strongroom's schema names (and Alembic's own), by
    schema and name: those a restore may drop, never another application's."""
    from ..storage.schema import metadata

    ours = {*metadata.tables, "alembic_version"}
    return {(schema, name) for schema, name in _tables(conn) if schema == "public" and name in ours}


def _live_holders(conn: psycopg.Connection[tuple[Any, ...]], gone_after: float) -> list[str]:
    """The processes (servers, workers) that had the database's barrier open within
    ``gone_after`` seconds, by the database's clock."""
    found = conn.execute("SELECT to_regclass('barrier_holders') IS NOT NULL").fetchone()
    if not (found and found[0]):
        return []
    rows = conn.execute(
        "SELECT hostname, pid, extract(epoch FROM now() - seen_at) FROM barrier_holders"
        " WHERE seen_at > now() - make_interval(secs => %s)",
        (gone_after,),
    ).fetchall()
    return [f"{host} pid {pid} (seen {float(ago):.0f} s ago)" for host, pid, ago in rows]


def restore(url: str, archive: Archive, force: bool, gone_after: float, progress: Progress) -> None:
    """pg_restore the backup's dump into the database, in one transaction, while no
    server or worker uses it."""
    pg_restore, restore_major, restore_version = _client_program("pg_restore")
    dumped_by = archive.manifest.tools.get("pg_dump", "0")
    dumped_major = _major(dumped_by)
    if restore_major < dumped_major:
        raise BackupError(
            f"pg_restore {restore_version} cannot read a dump made by pg_dump {dumped_by}: "
            f"install the client programs of version {dumped_major} or newer"
        )
    where = _where(url)
    with _connect(url) as conn:
        found = _contents(conn, where)
        refuse_overwrite(found, force)
        if found.revision is not None and not known_revision(found.revision):
            raise BackupError(
                f"{where} is at schema revision {found.revision}, newer than this strongroom "
                "knows: restore with that strongroom, or into an empty database"
            )
        overwritten = _strongroom_tables(conn)
        live = _live_holders(conn, gone_after)
        conn.rollback()
    if live:
        raise BackupError(
            f"{where} is in use by {len(live)} process(es): {'; '.join(live)}. Stop every "
            "server and worker using it, then restore (a process not seen for "
            f"{gone_after:g} s counts as gone: one stopped just now, try again then)"
        )
    (member,) = archive.manifest.members
    staging = Path(tempfile.mkdtemp(prefix="strongroom-restore-"))  # mode 0700
    try:
        check_space(staging, member.size + CHUNK, "the restore")
        dump = staging / PG_DUMP
        archive.extract(member, dump, progress)
        conninfo, env = pg_command_line(url)
        listing = subprocess.run(
            [pg_restore, "--list", str(dump)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        items = sum(1 for line in listing.stdout.splitlines() if line and not line.startswith(";"))
        dumped = set(_TABLE_ENTRY.findall(listing.stdout))
        # One transaction: a restore that fails leaves the database as it was. Ownership
        # and grants are the restoring role's, whatever roles the source had.
        tool = _Tool(
            [
                pg_restore,
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-acl",
                "--single-transaction",
                "--exit-on-error",
                "--verbose",
                f"--dbname={conninfo}",
                str(dump),
            ],
            env,
        )
        tool.run("pg_restore (objects)", max(1, 2 * items), progress)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with _connect(url) as conn:
        # --clean replaced the tables the backup holds; a table of the overwritten database
        # that it does not (one a later migration made) would stand in the way of the
        # migrations that bring the backup forward.
        for schema, table in sorted(overwritten - dumped):
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(schema, table))
            )
        holders = conn.execute("SELECT to_regclass('barrier_holders') IS NOT NULL").fetchone()
        if holders and holders[0]:
            conn.execute(FORGET_HOLDERS)
