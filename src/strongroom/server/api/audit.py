"""Routes under ``/v1/audit``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ..storage import AuditFilter
from ..trail import Action
from .deps import Auth, Limit, Offset, Svc, known_query_only
from .schemas import audit as schemas
from .schemas.common import SecretName, aware, error_responses, page_body

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(known_query_only)])


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
    result: Annotated[
        str | None,
        Query(
            pattern="^[a-z_]{1,32}$",
            description="only events that ended so: success, or an error code (forbidden, "
            "not_found, unauthorized, conflict...)",
        ),
    ] = None,
    key_id: Annotated[
        str | None, Query(max_length=64, description="only events of this API key")
    ] = None,
    since: Annotated[
        dt.datetime | None, Query(description="only events at or after this time (RFC 3339)")
    ] = None,
    until: Annotated[
        dt.datetime | None, Query(description="only events before this time (RFC 3339)")
    ] = None,
) -> dict[str, Any]:
    where = AuditFilter(
        since=aware(since, "query.since"),
        until=aware(until, "query.until"),
        action=action,
        outcome=result,
        secret_name=secret,
        key_id=key_id,
    )
    page = svc.audit.list_events(caller, limit=limit, offset=offset, where=where)
    return page_body(page, limit, offset, schemas.record_out)
