"""Wire shapes of the HTTP API (request bodies and responses), as the contract pins them."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PlainSerializer,
    StrictBool,
)

from ..._names import NAME_MAX, NAME_PATTERN, name_problem
from .. import policy
from ..secrets import known_tools
from ..storage.base import Page

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


# -- usage policies ---------------------------------------------------------------------------
# What JSON Schema can say of a destination: text without spaces or slashes (no URL). The
# rest of its grammar (host, *.domain, IP address, :port) is policy.py's, which refuses
# an entry it cannot read with a 422 located at the entry.
Destination = Annotated[
    str,
    Field(
        json_schema_extra={
            "minLength": 1,
            "maxLength": policy.MAX_ENTRY_LENGTH,
            "pattern": "^[^\\s/]+$",
            "examples": ["api.stripe.com", "*.stripe.com", "api.stripe.com:443", "[2001:db8::1]"],
        }
    ),
]
# The tools a task step can call, and each of their operations: a tool name alone allows
# every operation of it.
TOOL_NAMES = sorted(
    list(known_tools())
    + [
        f"{name}/{operation}"
        for name, operations in known_tools().items()
        for operation in operations
    ]
)
ToolName = Annotated[str, Field(json_schema_extra={"enum": list(TOOL_NAMES)})]
DestinationList = Annotated[list[Destination], Field(max_length=policy.MAX_ENTRIES)]
ToolList = Annotated[list[ToolName], Field(max_length=policy.MAX_ENTRIES)]


class SecretPolicyChange(Strict):
    """A secret's usage policy, as a request gives it. Creating a secret, a field left out
    has its default (no restriction, readable); updating one (PATCH, or PUT of an existing
    secret), a field left out keeps its value. Loosening an existing policy (readable
    again, a list widened or removed) needs the ``secrets:admin`` scope."""

    allowed_destinations: DestinationList | None = Field(
        default=None,
        description="hosts tasks may send the secret (or anything made from it) to: "
        "api.stripe.com, api.stripe.com:443, *.stripe.com (subdomains only), an IP address; "
        "null: no restriction; []: nowhere",
    )
    allowed_tools: ToolList | None = Field(
        default=None,
        description="tools (http) or tool/operation (http/request) that may use the secret; "
        "null: every tool; []: none",
    )
    readable: StrictBool = Field(
        default=True,
        description="false makes it use-only: tasks can use it, no API key can read its value",
    )

    def change(self) -> dict[str, Any]:
        """The fields this request gave, as the secrets service takes a policy change."""
        return {name: getattr(self, name) for name in self.model_fields_set}


def _not_null(schema: dict[str, Any]) -> None:
    """The schema of a field that may be left out but not be null: its Python default,
    ``None``, is "not given", not a value a request may send (the route refuses a null).
    (``X | None`` rather than ``SkipJsonSchema``: a nullable field's errors are located
    at the field, ``body.policy.readable``, not under a union member's name.)"""
    schema.pop("default", None)
    branches = [b for b in schema.pop("anyOf", []) if b != {"type": "null"}]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches


PolicyField = Annotated[SecretPolicyChange | None, Field(json_schema_extra=_not_null)]


# -- requests ---------------------------------------------------------------------------------
class SecretCreate(Strict):
    name: SecretName
    value: Value
    description: Description = None
    metadata: Metadata = None
    policy: PolicyField = None


def _update_schema(schema: dict[str, Any]) -> None:
    """What the update route adds to the model: ``value`` may be left out but not be null,
    and at least one field besides ``expected_version`` must be given."""
    schema["properties"]["value"] = {"type": "string", "minLength": 1, "title": "Value"}
    schema["anyOf"] = [
        {"required": ["value"]},
        {"required": ["description"]},
        {"required": ["metadata"]},
        {"required": ["new_name"], "properties": {"new_name": {"type": "string"}}},
        {"required": ["policy"]},
    ]


class SecretUpdate(Strict):
    """Fields left out keep their values; ``description: null`` clears the description."""

    model_config = ConfigDict(json_schema_extra=_update_schema)

    value: Value | None = None
    description: Description = None
    metadata: Metadata = None
    new_name: SecretName | None = None
    expected_version: Annotated[int | None, Field(ge=1)] = None
    policy: PolicyField = None


class SecretPut(Strict):
    value: Value
    description: Description = None
    metadata: Metadata = None
    policy: PolicyField = None


# -- responses --------------------------------------------------------------------------------
class SecretPolicy(BaseModel):
    """A secret's usage policy; the default restricts nothing."""

    allowed_destinations: list[str] | None = Field(
        description="hosts tasks may send the secret to; null: no restriction"
    )
    allowed_tools: list[str] | None = Field(
        description="tools (or tool/operation) that may use the secret; null: every tool"
    )
    readable: bool = Field(description="false: use-only, no API key can read the value")


class Secret(BaseModel):
    id: str
    name: str
    description: str | None
    metadata: dict[str, JsonValue]
    value: str = Field(description=f'The plaintext on get; "{ENCRYPTED}" everywhere else.')
    version: int
    created_at: Timestamp
    updated_at: Timestamp
    policy: SecretPolicy


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


# What any authenticated API route can answer besides its own errors: 401/403 (the key),
# 422 (the request), 429 (the request budgets), 503 (the database), 507 (a full disk).
COMMON_ERRORS = (401, 403, 422, 429, 503, 507)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer with."""
    return {status: {"model": ErrorEnvelope} for status in statuses}
