"""The barrier and the keyring as stored: the master key's ciphertexts (barrier rows), the
key-encryption keys (KEKs), and every row of sealed data, as rotation sees them.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from itertools import groupby

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
class KeyringEntry:
    id: int
    wrapped_key: bytes
    state: str  # "active", "draining" (being rewrapped away from) or "retired"
    created_at: dt.datetime
    retired_at: dt.datetime | None


class KeyringStorage(ABC):
    # -- the barrier ----------------------------------------------------------------------
    @abstractmethod
    def barrier_row(self, row: BarrierRow) -> bytes | None:
        """The row's ciphertext, or None before the first unseal that wrote it."""

    @abstractmethod
    def insert_barrier_row(self, row: BarrierRow, ciphertext: bytes, at: dt.datetime) -> None:
        """Raises :class:`NameTaken` when another process wrote the row first."""

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

    def entries(self, *, for_update: bool = False) -> list[KeyringEntry]:
        stmt = sa.select(t.keyring).order_by(t.keyring.c.id)
        rows = self.conn.execute(stmt.with_for_update() if for_update else stmt)
        return [
            KeyringEntry(r.id, bytes(r.wrapped_key), r.state, r.created_at, r.retired_at)
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
