"""AES-256-GCM envelopes: what is encrypted, under which key, bound to which context.

Every ciphertext carries associated data naming what it belongs to (a KEK's id, or a
secret's tenant, id and version). A ciphertext copied to another row therefore fails to
open, just as one with a flipped byte does.
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


def kek_aad(kek_id: int) -> bytes:
    return b"strongroom|kek|v1|%d" % kek_id


def dek_aad(tenant_id: str, secret_id: str, version: int) -> bytes:
    return b"|".join(
        (b"strongroom|dek|v1", tenant_id.encode(), secret_id.encode(), b"%d" % version)
    )


def value_aad(tenant_id: str, secret_id: str, version: int) -> bytes:
    return b"|".join(
        (b"strongroom|value|v1", tenant_id.encode(), secret_id.encode(), b"%d" % version)
    )


def blob_aad(kind: str, context: tuple[str, ...]) -> bytes:
    """Associated data of a sealed blob, e.g. ``strongroom|step|v1|<tenant>|<execution>|<i>``."""
    return b"|".join((b"strongroom", kind.encode(), b"v1", *(part.encode() for part in context)))


def blob_dek_aad(kind: str, context: tuple[str, ...]) -> bytes:
    """Associated data of a sealed blob's wrapped data key (``<kind>-dek``)."""
    return blob_aad(f"{kind}-dek", context)


BARRIER_AAD = b"strongroom|barrier|v1"
BARRIER_PLAINTEXT = b"strongroom barrier verifier"
# The API-key HMAC key, wrapped by the master key (barrier row 2; see keyring.py).
API_KEY_HMAC_AAD = b"strongroom|api-key-hmac|v1"
