"""``client.keys``: issue, list, change, rotate and revoke API keys (needs ``keys:admin``).

A key manages only keys no more powerful than itself: a key it issues or changes has no
scope it lacks, reaches no secret beyond its rule and expires no later than it does, and
the server answers 403 (:class:`PermissionDeniedError`) to anything more. So the scopes,
rule and expiry a new key is not given are the calling key's own.

The request builders, one per call, then :class:`Keys` and :class:`AsyncKeys`, which send
them (see ``_resource.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .._core import Operation
from .._pages import awalk, walk
from .._resource import AsyncAPIResource, SyncAPIResource, async_call, segment, sync_call
from .._types import NOT_GIVEN, NotGiven, TimeArg, Timeout, rfc3339
from ..models import ApiKey, ApiKeyList, CreatedApiKey, KeyRule, KeyScope, RotatedApiKey

# A rule as the calls take it: the model, or a mapping of its fields.
RuleArg = KeyRule | Mapping[str, Any]


def _path(key_id: str) -> str:
    return f"/v1/keys/{segment(key_id)}"


def rule_body(rule: RuleArg) -> dict[str, Any]:
    """The wire form of a rule argument: ``{"names": [...], "metadata": {...}}``."""
    if isinstance(rule, KeyRule):
        return rule.model_dump(mode="json")
    if isinstance(rule, Mapping):
        body = dict(rule)
        names = body.get("names")
        if names is not None and not isinstance(names, str):
            body["names"] = list(names)
        return body
    raise TypeError(f"rule must be a KeyRule, a mapping or None, not {type(rule).__name__}")


def _power(
    scopes: Sequence[KeyScope] | NotGiven,
    rule: RuleArg | NotGiven | None,
    expires_at: TimeArg | NotGiven | None,
) -> dict[str, Any]:
    """The scopes, rule and expiry given, in their wire form; those left out are not sent."""
    body: dict[str, Any] = {}
    if not isinstance(scopes, NotGiven):
        if isinstance(scopes, str):
            raise TypeError("scopes must be a list of scopes, e.g. ['secrets:read']")
        body["scopes"] = list(scopes)
    if not isinstance(rule, NotGiven):
        body["rule"] = None if rule is None else rule_body(rule)
    if not isinstance(expires_at, NotGiven):
        body["expires_at"] = None if expires_at is None else rfc3339(expires_at, "expires_at")
    return body


def create_key(
    *,
    name: str | NotGiven | None = NOT_GIVEN,
    scopes: Sequence[KeyScope] | NotGiven = NOT_GIVEN,
    rule: RuleArg | NotGiven | None = NOT_GIVEN,
    expires_at: TimeArg | NotGiven | None = NOT_GIVEN,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[CreatedApiKey]:
    """Issue a new API key of the calling key's tenant; its ``.key`` is shown only now.

    ``scopes``, ``rule`` and ``expires_at`` left out are the calling key's own; given,
    they may only narrow them. ``rule=None`` reaches every secret and ``expires_at=None``
    never expires, both only for a calling key that does the same. ``expires_at`` is an
    aware datetime or an RFC 3339 string with a zone.
    """
    body = _power(scopes, rule, expires_at)
    if not isinstance(name, NotGiven):
        body["name"] = name
    return Operation("POST", "/v1/keys", CreatedApiKey.model_validate, json=body, timeout=timeout)


def list_keys(
    *,
    limit: int | None = None,
    offset: int | None = None,
    include_revoked: bool | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[ApiKeyList]:
    """One page of the tenant's keys that this key may manage, oldest first (revoked
    ones only with ``include_revoked=True``)."""
    params = {"limit": limit, "offset": offset, "include_revoked": include_revoked}
    return Operation(
        "GET",
        "/v1/keys",
        ApiKeyList.model_validate,
        params=params,
        idempotent=True,
        timeout=timeout,
    )


def get_key(key_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Operation[ApiKey]:
    """One key, by id (never the key itself)."""
    return Operation("GET", _path(key_id), ApiKey.model_validate, idempotent=True, timeout=timeout)


def update_key(
    key_id: str,
    *,
    name: str | NotGiven | None = NOT_GIVEN,
    scopes: Sequence[KeyScope] | NotGiven = NOT_GIVEN,
    rule: RuleArg | NotGiven | None = NOT_GIVEN,
    expires_at: TimeArg | NotGiven | None = NOT_GIVEN,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[ApiKey]:
    """Change only the fields given: ``name=None`` clears the name, ``rule=None`` lets
    the key reach every secret, ``expires_at=None`` makes it never expire. The key as
    changed must stay within the calling key's power (a key may narrow itself)."""
    body = _power(scopes, rule, expires_at)
    if not isinstance(name, NotGiven):
        body["name"] = name
    return Operation(
        "PATCH",
        _path(key_id),
        ApiKey.model_validate,
        json=body,
        # The fields are set, not added to: sending it twice ends the same.
        idempotent=True,
        timeout=timeout,
    )


def revoke_key(key_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Operation[ApiKey]:
    """Revoke a key: it stops working at once (revoking a revoked key changes nothing)."""
    return Operation(
        "DELETE", _path(key_id), ApiKey.model_validate, idempotent=True, timeout=timeout
    )


def rotate_key(
    key_id: str,
    *,
    grace_seconds: int | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[RotatedApiKey]:
    """Replace a key by a new one with its name, scopes, rule and expiry. The old one
    keeps working for ``grace_seconds`` (0 to 30 days), or is revoked at once without."""
    body = {} if grace_seconds is None else {"grace_seconds": grace_seconds}
    return Operation(
        "POST", _path(key_id) + "/rotate", RotatedApiKey.model_validate, json=body, timeout=timeout
    )


class Keys(SyncAPIResource):
    """``client.keys``: issue, list, change, rotate and revoke API keys (``keys:admin``)."""

    create = sync_call(create_key)
    list = sync_call(list_keys)
    get = sync_call(get_key)
    update = sync_call(update_key)
    revoke = sync_call(revoke_key)
    rotate = sync_call(rotate_key)

    def list_all(self, *, include_revoked: bool = False, page_size: int = 100) -> Iterator[ApiKey]:
        """Every key this key may manage, fetching pages as the loop goes."""
        return walk(
            lambda offset: self.list(
                limit=page_size, offset=offset, include_revoked=include_revoked
            )
        )


class AsyncKeys(AsyncAPIResource):
    """``client.keys``: issue, list, change, rotate and revoke API keys (``keys:admin``)."""

    create = async_call(create_key)
    list = async_call(list_keys)
    get = async_call(get_key)
    update = async_call(update_key)
    revoke = async_call(revoke_key)
    rotate = async_call(rotate_key)

    async def list_all(
        self, *, include_revoked: bool = False, page_size: int = 100
    ) -> AsyncIterator[ApiKey]:
        """Every key this key may manage, fetching pages as the loop goes."""
        async for item in awalk(
            lambda offset: self.list(
                limit=page_size, offset=offset, include_revoked=include_revoked
            )
        ):
            yield item


__all__ = ["AsyncKeys", "Keys"]
