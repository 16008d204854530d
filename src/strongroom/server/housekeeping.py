"""What the scheduler does at each tick: start the rotations that are due, and purge the
deleted secrets whose recovery window has ended.

Plain functions of the store and the time, safe to run from any number of processes at
once: a due rotation is claimed by moving its ``next_rotation_at`` in the transaction
that records its execution, whose id is derived from the secret and the due time, so a
tick repeated after a crash, or run by two processes, starts it once. The durable engine
(:mod:`.tasks.engine`) calls them from a DBOS scheduled workflow and enqueues the
executions they return.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Final

from . import trail
from .storage import ExecutionRecord, SecretRecord, Store
from .tasks.status import QUEUED
from .trail import Action, Actor

# The namespace of rotation execution ids: uuid5(namespace, "<secret id>/<due time>").
_ROTATIONS: Final = uuid.UUID("5b0c3f4e-8f0a-4d0e-9a57-3c2a1f6b9e01")
BATCH: Final = 100


def rotation_execution_id(secret_id: str, due: dt.datetime) -> str:
    """The id of the execution that rotates ``secret_id`` for the rotation due at ``due``:
    the same in every process, so that one claim is one execution."""
    return str(uuid.uuid5(_ROTATIONS, f"{secret_id}/{due.astimezone(dt.UTC).isoformat()}"))


def start_due_rotations(
    store: Store, now: dt.datetime, limit: int = BATCH
) -> list[ExecutionRecord]:
    """Claim every rotation due at ``now`` (up to ``limit``) and record a queued execution
    of its task for each, run for the key that set the policy; the executions to enqueue
    (those claimed earlier and not yet enqueued, after a crash, too)."""
    with store.read() as tx:
        due = tx.secrets.due_for_rotation(now, limit)
    started: list[ExecutionRecord] = []
    for secret in due:
        execution = _claim(store, secret, now)
        if execution is not None:
            started.append(execution)
    return started


def _claim(store: Store, secret: SecretRecord, now: dt.datetime) -> ExecutionRecord | None:
    assert secret.next_rotation_at is not None
    rotation, due = secret.rotation, secret.next_rotation_at
    execution_id = rotation_execution_id(secret.id, due)
    with store.write() as tx:
        found = tx.executions.by_id(execution_id)
        if found is not None:
            return found  # claimed before a crash; enqueueing it again is harmless
        if rotation is None:
            return None
        # A server down for a month starts one rotation, not thirty.
        next_at = max(due + rotation.every, now + rotation.every)
        if not tx.secrets.claim_rotation(secret.id, due, next_at):
            return None  # another process claimed it, or the policy changed meanwhile
        actor = Actor.on_behalf(secret.tenant_id, rotation.key_id)
        task = tx.tasks.by_id(secret.tenant_id, rotation.task_id)
        if task is None:
            trail.record(
                tx,
                trail.event(
                    actor,
                    Action.ROTATE,
                    "failed",
                    secret_name=secret.name,
                    secret_id=secret.id,
                    detail=f"task {rotation.task_id} no longer exists; the current version is kept",
                ),
            )
            return None
        execution = ExecutionRecord(
            id=execution_id,
            tenant_id=secret.tenant_id,
            task_id=task.id,
            status=QUEUED,
            steps=task.steps,
            input={"secret": secret.name, "due": due.isoformat()},
            output=None,
            error=None,
            created_by=rotation.key_id,
            created_at=now,
            updated_at=now,
            rotation_of=secret.id,
        )
        tx.executions.insert(execution)
        trail.record(
            tx,
            trail.event(
                actor,
                Action.ROTATE,
                "started",
                secret_name=secret.name,
                secret_id=secret.id,
                detail=f"execution {execution_id}",
            ),
        )
    return execution


def purge_ended(store: Store, now: dt.datetime, batch: int = 200) -> int:
    """Purge the deleted secrets of every tenant whose recovery window has ended, each
    recorded; how many were purged."""
    purged = 0
    while True:
        with store.write() as tx:
            due = tx.secrets.due_for_purge(now, batch)
            for secret in due:
                tx.secrets.delete(secret.id)
                trail.record(
                    tx,
                    trail.event(
                        Actor(secret.tenant_id, None),
                        Action.PURGE,
                        "success",
                        secret_name=secret.name,
                        secret_id=secret.id,
                        detail="purged: its recovery window ended",
                    ),
                )
        purged += len(due)
        if len(due) < batch:
            return purged
