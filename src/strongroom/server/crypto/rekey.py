"""Rekey: move everything the master key wraps to a new master key while servers serve.

Only the KEKs and the barrier rows (the verifier, the API-key HMAC key) are under the
master key; sealed data is under the KEKs and does not change. The rekey runs in two
phases over the ``*_next`` columns (docs/rekey.md tells the whole story):

1. :func:`begin` gives each KEK and barrier row a copy under the incoming key, in batches
   of their own transactions, the verifier's copy last: once it is there every row has
   one, and a process holding either key can unseal. Idempotent: a copy already there is
   kept (it was checked to open with the same key).
2. Processes pick up the incoming key (:meth:`.Barrier.refresh` rereads their key file)
   and say so in ``barrier_holders``.
3. :func:`finish`, in one transaction, and only when no live process holds only the old
   key: every copy becomes the row's own. From then on the old key opens nothing.

:func:`abort` drops the copies instead, when no live process holds only the new key.
:func:`rekey` runs the steps in order from any point a killed run left, and
:class:`KeyFileRollout` rolls a generated key into a key file around them.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..storage import BarrierRow, Store, Transaction
from ..storage.keyring import BarrierCiphertext, BarrierHolder, KeyringEntry
from . import envelope
from .barrier import Barrier, KeyRoles, barrier_row_context, kek_context
from .context import SealContext
from .envelope import IntegrityFailure
from .masterkey import (
    MasterKeyError,
    key_id,
    read_key_file,
    remove_key_file,
    write_key_file,
)


class RekeyRefused(Exception):
    """The rekey cannot go on now; the message says why and what to do."""


class AnotherRekey(RekeyRefused):
    """A rekey to a master key other than the one given is under way."""


class HoldersBehind(RekeyRefused):
    """Live processes do not hold the key the next step leaves the barrier under."""

    def __init__(self, holders: list[HolderStatus], key: str, step: str, gone_after: float):
        self.holders = holders
        self.key = key
        names = "; ".join(h.describe() for h in holders)
        super().__init__(
            f"cannot {step}: {len(holders)} live process(es) do not hold master key id "
            f"{key}: {names}. Give each the key (a line of its STRONGROOM_MASTER_KEY_FILE, "
            "which it rereads every STRONGROOM_BARRIER_HEARTBEAT_SECONDS, or a restart with "
            f"it), or stop it: a process not seen for {gone_after:g} s counts as gone"
        )


@dataclass(frozen=True)
class HolderStatus:
    holder: BarrierHolder
    seen_ago: float  # seconds, by the database's clock
    live: bool

    def describe(self) -> str:
        h = self.holder
        return (
            f"{h.hostname} pid {h.pid} (key ids {', '.join(h.master_key_ids) or 'none'}; "
            f"last seen {self.seen_ago:.1f} s ago)"
        )


def holder_statuses(tx: Transaction, gone_after: float) -> list[HolderStatus]:
    now = tx.keyring.clock()
    found = []
    for holder in tx.keyring.holders():
        ago = max(0.0, (now - holder.seen_at).total_seconds())
        found.append(HolderStatus(holder, ago, ago <= gone_after))
    return found


def _behind(tx: Transaction, barrier: Barrier, key: str, gone_after: float) -> list[HolderStatus]:
    """The live processes, other than this one, that do not hold master key ``key``."""
    return [
        status
        for status in holder_statuses(tx, gone_after)
        if status.live
        and status.holder.process_id != barrier.process_id
        and key not in status.holder.master_key_ids
    ]


def in_progress(tx: Transaction) -> bool:
    """Whether anything is stored under an incoming master key: a rekey has begun and
    has neither finished nor been abandoned."""
    return any(row.next_sealed is not None for row in tx.keyring.barrier_rows()) or any(
        entry.wrapped_next is not None for entry in tx.keyring.entries()
    )


# -- what is under the master key ---------------------------------------------------------
@dataclass(frozen=True)
class _Wrapped:
    """One ciphertext under the master key: a barrier row or a KEK, and its copy."""

    what: str
    ctx: SealContext
    sealed: bytes
    next_sealed: bytes | None
    write_next: Callable[[Transaction, bytes], None]


def _wrapped(tx: Transaction, *, lock: bool = False) -> list[_Wrapped]:
    """Every ciphertext under the master key, the verifier last (its copy is the mark of
    a complete first phase)."""

    def kek(entry: KeyringEntry) -> _Wrapped:
        return _Wrapped(
            f"keyring entry {entry.id}",
            kek_context(entry.id),
            entry.wrapped_key,
            entry.wrapped_next,
            lambda tx, blob: tx.keyring.set_wrapped_next(entry.id, blob),
        )

    def row(found: BarrierCiphertext) -> _Wrapped:
        return _Wrapped(
            f"barrier row {found.row}",
            barrier_row_context(found.row),
            found.sealed,
            found.next_sealed,
            lambda tx, blob: tx.keyring.set_barrier_next(found.row, blob),
        )

    entries = [kek(e) for e in tx.keyring.entries(for_update=lock) if e.state != "destroyed"]
    rows = tx.keyring.barrier_rows()
    others = [row(r) for r in rows if r.row != BarrierRow.VERIFIER]
    verifier = [row(r) for r in rows if r.row == BarrierRow.VERIFIER]
    return entries + others + verifier


def _opens(key: AESGCM, blob: bytes, ctx: SealContext) -> bytes | None:
    try:
        return envelope.decrypt(key, blob, ctx.aad)
    except IntegrityFailure:
        return None


Target = Literal["current", "begun", "fresh"]


def target(tx: Transaction, new_key: bytes) -> Target:
    """Where the barrier stands with respect to ``new_key``: already the current key
    (a rekey to it finished), the incoming key of a rekey begun (some copies made, each
    under it), or neither with no rekey under way. A rekey under way to another key is
    :class:`AnotherRekey`."""
    new = AESGCM(new_key)
    wrapped = _wrapped(tx)
    verifier = wrapped[-1]
    copies = [w for w in wrapped if w.next_sealed is not None]
    if not copies and _opens(new, verifier.sealed, verifier.ctx) is not None:
        return "current"
    for w in copies:
        assert w.next_sealed is not None
        if _opens(new, w.next_sealed, w.ctx) is None:
            raise AnotherRekey(
                f"a rekey to another master key is under way ({w.what} has a copy that master "
                f"key id {key_id(new_key)} does not open): give that rekey's key with "
                "--new-key-file to finish it, or abandon it with `strongroom master-key "
                "rekey --abort`"
            )
    return "begun" if copies else "fresh"


# -- the phases -----------------------------------------------------------------------------
def begin(
    store: Store,
    barrier: Barrier,
    new_key: bytes,
    *,
    batch_size: int = 100,
    on_batch: Callable[[int, int], None] | None = None,
) -> None:
    """Copy every KEK and barrier row under ``new_key`` (phase 1), or finish copying.

    Each batch is a transaction of its own that locks the barrier rows first, as a
    rotation adding a KEK does: a KEK added before a batch is copied by a later one, and
    a rotation after the first batch sees the rekey and refuses. ``on_batch(done,
    total)`` is called after each batch commits.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    new = AESGCM(new_key)
    while True:
        with store.write() as tx:
            roles = barrier.roles(tx, lock="update")
            if target(tx, new_key) == "current":
                raise RekeyRefused(f"master key id {key_id(new_key)} is the current key already")
            wrapped = _wrapped(tx, lock=True)
            missing = [w for w in wrapped if w.next_sealed is None]
            if not missing:
                return
            # The verifier's copy in a batch of its own, once all the others are there.
            batch = [w for w in missing if w is not wrapped[-1]][:batch_size] or missing
            for w in batch:
                w.write_next(tx, _copy(roles, new, w))
            done = len(wrapped) - len(missing) + len(batch)
        if on_batch is not None:
            on_batch(done, len(wrapped))


