"""The keyring: key-encryption keys (KEKs) held wrapped by the master key.

The master key never encrypts data. It opens the barrier verifier (so a wrong key is
refused at start-up) and unwraps the KEKs. Each secret version has its own data key
(DEK), wrapped by the KEK that was active when it was written; rotation rewraps DEKs
under a new KEK without touching the value ciphertext.

The keyring also holds the key API keys are hashed under (see ``apikeys.py``), and a
key derived from it for :meth:`Keyring.fingerprint`. Hashing a key's SHA-256, not the
key, lets the keys stored by older versions as ``sha256hex(key)`` be converted once
without knowing them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import threading
from dataclasses import replace

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..storage.base import KeyringEntry, NameTaken, Sealed, Store, StoredVersion, Transaction
from . import envelope
from .envelope import IntegrityFailure

# A task step's full result, sealed while its execution runs (see tasks/runner.py).
STEP_RESULT = "step"


def step_result_context(tenant_id: str, execution_id: str, index: int) -> tuple[str, ...]:
    return (tenant_id, execution_id, str(index))


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
        self._api_key_mac: bytes | None = None
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
            self._api_key_mac = self._api_key_hmac_key(tx, now)

    def _api_key_hmac_key(self, tx: Transaction, now: dt.datetime) -> bytes:
        """The key API keys are hashed under, made (and every stored key converted to it)
        the first time a database is unsealed by a version that has it.

        A random key wrapped by the master key, not one derived from the master key: a
        future change of master key rewraps this key, and every API key stays valid.

        Its row's presence means "converted": the conversion runs once, in the
        transaction that creates the row (another process doing the same meets the
        row's unique id, rolls back and reads this one's), so a row later written in the
        old ``sha256hex(key)`` form is never converted, and never authorises anything.
        """
        wrapped = tx.api_key_hmac_key()
        if wrapped is not None:
            try:
                return envelope.decrypt(self._master, wrapped, envelope.API_KEY_HMAC_AAD)
            except IntegrityFailure:
                raise KeyringDamaged(
                    "the API key HMAC key (barrier row 2) failed authentication: the row was "
                    "altered or copied from another database; restore it from a backup"
                ) from None
        mac_key = envelope.new_key()
        # The row first: a concurrent unseal waits on it, then fails, before converting.
        tx.insert_api_key_hmac_key(
            envelope.encrypt(self._master, mac_key, envelope.API_KEY_HMAC_AAD), now
        )
        changes = []
        for key_id, stored in tx.api_key_hashes():
            converted = rehash_legacy(mac_key, stored)
            if converted is not None:
                changes.append((key_id, stored, converted))
        tx.replace_api_key_hashes(changes)
        return mac_key

    def fingerprint(self, text: str) -> str:
        """A keyed digest of ``text``, for a row that must find the same text again but
        not hold it (a destination that may be a secret's own host). Without the master
        key it cannot be tested against a guess."""
        if self._api_key_mac is None:
            raise RuntimeError("the keyring is sealed: unseal() it before fingerprinting")
        # A key of its own, derived from the API key HMAC key: no fingerprint is ever an
        # API key's stored hash.
        key = hmac.digest(self._api_key_mac, b"strongroom|fingerprint|v1", "sha256")
        return hmac.digest(key, text.encode("utf-8", "surrogatepass"), "sha256").hex()

    def hash_api_key(self, key: str) -> str:
        """What is stored for API key ``key``, and looked up to authenticate it."""
        if self._api_key_mac is None:
            raise RuntimeError("the keyring is sealed: unseal() it before hashing API keys")
        return hash_api_key(self._api_key_mac, key)

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

    def open(self, stored: StoredVersion, *, secret_tenant_id: str, caller_tenant_id: str) -> str:
        """The plaintext of one version, for a caller of ``caller_tenant_id``.

        The version row, the secret row it belongs to and the caller must name the same
        tenant, and the associated data is built from the caller's: a tenant column
        rewritten in the database (moving a secret to another tenant) is an
        ``IntegrityFailure``, and so is rewriting all of them consistently, since the
        ciphertext stays bound to the tenant that sealed it. The associated data is the
        same bytes as when sealed, so every stored row stays valid.
        """
        if not stored.tenant_id == secret_tenant_id == caller_tenant_id:
            raise IntegrityFailure(
                "the version, its secret and the caller belong to different tenants"
            )
        bound = replace(stored, tenant_id=caller_tenant_id)
        dek = self._dek(bound)
        plaintext = envelope.decrypt(
            AESGCM(dek),
            bound.sealed.ciphertext,
            envelope.value_aad(caller_tenant_id, bound.secret_id, bound.version),
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
