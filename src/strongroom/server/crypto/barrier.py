"""The barrier: the master key, and everything it wraps.

The master key never encrypts data. It opens the barrier's verifier (so a wrong key is
refused at start-up), unwraps the KEKs into the :class:`~.keyring.Keyring` (unsealing),
wraps each new KEK, and wraps the key API keys are hashed under.

That HMAC key is random, not derived from the master key, so that a change of master
key only rewraps it and every API key stays valid. Hashing a key's SHA-256, not the key,
let the keys stored by older versions as ``sha256hex(key)`` be converted once without
knowing them (see :meth:`Barrier._api_key_hmac_key`).

Rekeying (a new master key) belongs here and is not built yet: it would unwrap every
barrier row and keyring entry with the old master key and wrap it again under the new
one, in one transaction, then check the verifier with the new key. Sealed data needs no
change, since only KEKs and the HMAC key are under the master key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..storage import BarrierRow, KeyringEntry, NameTaken, Store, Transaction
from . import envelope
from .context import SealContext
from .envelope import IntegrityFailure
from .keyring import Keyring

# What the master key wraps, each bound to what it is.
VERIFIER = SealContext("barrier")
VERIFIER_PLAINTEXT = b"strongroom barrier verifier"
API_KEY_HMAC = SealContext("api-key-hmac")


def kek_context(kek_id: int) -> SealContext:
    return SealContext("kek", (str(kek_id),))


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


class Barrier:
    def __init__(self, master_key: bytes, store: Store) -> None:
        self._master = AESGCM(master_key)
        self._store = store
        self._keyring = Keyring(reload=self.reload)
        self._api_key_mac: bytes | None = None  # set by unseal(): None while sealed

    @property
    def keyring(self) -> Keyring:
        """The unwrapped KEKs, once :meth:`unseal` has loaded them."""
        self._mac_key()  # refuses while sealed
        return self._keyring

    # -- start-up -------------------------------------------------------------------------
    def unseal(self) -> Keyring:
        """Check the master key against the stored verifier and load the KEKs.

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
            verifier = tx.keyring.barrier_row(BarrierRow.VERIFIER)
            now = dt.datetime.now(dt.UTC)
            if verifier is None:
                sealed = envelope.encrypt(self._master, VERIFIER_PLAINTEXT, VERIFIER.aad)
                tx.keyring.insert_barrier_row(BarrierRow.VERIFIER, sealed, now)
                tx.keyring.insert_entry(self.new_kek_entry(1, "active", now))
            else:
                try:
                    envelope.decrypt(self._master, verifier, VERIFIER.aad)
                except IntegrityFailure:
                    raise WrongMasterKey(
                        "the master key does not match the one this database was initialised "
                        "with (barrier verifier check failed); refusing to start"
                    ) from None
            self._keyring.load(self._keks(tx))
            self._api_key_mac = self._api_key_hmac_key(tx, now)

    def reload(self) -> None:
        """Load the KEKs again: another process may have added one (a rotation)."""
        with self._store.read() as tx:
            self._keyring.load(self._keks(tx))

    def _keks(self, tx: Transaction) -> dict[int, bytes]:
        keks = {}
        for entry in tx.keyring.entries():
            try:
                keks[entry.id] = self._unwrap(entry.wrapped_key, kek_context(entry.id))
            except IntegrityFailure:
                raise KeyringDamaged(
                    f"keyring entry {entry.id} failed authentication: the row was altered "
                    "or copied from another database; restore it from a backup"
                ) from None
        return keks

    def _unwrap(self, wrapped: bytes, ctx: SealContext) -> bytes:
        return envelope.decrypt(self._master, wrapped, ctx.aad)

    def new_kek_entry(self, kek_id: int, state: str, now: dt.datetime) -> KeyringEntry:
        """A new random KEK, wrapped under the master key, as keyring entry ``kek_id``."""
        wrapped = envelope.encrypt(self._master, envelope.new_key(), kek_context(kek_id).aad)
        return KeyringEntry(kek_id, wrapped, state, now, None)

    # -- the API-key HMAC key, and what is keyed by it -----------------------------------
    def _api_key_hmac_key(self, tx: Transaction, now: dt.datetime) -> bytes:
        """The key API keys are hashed under, made (and every stored key converted to it)
        the first time a database is unsealed by a version that has it.

        Its row's presence means "converted": the conversion runs once, in the
        transaction that creates the row (another process doing the same meets the
        row's unique id, rolls back and reads this one's), so a row later written in the
        old ``sha256hex(key)`` form is never converted, and never authorises anything.
        """
        wrapped = tx.keyring.barrier_row(BarrierRow.API_KEY_HMAC_KEY)
        if wrapped is not None:
            try:
                return self._unwrap(wrapped, API_KEY_HMAC)
            except IntegrityFailure:
                raise KeyringDamaged(
                    "the API key HMAC key (barrier row 2) failed authentication: the row was "
                    "altered or copied from another database; restore it from a backup"
                ) from None
        mac_key = envelope.new_key()
        # The row first: a concurrent unseal waits on it, then fails, before converting.
        sealed = envelope.encrypt(self._master, mac_key, API_KEY_HMAC.aad)
        tx.keyring.insert_barrier_row(BarrierRow.API_KEY_HMAC_KEY, sealed, now)
        changes = []
        for key_id, stored in tx.apikeys.hashes():
            converted = rehash_legacy(mac_key, stored)
            if converted is not None:
                changes.append((key_id, stored, converted))
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
