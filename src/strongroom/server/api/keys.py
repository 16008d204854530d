"""Routes under ``/v1/keys``: API keys managed by a key with ``keys:admin``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from ..apikeys import UNSET
from ..auth import scope_problem
from ..errors import ValidationFailed
from ..rules import ResourceRule, RuleError
from .deps import Auth, Limit, Offset, Svc, known_query_only
from .schemas import keys as schemas
from .schemas.common import COMMON_ERRORS, aware, error_responses, page_body

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(known_query_only)])

KeyId = Annotated[str, Path(max_length=64, description="the key's id")]


def _scopes(given: list[str] | None) -> list[str] | None:
    for i, scope in enumerate(given or ()):
        problem = scope_problem(scope)
        if problem:
            raise ValidationFailed.at(f"body.scopes[{i}]", problem)
    return given


def _rule(given: schemas.Rule | None) -> ResourceRule | None:
    if given is None:
        return None
    try:
        return ResourceRule.parse(given.model_dump())
    except RuleError as exc:
        where = f"body.rule.{exc.location}" if exc.location else "body.rule"
        raise ValidationFailed.at(where, exc.message) from None


@router.post(
    "",
    status_code=201,
    response_model=schemas.KeyCreated,
    responses=error_responses(*COMMON_ERRORS, 409),
    summary="Issue an API key no more powerful than the calling one",
)
def create_key(body: schemas.KeyCreate, caller: Auth, svc: Svc) -> dict[str, Any]:
    given = body.model_fields_set
    issued = svc.keys.create(
        caller,
        name=body.name,
        scopes=_scopes(body.scopes),
        rule=_rule(body.rule) if "rule" in given else UNSET,
        expires_at=aware(body.expires_at, "body.expires_at") if "expires_at" in given else UNSET,
    )
    return schemas.created_out(issued.key, issued.record)


@router.get(
    "",
    response_model=schemas.KeyList,
    responses=error_responses(*COMMON_ERRORS),
    summary="The tenant's keys this key may manage, oldest first",
)
def list_keys(
    caller: Auth,
    svc: Svc,
    limit: Limit = 100,
    offset: Offset = 0,
    include_revoked: Annotated[bool, Query(description="list revoked keys too")] = False,
) -> dict[str, Any]:
    page = svc.keys.list_keys(caller, limit=limit, offset=offset, include_revoked=include_revoked)
    return page_body(page, limit, offset, schemas.key_out)


@router.get(
    "/{key_id}",
    response_model=schemas.Key,
    responses=error_responses(*COMMON_ERRORS, 404),
    summary="One key",
)
def get_key(key_id: KeyId, caller: Auth, svc: Svc) -> dict[str, Any]:
    return schemas.key_out(svc.keys.get(caller, key_id))


@router.patch(
    "/{key_id}",
    response_model=schemas.Key,
    responses=error_responses(*COMMON_ERRORS, 404, 409),
    summary="Change a key's name, scopes, rule or expiry (never beyond the calling key's)",
)
def update_key(key_id: KeyId, body: schemas.KeyUpdate, caller: Auth, svc: Svc) -> dict[str, Any]:
    given = body.model_fields_set
    scopes: Any = _scopes(body.scopes) if "scopes" in given else UNSET
    record = svc.keys.update(
        caller,
        key_id,
        name=body.name if "name" in given else UNSET,
        scopes=scopes,
        rule=_rule(body.rule) if "rule" in given else UNSET,
        expires_at=aware(body.expires_at, "body.expires_at") if "expires_at" in given else UNSET,
    )
    return schemas.key_out(record)


@router.delete(
    "/{key_id}",
    response_model=schemas.Key,
    responses=error_responses(*COMMON_ERRORS, 404),
    summary="Revoke a key",
)
def revoke_key(key_id: KeyId, caller: Auth, svc: Svc) -> dict[str, Any]:
    return schemas.key_out(svc.keys.revoke(caller, key_id))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=schemas.KeyRotated,
    responses=error_responses(*COMMON_ERRORS, 404, 409),
    summary="Replace a key by a new one; the old one works for the grace period",
)
def rotate_key(
    key_id: KeyId, caller: Auth, svc: Svc, body: schemas.KeyRotate | None = None
) -> dict[str, Any]:
    grace = dt.timedelta(seconds=body.grace_seconds if body else 0)
    issued, old = svc.keys.rotate(caller, key_id, grace=grace)
    return {
        "new": schemas.created_out(issued.key, issued.record),
        "old": schemas.key_out(old),
    }
