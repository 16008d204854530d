"""The barrier and the keyring as stored: the master key's ciphertexts (barrier rows), the
key-encryption keys (KEKs), the processes holding the barrier open, and every row of
sealed data, as rotation sees them.

During a rekey each barrier row and KEK is stored twice, under the current master key and
under the incoming one (``next_sealed``, ``wrapped_next``); finishing it promotes the
incoming copies in one transaction (:meth:`KeyringStorage.promote_next`).
"""

from __future__ import annotations

import datetime as dt
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from itertools import groupby
from typing import Literal

import sqlalchemy as sa

from . import schema as t
from .dialect import SQLArea
from .executions import SEALED_STEP_RESULTS
from .sealed import Sealed, SealedRow, SealedTable
from .secrets import SEALED_VALUES

# Every table holding sealed data, in the order rotation rewraps them. A new kind of
# sealed data adds its table here, and rotation rewraps it with no change of its own.
SEALED_DATA: tuple[SealedTable, ...] = (SEALED_VALUES, SEALED_STEP_RESULTS)
_SEALED_BY_KIND = {table.kind: table for table in SEALED_DATA}


class BarrierRow(IntEnum):
    """The rows of the ``barrier`` table: ciphertexts only the right master key opens."""

    VERIFIER = 1  # refuses a wrong master key at start-up
    # The API-key HMAC key, wrapped (the column is named for row 1; a row of its own kept
    # API keys free of a schema change).
    API_KEY_HMAC_KEY = 2


@dataclass(frozen=True, slots=True)
class BarrierCiphertext:
    """A barrier row: its plaintext sealed under the current master key and, during a
    rekey, under the incoming one."""

    row: int  # a BarrierRow (an int, so that a row added by a later version still reads)
    sealed: bytes
    next_sealed: bytes | None


@dataclass(frozen=True, slots=True)
class KeyringEntry:
    id: int
    # Empty once destroyed: a drained, retired KEK's material is deleted, its row kept so
    # that its id is never used again and a row still naming it is told apart.
    wrapped_key: bytes
    # "active", "draining" (being rewrapped away from), "retired" (drained: refused for
    # decryption) or "destroyed" (retired, and its key material deleted)
    state: str
    created_at: dt.datetime
    retired_at: dt.datetime | None
    wrapped_next: bytes | None = None  # during a rekey: wrapped under the incoming key


@dataclass(frozen=True, slots=True)
class BarrierHolder:
    """A process that has the barrier open, and the master keys it holds (by id only)."""

    process_id: str
    hostname: str
    pid: int
    master_key_ids: tuple[str, ...]
    started_at: dt.datetime
    seen_at: dt.datetime  # by the database's clock (:meth:`KeyringStorage.clock`)


# How a transaction locks the barrier rows it reads: "share" against a concurrent rekey
# finishing (or a KEK being added), "update" to be the one doing it.
BarrierLock = Literal["share", "update"]


