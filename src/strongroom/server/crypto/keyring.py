"""The keyring: the key-encryption keys (KEKs), unwrapped, in memory.

Each sealed value has its own data key (DEK), wrapped by a KEK; the value and the
wrapped DEK are both bound to the value's :class:`~.context.SealContext`. Rotation
rewraps a DEK under another KEK without touching the value's ciphertext.

The keyring knows no storage and no master key: the barrier (:mod:`.barrier`) unwraps
the KEKs and loads them here, and loads them again when the keyring meets one it does not
know (another process rotated).

A retired KEK (one rotation drained: no data key was left under it) is never used again.
A data key still wrapped under it was put there behind rotation's back (a row restored
from an old backup, or written by hand), and is refused rather than opened.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..storage import Sealed
from . import envelope
from .context import SealContext
from .envelope import IntegrityFailure


class Keyring:
    def __init__(self, reload: Callable[[], None] | None = None) -> None:
        """``reload``, when given, is called on meeting an unknown KEK id, to :meth:`load`
        the KEKs again; an id still unknown after it is an ``IntegrityFailure``."""
        self._keks: dict[int, AESGCM] = {}
        self._refused: dict[int, str] = {}
        self._reload = reload

    def load(self, keks: Mapping[int, bytes], refused: Mapping[int, str] | None = None) -> None:
        """Hold these KEKs (by id) instead of the ones held so far. ``refused`` names the
        KEKs that are known but must not be used, by id, with why ("retired")."""
        self._keks = {kek_id: AESGCM(kek) for kek_id, kek in keks.items()}
        self._refused = dict(refused or {})

    def _kek(self, kek_id: int) -> AESGCM:
        kek = self._keks.get(kek_id)
        if kek is None and kek_id not in self._refused and self._reload is not None:
            self._reload()
            kek = self._keks.get(kek_id)
        if kek is None and kek_id in self._refused:
            raise IntegrityFailure(
                f"data key is wrapped under {self._refused[kek_id]} KEK {kek_id}: rotation "
                "left no data key under it, so this row was restored or written around the "
                "keyring; refusing it"
            )
        if kek is None:
            raise IntegrityFailure(f"data key is wrapped under unknown KEK {kek_id}")
        return kek

    def _unwrap(self, ctx: SealContext, sealed: Sealed) -> bytes:
        """The data key of ``sealed``."""
        return envelope.decrypt(self._kek(sealed.kek_id), sealed.wrapped_dek, ctx.dek_aad)

    def encrypt(self, ctx: SealContext, plaintext: bytes, kek_id: int) -> Sealed:
        """``plaintext`` under a fresh DEK, wrapped by KEK ``kek_id``, both bound to ``ctx``."""
        dek = envelope.new_key()
        wrapped = envelope.encrypt(self._kek(kek_id), dek, ctx.dek_aad)
        return Sealed(kek_id, wrapped, envelope.encrypt(AESGCM(dek), plaintext, ctx.aad))

    def decrypt(self, ctx: SealContext, sealed: Sealed) -> bytes:
        """The plaintext; ``IntegrityFailure`` if the row was altered or moved."""
        return envelope.decrypt(AESGCM(self._unwrap(ctx, sealed)), sealed.ciphertext, ctx.aad)

    def rewrap(self, ctx: SealContext, sealed: Sealed, kek_id: int) -> Sealed:
        """The same ciphertext, its DEK wrapped under KEK ``kek_id`` instead."""
        wrapped = envelope.encrypt(self._kek(kek_id), self._unwrap(ctx, sealed), ctx.dek_aad)
        return Sealed(kek_id, wrapped, sealed.ciphertext)
