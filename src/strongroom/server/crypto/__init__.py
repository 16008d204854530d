"""Encryption at rest: master key, keyring of KEKs, AES-256-GCM envelopes, rotation."""

from .envelope import IntegrityFailure
from .keyring import Keyring, KeyringDamaged, UnsealError, WrongMasterKey
from .masterkey import MasterKeyError, generate_master_key, load_master_key

__all__ = [
    "IntegrityFailure",
    "Keyring",
    "KeyringDamaged",
    "MasterKeyError",
    "UnsealError",
    "WrongMasterKey",
    "generate_master_key",
    "load_master_key",
]
