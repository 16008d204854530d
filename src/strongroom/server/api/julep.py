"""Routes under ``/julep``: the secrets calls of the Julep API, for Julep's own clients.

The official clients (``julep`` on PyPI, ``@julep/sdk`` on npm) pointed at
``http://host:port/julep`` create, list, update and delete secrets here. The shapes are
the clients' own (their ``Secret`` and ``SecretDeleteResponse`` types): a list is a bare
JSON array, newest first; updates and deletes name a secret by id; a value is never
returned (``"ENCRYPTED"``). Everything else is ``/v1``'s: the same keys and scopes
(``Authorization: Bearer``, which the clients send), the same tenants, store, audit
records and error envelope, through the same :class:`~strongroom.server.secrets.SecretService`.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Response
from pydantic import AfterValidator

from ..errors import Conflict
from ..secrets import UNSET
from .deps import Auth, Limit, Offset, Svc
from .schemas.common import COMMON_ERRORS, error_responses
from .schemas.julep import (
    JulepDeleted,
    JulepSecret,
    JulepSecretCreate,
    JulepSecretUpdate,
    julep_out,
)

# A UUID in the spellings uuid.UUID reads: any case, hyphens or none, braces, a URN prefix.
# (uuid.UUID alone takes more, e.g. "0x" or "_" inside the hex digits, which int() reads.)
UUID_PATTERN = (
    r"^(urn:uuid:)?\{?[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}"
    r"-?[0-9a-fA-F]{12}\}?$"
)
_UUID = re.compile(UUID_PATTERN)


def _secret_id(text: str) -> str:
    """Secret ids are UUIDs; any usual spelling of one finds the secret (its canonical form)."""
    if not _UUID.fullmatch(text):
        raise ValueError("a secret id is a UUID (8-4-4-4-12 hex digits)")
    return str(uuid.UUID(text))


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"


router = APIRouter(prefix="/julep", tags=["julep"], dependencies=[Depends(_no_store)])

SecretIdPath = Annotated[
    str,
    Path(description="the secret's id", json_schema_extra={"pattern": UUID_PATTERN}),
    AfterValidator(_secret_id),
]

_COMMON = COMMON_ERRORS


def _final(error: Conflict) -> None:
    """A taken name stays taken: the clients retry a 409 unless told not to."""
    error.headers["X-Should-Retry"] = "false"


# -- routes -----------------------------------------------------------------------------------
@router.post(
    "/secrets",
    status_code=201,
    response_model=JulepSecret,
    responses=error_responses(*_COMMON, 409, 413),
    summary="Create a secret (Julep's shape)",
)
def create_secret(body: JulepSecretCreate, caller: Auth, svc: Svc) -> dict[str, Any]:
    try:
        secret = svc.secrets.create(caller, body.name, body.value, body.description, body.metadata)
    except Conflict as error:
        _final(error)
        raise
    return julep_out(secret, caller, body.model_fields_set)


@router.get(
    "/secrets",
    response_model=list[JulepSecret],
    responses=error_responses(*_COMMON),
    summary="List secrets, newest first, as a bare array (values are never included)",
)
def list_secrets(
    caller: Auth,
    svc: Svc,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[dict[str, Any]]:
    page = svc.secrets.list_newest_first(caller, limit=limit, offset=offset)
    return [julep_out(secret) for secret in page.items]


@router.put(
    "/secrets/{secret_id}",
    response_model=JulepSecret,
    responses=error_responses(*_COMMON, 404, 409, 413),
    summary="Update a secret by id: a new value, and a new name when it differs",
)
def update_secret(
    secret_id: SecretIdPath, body: JulepSecretUpdate, caller: Auth, svc: Svc
) -> dict[str, Any]:
    try:
        secret = svc.secrets.update_by_id(
            caller,
            secret_id,
            value=body.value,
            description=UNSET if body.description is None else body.description,
            metadata=UNSET if body.metadata is None else body.metadata,
            new_name=body.name,
        )
    except Conflict as error:
        _final(error)
        raise
    # A null description or metadata keeps the current one: only a value was sent.
    sent = {field for field in ("description", "metadata") if getattr(body, field) is not None}
    return julep_out(secret, caller, sent)


@router.delete(
    "/secrets/{secret_id}",
    status_code=202,
    response_model=JulepDeleted,
    responses=error_responses(*_COMMON, 404),
    summary="Delete a secret by id (restorable during the recovery window)",
)
def delete_secret(secret_id: SecretIdPath, caller: Auth, svc: Svc) -> dict[str, Any]:
    deleted = svc.secrets.delete_by_id(caller, secret_id)
    return {"id": deleted.id, "deleted_at": deleted.deleted_at, "jobs": []}
