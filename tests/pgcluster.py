"""A private PostgreSQL instance for tests that stop, crash and restart the database.

The machine's shared PostgreSQL serves every other test at the same time, so it is never
stopped; a test that needs PostgreSQL to go away gets its own: ``initdb`` into a temporary
directory with the binaries under ``/usr/lib/postgresql/<version>/bin`` (the newest
installed), listening on 127.0.0.1 on a free port, trust authentication, no Unix socket
outside its own directory.

PostgreSQL refuses to run as root, and CI runs the tests as root: then every PostgreSQL
command runs as the ``postgres`` user (``runuser -u postgres --``) on a directory that user
owns, made with ``tempfile.mkdtemp()`` (pytest's own temporary directories are private to
root) and chowned.

``fsync=off`` keeps ``initdb`` and every commit fast. It weakens nothing these tests assert:
they crash PostgreSQL's processes, never the machine, and a committed transaction's WAL
is already in the kernel's page cache when the commit returns (``synchronous_commit`` stays
on), so crash recovery replays it.

Without the binaries the fixture skips, except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .support import free_port


def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<version>/bin`` holding initdb and pg_ctl."""
    candidates = []
    for bindir in Path("/usr/lib/postgresql").glob("*/bin"):
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            try:
                candidates.append((int(bindir.parent.name.split(".")[0]), bindir))
            except ValueError:
                continue
    return max(candidates)[1] if candidates else None


class PrivatePostgres:
    """One PostgreSQL instance of its own: ``start``, ``stop(mode)``, ``url(database)``."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        self.base = Path(tempfile.mkdtemp(prefix="strongroom-pg-"))
        self.data = self.base / "data"
        self.logfile = self.base / "postgres.log"
        self.port = free_port()
        if self.as_root:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data}'",
            "fsync": "off",
            "max_connections": "100",
            "logging_collector": "off",
        }
        with (self.data / "postgresql.auto.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bindir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self.log()[-2000:]}"
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        """Start and wait until it accepts connections (``pg_ctl -w``)."""
        self._run("pg_ctl", "start", "--pgdata", str(self.data), "--log", str(self.logfile), "-w")

    def stop(self, mode: str = "fast") -> None:
        """``immediate`` is a crash (no checkpoint; recovery on the next start); ``fast``
        disconnects every client and shuts down cleanly."""
        self._run("pg_ctl", "stop", "--pgdata", str(self.data), "--mode", mode, "-w")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def execute(self, sql: str, database: str = "postgres") -> None:
        with psycopg.connect(self.url(database), autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def destroy(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError):
                self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


def private_postgres_or_fail() -> PrivatePostgres:
    """A started :class:`PrivatePostgres`; a skip without the binaries (a failure under CI)."""
    bindir = find_bindir()
    problem = None
    if bindir is None:
        problem = "no PostgreSQL binaries under /usr/lib/postgresql/*/bin"
    elif os.geteuid() == 0 and shutil.which("runuser") is None:
        problem = "running as root needs runuser to start PostgreSQL as user postgres"
    elif os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            problem = "running as root needs a 'postgres' user to own the private instance"
    if problem is not None or bindir is None:
        message = f"cannot start a private PostgreSQL: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    instance = PrivatePostgres(bindir)
    try:
        instance.start()
    except BaseException:
        instance.destroy()
        raise
    return instance


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL instance the test may stop, crash and restart; shared by a module's
    tests, each of which leaves it running."""
    instance = private_postgres_or_fail()
    try:
        yield instance
    finally:
        instance.destroy()
