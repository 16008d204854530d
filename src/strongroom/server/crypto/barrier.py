"""The barrier: the master key, and everything it wraps.

The master key never encrypts data. It opens the barrier's verifier (so a wrong key is
refused at start-up), unwraps the KEKs into the :class:`~.keyring.Keyring` (unsealing),
wraps each new KEK, and wraps the key API keys are hashed under.

That HMAC key is random, not derived from the master key, so that a change of master
key only rewraps it and every API key stays valid. Hashing a key's SHA-256, not the key,
let the keys stored by older versions as ``sha256hex(key)`` be converted once without
knowing them (see :meth:`Barrier._api_key_hmac_key`).

A process may hold two master keys while a rekey (:mod:`.rekey`) rolls a new one out:
every barrier row and KEK is then stored under both. Which held key is which is read
from the verifier row alone (:class:`KeyRoles`): the one its ``verifier`` opens with is
*current*, the one its ``next_sealed`` opens with is *incoming*. A process holding the
current key reads only the current copies, one holding only the incoming key only the
incoming copies; never a mix, so a copy planted under a key this process also holds is
never preferred to the one the verifier vouches for.

Every process that unseals records itself in ``barrier_holders`` with the ids of the keys
it holds (never the keys), and a long-running one keeps that row fresh with
:meth:`Barrier.refresh`, which also picks up a new key from its key file. A rekey
finishes only when no live process would be left holding only the old key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..storage import BarrierRow, KeyringEntry, NameTaken, Store, Transaction
from ..storage.keyring import BarrierCiphertext, BarrierHolder, BarrierLock
from . import envelope
from .context import SealContext
from .envelope import IntegrityFailure
from .keyring import Keyring
from .masterkey import MasterKeyError, key_id

log = logging.getLogger("strongroom.server.barrier")

# What the master key wraps, each bound to what it is.
VERIFIER = SealContext("barrier")
VERIFIER_PLAINTEXT = b"strongroom barrier verifier"
API_KEY_HMAC = SealContext("api-key-hmac")
_BARRIER_CONTEXTS = {BarrierRow.VERIFIER: VERIFIER, BarrierRow.API_KEY_HMAC_KEY: API_KEY_HMAC}


def kek_context(kek_id: int) -> SealContext:
    return SealContext("kek", (str(kek_id),))


def barrier_row_context(row: int) -> SealContext:
    """What barrier row ``row``'s ciphertext is bound to."""
    try:
        return _BARRIER_CONTEXTS[BarrierRow(row)]
    except ValueError:
        raise KeyringDamaged(
            f"barrier row {row} is unknown to this version of strongroom; upgrade it"
        ) from None


_LEGACY_HASH = re.compile(r"[0-9a-f]{64}")


def hash_api_key(mac_key: bytes, key: str) -> str:
    """What is stored for ``key`` and looked up: ``HMAC-SHA-256(mac_key, SHA-256(key))``."""
    return hmac.digest(mac_key, hashlib.sha256(key.encode()).digest(), "sha256").hex()


def rehash_legacy(mac_key: bytes, stored: str) -> str | None:
    """An older version's stored hash (``sha256hex(key)``) in the current form, or None
    when ``stored`` is not one: such a row never matched a key, and must not start to."""
    if not _LEGACY_HASH.fullmatch(stored):
        return None
    return hmac.digest(mac_key, bytes.fromhex(stored), "sha256").hex()


class UnsealError(Exception):
    """The barrier cannot be opened; the server must not start."""


class WrongMasterKey(UnsealError):
    """The configured master key is not the one this database was initialised with."""


class KeyringDamaged(UnsealError):
    """A ciphertext under the master key failed authentication although the key is right."""


def _opens(key: AESGCM, blob: bytes | None, ctx: SealContext) -> bool:
    if blob is None:
        return False
    try:
        envelope.decrypt(key, blob, ctx.aad)
    except IntegrityFailure:
        return False
    return True


