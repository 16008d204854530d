"""What a ciphertext is bound to: one :class:`SealContext` per kind of sealed data.

Every ciphertext carries associated data naming what it belongs to, so a ciphertext
copied to another row fails to decrypt, just as one with a flipped byte does. A context is
a kind and the parts that name the row (a secret value's tenant, secret id and version; a
step result's tenant, execution id and index): a new kind of sealed data is a new
context, made by the code that owns that data (``secret_values.value_context``,
``tasks.sealing.step_result_context``), with no new code here.

The bytes are stored format: every existing row was sealed with them, and
``tests/test_crypto.py`` pins them.
"""

from __future__ import annotations

from dataclasses import dataclass

# The kind of a data key's associated data is ``<kind>-dek``; a secret value's says only
# ``dek``: secret values came first, and their rows keep the bytes they were sealed with.
_DEK_KINDS = {"value": "dek"}


@dataclass(frozen=True, slots=True)
class SealContext:
    kind: str
    parts: tuple[str, ...] = ()

    @property
    def aad(self) -> bytes:
        """The associated data of the sealed bytes: ``strongroom|<kind>|v1|<part>|...``."""
        return b"|".join(
            (b"strongroom", self.kind.encode(), b"v1", *(part.encode() for part in self.parts))
        )

    @property
    def dek_aad(self) -> bytes:
        """The associated data of their data key, wrapped under a KEK."""
        dek_kind = _DEK_KINDS.get(self.kind, f"{self.kind}-dek")
        return SealContext(dek_kind, self.parts).aad
