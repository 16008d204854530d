"""Routes under ``/v1/secrets``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import AfterValidator

from ..audit import Caller
from ..errors import Detail, ValidationFailed
from ..secrets import UNSET, RevealedSecret
from ..storage.base import SecretRecord
from . import schemas
from .deps import Services, authenticate, services
from .schemas import ENCRYPTED, error_responses

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])

NamePath = Annotated[str, Path(description="the secret's name"), AfterValidator(schemas.check_name)]
Auth = Annotated[Caller, Depends(authenticate)]
Svc = Annotated[Services, Depends(services)]

_COMMON = (401, 403, 422)


def secret_out(
    secret: SecretRecord, value: str = ENCRYPTED, version: int | None = None
) -> dict[str, Any]:
    return {
        "id": secret.id,
        "name": secret.name,
        "description": secret.description,
        "metadata": secret.metadata,
        "value": value,
        "version": secret.version if version is None else version,
        "created_at": secret.created_at,
        "updated_at": secret.updated_at,
    }


def _check_value(svc: Services, value: str | None) -> None:
    """Values are limited in UTF-8 bytes, by a setting, so this check is not in the schema."""
    if value is None:
        return
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise ValidationFailed(
            "body.value: value must be valid Unicode text",
            [Detail("body.value", "value holds an unpaired surrogate; it must be valid Unicode")],
        ) from None
    limit = svc.settings.max_value_bytes
    if size > limit:
        message = f"value is {size} bytes; the limit is {limit}"
        raise ValidationFailed(f"body.value: {message}", [Detail("body.value", message)])


def _metadata_filter(request: Request) -> dict[str, Any] | None:
    """``metadata={"k": "v"}`` as JSON, or the bracket form ``metadata[k]=v``."""
    found: dict[str, Any] = {}
    for key, raw in request.query_params.multi_items():
        if key == "metadata":
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            if not isinstance(parsed, dict):
                message = 'metadata must be a JSON object, e.g. {"environment":"production"}'
                raise ValidationFailed(
                    f"query.metadata: {message}", [Detail("query.metadata", message)]
                )
            found.update(parsed)
        elif key.startswith("metadata[") and key.endswith("]") and len(key) > len("metadata[]"):
            found[key[len("metadata[") : -1]] = raw
    return found or None


@router.post(
    "",
    status_code=201,
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 409, 413),
    summary="Create a secret",
)
def create_secret(body: schemas.SecretCreate, caller: Auth, svc: Svc) -> dict[str, Any]:
    _check_value(svc, body.value)
    secret = svc.secrets.create(caller, body.name, body.value, body.description, body.metadata)
    return secret_out(secret)


@router.get(
    "",
    response_model=schemas.SecretList,
    responses=error_responses(*_COMMON),
    summary="List secrets (values are never included)",
)
def list_secrets(
    request: Request,
    caller: Auth,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    metadata: Annotated[
        str | None,
        Query(description='JSON object to match, e.g. {"environment":"production"}'),
    ] = None,
) -> dict[str, Any]:
    del metadata  # read with the bracket form by _metadata_filter; declared for OpenAPI
    page = svc.secrets.list_secrets(
        caller, limit=limit, offset=offset, metadata_filter=_metadata_filter(request)
    )
    return schemas.page_body(page, limit, offset, secret_out)


@router.get(
    "/{name}",
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 404),
    summary="Get a secret with its plaintext value",
)
def get_secret(
    name: NamePath,
    response: Response,
    caller: Auth,
    svc: Svc,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    revealed: RevealedSecret = svc.secrets.get(caller, name, version)
    response.headers["ETag"] = f'"{revealed.secret.version}"'
    return secret_out(revealed.secret, revealed.value, revealed.version)


def _expected_version(body_version: int | None, if_match: str | None) -> int | None:
    if if_match is None:
        return body_version
    text = if_match.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or int(text) < 1:
        message = 'If-Match must be a version number, e.g. "3"'
        raise ValidationFailed(f"header.if-match: {message}", [Detail("header.if-match", message)])
    if body_version is not None and body_version != int(text):
        message = "If-Match and expected_version disagree"
        raise ValidationFailed(message, [Detail("header.if-match", message)])
    return int(text)


@router.patch(
    "/{name}",
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 404, 409, 412, 413),
    summary="Update some fields of a secret, rename it, or give it a new value",
)
def update_secret(
    name: NamePath,
    body: schemas.SecretUpdate,
    caller: Auth,
    svc: Svc,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    given = body.model_fields_set
    if "value" in given and body.value is None:
        raise ValidationFailed(
            "body.value: value cannot be null", [Detail("body.value", "value cannot be null")]
        )
    changes = given - {"expected_version"} - (set() if body.new_name else {"new_name"})
    if not changes:
        message = "nothing to update: give value, description, metadata or new_name"
        raise ValidationFailed(message, [Detail("body", message)])
    _check_value(svc, body.value)
    secret = svc.secrets.update(
        caller,
        name,
        value=body.value,
        description=body.description if "description" in given else UNSET,
        metadata=(body.metadata or {}) if "metadata" in given else UNSET,
        new_name=body.new_name,
        expected_version=_expected_version(body.expected_version, if_match),
    )
    return secret_out(secret)


@router.put(
    "/{name}",
    response_model=schemas.Secret,
    responses={**error_responses(*_COMMON, 404, 412, 413), 201: {"model": schemas.Secret}},
    summary="Create or replace a secret's value (201 when created, 200 when replaced)",
)
def put_secret(
    name: NamePath,
    body: schemas.SecretPut,
    response: Response,
    caller: Auth,
    svc: Svc,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    _check_value(svc, body.value)
    given = body.model_fields_set
    secret, created = svc.secrets.upsert(
        caller,
        name,
        body.value,
        description=body.description if "description" in given else UNSET,
        metadata=(body.metadata or {}) if "metadata" in given else UNSET,
        expected_version=_expected_version(None, if_match),
    )
    response.status_code = 201 if created else 200
    return secret_out(secret)


@router.delete(
    "/{name}",
    response_model=schemas.DeletedSecret,
    responses=error_responses(*_COMMON, 404, 412),
    summary="Delete a secret and all its versions; the name is free at once",
)
def delete_secret(
    name: NamePath,
    caller: Auth,
    svc: Svc,
    if_match: Annotated[str | None, Header()] = None,
) -> dict[str, Any]:
    deleted = svc.secrets.delete(caller, name, expected_version=_expected_version(None, if_match))
    return {"id": deleted.id, "name": deleted.name, "deleted_at": deleted.deleted_at}


@router.get(
    "/{name}/versions",
    response_model=schemas.SecretVersionList,
    responses=error_responses(*_COMMON, 404),
    summary="List a secret's versions (never their values)",
)
def list_versions(name: NamePath, caller: Auth, svc: Svc) -> dict[str, Any]:
    versions = svc.secrets.versions(caller, name)
    return {
        "items": [
            {"version": v.version, "created_at": v.created_at, "created_by": v.created_by}
            for v in versions
        ]
    }
