"""Typed answers of the API. Unknown fields are kept, so a newer server does not break."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import ConfigDict, Field

from ._models import Model
from ._pages import ItemList, Page

ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
# What an API key may do: ``*`` is every scope. A key answer lists its scopes as strings.
KeyScope = Literal[
    "secrets:read",
    "secrets:write",
    "secrets:admin",
    "tasks:run",
    "audit:read",
    "keys:admin",
    "*",
]


class SecretPolicy(Model):
    """A secret's usage policy; the default restricts nothing.

    - ``allowed_destinations``: hosts tasks may send the secret (or anything made from it)
      to: ``api.stripe.com``, ``api.stripe.com:443``, ``*.stripe.com`` (subdomains only),
      an IP address. ``None``: no restriction; ``[]``: nowhere.
    - ``allowed_tools``: ``http``, or ``http/request`` (one operation). ``None``: every tool.
    - ``readable``: ``False`` makes it use-only: tasks can use it, no API key can read it.

    Given to ``secrets.update`` (or ``upsert``), only the fields set when it was made are
    sent, and the others keep their values: ``SecretPolicy(readable=False)`` changes
    ``readable`` alone, ``SecretPolicy(allowed_tools=None)`` removes that restriction. A
    policy read from a secret has every field set, so passing it sets them all. Loosening
    a policy (readable again, a list widened or removed) needs the ``secrets:admin`` scope.
    """

    allowed_destinations: list[str] | None = None
    allowed_tools: list[str] | None = None
    readable: bool = True


class Rotation(Model):
    """A secret's rotation policy: task ``task_id`` makes a new value every ``every``
    (``"30d"``), run for the key that set the policy."""

    every: str
    task_id: str


class Secret(Model):
    """A secret. ``value`` is the plaintext only when read with ``secrets.get`` (or
    ``batch_get``); everywhere else it is ``"ENCRYPTED"``. It never shows in ``repr``.

    ``expires_at``: after it, reads raise :class:`SecretExpiredError` (a key with
    ``secrets:admin`` still reads). ``deleted_at`` and ``purge_after`` are set only on a
    deleted secret (``list(deleted=True)``), restorable until ``purge_after``."""

    id: str
    name: str
    description: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    value: str = Field(repr=False)
    version: int
    created_at: dt.datetime
    updated_at: dt.datetime
    # A server from before policies sends none: the default, which restricts nothing.
    policy: SecretPolicy = Field(default_factory=SecretPolicy)
    expires_at: dt.datetime | None = None
    rotation: Rotation | None = None
    last_rotated_at: dt.datetime | None = None
    next_rotation_at: dt.datetime | None = None
    deleted_at: dt.datetime | None = None
    purge_after: dt.datetime | None = None


class SecretList(Page[Secret]):
    """A page of secrets, by name; each value shows as ``"ENCRYPTED"``."""


class DeletedSecret(Model):
    """A deleted secret: restorable with ``secrets.restore`` until ``purge_after``;
    ``purge_after`` is ``None`` when it was purged (nothing of it is left)."""

    id: str
    name: str
    deleted_at: dt.datetime
    purge_after: dt.datetime | None = None


class BatchError(Model):
    """A name ``batch_get`` read no value for: ``code`` is what a ``get`` of it alone
    would raise (``not_found``, ``forbidden``, ``expired``, ``internal_error``)."""

    name: str
    code: str
    message: str


class BatchGetResponse(Model):
    """The secrets a ``batch_get`` read (with their values), and the names it did not."""

    secrets: list[Secret]
    errors: list[BatchError] = Field(default_factory=list)

    def values(self) -> dict[str, str]:
        """``{name: value}`` of the secrets read."""
        return {secret.name: secret.value for secret in self.secrets}


class BatchPutItem(TypedDict):
    """One secret of a ``batch_put``: its name and value, and optionally the fields to
    set (left out: an existing secret keeps its own)."""

    name: str
    value: str
    description: NotRequired[str | None]
    metadata: NotRequired[dict[str, Any]]
    policy: NotRequired[SecretPolicy | dict[str, Any]]
    expires_at: NotRequired[dt.datetime | None]


class BatchPutResult(Model):
    name: str
    id: str
    status: Literal["created", "updated", "unchanged"]
    version: int


class BatchPutResponse(Model):
    """What a ``batch_put`` did (or, with ``dry_run``, would do) to each secret."""

    items: list[BatchPutResult]
    dry_run: bool


class SecretVersion(Model):
    version: int
    created_at: dt.datetime
    created_by: str | None = None


class SecretVersionList(ItemList[SecretVersion]):
    """A secret's versions, newest first."""


