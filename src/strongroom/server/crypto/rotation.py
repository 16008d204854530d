"""KEK rotation: add a new active KEK, rewrap every data key under it, retire the rest;
and, later, destroy the retired KEKs.

Data keys are those of every kind of sealed data storage holds (secret versions, and the
step results that running task executions hold sealed): storage lists them alike, each
row with what rebuilds its :class:`~.context.SealContext`.

Each batch commits on its own and swaps a row's (KEK id, wrapped DEK) pair in one row
update, so a crash leaves every row readable under a KEK still in the keyring. Running
the rotation again resumes the unfinished one instead of adding another KEK.

A retired KEK wraps nothing (the keyring refuses to use it, see :mod:`.keyring`), so its
key material can go: :func:`destroy_retired` deletes it, keeping the entry's row so its
id is never reused. Rotation refuses to start while a master-key rekey (:mod:`.rekey`)
is under way: a KEK added meanwhile would be wrapped under one master key only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ..storage import Store, Transaction
from .barrier import Barrier
from .context import SealContext
from .rekey import in_progress as rekey_in_progress


class RotationRefused(Exception):
    """The rotation cannot start now; the message says why and what to do."""


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
        # The barrier rows first, locked as a rekey's steps lock them: one of the two
        # waits for the other, and this one then sees the rekey and stops.
        roles = barrier.roles(tx, lock="update")
        entries = tx.keyring.entries(for_update=True)
        if rekey_in_progress(tx):
            raise RotationRefused(
                "a master-key rekey is in progress: finish it (`strongroom master-key "
                "rekey`) or abandon it (`strongroom master-key rekey --abort`), then rotate"
            )
        resumed = any(e.state == "draining" for e in entries)
        if not resumed:
            new_id = max(e.id for e in entries) + 1
            for entry in entries:
                if entry.state == "active":
                    tx.keyring.set_state(entry.id, "draining")
            tx.keyring.insert_entry(barrier.new_kek_entry(roles, new_id, "active", now))
    barrier.reload()
    keyring = barrier.keyring

    rewrapped = 0
    while True:
        with store.write() as tx:
            active = tx.keyring.active_kek_id()
            # Only the draining KEKs: a retired one wraps nothing that rotation left, and
            # what it still wraps stays refused rather than laundered under the active KEK.
            others = [e.id for e in tx.keyring.entries() if e.state == "draining"]
            rows = tx.keyring.sealed_under(others, batch_size)
            if not rows:
                retired = [e.id for e in tx.keyring.entries() if e.state == "draining"]
                for kek_id in retired:
                    tx.keyring.set_state(kek_id, "retired", dt.datetime.now(dt.UTC))
                break
            tx.keyring.replace_wrapped_deks(
                [
                    (row, keyring.rewrap(SealContext(row.kind, row.parts), row.sealed, active))
                    for row in rows
                ]
            )
        rewrapped += len(rows)
        if on_batch is not None:
            on_batch(rewrapped)
    # Retired from now on, here at once; in other processes at their next heartbeat.
    barrier.reload()
    return RotationReport(active, resumed, rewrapped, retired)


@dataclass(frozen=True)
class RetiredKeks:
    """The retired KEKs: those wrapping nothing, and those still wrapping data keys (by
    id, with how many), which are refused for decryption and kept."""

    drained: list[int]
    still_wrapping: dict[int, int]


def retired_keks(tx: Transaction) -> RetiredKeks:
    counts = tx.keyring.count_sealed_by_kek()
    retired = [e.id for e in tx.keyring.entries(for_update=True) if e.state == "retired"]
    return RetiredKeks(
        [kek for kek in retired if not counts.get(kek)],
        {kek: counts[kek] for kek in retired if counts.get(kek)},
    )


def destroy_retired(store: Store, *, only: list[int] | None = None) -> RetiredKeks:
    """Delete the key material of every drained retired KEK (of those in ``only``, when
    given: the ones an operator confirmed), in one transaction. Returns what was
    destroyed and what was kept because it still wraps data keys."""
    with store.write() as tx:
        found = retired_keks(tx)
        destroyed = [kek for kek in found.drained if only is None or kek in only]
        for kek_id in destroyed:
            tx.keyring.destroy_entry(kek_id)
    return RetiredKeks(destroyed, found.still_wrapping)
