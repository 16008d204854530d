"""The audit file: a copy of the trail, one JSON object a line, for a log pipeline to ship
(``STRONGROOM_AUDIT_FILE``, as Vault's file audit device).

The database holds the trail of record. The file gets each event that committed, after its
transaction commits and before the service returns, so before the answer is sent:
:func:`.trail.record` hands the event to the store's audit sinks through
``Transaction.after_commit``. An event whose transaction rolls back is never written.

A line holds what ``GET /v1/audit`` answers for the event, in its order and spelling, and
nothing else (never a value: events hold none). Each is written with one ``write()`` to a
descriptor opened with ``O_APPEND``, so lines of several threads and processes never
interleave on a local file system; a line stays within :data:`MAX_LINE_BYTES` (the detail
is cut). Before each line the path is looked up again: once logrotate has moved the file
away, the next line opens (creates, mode 0600) a new one there.

When a line cannot be written (disk full, the file made unwritable) the answer still goes
out: the event is in the database already. The failure is logged at ERROR (once for each
new reason, and again when lines go through once more, with how many were lost) and
counted in :attr:`AuditFile.failures`. A file that cannot be opened when the process
starts is refused then (:class:`AuditFileError`): a misconfiguration is said at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

from .storage import AuditEvent

log = logging.getLogger("strongroom.audit")

# Long enough for any event the server makes; short enough for every log shipper.
MAX_LINE_BYTES = 16 * 1024
CUT = "... (cut)"
# O_NONBLOCK: opening a FIFO with no reader would otherwise hang the process (and then it
# is refused as not a regular file); a regular file ignores it.
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK


class AuditFileError(Exception):
    """The audit file cannot be opened: the process refuses to start."""


def line_of(event: AuditEvent) -> bytes:
    """``event`` as one line of JSON (ASCII, ending in a newline), as ``GET /v1/audit``
    answers it plus its tenant (the file holds every tenant's events); a detail that
    would make it longer than :data:`MAX_LINE_BYTES` is cut."""
    record: dict[str, Any] = {
        "id": event.id,
        "time": event.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "tenant_id": event.tenant_id,
        "key_id": event.key_id,
        "key_name": event.key_name,
        "action": event.action,
        "outcome": event.outcome,
        "secret_name": event.secret_name,
        "secret_id": event.secret_id,
        "request_id": event.request_id,
        "client_addr": event.client_addr,
        "detail": event.detail,
    }
    text = _json(record)
    over = len(text) + 1 - MAX_LINE_BYTES
    if over > 0 and event.detail:
        # ASCII JSON spends at least a byte on each character: cutting ``over`` of them
        # (and room for the mark) brings the line within bounds.
        record["detail"] = event.detail[: max(0, len(event.detail) - over - len(CUT))] + CUT
        text = _json(record)
    return text.encode("ascii") + b"\n"


def _json(record: dict[str, Any]) -> str:
    # ASCII: any character is escaped, so no byte sequence can break a reader's decoding.
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


class AuditFile:
    """Appends audit events to ``path``, one line each (see the module's documentation)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.failures = 0  # lines not written since the process started
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of what _fd is
        self._torn = False  # the last write stopped mid-line
        self._failing: str | None = None  # the reason lines fail now, once logged
        self._lost = 0  # lines lost since they began to fail

    @classmethod
    def open(cls, path: Path) -> AuditFile:
        """The file at ``path``, opened (created, mode 0600, if missing) now, so that a
        path that cannot be written is refused when the process starts."""
        audit_file = cls(path)
        try:
            with audit_file._lock:
                audit_file._reopen()
        except OSError as exc:
            raise AuditFileError(
                f"cannot open the audit file STRONGROOM_AUDIT_FILE={path}: {_reason(exc)}"
            ) from None
        return audit_file

    def append(self, event: AuditEvent) -> None:
        """Write ``event`` as a line; a failure is logged and counted, never raised."""
        line = line_of(event)
        with self._lock:
            try:
                self._write(line)
            except OSError as exc:
                self._failed(exc)
            else:
                self._recovered()

    def close(self) -> None:
        with self._lock:
            self._drop()

    # -- under the lock -------------------------------------------------------------------
    def _write(self, line: bytes) -> None:
        fd = self._current()
        if self._torn:
            line = b"\n" + line  # the cut-short line before ends; this one stands alone
        written = os.write(fd, line)
        if written != len(line):
            self._torn = True
            raise OSError(f"wrote {written} of {len(line)} bytes (is the disk full?)")
        self._torn = False

    def _current(self) -> int:
        """The descriptor of the file now at the path: the one open, unless the file was
        moved or deleted (by logrotate) since it was opened."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            found = None
        if (
            self._fd is not None
            and found is not None
            and (found.st_dev, found.st_ino) == self._identity
        ):
            return self._fd
        return self._reopen()

    def _reopen(self) -> int:
        self._drop()
        fd = os.open(self.path, _FLAGS, 0o600)
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise OSError(f"{self.path} is not a regular file")
        except BaseException:
            os.close(fd)
            raise
        identity = (opened.st_dev, opened.st_ino)
        if identity != self._identity:
            self._torn = False  # a line cut short stays in the file it was cut in
            if stat.S_IMODE(opened.st_mode) & 0o077:
                log.warning(
                    "the audit file is readable or writable by other users; chmod 600 it",
                    extra={"path": str(self.path)},
                )
        self._fd, self._identity = fd, identity
        return fd

    def _drop(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):  # nothing is lost with a descriptor let go
                os.close(fd)

    def _failed(self, exc: OSError) -> None:
        self.failures += 1
        self._lost += 1
        self._drop()  # the next line opens the path afresh
        reason = _reason(exc)
        if reason != self._failing:
            log.error(
                "could not append to the audit file: events are in the database only",
                extra={"path": str(self.path), "error": reason, "failures": self.failures},
            )
            self._failing = reason

    def _recovered(self) -> None:
        if self._failing is None:
            return
        log.warning(
            "the audit file is written again; events in the meantime are in the database only",
            extra={"path": str(self.path), "lost": self._lost, "failures": self.failures},
        )
        self._failing, self._lost = None, 0


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)
