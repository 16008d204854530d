"""Wire shapes of the HTTP API (request bodies and responses), as the contract pins them."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
)

from ..._names import name_problem
from ..storage.base import Page

DESCRIPTION_MAX = 1000
METADATA_MAX_KEYS = 64
METADATA_MAX_BYTES = 16 * 1024
ENCRYPTED = "ENCRYPTED"

T = TypeVar("T")


def check_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def check_metadata(metadata: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
    if metadata is None:
        return None
    if len(metadata) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata has {len(metadata)} keys; at most {METADATA_MAX_KEYS}")
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {METADATA_MAX_BYTES}")
    return metadata


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SecretName = Annotated[str, AfterValidator(check_name)]
Metadata = Annotated[dict[str, JsonValue] | None, AfterValidator(check_metadata)]
Timestamp = Annotated[dt.datetime, PlainSerializer(rfc3339, return_type=str)]
Value = Annotated[str, Field(min_length=1)]
Description = Annotated[str | None, Field(max_length=DESCRIPTION_MAX)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- requests ---------------------------------------------------------------------------------
class SecretCreate(Strict):
    name: SecretName
    value: Value
    description: Description = None
    metadata: Metadata = None


class SecretUpdate(Strict):
    """Fields left out keep their values; ``description: null`` clears the description."""

    value: Value | None = None
    description: Description = None
    metadata: Metadata = None
    new_name: SecretName | None = None
    expected_version: Annotated[int | None, Field(ge=1)] = None


class SecretPut(Strict):
    value: Value
    description: Description = None
    metadata: Metadata = None


# -- responses --------------------------------------------------------------------------------
class Secret(BaseModel):
    id: str
    name: str
    description: str | None
    metadata: dict[str, JsonValue]
    value: str = Field(description=f'The plaintext on get; "{ENCRYPTED}" everywhere else.')
    version: int
    created_at: Timestamp
    updated_at: Timestamp


class SecretList(BaseModel):
    items: list[Secret]
    limit: int
    offset: int
    has_more: bool


class DeletedSecret(BaseModel):
    id: str
    name: str
    deleted_at: Timestamp


class SecretVersion(BaseModel):
    version: int
    created_at: Timestamp
    created_by: str | None = Field(description="id of the API key that wrote this version")


class SecretVersionList(BaseModel):
    items: list[SecretVersion]


class AuditRecord(BaseModel):
    id: int
    time: Timestamp
    key_id: str | None
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


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


class ErrorDetail(BaseModel):
    location: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    request_id: str | None
    details: list[ErrorDetail] = []


class ErrorEnvelope(BaseModel):
    error: ErrorBody


def page_body(
    page: Page[T], limit: int, offset: int, render: Callable[[T], dict[str, Any]]
) -> dict[str, Any]:
    """A page as every list route answers it: ``{items, limit, offset, has_more}``."""
    return {
        "items": [render(item) for item in page.items],
        "limit": limit,
        "offset": offset,
        "has_more": page.has_more,
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {status: {"model": ErrorEnvelope} for status in statuses}
