"""Wire shapes of ``/julep``: Julep's own ``Secret`` and ``SecretDeleteResponse`` types."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, JsonValue

from ...auth import Caller
from ...secrets import write_answer
from ...storage import SecretRecord
from .common import ENCRYPTED, Description, Metadata, SecretName, Strict, Timestamp, Value


class JulepSecretCreate(Strict):
    name: SecretName
    value: Value
    description: Description = None
    metadata: Metadata = None


class JulepSecretUpdate(Strict):
    """Julep's update: ``name`` and ``value`` always; a description or metadata left out,
    or sent as ``null``, keeps the current one (as Julep's own server does)."""

    name: SecretName
    value: Value
    description: Description = None
    metadata: Metadata = None


class JulepSecret(BaseModel):
    id: str
    name: str
    description: str | None
    metadata: dict[str, JsonValue]
    value: str
    created_at: Timestamp
    updated_at: Timestamp


class JulepDeleted(BaseModel):
    id: str
    deleted_at: Timestamp
    jobs: list[str]


def julep_out(
    secret: SecretRecord,
    caller: Caller | None = None,
    given: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """A Secret in Julep's shape (it has no policy: a write here leaves the policy as it
    is). With ``caller``, a write call's answer: only what the caller may see."""
    if caller is not None:
        secret = write_answer(
            caller,
            secret,
            sent_description="description" in given,
            sent_metadata="metadata" in given,
        )
    return {
        "id": secret.id,
        "name": secret.name,
        "description": secret.description,
        "metadata": secret.metadata,
        "value": ENCRYPTED,
        "created_at": secret.created_at,
        "updated_at": secret.updated_at,
    }
