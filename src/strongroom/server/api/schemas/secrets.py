"""Wire shapes of ``/v1/secrets``: request bodies, responses and the mappers that fill them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool

from ... import policy
from ... import secrets as service
from ...storage import SecretRecord, VersionRecord
from .common import (
    ENCRYPTED,
    Description,
    Metadata,
    SecretName,
    Strict,
    Timestamp,
    Value,
    fields_of,
)

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
    list(service.known_tools())
    + [
        f"{name}/{operation}"
        for name, operations in service.known_tools().items()
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


def secret_out(
    secret: SecretRecord, value: str = ENCRYPTED, version: int | None = None
) -> dict[str, Any]:
    return {
        "id": secret.id,
        "name": secret.name,
        "description": secret.description,
        "metadata": secret.metadata,
        "value": value,
        "version": secret.version if version is None else version,
        "created_at": secret.created_at,
        "updated_at": secret.updated_at,
        "policy": secret.policy.to_json(),
    }


def version_out(version: VersionRecord) -> dict[str, Any]:
    return fields_of(version, SecretVersion)


def deleted_out(deleted: service.DeletedSecret) -> dict[str, Any]:
    return fields_of(deleted, DeletedSecret)
