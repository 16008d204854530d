"""``client.audit``: the tenant's audit trail (needs the ``audit:read`` scope).

The request builder, then :class:`Audit` and :class:`AsyncAudit`, which send it (see
``_resource.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from .._core import Operation
from .._pages import awalk, walk
from .._resource import AsyncAPIResource, SyncAPIResource, async_call, sync_call
from .._types import NOT_GIVEN, NotGiven, TimeArg, Timeout, rfc3339
from ..models import AuditList, AuditRecord


def list_audit(
    *,
    limit: int | None = None,
    offset: int | None = None,
    secret: str | None = None,
    action: str | None = None,
    result: str | None = None,
    key_id: str | None = None,
    since: TimeArg | None = None,
    until: TimeArg | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[AuditList]:
    """One page of the audit trail, newest first. Each filter given must hold: ``secret``
    (a secret name), ``action`` (``secret.read``), ``result`` (``success`` or an error
    code: ``forbidden``, ``not_found``...), ``key_id`` (the key that acted), ``since``
    (at or after) and ``until`` (before): aware datetimes or RFC 3339 strings."""
    params = {
        "limit": limit,
        "offset": offset,
        "secret": secret,
        "action": action,
        "result": result,
        "key_id": key_id,
        "since": None if since is None else rfc3339(since, "since"),
        "until": None if until is None else rfc3339(until, "until"),
    }
    return Operation(
        "GET",
        "/v1/audit",
        AuditList.model_validate,
        params=params,
        idempotent=True,
        timeout=timeout,
    )


class Audit(SyncAPIResource):
    """``client.audit``: the tenant's audit trail (needs the ``audit:read`` scope)."""

    list = sync_call(list_audit)

    def list_all(
        self,
        *,
        secret: str | None = None,
        action: str | None = None,
        result: str | None = None,
        key_id: str | None = None,
        since: TimeArg | None = None,
        until: TimeArg | None = None,
        page_size: int = 100,
    ) -> Iterator[AuditRecord]:
        """Every matching record, newest first, fetching pages as the loop goes."""
        return walk(
            lambda offset: self.list(
                limit=page_size,
                offset=offset,
                secret=secret,
                action=action,
                result=result,
                key_id=key_id,
                since=since,
                until=until,
            )
        )


class AsyncAudit(AsyncAPIResource):
    """``client.audit``: the tenant's audit trail (needs the ``audit:read`` scope)."""

    list = async_call(list_audit)

    async def list_all(
        self,
        *,
        secret: str | None = None,
        action: str | None = None,
        result: str | None = None,
        key_id: str | None = None,
        since: TimeArg | None = None,
        until: TimeArg | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[AuditRecord]:
        """Every matching record, newest first, fetching pages as the loop goes."""
        async for item in awalk(
            lambda offset: self.list(
                limit=page_size,
                offset=offset,
                secret=secret,
                action=action,
                result=result,
                key_id=key_id,
                since=since,
                until=until,
            )
        ):
            yield item


__all__ = ["AsyncAudit", "Audit"]
