"""Wire shapes of ``/v1/secrets``: request bodies, responses and the mappers that fill them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictBool

from ... import policy
from ... import secret_batches as batches
from ... import secrets as service
from ...rotation_policy import spell_period
from ...storage import SecretRecord, VersionRecord
from .common import (
    ENCRYPTED,
    VERSION_MAX,
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


class RotationChange(Strict):
    """Rotate the secret every ``every`` by running task ``task_id`` for this key."""

    every: str = Field(
        description="how often: a number and a unit, w d h m or s (30d, 12h, 1h30m); 1m to 3650d",
        json_schema_extra={"pattern": "^([0-9]{1,9}[wdhmsWDHMS])+$", "examples": ["30d"]},
        max_length=64,
    )
    task_id: str = Field(
        description="the task that makes the new value (with a set_secret step)",
        pattern="^[A-Za-z0-9_-]{1,64}$",
    )


ExpiresAt = Annotated[
    dt.datetime | None,
    Field(
        description="after it, reads answer 410 expired (secrets:admin still reads); null: never"
    ),
]
RotationField = Annotated[
    RotationChange | None,
    Field(description="the rotation policy; null ends rotation"),
]


# -- requests ---------------------------------------------------------------------------------
class SecretCreate(Strict):
    name: SecretName
    value: Value
    description: Description = None
    metadata: Metadata = None
    policy: PolicyField = None
    expires_at: ExpiresAt = None
    rotation: RotationField = None


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
        {"required": ["expires_at"]},
        {"required": ["rotation"]},
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
    expires_at: ExpiresAt = None
    rotation: RotationField = None


class SecretPut(Strict):
    value: Value
    description: Description = None
    metadata: Metadata = None
    policy: PolicyField = None
    expires_at: ExpiresAt = None
    rotation: RotationField = None


class SecretRollback(Strict):
    """Make an earlier version's value current again, as a new version."""

    version: Annotated[int, Field(ge=1, le=VERSION_MAX, description="the version to go back to")]
    expected_version: Annotated[int | None, Field(ge=1)] = None


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


class Rotation(BaseModel):
    every: str = Field(description="the period, e.g. 30d")
    task_id: str


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
    expires_at: Timestamp | None = Field(description="after it, reads answer 410 expired")
    rotation: Rotation | None
    last_rotated_at: Timestamp | None
    next_rotation_at: Timestamp | None
    deleted_at: Timestamp | None = Field(description="set only on a deleted secret")
    purge_after: Timestamp | None = Field(description="a deleted secret can be restored until then")


class SecretList(BaseModel):
    items: list[Secret]
    limit: int
    offset: int
    has_more: bool


class DeletedSecret(BaseModel):
    id: str
    name: str
    deleted_at: Timestamp
    purge_after: Timestamp | None = Field(
        description="restorable until then (POST /v1/secrets/{name}/restore); null: purged"
    )


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
        "expires_at": secret.expires_at,
        "rotation": None
        if secret.rotation is None
        else {"every": spell_period(secret.rotation.every), "task_id": secret.rotation.task_id},
        "last_rotated_at": secret.last_rotated_at,
        "next_rotation_at": secret.next_rotation_at,
        "deleted_at": secret.deleted_at,
        "purge_after": secret.purge_after,
    }


def version_out(version: VersionRecord) -> dict[str, Any]:
    return fields_of(version, SecretVersion)


def deleted_out(deleted: service.DeletedSecret) -> dict[str, Any]:
    return fields_of(deleted, DeletedSecret)


# -- batches ----------------------------------------------------------------------------------
BatchNames = Annotated[list[SecretName], Field(min_length=1, max_length=batches.MAX_BATCH)]


class BatchGetRequest(Strict):
    names: BatchNames = Field(description="the secrets to read, at most 1000")


class BatchError(BaseModel):
    name: str
    code: str = Field(
        description="what a get of this secret alone would answer: not_found, "
        "forbidden, expired or internal_error"
    )
    message: str


class BatchGetResponse(BaseModel):
    secrets: list[Secret] = Field(description="the secrets read, with their values")
    errors: list[BatchError] = Field(description="the names read no value for, and why")


class BatchPutItem(Strict):
    """One secret to create or update; fields left out keep theirs on an existing one."""

    name: SecretName
    value: Value
    description: Description = None
    metadata: Metadata = None
    policy: PolicyField = None
    expires_at: ExpiresAt = None


class BatchPutRequest(Strict):
    secrets: Annotated[list[BatchPutItem], Field(min_length=1, max_length=batches.MAX_BATCH)]
    dry_run: StrictBool = Field(
        default=False, description="say what would change, and change nothing"
    )


class BatchPutResult(BaseModel):
    name: str
    id: str
    status: str = Field(description="created, updated, or unchanged (no new version)")
    version: int


class BatchPutResponse(BaseModel):
    items: list[BatchPutResult]
    dry_run: bool


def batch_get_out(read: batches.BatchRead) -> dict[str, Any]:
    return {
        "secrets": [secret_out(r.secret, r.value, r.version) for r in read.secrets],
        "errors": [fields_of(miss, BatchError) for miss in read.errors],
    }


def batch_put_out(written: list[batches.BatchWritten], dry_run: bool) -> dict[str, Any]:
    return {
        "items": [
            {
                "name": one.name,
                "id": one.secret.id,
                "status": one.outcome.value,
                "version": one.secret.version,
            }
            for one in written
        ],
        "dry_run": dry_run,
    }
