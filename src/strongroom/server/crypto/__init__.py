"""Encryption at rest, in Vault/OpenBao's layers: the barrier (:mod:`.barrier`) holds the
master key and unseals the keyring (:mod:`.keyring`) of KEKs, which encrypts, decrypts
and rewraps sealed data bound to its :class:`SealContext` (:mod:`.context`); rotation
(:mod:`.rotation`) moves every data key to a new KEK, and a rekey (:mod:`.rekey`) moves
the KEKs and the barrier to a new master key, with the processes' heartbeat
(:mod:`.heartbeat`) telling it who holds which key.
"""

from .barrier import Barrier, KeyringDamaged, UnsealError, WrongMasterKey
from .context import SealContext
from .envelope import IntegrityFailure
from .keyring import Keyring
from .masterkey import MasterKeyError, generate_master_key, load_master_key

__all__ = [
    "Barrier",
    "IntegrityFailure",
    "Keyring",
    "KeyringDamaged",
    "MasterKeyError",
    "SealContext",
    "UnsealError",
    "WrongMasterKey",
    "generate_master_key",
    "load_master_key",
]