class KeyringStorage(ABC):
    # -- the barrier ----------------------------------------------------------------------
    @abstractmethod
    def barrier_row(self, row: BarrierRow) -> bytes | None:
        """The row's ciphertext, or None before the first unseal that wrote it."""

    @abstractmethod
    def insert_barrier_row(self, row: BarrierRow, ciphertext: bytes, at: dt.datetime) -> None:
        """Raises :class:`NameTaken` when another process wrote the row first."""

    @abstractmethod
    def barrier_rows(self, *, lock: BarrierLock | None = None) -> list[BarrierCiphertext]:
        """Every barrier row, in row order, locked as ``lock`` says. Reading the barrier
        and then the keyring under a share lock sees both from one side of a rekey's end:
        the rows that change together are never read half-changed."""

    @abstractmethod
    def set_barrier_next(self, row: int, ciphertext: bytes) -> None: ...

    @abstractmethod
    def promote_next(self) -> None:
        """Each barrier row's and KEK's incoming-key copy becomes its own, and the copies
        are cleared: the end of a rekey, in the caller's one transaction."""

    @abstractmethod
    def clear_next(self) -> None:
        """Drop every incoming-key copy: a rekey abandoned."""

    # -- KEKs -----------------------------------------------------------------------------
    @abstractmethod
    def entries(self, *, for_update: bool = False) -> list[KeyringEntry]:
        """Every KEK; ``for_update`` locks them against a concurrent rotation."""

    @abstractmethod
    def insert_entry(self, entry: KeyringEntry) -> None: ...

    @abstractmethod
    def set_state(self, kek_id: int, state: str, retired_at: dt.datetime | None = None) -> None: ...

    @abstractmethod
    def active_kek_id(self) -> int:
        """The KEK new data keys are wrapped under, read inside this transaction."""

    @abstractmethod
    def set_wrapped_next(self, kek_id: int, wrapped: bytes) -> None: ...

    @abstractmethod
    def destroy_entry(self, kek_id: int) -> None:
        """Delete a KEK's key material (both copies), keeping its row as "destroyed"."""

    @abstractmethod
    def count_sealed_by_kek(self) -> dict[int, int]:
        """How many data keys of every kind of sealed data each KEK wraps."""

    # -- the processes holding the barrier open -------------------------------------------
    @abstractmethod
    def clock(self) -> dt.datetime:
        """The database's time: what ``seen_at`` is written and compared in, so that
        processes on hosts whose clocks disagree still agree on who was seen when."""

    @abstractmethod
    def put_holder(self, holder: BarrierHolder) -> None:
        """Record ``holder``, or update its keys and ``seen_at`` if it is recorded."""

    @abstractmethod
    def holders(self) -> list[BarrierHolder]:
        """Every recorded holder, by process id."""

    @abstractmethod
    def remove_holder(self, process_id: str) -> None: ...

    @abstractmethod
    def remove_holders_seen_before(self, cutoff: dt.datetime) -> int:
        """Forget the holders not seen since ``cutoff`` (gone); how many there were."""

    # -- sealed data, of every kind -------------------------------------------------------
    @abstractmethod
    def sealed_under(self, kek_ids: Sequence[int], limit: int) -> list[SealedRow]:
        """Up to ``limit`` rows of sealed data whose data key is wrapped under one of
        ``kek_ids``: secret versions, then step results."""

    @abstractmethod
    def replace_wrapped_deks(self, changes: Sequence[tuple[SealedRow, Sealed]]) -> None:
        """Swap each row's KEK id and wrapped data key for the new ones, where the row is
        still under the KEK it was listed under (else it is left alone). One statement is
        sent per kind for all its rows: a round trip per row dominated rotation on
        PostgreSQL."""


