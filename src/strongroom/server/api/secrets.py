"""Routes under ``/v1/secrets``."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request, Response
from pydantic import AfterValidator
from starlette.concurrency import run_in_threadpool

from ..auth import Caller
from ..errors import ValidationFailed
from ..policy import DEFAULT_POLICY
from ..secret_batches import BatchItem
from ..secrets import UNSET, RevealedSecret, resolve_policy, write_answer
from ..storage import SecretRecord
from .deps import Auth, Limit, Offset, Svc
from .schemas import secrets as schemas
from .schemas.common import (
    COMMON_ERRORS,
    NAME_SCHEMA,
    VERSION_MAX,
    aware,
    check_metadata,
    check_name,
    error_responses,
    page_body,
)
from .schemas.secrets import deleted_out, secret_out, version_out

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])

NamePath = Annotated[
    str,
    Path(description="the secret's name", json_schema_extra=NAME_SCHEMA),
    AfterValidator(check_name),
]

_COMMON = COMMON_ERRORS

# A version number, as an ETag is spelled ("3", or weak: W/"3"); at most ten digits past
# any leading zeros, so no header makes int() work hard or fail.
IF_MATCH_PATTERN = r'^[ \t]*(W/)?"?0*([1-9][0-9]{0,9})"?[ \t]*$'
_IF_MATCH = re.compile(IF_MATCH_PATTERN)
IfMatch = Annotated[
    str | None,
    Header(
        description='the version the change expects, e.g. "3" (the ETag of a get)',
        # "type" too: a header is text when sent, never the null of the Optional's schema
        json_schema_extra={"type": "string", "pattern": IF_MATCH_PATTERN},
    ),
]

# The routes a workload calls most (create, get, update, put) are ``async``: their
# database work runs in one threadpool hop, and FastAPI then validates the answer on the
# event loop instead of in a second hop (it does that in a thread for a plain ``def``).


def _answer(caller: Caller, secret: SecretRecord, given: set[str]) -> dict[str, Any]:
    """A write call's answer: only what the caller may see (see ``write_answer``)."""
    return secret_out(
        write_answer(
            caller,
            secret,
            sent_description="description" in given,
            sent_metadata="metadata" in given,
        )
    )


def _policy_change(
    body: schemas.SecretCreate | schemas.SecretUpdate | schemas.SecretPut,
) -> dict[str, Any] | Any:
    """The policy fields the request gives (``UNSET`` when it gives none), each entry
    checked here so that a bad one is reported where the request holds it:
    ``body.policy.allowed_destinations[1]``."""
    if "policy" not in body.model_fields_set:
        return UNSET
    if body.policy is None:
        raise ValidationFailed.at(
            "body.policy", "policy cannot be null: leave it out to keep the policy"
        )
    change = body.policy.change()
    resolve_policy(DEFAULT_POLICY, change, where="body.policy")
    return change


def _lifecycle(
    body: schemas.SecretCreate | schemas.SecretUpdate | schemas.SecretPut,
) -> dict[str, Any]:
    """The expiry and rotation a request gives, as the service takes them: left out is
    ``UNSET`` (kept), null is None (none)."""
    given = body.model_fields_set
    found: dict[str, Any] = {"expires_at": UNSET, "rotation": UNSET}
    if "expires_at" in given:
        found["expires_at"] = aware(body.expires_at, "body.expires_at")
    if "rotation" in given:
        found["rotation"] = None if body.rotation is None else body.rotation.model_dump()
    return found


def _metadata_filter(request: Request) -> dict[str, Any] | None:
    """``metadata={"k": "v"}`` as JSON, or the bracket form ``metadata[k]=v``."""
    found: dict[str, Any] = {}
    for key, raw in request.query_params.multi_items():
        if key == "metadata":
            try:
                parsed = json.loads(raw)
            except (ValueError, RecursionError):  # not JSON, or nested past the parser
                parsed = None
            if not isinstance(parsed, dict):
                raise ValidationFailed.at(
                    "query.metadata",
                    'metadata must be a JSON object, e.g. {"environment":"production"}',
                )
            found.update(parsed)
        elif key.startswith("metadata[") and key.endswith("]") and len(key) > len("metadata[]"):
            found[key[len("metadata[") : -1]] = raw
    try:
        # What stored metadata may be, a filter may be: a larger one could match nothing,
        # and text that is not valid Unicode could not even be looked up.
        check_metadata(found)
    except ValueError as exc:
        raise ValidationFailed.at("query.metadata", str(exc)) from None
    return found or None