def _copy(roles: KeyRoles, new: AESGCM, w: _Wrapped) -> bytes:
    if roles.current is None:
        raise RekeyRefused(
            f"{w.what} has no copy under the incoming key, and making one needs the current "
            "master key, which this process does not hold"
        )
    return envelope.encrypt(new, roles.open(w.sealed, None, w.ctx, w.what), w.ctx.aad)


def finish(store: Store, barrier: Barrier, new_key: bytes, *, gone_after: float) -> None:
    """Make every copy under ``new_key`` its row's own, in one transaction (phase 2).

    Refused (:class:`HoldersBehind`) while a live process other than this one does not
    hold ``new_key``: that process could not unseal again, nor load a KEK added later.
    The barrier rows are locked first, so a process unsealing now either registered
    before this looks at the holders, or unseals after this commits (and then with the
    new key or not at all).
    """
    new = AESGCM(new_key)
    new_id = key_id(new_key)
    with store.write() as tx:
        roles = barrier.roles(tx, lock="update")
        where = target(tx, new_key)
        if where == "current":
            return  # finished already (by another run)
        if where == "fresh":
            raise RekeyRefused(f"no rekey to master key id {new_id} is under way")
        behind = _behind(tx, barrier, new_id, gone_after)
        if behind:
            raise HoldersBehind(behind, new_id, "finish the rekey", gone_after)
        for w in _wrapped(tx, lock=True):
            # A KEK added after its batch, or a row the first phase has not reached.
            copy = w.next_sealed if w.next_sealed is not None else _copy(roles, new, w)
            plaintext = _opens(new, copy, w.ctx)
            if plaintext is None:
                raise AnotherRekey(f"{w.what}'s copy does not open with the incoming key")
            if roles.current is not None and plaintext != roles.open(w.sealed, None, w.ctx, w.what):
                raise RekeyRefused(f"{w.what}'s copy differs from it: abort and rekey again")
            if w.next_sealed is None:
                w.write_next(tx, copy)
        tx.keyring.promote_next()
        # The holders gone by now are forgotten: nothing is waited for them any more.
        tx.keyring.remove_holders_seen_before(tx.keyring.clock() - dt.timedelta(seconds=gone_after))