# -- SQL --------------------------------------------------------------------------------------
class SQLKeyringStorage(SQLArea, KeyringStorage):
    def barrier_row(self, row: BarrierRow) -> bytes | None:
        found = self._one(sa.select(t.barrier.c.verifier).where(t.barrier.c.id == int(row)))
        return bytes(found.verifier) if found else None

    def insert_barrier_row(self, row: BarrierRow, ciphertext: bytes, at: dt.datetime) -> None:
        with self.dialect.unique_violation_as_name_taken():
            self.conn.execute(
                t.barrier.insert().values(id=int(row), verifier=ciphertext, created_at=at)
            )

    def barrier_rows(self, *, lock: BarrierLock | None = None) -> list[BarrierCiphertext]:
        stmt = sa.select(t.barrier).order_by(t.barrier.c.id)
        if lock is not None:
            # PostgreSQL's FOR SHARE / FOR UPDATE; SQLite's write transactions are
            # serialised already, and a read one reads one snapshot.
            stmt = stmt.with_for_update(read=lock == "share")
        return [
            BarrierCiphertext(r.id, bytes(r.verifier), _bytes_or_none(r.next_sealed))
            for r in self.conn.execute(stmt)
        ]

    def set_barrier_next(self, row: int, ciphertext: bytes) -> None:
        self.conn.execute(
            t.barrier.update().where(t.barrier.c.id == row).values(next_sealed=ciphertext)
        )

    def promote_next(self) -> None:
        # Every SET expression reads the row as it was, on both databases.
        b, k = t.barrier.c, t.keyring.c
        self.conn.execute(
            t.barrier.update()
            .where(b.next_sealed.is_not(None))
            .values(verifier=b.next_sealed, next_sealed=None)
        )
        self.conn.execute(
            t.keyring.update()
            .where(k.wrapped_next.is_not(None))
            .values(wrapped_key=k.wrapped_next, wrapped_next=None)
        )

    def clear_next(self) -> None:
        self.conn.execute(t.barrier.update().values(next_sealed=None))
        self.conn.execute(t.keyring.update().values(wrapped_next=None))

    def entries(self, *, for_update: bool = False) -> list[KeyringEntry]:
        stmt = sa.select(t.keyring).order_by(t.keyring.c.id)
        rows = self.conn.execute(stmt.with_for_update() if for_update else stmt)
        return [
            KeyringEntry(
                r.id,
                bytes(r.wrapped_key),
                r.state,
                r.created_at,
                r.retired_at,
                _bytes_or_none(r.wrapped_next),
            )
            for r in rows
        ]

    def insert_entry(self, entry: KeyringEntry) -> None:
        self.conn.execute(t.keyring.insert().values(**asdict(entry)))

    def set_state(self, kek_id: int, state: str, retired_at: dt.datetime | None = None) -> None:
        self.conn.execute(
            t.keyring.update()
            .where(t.keyring.c.id == kek_id)
            .values(state=state, retired_at=retired_at)
        )

    def active_kek_id(self) -> int:
        # FOR SHARE (PostgreSQL; SQLite's write lock already covers it): a rotation that
        # retires this KEK waits until this transaction's new data key has committed.
        stmt = sa.select(t.keyring.c.id).where(t.keyring.c.state == "active")
        return int(self.conn.execute(stmt.with_for_update(read=True)).scalar_one())

    def set_wrapped_next(self, kek_id: int, wrapped: bytes) -> None:
        self.conn.execute(
            t.keyring.update().where(t.keyring.c.id == kek_id).values(wrapped_next=wrapped)
        )

    def destroy_entry(self, kek_id: int) -> None:
        self.conn.execute(
            t.keyring.update()
            .where(t.keyring.c.id == kek_id)
            .values(state="destroyed", wrapped_key=b"", wrapped_next=None)
        )

    def count_sealed_by_kek(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for table in SEALED_DATA:
            for kek_id, n in self.conn.execute(table.count_by_kek):
                counts[int(kek_id)] = counts.get(int(kek_id), 0) + int(n)
        return counts

    def clock(self) -> dt.datetime:
        if self.dialect.name == "postgresql":
            now: dt.datetime = self.conn.execute(sa.select(sa.func.now())).scalar_one()
            return now.astimezone(dt.UTC)
        # SQLite's processes share one host, and so one clock.
        return dt.datetime.now(dt.UTC)

    def put_holder(self, holder: BarrierHolder) -> None:
        h = t.barrier_holders.c
        values = {
            "hostname": holder.hostname,
            "pid": holder.pid,
            "master_key_ids": json.dumps(list(holder.master_key_ids)),
            "seen_at": holder.seen_at,
        }
        updated = self.conn.execute(
            t.barrier_holders.update().where(h.process_id == holder.process_id).values(**values)
        )
        if updated.rowcount == 0:
            self.conn.execute(
                t.barrier_holders.insert().values(
                    process_id=holder.process_id, started_at=holder.started_at, **values
                )
            )

    def holders(self) -> list[BarrierHolder]:
        stmt = sa.select(t.barrier_holders).order_by(t.barrier_holders.c.process_id)
        return [
            BarrierHolder(
                r.process_id,
                r.hostname,
                r.pid,
                tuple(json.loads(r.master_key_ids)),
                r.started_at,
                r.seen_at,
            )
            for r in self.conn.execute(stmt)
        ]

    def remove_holder(self, process_id: str) -> None:
        h = t.barrier_holders.c
        self.conn.execute(t.barrier_holders.delete().where(h.process_id == process_id))

    def remove_holders_seen_before(self, cutoff: dt.datetime) -> int:
        h = t.barrier_holders.c
        return int(self.conn.execute(t.barrier_holders.delete().where(h.seen_at < cutoff)).rowcount)

    def sealed_under(self, kek_ids: Sequence[int], limit: int) -> list[SealedRow]:
        found: list[SealedRow] = []
        for table in SEALED_DATA:
            if len(found) >= limit or not kek_ids:
                break
            params = {"kek_ids": list(kek_ids), "limit": limit - len(found)}
            found += [table.row(row) for row in self.conn.execute(table.under_keks, params)]
        return found

    def replace_wrapped_deks(self, changes: Sequence[tuple[SealedRow, Sealed]]) -> None:
        for kind, of_kind in groupby(changes, key=lambda change: change[0].kind):
            table = _SEALED_BY_KIND[kind]
            params = [table.replacement(row, new) for row, new in of_kind]
            # A list of parameter sets is an executemany: psycopg pipelines it, sqlite3
            # loops in C.
            self.conn.execute(table.replace_wrapped_dek, params)


def _bytes_or_none(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)
