"""The keyring: key-encryption keys (KEKs) held wrapped by the master key.

The master key never encrypts data. It opens the barrier verifier (so a wrong key is
refused at start-up) and unwraps the KEKs. Each secret version has its own data key
(DEK), wrapped by the KEK that was active when it was written; rotation rewraps DEKs
under a new KEK without touching the value ciphertext.
"""

from __future__ import annotations

import datetime as dt
import threading

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..storage.base import KeyringEntry, NameTaken, Sealed, Store, StoredVersion, Transaction
from . import envelope
from .envelope import IntegrityFailure

# A task step's full result, sealed while its execution runs (see tasks/runner.py).
STEP_RESULT = "step"


def step_result_context(tenant_id: str, execution_id: str, index: int) -> tuple[str, ...]:
    return (tenant_id, execution_id, str(index))


class UnsealError(Exception):
    """The keyring cannot be opened; the server must not start."""


class WrongMasterKey(UnsealError):
    """The configured master key is not the one this database was initialised with."""


class KeyringDamaged(UnsealError):
    """A stored KEK failed authentication although the master key is right."""


class Keyring:
    def __init__(self, master_key: bytes, store: Store) -> None:
        self._master = AESGCM(master_key)
        self._store = store
        self._keks: dict[int, AESGCM] = {}
        self._lock = threading.Lock()

    # -- start-up -------------------------------------------------------------------------
    def unseal(self) -> None:
        """Check the master key against the stored verifier and load the KEKs.

        On a new database this writes the verifier and the first KEK instead.
        """
        try:
            self._unseal()
        except NameTaken:
            # Another process initialised the barrier at the same moment: check against it.
            self._unseal()

    def _unseal(self) -> None:
        with self._store.write() as tx:
            verifier = tx.barrier_verifier()
            now = dt.datetime.now(dt.UTC)
            if verifier is None:
                tx.insert_barrier_verifier(
                    envelope.encrypt(
                        self._master, envelope.BARRIER_PLAINTEXT, envelope.BARRIER_AAD
                    ),
                    now,
                )
                tx.insert_keyring_entry(self.new_entry(1, "active", now))
            else:
                try:
                    envelope.decrypt(self._master, verifier, envelope.BARRIER_AAD)
                except IntegrityFailure:
                    raise WrongMasterKey(
                        "the master key does not match the one this database was initialised "
                        "with (barrier verifier check failed); refusing to start"
                    ) from None
            self._load(tx)

    def _load(self, tx: Transaction) -> None:
        keks = {}
        for entry in tx.keyring_entries():
            try:
                kek = envelope.decrypt(self._master, entry.wrapped_key, envelope.kek_aad(entry.id))
            except IntegrityFailure:
                raise KeyringDamaged(
                    f"keyring entry {entry.id} failed authentication: the row was altered "
                    "or copied from another database; restore it from a backup"
                ) from None
            keks[entry.id] = AESGCM(kek)
        with self._lock:
            self._keks = keks

    def reload(self) -> None:
        with self._store.read() as tx:
            self._load(tx)

    def new_entry(self, kek_id: int, state: str, now: dt.datetime) -> KeyringEntry:
        wrapped = envelope.encrypt(self._master, envelope.new_key(), envelope.kek_aad(kek_id))
        return KeyringEntry(kek_id, wrapped, state, now, None)

    def _kek(self, kek_id: int) -> AESGCM:
        kek = self._keks.get(kek_id)
        if kek is None:
            # Another process (a rotation) added a KEK since this one loaded the keyring.
            self.reload()
            kek = self._keks.get(kek_id)
        if kek is None:
            raise IntegrityFailure(f"data key is wrapped under unknown KEK {kek_id}")
        return kek

    # -- values ---------------------------------------------------------------------------
    def seal(
        self, tx: Transaction, tenant_id: str, secret_id: str, version: int, plaintext: str
    ) -> StoredVersion:
        """Encrypt a new version under a fresh DEK wrapped by the active KEK."""
        kek_id = tx.active_kek_id()
        dek = envelope.new_key()
        wrapped = envelope.encrypt(
            self._kek(kek_id), dek, envelope.dek_aad(tenant_id, secret_id, version)
        )
        ciphertext = envelope.encrypt(
            AESGCM(dek), plaintext.encode(), envelope.value_aad(tenant_id, secret_id, version)
        )
        return StoredVersion(tenant_id, secret_id, version, Sealed(kek_id, wrapped, ciphertext))

    def _dek(self, stored: StoredVersion) -> bytes:
        return envelope.decrypt(
            self._kek(stored.sealed.kek_id),
            stored.sealed.wrapped_dek,
            envelope.dek_aad(stored.tenant_id, stored.secret_id, stored.version),
        )

    def open(self, stored: StoredVersion) -> str:
        dek = self._dek(stored)
        plaintext = envelope.decrypt(
            AESGCM(dek),
            stored.sealed.ciphertext,
            envelope.value_aad(stored.tenant_id, stored.secret_id, stored.version),
        )
        return plaintext.decode()

    def rewrap(self, stored: StoredVersion, kek_id: int) -> Sealed:
        """The same value ciphertext with its DEK wrapped under ``kek_id`` instead."""
        wrapped = envelope.encrypt(
            self._kek(kek_id),
            self._dek(stored),
            envelope.dek_aad(stored.tenant_id, stored.secret_id, stored.version),
        )
        return Sealed(kek_id, wrapped, stored.sealed.ciphertext)

    # -- other sealed data ----------------------------------------------------------------
    # Anything else that may hold secret-derived plaintext (a task step's full result) is
    # sealed the same way: its own DEK, wrapped by the active KEK, with associated data
    # naming its kind and the row it belongs to, so it cannot be moved or confused with a
    # secret value.
    def seal_blob(
        self, tx: Transaction, kind: str, context: tuple[str, ...], plaintext: bytes
    ) -> Sealed:
        kek_id = tx.active_kek_id()
        dek = envelope.new_key()
        wrapped = envelope.encrypt(self._kek(kek_id), dek, envelope.blob_dek_aad(kind, context))
        ciphertext = envelope.encrypt(AESGCM(dek), plaintext, envelope.blob_aad(kind, context))
        return Sealed(kek_id, wrapped, ciphertext)

    def _blob_dek(self, sealed: Sealed, kind: str, context: tuple[str, ...]) -> bytes:
        return envelope.decrypt(
            self._kek(sealed.kek_id), sealed.wrapped_dek, envelope.blob_dek_aad(kind, context)
        )

    def open_blob(self, sealed: Sealed, kind: str, context: tuple[str, ...]) -> bytes:
        """The plaintext of a sealed blob; ``IntegrityFailure`` if altered or moved."""
        dek = self._blob_dek(sealed, kind, context)
        return envelope.decrypt(AESGCM(dek), sealed.ciphertext, envelope.blob_aad(kind, context))

    def rewrap_blob(
        self, sealed: Sealed, kind: str, context: tuple[str, ...], kek_id: int
    ) -> Sealed:
        wrapped = envelope.encrypt(
            self._kek(kek_id),
            self._blob_dek(sealed, kind, context),
            envelope.blob_dek_aad(kind, context),
        )
        return Sealed(kek_id, wrapped, sealed.ciphertext)