class KeyRoles:
    """Which of the keys a process holds opens what, as the verifier row said when read.

    ``current`` and ``incoming`` are key ids (None: not held); ``rekeying`` says whether
    the verifier has an incoming copy (a rekey's copies are complete), held key or not.
    """

    __slots__ = ("_current", "_incoming", "current", "incoming", "rekeying")

    def __init__(self, held: Mapping[str, AESGCM], verifier: BarrierCiphertext) -> None:
        self.rekeying = verifier.next_sealed is not None
        self.current = next(
            (i for i, k in held.items() if _opens(k, verifier.sealed, VERIFIER)), None
        )
        self.incoming = next(
            (
                i
                for i, k in held.items()
                if i != self.current and _opens(k, verifier.next_sealed, VERIFIER)
            ),
            None,
        )
        self._current = held[self.current] if self.current else None
        self._incoming = held[self.incoming] if self.incoming else None

    @property
    def opens(self) -> bool:
        return self.current is not None or self.incoming is not None

    def open(self, sealed: bytes, next_sealed: bytes | None, ctx: SealContext, what: str) -> bytes:
        """The plaintext of a stored pair, from the current copy if this process holds the
        current key, else from the incoming copy."""
        try:
            if self._current is not None:
                return envelope.decrypt(self._current, sealed, ctx.aad)
            if self._incoming is None:
                raise WrongMasterKey("no master key this process holds opens the barrier")
            if next_sealed is None:
                raise UnsealError(
                    f"{what} has no copy under the incoming master key (id {self.incoming}) "
                    "yet: a rekey is still writing them. Run `strongroom master-key rekey` "
                    "again to finish its first phase, or give this process the current "
                    "master key too"
                )
            return envelope.decrypt(self._incoming, next_sealed, ctx.aad)
        except IntegrityFailure:
            raise KeyringDamaged(
                f"{what} failed authentication: the row was altered or copied from another "
                "database; restore it from a backup"
            ) from None

    def seal_current(self, plaintext: bytes, ctx: SealContext) -> bytes:
        if self._current is None:
            raise WrongMasterKey(
                "this needs the current master key, and this process holds only the "
                f"incoming one (id {self.incoming})"
            )
        return envelope.encrypt(self._current, plaintext, ctx.aad)


