"""AES-256-GCM, as every layer uses it: a fresh random nonce per encryption, prepended.

What the associated data says is :mod:`.context`'s; which key encrypts what is the
barrier's (:mod:`.barrier`) and the keyring's (:mod:`.keyring`).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class IntegrityFailure(Exception):
    """A ciphertext failed authentication: it was altered, moved, or the key is wrong."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def encrypt(key: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    """Nonce followed by ciphertext and tag; a fresh random nonce every time."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + key.encrypt(nonce, plaintext, aad)


def decrypt(key: AESGCM, blob: bytes, aad: bytes) -> bytes:
    if len(blob) < NONCE_BYTES + 16:
        raise IntegrityFailure("ciphertext is truncated")
    try:
        return key.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise IntegrityFailure("ciphertext failed authentication") from None