@router.post(
    "",
    status_code=201,
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 409, 413),
    summary="Create a secret",
)
async def create_secret(body: schemas.SecretCreate, caller: Auth, svc: Svc) -> dict[str, Any]:
    policy = _policy_change(body)
    lifecycle = {k: None if v is UNSET else v for k, v in _lifecycle(body).items()}
    secret = await run_in_threadpool(
        lambda: svc.secrets.create(
            caller,
            body.name,
            body.value,
            body.description,
            body.metadata,
            None if policy is UNSET else policy,
            **lifecycle,
        )
    )
    return _answer(caller, secret, body.model_fields_set)


@router.get(
    "",
    response_model=schemas.SecretList,
    responses=error_responses(*_COMMON),
    summary="List secrets (values are never included)",
    # The filter is JSON in a query parameter, which OpenAPI says with ``content``, a form
    # FastAPI's own parameters cannot take; _metadata_filter reads it (and metadata[k]=v).
    openapi_extra={
        "parameters": [
            {
                "name": "metadata",
                "in": "query",
                "required": False,
                "description": 'JSON object to match, e.g. {"environment":"production"}; '
                "or one metadata[key]=value per entry",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        ]
    },
)
def list_secrets(
    request: Request,
    caller: Auth,
    svc: Svc,
    limit: Limit = 100,
    offset: Offset = 0,
    deleted: Annotated[
        bool, Query(description="list the deleted secrets waiting for their purge instead")
    ] = False,
    expiring_before: Annotated[
        dt.datetime | None,
        Query(
            description="only secrets that expire before this time (or have expired)",
            # "type" too: sent, it is text, never the null of the Optional's schema
            json_schema_extra={"type": "string", "format": "date-time"},
        ),
    ] = None,
) -> dict[str, Any]:
    page = svc.secrets.list_secrets(
        caller,
        limit=limit,
        offset=offset,
        metadata_filter=_metadata_filter(request),
        deleted=deleted,
        expiring_before=aware(expiring_before, "query.expiring_before"),
    )
    return page_body(page, limit, offset, secret_out)


@router.get(
    "/{name}",
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 404),
    summary="Get a secret with its plaintext value",
)
async def get_secret(
    name: NamePath,
    response: Response,
    caller: Auth,
    svc: Svc,
    version: Annotated[int | None, Query(ge=1, le=VERSION_MAX)] = None,
) -> dict[str, Any]:
    revealed: RevealedSecret = await run_in_threadpool(svc.secrets.get, caller, name, version)
    response.headers["ETag"] = f'"{revealed.secret.version}"'
    return secret_out(revealed.secret, revealed.value, revealed.version)


def _expected_version(body_version: int | None, if_match: str | None) -> int | None:
    if if_match is None:
        return body_version
    found = _IF_MATCH.fullmatch(if_match)
    if found is None:
        raise ValidationFailed.at("header.if-match", 'If-Match must be a version number, e.g. "3"')
    version = int(found.group(2))
    if body_version is not None and body_version != version:
        raise ValidationFailed.at("header.if-match", "If-Match and expected_version disagree")
    return version


