"""Routes under ``/v1/audit``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from ..trail import Action
from .deps import Auth, Limit, Offset, Svc
from .schemas import audit as schemas
from .schemas.common import SecretName, error_responses, page_body

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "",
    response_model=schemas.AuditList,
    responses=error_responses(401, 403, 422, 429, 503),
    summary="The tenant's audit trail, newest first",
)
def list_audit(
    caller: Auth,
    svc: Svc,
    limit: Limit = 100,
    offset: Offset = 0,
    secret: Annotated[
        SecretName | None, Query(description="only events about this secret name")
    ] = None,
    action: Annotated[Action | None, Query(description="only events of this action")] = None,
) -> dict[str, Any]:
    page = svc.audit.list_events(
        caller, limit=limit, offset=offset, secret_name=secret, action=action
    )
    return page_body(page, limit, offset, schemas.record_out)
