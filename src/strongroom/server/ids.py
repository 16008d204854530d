"""Identifiers: UUIDv7, so ids sort by creation time and index well.

Hand-written because the standard library gains ``uuid.uuid7`` only in Python 3.14.
"""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    """A version 7 UUID (RFC 9562): 48-bit Unix milliseconds, then 74 random bits."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80
    value |= 0x7 << 76  # version
    value |= ((rand >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= rand & (2**62 - 1)  # rand_b
    return str(uuid.UUID(int=value))


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()
