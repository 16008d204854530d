"""Wire shapes of ``/v1/keys``: API keys as a key with ``keys:admin`` manages them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from ... import rules
from ...auth import Scope
from ...storage import ApiKeyRecord
from .common import Strict, Timestamp, fields_of

KeyName = Annotated[str, Field(min_length=1, max_length=200, pattern="^[^\\x00]*$")]
ScopeName = Annotated[str, Field(json_schema_extra={"enum": [scope.value for scope in Scope]})]
Glob = Annotated[
    str,
    Field(pattern=f"^{rules.GLOB_PATTERN.pattern}$", examples=["ci_*", "stripe_*"]),
]
SelectorValue = StrictStr | StrictInt | StrictFloat | StrictBool


class Rule(Strict):
    """Which secrets of the tenant a key reaches: a name matching one of ``names`` (any
    name when empty) whose metadata holds every entry of ``metadata``."""

    names: Annotated[list[Glob], Field(max_length=rules.MAX_GLOBS)] = Field(
        default_factory=list, description="name globs: * any run of characters, ? one"
    )
    metadata: Annotated[dict[str, SelectorValue], Field(max_length=rules.MAX_SELECTOR_ENTRIES)] = (
        Field(default_factory=dict, description="entries a secret's metadata must all hold")
    )


class KeyCreate(Strict):
    """A new key of the caller's tenant. Scopes, rule and expiry left out are the calling
    key's own; given, they may only narrow them."""

    name: KeyName | None = None
    scopes: Annotated[list[ScopeName], Field(min_length=1, max_length=16)] | None = None
    rule: Rule | None = Field(default=None, description="null: every secret of the tenant")
    expires_at: dt.datetime | None = Field(default=None, description="null: never")


class KeyUpdate(Strict):
    """The fields to change; the key as changed must stay within the calling key's power."""

    name: KeyName | None = None
    # Not nullable: a key without scopes is no key. Left out, they stay as they are (the
    # default is never used: the route reads only the fields given).
    scopes: Annotated[list[ScopeName], Field(min_length=1, max_length=16)] = Field(
        default_factory=list
    )
    rule: Rule | None = None
    expires_at: dt.datetime | None = None


class KeyRotate(Strict):
    grace_seconds: int = Field(
        default=0,
        ge=0,
        le=30 * 24 * 3600,
        description="how long the old key keeps working (0: revoked at once)",
    )


class Key(BaseModel):
    id: str
    name: str | None
    hint: str = Field(description="the key's prefix and last four characters")
    scopes: list[str]
    rule: Rule | None
    created_at: Timestamp
    created_by: str | None = Field(description="the key that issued it (null: from a shell)")
    expires_at: Timestamp | None
    last_used_at: Timestamp | None = Field(description="exact to a minute")
    revoked_at: Timestamp | None


class KeyCreated(Key):
    key: str = Field(description="the new API key: shown this once, never again")


class KeyRotated(BaseModel):
    new: KeyCreated
    old: Key


class KeyList(BaseModel):
    items: list[Key]
    limit: int
    offset: int
    has_more: bool


def key_out(record: ApiKeyRecord) -> dict[str, Any]:
    answer = fields_of(record, Key)
    answer["rule"] = record.rule.as_dict() if record.rule else None
    return answer


def created_out(key: str, record: ApiKeyRecord) -> dict[str, Any]:
    return {**key_out(record), "key": key}
