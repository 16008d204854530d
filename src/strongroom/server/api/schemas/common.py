"""Wire shapes every route shares: field types and their checks, pages, the error envelope."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, PlainSerializer

from ...._names import NAME_MAX, NAME_PATTERN, name_problem
from ...errors import ValidationFailed
from ...storage import Page

DESCRIPTION_MAX = 1000
METADATA_MAX_KEYS = 64
METADATA_MAX_BYTES = 16 * 1024
ENCRYPTED = "ENCRYPTED"
# Versions are 32-bit integers in the database; a larger one cannot exist, and PostgreSQL
# would fail on it rather than find nothing.
VERSION_MAX = 2**31 - 1

# What the validators below enforce, said in the OpenAPI document too, so a client (or a
# schema-driven test) knows a request will be refused before sending it.
NAME_SCHEMA: dict[str, JsonValue] = {
    "pattern": f"^{NAME_PATTERN.pattern}$",  # JSON Schema's "$", unlike Python's, admits no "\\n"
    "minLength": 1,
    "maxLength": NAME_MAX,
}
# PostgreSQL text cannot hold NUL, so text stored in a column refuses it on every backend.
NO_NUL_SCHEMA: dict[str, JsonValue] = {"pattern": "^[^\\x00]*$"}

T = TypeVar("T")


def check_name(name: str) -> str:
    problem = name_problem(name)
    if problem:
        raise ValueError(problem)
    return name


def check_text(text: str | None) -> str | None:
    if text is not None and "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


def json_problem(value: object) -> str | None:
    """Why a parsed JSON value cannot be stored as it is, or None.

    ``"\\ud800"`` parses to text that is not valid Unicode and cannot be encoded, and
    ``1e400`` or ``NaN`` parse to floats that would come back as ``null``. Iterative, so
    that no nesting depth the JSON parser allows can exhaust the stack here.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return "holds text that is not valid Unicode (an unpaired surrogate escape)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "holds a number that is out of range (or NaN or Infinity)"
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def check_metadata(metadata: dict[str, JsonValue] | None) -> dict[str, JsonValue] | None:
    if metadata is None:
        return None
    problem = json_problem(metadata)
    if problem:
        raise ValueError(f"metadata {problem}")
    if len(metadata) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata has {len(metadata)} keys; at most {METADATA_MAX_KEYS}")
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; at most {METADATA_MAX_BYTES}")
    return metadata


def aware(value: dt.datetime | None, location: str) -> dt.datetime | None:
    """``value`` when it says its time zone (or is None); a 422 at ``location`` otherwise:
    a time without one would be read in whatever zone the server runs in."""
    if value is not None and value.tzinfo is None:
        raise ValidationFailed.at(location, "give a time zone, e.g. 2027-01-01T00:00:00Z")
    return value


def rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SecretName = Annotated[str, AfterValidator(check_name), Field(json_schema_extra=NAME_SCHEMA)]
Metadata = Annotated[
    dict[str, JsonValue] | None,
    AfterValidator(check_metadata),
    Field(json_schema_extra={"maxProperties": METADATA_MAX_KEYS}),
]
Timestamp = Annotated[dt.datetime, PlainSerializer(rfc3339, return_type=str)]
Value = Annotated[str, Field(min_length=1)]
Description = Annotated[
    str | None,
    Field(max_length=DESCRIPTION_MAX, json_schema_extra=NO_NUL_SCHEMA),
    AfterValidator(check_text),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    database: Literal["ok"]
    keyring: Literal["unsealed"]
    engine: Literal["running", "off"] = Field(
        description="off: this process runs no executions (a worker or another server does)"
    )


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


def fields_of(record: object, model: type[BaseModel]) -> dict[str, Any]:
    """The answer for ``record`` where every field of the wire ``model`` is the record's
    attribute of the same name (most records: the mappers that rename or hide say so)."""
    return {name: getattr(record, name) for name in model.model_fields}


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


# What any authenticated API route can answer besides its own errors: 401/403 (the key),
# 422 (the request), 429 (the request budgets), 503 (the database), 507 (a full disk).
COMMON_ERRORS = (401, 403, 422, 429, 503, 507)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {status: {"model": ErrorEnvelope} for status in statuses}
