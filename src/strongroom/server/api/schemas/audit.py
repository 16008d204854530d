"""Wire shapes of ``/v1/audit``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import BaseModel

from ...storage import AuditEvent
from .common import Timestamp


class AuditRecord(BaseModel):
    id: int
    time: Timestamp
    key_id: str | None
    key_name: str | None
    action: str
    outcome: str
    secret_name: str | None
    secret_id: str | None
    request_id: str | None
    client_addr: str | None
    detail: str | None


class AuditList(BaseModel):
    items: list[AuditRecord]
    limit: int
    offset: int
    has_more: bool


def record_out(event: AuditEvent) -> dict[str, Any]:
    record = asdict(event)
    del record["tenant_id"]  # the caller's own tenant, always
    record["time"] = record.pop("occurred_at")
    return record
