"""A secret's metadata entry, spelled one way: what the listing's index stores and a
resource rule's selector is compared by.

Apart from storage so that a rule (``rules.py``) can compare entries without importing
the storage package.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """One spelling per JSON value, so equal values hash alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _one_number_type(value: Any) -> Any:
    """JSON has one number type: ``1`` and ``1.0`` are the same value (a JavaScript client
    cannot even tell them apart), so a filter on one must find the other."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _one_number_type(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_one_number_type(v) for v in value]
    return value


def metadata_entry_hash(key: str, value: Any) -> bytes:
    spelled = canonical_json(_one_number_type(value))
    return hashlib.sha256(key.encode() + b"\x00" + spelled.encode()).digest()
