"""Sealed data as storage holds it, and where each kind of it is stored.

Storage never sees a plaintext: it keeps :class:`Sealed` ciphertext made by
:mod:`strongroom.server.crypto`. Every table that holds sealed data says so with a
:class:`SealedTable` (secret versions in :mod:`.secrets`, step results in
:mod:`.executions`), and rotation reaches them all through the keyring area
(:mod:`.keyring`) without knowing which is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row


@dataclass(frozen=True, slots=True)
class Sealed:
    """A value encrypted under a data key, and that data key wrapped under a KEK."""

    kek_id: int
    wrapped_dek: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class SealedRow:
    """One row's sealed data, whatever its kind: rotation rebuilds its ``SealContext``
    from ``kind`` and :attr:`parts`, and finds the row again by ``key``."""

    kind: str
    tenant_id: str
    key: tuple[str | int, ...]  # the row's key: (secret id, version), (execution id, index)
    sealed: Sealed

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts of the row's seal context: its tenant, then its key."""
        return (self.tenant_id, *(str(part) for part in self.key))


class SealedTable:
    """A table holding one kind of sealed data in ``kek_id``, ``wrapped_dek`` and
    ``ciphertext`` columns: how to list its rows under some KEKs, how to swap a row's
    wrapped data key, and how many rows each KEK wraps. ``tenant`` is the column naming
    the row's tenant (of a joined table when ``source`` joins one)."""

    def __init__(
        self,
        kind: str,
        table: sa.Table,
        key: Sequence[sa.Column[Any]],
        tenant: sa.Column[str],
        source: sa.FromClause | None = None,
    ) -> None:
        c = table.c
        self.kind = kind
        self.key_names = tuple(f"b_{column.name}" for column in key)
        # Built once, with bound parameters: rotation runs them once per batch and row.
        self.under_keks = (
            sa.select(tenant.label("tenant_id"), *key, c.kek_id, c.wrapped_dek, c.ciphertext)
            .select_from(table if source is None else source)
            .where(c.kek_id.in_(sa.bindparam("kek_ids", expanding=True)), c.ciphertext.is_not(None))
            .order_by(*key)
            .limit(sa.bindparam("limit"))
        )
        self.replace_wrapped_dek = (
            table.update()
            .where(
                *(
                    column == sa.bindparam(name)
                    for column, name in zip(key, self.key_names, strict=True)
                ),
                c.kek_id == sa.bindparam("b_old_kek_id"),
            )
            .values(kek_id=sa.bindparam("b_kek_id"), wrapped_dek=sa.bindparam("b_wrapped_dek"))
        )
        # How many data keys each KEK wraps: what decides whether a retired KEK may go.
        self.count_by_kek = (
            sa.select(c.kek_id, sa.func.count()).where(c.ciphertext.is_not(None)).group_by(c.kek_id)
        )

    def row(self, found: Row[Any]) -> SealedRow:
        tenant_id, *key, kek_id, wrapped_dek, ciphertext = tuple(found)
        sealed = Sealed(kek_id, bytes(wrapped_dek), bytes(ciphertext))
        return SealedRow(self.kind, tenant_id, tuple(key), sealed)

    def replacement(self, row: SealedRow, new: Sealed) -> dict[str, Any]:
        """The parameters of :attr:`replace_wrapped_dek` that move ``row`` to ``new``."""
        return {
            **dict(zip(self.key_names, row.key, strict=True)),
            "b_old_kek_id": row.sealed.kek_id,
            "b_kek_id": new.kek_id,
            "b_wrapped_dek": new.wrapped_dek,
        }
