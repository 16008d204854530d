"""API key format: ``sr_`` + 32 random base62 characters + a 6-character checksum.

The checksum (CRC32 of the random part) lets the server tell a mistyped key from an
unknown or revoked one without a database look-up. Keys are 190 bits of randomness, so a
fast hash is enough (as GitHub does); but a plain hash is one anybody can compute, so
anybody able to insert a row could mint a key. What is stored is therefore
``HMAC-SHA-256(k, SHA-256(key))``, with ``k`` a random key only the unsealed keyring
holds (``Keyring.hash_api_key``): a row whose hash was computed without ``k`` authorises
nothing. Hashing the SHA-256 (not the key itself) lets the keys stored by older versions,
as ``sha256hex(key)``, be converted once without knowing them (``rehash_legacy``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
import zlib

PREFIX = "sr_"
RANDOM_CHARS = 32
CHECKSUM_CHARS = 6
KEY_LENGTH = len(PREFIX) + RANDOM_CHARS + CHECKSUM_CHARS
_ALPHABET = string.digits + string.ascii_letters

SCOPES = ("secrets:read", "secrets:write", "secrets:admin", "tasks:run", "audit:read")
ALL_SCOPES = "*"


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    return _base62(zlib.crc32(random_part.encode()), CHECKSUM_CHARS)


def generate_api_key() -> str:
    random_part = "".join(secrets.choice(_ALPHABET) for _ in range(RANDOM_CHARS))
    return PREFIX + random_part + _checksum(random_part)


def format_problem(key: str) -> str | None:
    """Why ``key`` cannot be a strongroom key, or None when it is well formed."""
    if not key.startswith(PREFIX):
        return "API key must start with 'sr_'"
    if len(key) != KEY_LENGTH or any(c not in _ALPHABET for c in key[len(PREFIX) :]):
        return "API key is malformed"
    random_part = key[len(PREFIX) : len(PREFIX) + RANDOM_CHARS]
    if not secrets.compare_digest(_checksum(random_part), key[-CHECKSUM_CHARS:]):
        return "API key checksum does not match (a mistyped or truncated key?)"
    return None


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


def key_hint(key: str) -> str:
    """What a listing may show of a key: its prefix and last four characters."""
    return f"{PREFIX}…{key[-4:]}"


def scope_problem(scope: str) -> str | None:
    if scope == ALL_SCOPES or scope in SCOPES:
        return None
    return f"unknown scope {scope!r} (known: {', '.join((*SCOPES, ALL_SCOPES))})"


def grants(scopes: tuple[str, ...], needed: str) -> bool:
    return ALL_SCOPES in scopes or needed in scopes
