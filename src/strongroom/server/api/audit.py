"""Routes under ``/v1/audit``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from .. import audit
from ..audit import Action, Caller
from ..storage.base import AuditEvent
from . import schemas
from .deps import Services, authenticate, services
from .schemas import error_responses

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get(
    "",
    response_model=schemas.AuditList,
    responses=error_responses(401, 403, 422, 429, 503),
    summary="The tenant's audit trail, newest first",
)
def list_audit(
    caller: Annotated[Caller, Depends(authenticate)],
    svc: Annotated[Services, Depends(services)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    secret: Annotated[
        schemas.SecretName | None, Query(description="only events about this secret name")
    ] = None,
    action: Annotated[Action | None, Query(description="only events of this action")] = None,
) -> dict[str, Any]:
    page = audit.list_events(
        svc.store, caller, limit=limit, offset=offset, secret_name=secret, action=action
    )
    return schemas.page_body(page, limit, offset, record_out)


def record_out(event: AuditEvent) -> dict[str, Any]:
    record = asdict(event)
    del record["tenant_id"]  # the caller's own tenant, always
    record["time"] = record.pop("occurred_at")
    return record
