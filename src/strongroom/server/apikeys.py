"""API key format: ``sr_`` + 32 random base62 characters + a 6-character checksum.

The checksum (CRC32 of the random part) lets the server tell a mistyped key from an
unknown or revoked one without a database look-up. Only a SHA-256 hash of the key is
stored: keys are 190 bits of randomness, so a fast hash is enough (as GitHub does).
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

PREFIX = "sr_"
RANDOM_CHARS = 32
CHECKSUM_CHARS = 6
KEY_LENGTH = len(PREFIX) + RANDOM_CHARS + CHECKSUM_CHARS
_ALPHABET = string.digits + string.ascii_letters

SCOPES = ("secrets:read", "secrets:write", "tasks:run", "audit:read")
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


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    """What a listing may show of a key: its prefix and last four characters."""
    return f"{PREFIX}…{key[-4:]}"


def scope_problem(scope: str) -> str | None:
    if scope == ALL_SCOPES or scope in SCOPES:
        return None
    return f"unknown scope {scope!r} (known: {', '.join((*SCOPES, ALL_SCOPES))})"


def grants(scopes: tuple[str, ...], needed: str) -> bool:
    return ALL_SCOPES in scopes or needed in scopes
