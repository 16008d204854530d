"""KEK rotation: add a new active KEK, rewrap every data key under it, retire the rest.

Data keys are those of secret versions and those of the step results that running task
executions hold sealed (few, and wiped when their execution ends).

Each batch commits on its own and swaps a version's (KEK id, wrapped DEK) pair in one
row update, so a crash leaves every version readable under a KEK still in the keyring.
Running the rotation again resumes the unfinished one instead of adding another KEK.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from ..storage.base import Store
from .keyring import STEP_RESULT, Keyring, step_result_context


@dataclass(frozen=True)
class RotationReport:
    active_kek_id: int
    resumed: bool
    rewrapped: int
    retired_kek_ids: list[int]


def rotate(
    store: Store,
    keyring: Keyring,
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
        entries = tx.keyring_entries(for_update=True)
        resumed = any(e.state == "draining" for e in entries)
        if not resumed:
            new_id = max(e.id for e in entries) + 1
            for entry in entries:
                if entry.state == "active":
                    tx.set_keyring_state(entry.id, "draining")
            tx.insert_keyring_entry(keyring.new_entry(new_id, "active", now))
    keyring.reload()

    rewrapped = 0
    while True:
        with store.write() as tx:
            active = tx.active_kek_id()
            others = [e.id for e in tx.keyring_entries() if e.id != active]
            batch = tx.versions_under_keks(others, batch_size) if others else []
            results = tx.step_results_under_keks(others, batch_size) if others and not batch else []
            if not batch and not results:
                retired = [e.id for e in tx.keyring_entries() if e.state == "draining"]
                for kek_id in retired:
                    tx.set_keyring_state(kek_id, "retired", dt.datetime.now(dt.UTC))
                return RotationReport(active, resumed, rewrapped, retired)
            tx.replace_wrapped_deks(
                [
                    (s.secret_id, s.version, s.sealed.kek_id, keyring.rewrap(s, active))
                    for s in batch
                ]
            )
            for result in results:
                context = step_result_context(result.tenant_id, result.execution_id, result.index)
                tx.replace_step_wrapped_dek(
                    result.execution_id,
                    result.index,
                    result.sealed.kek_id,
                    keyring.rewrap_blob(result.sealed, STEP_RESULT, context, active),
                )
        rewrapped += len(batch) + len(results)
        if on_batch is not None:
            on_batch(rewrapped)