class Barrier:
    def __init__(
        self,
        master_key: bytes | Sequence[bytes],
        store: Store,
        *,
        key_source: Callable[[], Iterable[bytes]] | None = None,
    ) -> None:
        """``master_key`` is the key, or the keys (a key file holds two during a rekey);
        ``key_source``, when given, reads them again on each :meth:`refresh`."""
        keys = [master_key] if isinstance(master_key, bytes) else list(master_key)
        if not keys:
            raise MasterKeyError("no master key given")
        self._held: dict[str, AESGCM] = {key_id(key): AESGCM(key) for key in keys}
        self._key_source = key_source
        self._store = store
        self._keyring = Keyring(reload=self.reload)
        self._api_key_mac: bytes | None = None  # set by unseal(): None while sealed
        # This process's row in barrier_holders: an id of its own, not the pid, which
        # another host (or a restarted container) may have too.
        self.process_id = secrets.token_hex(16)
        self._started_at: dt.datetime | None = None
        self._released = False

    @property
    def keyring(self) -> Keyring:
        """The unwrapped KEKs, once :meth:`unseal` has loaded them."""
        self._mac_key()  # refuses while sealed
        return self._keyring

    @property
    def unsealed(self) -> bool:
        """Whether :meth:`unseal` has opened the barrier (what ``/readyz`` reports)."""
        return self._api_key_mac is not None

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The ids of the master keys this process holds."""
        return tuple(self._held)

    def holds(self, key: bytes) -> None:
        """Hold ``key`` too (a rekey's incoming key), until a :meth:`refresh` finds that
        it opens nothing."""
        self._held = {**self._held, key_id(key): AESGCM(key)}

    # -- start-up -------------------------------------------------------------------------
    def unseal(self) -> Keyring:
        """Check the master key against the stored verifier, load the KEKs, and record
        this process as a holder of the keys that open the barrier.

        On a new database this writes the verifier and the first KEK instead.
        """
        try:
            self._unseal()
        except NameTaken:
            # Another process initialised the barrier at the same moment: check against it.
            self._unseal()
        return self.keyring

    def _unseal(self) -> None:
        with self._store.write() as tx:
            now = dt.datetime.now(dt.UTC)
            held = self._held
            rows = {row.row: row for row in tx.keyring.barrier_rows(lock="share")}
            verifier = rows.get(BarrierRow.VERIFIER)
            fresh = verifier is None
            if verifier is None:
                first = next(iter(held.values()))
                sealed = envelope.encrypt(first, VERIFIER_PLAINTEXT, VERIFIER.aad)
                tx.keyring.insert_barrier_row(BarrierRow.VERIFIER, sealed, now)
                verifier = BarrierCiphertext(BarrierRow.VERIFIER, sealed, None)
            roles = KeyRoles(held, verifier)
            if fresh:
                tx.keyring.insert_entry(self.new_kek_entry(roles, 1, "active", now))
            if not roles.opens:
                raise WrongMasterKey(
                    "the master key does not match the one this database was initialised "
                    "or last rekeyed with (barrier verifier check failed; this process holds "
                    f"master key id {', '.join(held)}); refusing to start"
                )
            self._held = {i: k for i, k in held.items() if i in (roles.current, roles.incoming)}
            self._load(tx, roles)
            hmac_row = rows.get(BarrierRow.API_KEY_HMAC_KEY)
            self._api_key_mac = self._api_key_hmac_key(tx, roles, hmac_row, now)
            self._started_at = tx.keyring.clock()
            tx.keyring.put_holder(self._holder(self._started_at))
        log.info(
            "barrier unsealed",
            extra={"master_key_ids": list(self._held), "rekey_in_progress": roles.rekeying},
        )

    def roles(self, tx: Transaction, *, lock: BarrierLock | None = "share") -> KeyRoles:
        """Which held key opens what, read in ``tx`` (locking the barrier rows as said)."""
        return KeyRoles(self._held, self._verifier(tx, lock))

    def reload(self) -> None:
        """Load the KEKs again: another process may have added one (a rotation)."""
        with self._store.read() as tx:
            # The share lock: a rekey finishing swaps the verifier and the KEKs together,
            # and this reads both from the same side of it.
            roles = self.roles(tx)
            if not roles.opens:
                raise WrongMasterKey(
                    "no master key this process holds opens the barrier any more (a rekey "
                    f"finished without it: it holds {', '.join(self._held)}); restart it "
                    "with the new master key"
                )
            self._load(tx, roles)

    def _load(self, tx: Transaction, roles: KeyRoles) -> None:
        keks: dict[int, bytes] = {}
        refused: dict[int, str] = {}
        for entry in tx.keyring.entries():
            if entry.state == "destroyed":
                refused[entry.id] = entry.state
                continue
            kek = roles.open(
                entry.wrapped_key,
                entry.wrapped_next,
                kek_context(entry.id),
                f"keyring entry {entry.id}",
            )
            if entry.state == "retired":
                refused[entry.id] = entry.state
            else:
                keks[entry.id] = kek
        self._keyring.load(keks, refused)

    def new_kek_entry(
        self, roles: KeyRoles, kek_id: int, state: str, now: dt.datetime
    ) -> KeyringEntry:
        """A new random KEK, wrapped under the current master key, as entry ``kek_id``."""
        wrapped = roles.seal_current(envelope.new_key(), kek_context(kek_id))
        return KeyringEntry(kek_id, wrapped, state, now, None)

    # -- the processes holding the barrier open -----------------------------------------
    def _holder(self, seen_at: dt.datetime) -> BarrierHolder:
        return BarrierHolder(
            self.process_id,
            socket.gethostname()[:255],
            os.getpid(),
            tuple(self._held),
            self._started_at or seen_at,
            seen_at,
        )

    def refresh(self) -> None:
        """One heartbeat: read the key source again, hold each key that opens the barrier
        (a rekey's incoming key put in the key file), drop those that open nothing any
        more (the old key once a rekey finished), load the KEKs again (a KEK retired or
        destroyed since is refused from now on), and mark this process seen.

        A process none of whose keys opens the barrier keeps what it has in memory and
        says so in its log at every beat: it cannot unseal again, and no rekey should
        have finished without it (see docs/rekey.md).
        """
        candidates = dict(self._held)
        if self._key_source is not None:
            try:
                for key in self._key_source():
                    candidates.setdefault(key_id(key), AESGCM(key))
            except MasterKeyError as exc:
                log.warning("cannot read the master key again: %s", exc)
        with self._store.write() as tx:
            roles = KeyRoles(candidates, self._verifier(tx, "share"))
            opening = {i: k for i, k in candidates.items() if i in (roles.current, roles.incoming)}
            if opening:
                for gained in opening.keys() - self._held.keys():
                    log.info("holding another master key", extra={"master_key_id": gained})
                for dropped in self._held.keys() - opening.keys():
                    log.info("dropped a retired master key", extra={"master_key_id": dropped})
                self._held = opening
                try:
                    self._load(tx, roles)
                except UnsealError as exc:
                    # Serve on with the KEKs loaded before; still say this process is alive.
                    log.error("cannot load the KEKs again: %s", exc)
            else:
                log.error(
                    "no master key this process holds opens the barrier any more: a rekey "
                    "finished without it. It serves with the keys it unwrapped, but cannot "
                    "unseal again; restart it with the new master key",
                    extra={"master_key_ids": list(self._held)},
                )
            tx.keyring.put_holder(self._holder(tx.keyring.clock()))

    @staticmethod
    def _verifier(tx: Transaction, lock: BarrierLock | None) -> BarrierCiphertext:
        rows = tx.keyring.barrier_rows(lock=lock)
        verifier = next((row for row in rows if row.row == BarrierRow.VERIFIER), None)
        if verifier is None:
            raise UnsealError("the barrier has no verifier: unseal() it first")
        return verifier

    def release(self) -> None:
        """Remove this process's holder row: it is going away (once; later calls do
        nothing)."""
        if self._released or self._started_at is None:
            return
        with self._store.write() as tx:
            tx.keyring.remove_holder(self.process_id)
        self._released = True

    # -- the API-key HMAC key, and what is keyed by it -----------------------------------
    def _api_key_hmac_key(
        self,
        tx: Transaction,
        roles: KeyRoles,
        row: BarrierCiphertext | None,
        now: dt.datetime,
    ) -> bytes:
        """The key API keys are hashed under, made (and every stored key converted to it)
        the first time a database is unsealed by a version that has it.

        Its row's presence means "converted": the conversion runs once, in the
        transaction that creates the row (another process doing the same meets the
        row's unique id, rolls back and reads this one's), so a row later written in the
        old ``sha256hex(key)`` form is never converted, and never authorises anything.
        """
        if row is not None:
            return roles.open(
                row.sealed, row.next_sealed, API_KEY_HMAC, "the API key HMAC key (barrier row 2)"
            )
        mac_key = envelope.new_key()
        # The row first: a concurrent unseal waits on it, then fails, before converting.
        sealed = roles.seal_current(mac_key, API_KEY_HMAC)
        tx.keyring.insert_barrier_row(BarrierRow.API_KEY_HMAC_KEY, sealed, now)
        changes = []
        for key_id_, stored in tx.apikeys.hashes():
            converted = rehash_legacy(mac_key, stored)
            if converted is not None:
                changes.append((key_id_, stored, converted))
        tx.apikeys.replace_hashes(changes)
        return mac_key

    def _mac_key(self) -> bytes:
        if self._api_key_mac is None:
            raise RuntimeError("the barrier is sealed: unseal() it first")
        return self._api_key_mac

    def hash_api_key(self, key: str) -> str:
        """What is stored for API key ``key``, and looked up to authenticate it."""
        return hash_api_key(self._mac_key(), key)

    def fingerprint(self, text: str) -> str:
        """A keyed digest of ``text``, for a row that must find the same text again but
        not hold it (a destination that may be a secret's own host). Without the master
        key it cannot be tested against a guess."""
        # A key of its own, derived from the API key HMAC key: no fingerprint is ever an
        # API key's stored hash.
        key = hmac.digest(self._mac_key(), b"strongroom|fingerprint|v1", "sha256")
        return hmac.digest(key, text.encode("utf-8", "surrogatepass"), "sha256").hex()