class AuditRecord(Model):
    id: int
    time: dt.datetime
    key_id: str | None = None
    # The key's name when the event happened (a renamed key's older events keep the old one).
    key_name: str | None = None
    action: str
    outcome: str
    secret_name: str | None = None
    secret_id: str | None = None
    request_id: str | None = None
    client_addr: str | None = None
    detail: str | None = None


class AuditList(Page[AuditRecord]):
    """A page of the audit trail, newest first."""


class KeyRule(Model):
    """Which of the tenant's secrets an API key reaches: a name matching one of ``names``
    (``ci_*``: ``*`` any run of characters, ``?`` one; any name when empty) whose
    metadata holds every entry of ``metadata`` (scalars: strings, numbers, booleans).

    A key without a rule (``rule=None``) reaches every secret of its tenant.
    """

    names: list[str] = Field(default_factory=list)
    metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)


class ApiKey(Model):
    """An API key as the server keeps it: never the key itself, only its ``hint`` (its
    prefix and last four characters)."""

    id: str
    name: str | None = None
    hint: str
    scopes: list[str]
    rule: KeyRule | None = None
    created_at: dt.datetime
    created_by: str | None = None  # the key that issued it; None: from a shell
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None  # exact to a minute
    revoked_at: dt.datetime | None = None


class CreatedApiKey(ApiKey):
    """A new API key: ``key`` is the key itself, shown this once by the server and never
    again. It stays out of ``repr`` and ``str`` (and of validation errors), so a log line
    or a traceback that shows the object does not show the key."""

    model_config = ConfigDict(hide_input_in_errors=True)

    key: str = Field(repr=False)


class RotatedApiKey(Model):
    """A rotation: the ``new`` key (with the key itself) and the ``old`` one as changed,
    which works until its ``expires_at`` when a grace period was given, else is revoked."""

    model_config = ConfigDict(hide_input_in_errors=True)

    new: CreatedApiKey
    old: ApiKey


class ApiKeyList(Page[ApiKey]):
    """A page of the tenant's API keys that the calling key may manage, oldest first."""


class Task(Model):
    id: str
    name: str | None = None
    description: str | None = None
    steps: list[dict[str, Any]]
    created_at: dt.datetime
    updated_at: dt.datetime


class TaskList(Page[Task]):
    limit: int = 100
    offset: int = 0
    has_more: bool = False


class Execution(Model):
    id: str
    task_id: str
    status: ExecutionStatus
    input: Any = None
    output: Any = None
    error: Any = None
    created_at: dt.datetime
    updated_at: dt.datetime

    @property
    def done(self) -> bool:
        return self.status in TERMINAL_STATUSES


class ExecutionList(Page[Execution]):
    limit: int = 100
    offset: int = 0
    has_more: bool = False


class ExecutionStep(Model):
    index: int
    kind: str
    status: str
    output: Any = None
    error: Any = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class ExecutionStepList(ItemList[ExecutionStep]):
    """An execution's steps, in order."""


__all__ = [
    "ApiKey",
    "ApiKeyList",
    "AuditList",
    "AuditRecord",
    "CreatedApiKey",
    "DeletedSecret",
    "Execution",
    "ExecutionList",
    "ExecutionStatus",
    "ExecutionStep",
    "ExecutionStepList",
    "KeyRule",
    "KeyScope",
    "RotatedApiKey",
    "Secret",
    "SecretList",
    "SecretPolicy",
    "SecretVersion",
    "SecretVersionList",
    "Task",
    "TaskList",
]
