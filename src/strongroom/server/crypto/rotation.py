"""KEK rotation: add a new active KEK, rewrap every data key under it, retire the rest.

Data keys are those of every kind of sealed data storage holds (secret versions, and the
step results that running task executions hold sealed): storage lists them alike, each
row with what rebuilds its :class:`~.context.SealContext`.

Each batch commits on its own and swaps a row's (KEK id, wrapped DEK) pair in one row
update, so a crash leaves every row readable under a KEK still in the keyring. Running
the rotation again resumes the unfinished one instead of adding another KEK.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ..storage import Store
from .barrier import Barrier
from .context import SealContext


@dataclass(frozen=True)
class RotationReport:
    active_kek_id: int
    resumed: bool
    rewrapped: int
    retired_kek_ids: list[int]


def rotate(
    store: Store,
    barrier: Barrier,
    *,
    batch_size: int = 500,
    on_batch: Callable[[int], None] | None = None,
) -> RotationReport:
    """Rotate to a new KEK, or finish a rotation that was interrupted."""
    if batch_size < 1:
        # An empty batch reads as "nothing left to rewrap": the old KEK would be retired
        # with every data key still under it.
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    now = dt.datetime.now(dt.UTC)
    with store.write() as tx:
        entries = tx.keyring.entries(for_update=True)
        resumed = any(e.state == "draining" for e in entries)
        if not resumed:
            new_id = max(e.id for e in entries) + 1
            for entry in entries:
                if entry.state == "active":
                    tx.keyring.set_state(entry.id, "draining")
            tx.keyring.insert_entry(barrier.new_kek_entry(new_id, "active", now))
    barrier.reload()
    keyring = barrier.keyring

    rewrapped = 0
    while True:
        with store.write() as tx:
            active = tx.keyring.active_kek_id()
            others = [e.id for e in tx.keyring.entries() if e.id != active]
            rows = tx.keyring.sealed_under(others, batch_size)
            if not rows:
                retired = [e.id for e in tx.keyring.entries() if e.state == "draining"]
                for kek_id in retired:
                    tx.keyring.set_state(kek_id, "retired", dt.datetime.now(dt.UTC))
                return RotationReport(active, resumed, rewrapped, retired)
            tx.keyring.replace_wrapped_deks(
                [
                    (row, keyring.rewrap(SealContext(row.kind, row.parts), row.sealed, active))
                    for row in rows
                ]
            )
        rewrapped += len(rows)
        if on_batch is not None:
            on_batch(rewrapped)
