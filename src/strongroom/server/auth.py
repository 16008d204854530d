"""Authorization: who a request acts as, the scopes a key may hold, and every check of them.

Authentication (an ``Authorization: Bearer`` header to a :class:`Caller`) is the HTTP
layer's (``api/deps.py``); deciding whether that caller may do a thing is this module's,
through :func:`require`, so that every refusal is decided, worded and audited alike.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from . import trail
from .errors import Forbidden
from .rules import ResourceRule
from .storage import Store
from .trail import Action, Actor


class Scope(StrEnum):
    """What an API key may do; ``ALL`` (``*``) grants every scope."""

    SECRETS_READ = "secrets:read"
    SECRETS_WRITE = "secrets:write"
    SECRETS_ADMIN = "secrets:admin"  # loosen a secret's usage policy
    TASKS_RUN = "tasks:run"  # tasks and executions: use secrets, never read them
    AUDIT_READ = "audit:read"
    KEYS_ADMIN = "keys:admin"  # issue, change, rotate and revoke keys no wider than itself
    ALL = "*"


_SCOPE_NAMES = frozenset(scope.value for scope in Scope)


def scope_problem(scope: str) -> str | None:
    """Why ``scope`` cannot be given to a key, or None when it can."""
    if scope in _SCOPE_NAMES:
        return None
    known = ", ".join(Scope)
    return f"unknown scope {scope!r} (known: {known})"


def grants(scopes: tuple[str, ...], needed: Scope) -> bool:
    return Scope.ALL in scopes or needed in scopes


def scopes_within(inner: tuple[str, ...], outer: tuple[str, ...]) -> bool:
    """Whether a key of scopes ``inner`` may do nothing one of ``outer`` may not."""
    if Scope.ALL in outer:
        return True
    return Scope.ALL not in inner and set(inner) <= set(outer)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated key a request acts as, and where the request came from."""

    tenant_id: str
    tenant_name: str
    key_id: str
    scopes: tuple[str, ...]
    request_id: str | None = None
    client_addr: str | None = None
    key_name: str | None = None
    # Which of the tenant's secrets the key reaches (rules.py); None: all of them.
    rule: ResourceRule | None = None
    expires_at: dt.datetime | None = None

    def may(self, scope: Scope) -> bool:
        return grants(self.scopes, scope)

    def reaches(self, name: str, metadata: Mapping[str, Any]) -> bool:
        return self.rule is None or self.rule.admits(name, metadata)

    def reaches_name(self, name: str) -> bool:
        """Whether a secret of this name can be in reach; decided by the name alone, so a
        refusal on it tells the caller nothing about which secrets exist."""
        return self.rule is None or self.rule.admits_name(name)

    @property
    def actor(self) -> Actor:
        """The caller as the audit trail names it."""
        return Actor(self.tenant_id, self.key_id, self.request_id, self.client_addr, self.key_name)


def require(
    store: Store,
    caller: Caller,
    scope: Scope,
    action: Action | None = None,
    *,
    secret_name: str | None = None,
    secret_id: str | None = None,
) -> None:
    """``Forbidden`` unless ``caller`` holds ``scope``. A refused ``action`` is audited, in
    a transaction of its own; a refused read of a listing (``action`` None) is not."""
    if caller.may(scope):
        return
    if action is not None:
        trail.record_alone(
            store,
            trail.event(
                caller.actor, action, "forbidden", secret_name=secret_name, secret_id=secret_id
            ),
        )
    raise Forbidden(f"this API key lacks the {scope.value!r} scope")


def outside_rule(caller: Caller, name: str) -> Forbidden:
    """A refusal of a secret name the caller's rule cannot reach (by the name alone)."""
    assert caller.rule is not None
    return Forbidden(f"secret {name!r} is outside this API key's reach ({caller.rule.describe()})")