def abort(store: Store, barrier: Barrier, *, gone_after: float) -> bool:
    """Drop every copy under an incoming key; False when no rekey was under way.

    Refused while a live process holds only the incoming key (it unsealed through the
    copies, and would be left with nothing)."""
    with store.write() as tx:
        roles = barrier.roles(tx, lock="update")
        if not in_progress(tx):
            return False
        if roles.current is None:
            raise RekeyRefused(
                "abandoning a rekey needs the current master key, and this process holds "
                "only the incoming one"
            )
        behind = _behind(tx, barrier, roles.current, gone_after)
        if behind:
            raise HoldersBehind(behind, roles.current, "abandon the rekey", gone_after)
        tx.keyring.clear_next()
    return True


# -- the key file -----------------------------------------------------------------------------
class KeyFileRollout:
    """A configured key file that a rekey rolls its new key into.

    The new key is written first to ``FILE.next``, durably, before any row depends on
    it; once the copies are made the file holds both keys (the running processes reread
    it), and once the rekey finished only the new one, and ``FILE.next`` goes. Each step
    replaces a whole file atomically (:func:`~.masterkey.write_key_file`).
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.next_file = file.with_name(file.name + ".next")

    def pending_key(self) -> bytes | None:
        """The key being rolled out, if a run made one."""
        if not self.next_file.exists():
            return None
        keys = read_key_file(self.next_file)
        if len(keys) != 1:
            raise MasterKeyError(f"{self.next_file} must hold one key")
        return keys[0]

    def create_pending(self) -> bytes:
        key = envelope.new_key()
        write_key_file(self.next_file, [key])
        return key

    def holds(self, keys: Sequence[bytes]) -> None:
        """Make the file hold ``keys`` (if it holds other ones)."""
        try:
            unchanged = read_key_file(self.file) == list(keys)
        except MasterKeyError:
            unchanged = False
        if not unchanged:
            write_key_file(self.file, keys)

    def settle(self, keys: Sequence[bytes]) -> None:
        """The rollout is over: the file holds ``keys``, and ``FILE.next`` is gone."""
        self.holds(keys)
        remove_key_file(self.next_file)


# -- the whole run ------------------------------------------------------------------------
@dataclass(frozen=True)
class RekeyReport:
    old_key_id: str | None
    new_key_id: str
    already_finished: bool


@dataclass
class RekeyRun:
    """One run of ``strongroom master-key rekey``, from wherever a killed run left off.

    ``configured`` are the keys the process was started with (what the barrier holds);
    the new key is ``new_key`` (``--new-key-file``), else the one a rollout of
    ``rollout`` (the configured key file) already made, else a configured key that is
    the incoming one, else a new one, made only when no rekey is under way.
    """

    store: Store
    barrier: Barrier
    configured: Sequence[bytes]
    rollout: KeyFileRollout | None
    new_key: bytes | None = None
    batch_size: int = 100
    gone_after: float = 15.0
    wait: float = 0.0
    poll: float = 0.5
    on_event: Callable[[str], None] = lambda _: None
    on_batch: Callable[[int, int], None] | None = None
    on_waiting: Callable[[list[HolderStatus], float], None] | None = None

    def run(self) -> RekeyReport:
        new_key = self._new_key()
        new_id = key_id(new_key)
        with self.store.read() as tx:
            where = target(tx, new_key)
            current = self._configured(self.barrier.roles(tx).current)
        if where == "current":
            if self.rollout is not None:
                self.rollout.settle([new_key])
            self.on_event(f"master key id {new_id} is the current key: nothing left to do")
            return RekeyReport(None, new_id, already_finished=True)
        old_id = key_id(current) if current is not None else None
        self.barrier.holds(new_key)
        begin(self.store, self.barrier, new_key, batch_size=self.batch_size, on_batch=self.on_batch)
        self.on_event(f"every KEK and barrier row has a copy under master key id {new_id}")
        if self.rollout is not None and current is not None:
            self.rollout.holds([current, new_key])
            self.on_event(f"{self.rollout.file} holds both keys; processes reading it pick it up")
        self._finish(new_key)
        self.on_event(f"rekey finished: master key id {old_id} no longer opens the barrier")
        if self.rollout is not None:
            self.rollout.settle([new_key])
            self.on_event(f"{self.rollout.file} holds only master key id {new_id}")
        return RekeyReport(old_id, new_id, already_finished=False)

    def abort(self) -> bool:
        """Abandon the rekey under way; False when there was none (a rollout's files are
        put back either way)."""
        aborted = abort(self.store, self.barrier, gone_after=self.gone_after)
        if self.rollout is not None:
            with self.store.read() as tx:
                current = self._configured(self.barrier.roles(tx).current)
            if current is None:
                raise RekeyRefused("this process does not hold the current master key")
            self.rollout.settle([current])
        return aborted

    def _configured(self, wanted: str | None) -> bytes | None:
        return next((k for k in self.configured if key_id(k) == wanted), None)

    def _new_key(self) -> bytes:
        if self.new_key is not None:
            return self.new_key
        if self.rollout is not None:
            pending = self.rollout.pending_key()
            if pending is not None:
                self.on_event(f"resuming the rollout of master key id {key_id(pending)}")
                return pending
        with self.store.read() as tx:
            roles = self.barrier.roles(tx)
            rekeying = in_progress(tx)
        incoming = self._configured(roles.incoming)
        if incoming is not None:
            return incoming
        unknown = [key_id(k) for k in self.configured if key_id(k) != roles.current]
        if unknown:
            # Rolled in by hand, or a retired key left behind: which is it? Not guessed.
            raise RekeyRefused(
                f"the configured key file holds master key id {', '.join(unknown)}, which "
                "opens nothing in this database: remove it, or rekey to it with "
                "--new-key-file"
            )
        if rekeying:
            raise AnotherRekey(
                "a rekey is under way and this command does not have its new key: give it "
                "with --new-key-file, or abandon the rekey with `strongroom master-key rekey "
                "--abort`"
            )
        if self.rollout is None:
            raise RekeyRefused(
                "the master key does not come from a file this command could roll a new key "
                "into: give the new key with --new-key-file (`strongroom master-key generate "
                "--file PATH` makes one)"
            )
        key = self.rollout.create_pending()
        self.on_event(f"wrote a new master key, id {key_id(key)}, to {self.rollout.next_file}")
        return key

    def _finish(self, new_key: bytes) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                finish(self.store, self.barrier, new_key, gone_after=self.gone_after)
                return
            except HoldersBehind as behind:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                if self.on_waiting is not None:
                    self.on_waiting(behind.holders, left)
                time.sleep(min(self.poll, left))
