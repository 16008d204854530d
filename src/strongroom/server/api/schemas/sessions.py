"""Wire shapes of ``/v1/sessions``: a session as started, and who a request acts as."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ...auth import Caller
from ...storage import SessionRecord
from .common import Timestamp


class Session(BaseModel):
    id: str = Field(description="the session's id; its token is only ever in the cookie")
    key_id: str = Field(description="the API key the session acts as")
    scopes: list[str] = Field(description="the key's scopes: all the session may do")
    expires_at: Timestamp


class Identity(BaseModel):
    key_id: str
    key_name: str | None
    tenant_name: str
    scopes: list[str]
    session_id: str | None = Field(
        description="the session the request came with; null for a request with an API key"
    )
    expires_at: Timestamp | None = Field(
        description="when this credential stops working: the session's end, or the key's "
        "expiry for a request with an API key (null: the key does not expire)"
    )


def session_out(record: SessionRecord, caller: Caller) -> dict[str, Any]:
    return {
        "id": record.id,
        "key_id": record.key_id,
        "scopes": list(caller.scopes),
        "expires_at": record.expires_at,
    }


def identity_out(caller: Caller, session: SessionRecord | None) -> dict[str, Any]:
    return {
        "key_id": caller.key_id,
        "key_name": caller.key_name,
        "tenant_name": caller.tenant_name,
        "scopes": list(caller.scopes),
        "session_id": session.id if session else None,
        "expires_at": session.expires_at if session else caller.expires_at,
    }