@router.patch(
    "/{name}",
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 404, 409, 412, 413),
    summary="Update some fields of a secret, rename it, or give it a new value",
)
async def update_secret(
    name: NamePath,
    body: schemas.SecretUpdate,
    caller: Auth,
    svc: Svc,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    given = body.model_fields_set
    if "value" in given and body.value is None:
        raise ValidationFailed.at("body.value", "value cannot be null")
    changes = given - {"expected_version"} - (set() if body.new_name else {"new_name"})
    if not changes:
        raise ValidationFailed.at(
            "body", "nothing to update: give value, description, metadata, new_name or policy"
        )
    policy = _policy_change(body)
    secret = await run_in_threadpool(
        svc.secrets.update,
        caller,
        name,
        value=body.value,
        description=body.description if "description" in given else UNSET,
        metadata=(body.metadata or {}) if "metadata" in given else UNSET,
        new_name=body.new_name,
        expected_version=_expected_version(body.expected_version, if_match),
        policy=policy,
        **_lifecycle(body),
    )
    return _answer(caller, secret, given)


@router.put(
    "/{name}",
    response_model=schemas.Secret,
    responses={**error_responses(*_COMMON, 404, 412, 413), 201: {"model": schemas.Secret}},
    summary="Create or replace a secret's value (201 when created, 200 when replaced)",
)
async def put_secret(
    name: NamePath,
    body: schemas.SecretPut,
    response: Response,
    caller: Auth,
    svc: Svc,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    given = body.model_fields_set
    secret, created = await run_in_threadpool(
        svc.secrets.upsert,
        caller,
        name,
        body.value,
        description=body.description if "description" in given else UNSET,
        metadata=(body.metadata or {}) if "metadata" in given else UNSET,
        expected_version=_expected_version(None, if_match),
        policy=_policy_change(body),
        **_lifecycle(body),
    )
    response.status_code = 201 if created else 200
    return _answer(caller, secret, given)


@router.delete(
    "/{name}",
    response_model=schemas.DeletedSecret,
    responses=error_responses(*_COMMON, 404, 412),
    summary="Delete a secret: restorable until its purge_after, or purged now with force",
)
def delete_secret(
    name: NamePath,
    caller: Auth,
    svc: Svc,
    if_match: IfMatch = None,
    force: Annotated[
        bool,
        Query(
            description="purge now, every version destroyed (needs secrets:admin); also "
            "purges a secret already deleted"
        ),
    ] = False,
) -> dict[str, Any]:
    deleted = svc.secrets.delete(
        caller, name, expected_version=_expected_version(None, if_match), force=force
    )
    return deleted_out(deleted)


@router.post(
    "/{name}/restore",
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 404, 409),
    summary="Restore a deleted secret, every version with it, before its purge",
)
def restore_secret(name: NamePath, caller: Auth, svc: Svc) -> dict[str, Any]:
    return _answer(caller, svc.secrets.restore(caller, name), set())


@router.post(
    "/{name}/rollback",
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 404, 412),
    summary="Make an earlier version's value current again, as a new version",
)
def rollback_secret(
    name: NamePath,
    body: schemas.SecretRollback,
    caller: Auth,
    svc: Svc,
    if_match: IfMatch = None,
) -> dict[str, Any]:
    secret = svc.secrets.rollback(
        caller,
        name,
        body.version,
        expected_version=_expected_version(body.expected_version, if_match),
    )
    return _answer(caller, secret, set())


@router.post(
    "/{name}/rotate",
    response_model=schemas.Secret,
    responses=error_responses(*_COMMON, 404, 409),
    summary="Make the secret's rotation due now (it needs a rotation policy)",
)
def rotate_secret(name: NamePath, caller: Auth, svc: Svc) -> dict[str, Any]:
    return _answer(caller, svc.secrets.rotate_now(caller, name), set())


@router.get(
    "/{name}/versions",
    response_model=schemas.SecretVersionList,
    responses=error_responses(*_COMMON, 404),
    summary="List a secret's versions (never their values)",
)
def list_versions(name: NamePath, caller: Auth, svc: Svc) -> dict[str, Any]:
    versions = svc.secrets.versions(caller, name)
    return {"items": [version_out(v) for v in versions]}


# -- batches: under /v1/secrets:..., Google's custom-method spelling, so that no secret's
# name can shadow them. Declared on their own router: the paths are not under "/{name}".
batch_router = APIRouter(prefix="/v1", tags=["secrets"])


@batch_router.post(
    "/secrets:batchGet",
    response_model=schemas.BatchGetResponse,
    responses=error_responses(*_COMMON, 413),
    summary="Read many secrets' values at once (one audit record per secret)",
)
async def batch_get(body: schemas.BatchGetRequest, caller: Auth, svc: Svc) -> dict[str, Any]:
    read = await run_in_threadpool(svc.batches.get_many, caller, body.names)
    return schemas.batch_get_out(read)


def _batch_item(item: schemas.BatchPutItem, index: int) -> BatchItem:
    given = item.model_fields_set
    policy: Any = UNSET
    if "policy" in given:
        if item.policy is None:
            raise ValidationFailed.at(
                f"body.secrets[{index}].policy", "policy cannot be null: leave it out"
            )
        policy = item.policy.change()
    return BatchItem(
        name=item.name,
        value=item.value,
        description=item.description if "description" in given else UNSET,
        metadata=(item.metadata or {}) if "metadata" in given else UNSET,
        policy=policy,
        expires_at=aware(item.expires_at, f"body.secrets[{index}].expires_at")
        if "expires_at" in given
        else UNSET,
    )


@batch_router.put(
    "/secrets:batch",
    response_model=schemas.BatchPutResponse,
    responses=error_responses(*_COMMON, 409, 413),
    summary="Create or update many secrets, all or nothing (dry_run: say what would change)",
)
async def batch_put(body: schemas.BatchPutRequest, caller: Auth, svc: Svc) -> dict[str, Any]:
    items = [_batch_item(item, index) for index, item in enumerate(body.secrets)]
    written = await run_in_threadpool(
        lambda: svc.batches.put_many(caller, items, dry_run=body.dry_run)
    )
    return schemas.batch_put_out(written, body.dry_run)
