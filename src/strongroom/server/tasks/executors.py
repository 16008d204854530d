"""Executor ids: which process resumes which executions, and what happens to the
executions of a process that never comes back.

DBOS records the executor id a workflow runs under and resumes a pending workflow only
in a process of the same id. So each engine process needs an id that is

- **its own**: two live processes under one id would resume each other's executions.
  :class:`ExecutorClaim` claims the id in the database when the engine starts, and the
  start is refused while another live process holds it (seen within the heartbeat's
  :func:`~..crypto.heartbeat.gone_after`, on another host or under a live pid);
- **stable across its restarts**: a process that crashed resumes its own executions when
  it starts again. Unless ``STRONGROOM_EXECUTOR_ID`` names one, the id is the host name
  and a random suffix made once and kept in ``data/executor-id`` (:func:`default_id`).

A process that never comes back (a host lost, a container replaced without its data
directory) leaves its executions pending under an id nobody claims. The scheduler's
sweep (:func:`stranded`, run by ``tasks/engine.py``) fails those once the id has not
been seen for ``STRONGROOM_EXECUTOR_GONE_SECONDS``: an interrupted step may have called
an upstream already, so another process does not silently run it again; the owner sees
a failed execution and may run it anew.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..crypto.heartbeat import gone_after
from ..storage import ExecutorRecord, NameTaken, Store

log = logging.getLogger("strongroom.engine")

ID_FILE = Path("data/executor-id")
MAX_ID_LENGTH = 128


class ExecutorIdInUse(Exception):
    """Another live process holds this executor id."""


def default_id(id_file: Path = ID_FILE) -> str:
    """``<hostname>-<suffix>``, the suffix made once and kept in ``id_file`` so that this
    process's restarts resume its executions. If the file cannot be written (a read-only
    directory) the id is made for this run only, and said so: a crash then leaves its
    executions to the sweep instead of to its own restart."""
    host = socket.gethostname() or "host"
    try:
        suffix = id_file.read_text().strip() or _made(id_file)
    except FileNotFoundError:
        suffix = _made(id_file)
    except OSError as exc:
        suffix = _unsaved(id_file, exc)
    return f"{host}-{suffix}"[-MAX_ID_LENGTH:]


def _made(id_file: Path) -> str:
    """A new suffix, kept in ``id_file``; the one already there if another process
    starting in the same directory made it first (``O_EXCL``: never overwritten)."""
    suffix = secrets.token_hex(4)
    try:
        id_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(id_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(suffix + "\n")
    except FileExistsError:
        try:
            return id_file.read_text().strip() or suffix
        except OSError as exc:
            return _unsaved(id_file, exc)
    except OSError as exc:
        return _unsaved(id_file, exc)
    return suffix


def _unsaved(id_file: Path, exc: OSError) -> str:
    """A suffix for this run only, said in a warning."""
    log.warning(
        "cannot keep the executor id in its file: this process's executions will not be "
        "resumed by its restart (set STRONGROOM_EXECUTOR_ID, or make the directory writable)",
        extra={"path": str(id_file), "error": f"{type(exc).__name__}: {exc.strerror}"},
    )
    return secrets.token_hex(4)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, under another user
        return True
    return True


@dataclass
class ExecutorClaim:
    """This process's claim on ``executor_id``: taken at the engine's start, refreshed on
    each heartbeat, released at its stop."""

    store: Store
    executor_id: str
    heartbeat_seconds: float
    hostname: str = ""
    pid: int = 0

    def __post_init__(self) -> None:
        self.hostname = self.hostname or socket.gethostname()[:255]
        self.pid = self.pid or os.getpid()

    def take(self) -> None:
        """Claim the id, or raise :class:`ExecutorIdInUse` naming who holds it."""
        try:
            with self.store.write() as tx:
                now = tx.keyring.clock()
                held = tx.executors.by_id(self.executor_id, for_update=True)
                if held is not None and self._live_other(held, now):
                    raise ExecutorIdInUse(
                        f"executor id {self.executor_id!r} is held by process {held.pid} on "
                        f"{held.hostname!r}, seen {(now - held.seen_at).total_seconds():.0f} s "
                        "ago: give each server and worker its own STRONGROOM_EXECUTOR_ID (or "
                        "leave it unset for a unique one)"
                    )
                mine = ExecutorRecord(self.executor_id, self.hostname, self.pid, now, now)
                # Insert when there was no row (of two inserting at once, one fails on the
                # key), replace the row locked above otherwise: never an update that could
                # overwrite a claim committed after this transaction looked.
                if held is None:
                    tx.executors.insert(mine)
                else:
                    tx.executors.replace(mine)
        except NameTaken:
            raise ExecutorIdInUse(
                f"executor id {self.executor_id!r} was claimed by another process starting "
                "at the same moment"
            ) from None

    def _live_other(self, held: ExecutorRecord, now: dt.datetime) -> bool:
        if held.pid is None or (held.hostname, held.pid) == (self.hostname, self.pid):
            return False
        if now - held.seen_at > dt.timedelta(seconds=gone_after(self.heartbeat_seconds)):
            return False
        # On this host, a pid that no longer runs is a crashed predecessor: its restart.
        return held.hostname != self.hostname or _pid_alive(held.pid)

    def beat(self) -> None:
        with self.store.write() as tx:
            kept = tx.executors.beat(self.executor_id, self.hostname, self.pid, tx.keyring.clock())
        if not kept:
            log.error(
                "another process has claimed this process's executor id (it was silent for "
                "longer than three heartbeats): the two may resume each other's executions",
                extra={"executor_id": self.executor_id},
            )

    def release(self) -> None:
        with self.store.write() as tx:
            tx.executors.release(self.executor_id, self.hostname, self.pid, tx.keyring.clock())


@dataclass(frozen=True)
class Pending:
    """A workflow the engine holds as pending: its id (an execution's), the executor it
    runs under, and when the engine last changed it."""

    workflow_id: str
    executor_id: str
    updated_at: dt.datetime


def stranded(
    store: Store, pending: Iterable[Pending], gone_seconds: float
) -> list[tuple[Pending, str]]:
    """The pending workflows whose executor has not been seen for ``gone_seconds`` (or
    was never claimed, and the workflow has not moved for as long), each with the reason
    to fail it: words about the executor only, never about the execution's data."""
    with store.read() as tx:
        now = tx.keyring.clock()
        seen = {claim.executor_id: claim.seen_at for claim in tx.executors.all()}
    window = dt.timedelta(seconds=gone_seconds)
    found = []
    for workflow in pending:
        last = seen.get(workflow.executor_id, workflow.updated_at)
        if now - last > window:
            found.append(
                (
                    workflow,
                    f"the process running this execution (executor {workflow.executor_id}) "
                    f"stopped and has not come back for {gone_seconds:g} s",
                )
            )
    return found
