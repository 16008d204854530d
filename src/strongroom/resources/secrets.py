"""``client.secrets``: create, list, read, update, rotate and delete secrets.

The request builders come first, one per call, each with the call's signature; then
:class:`Secrets` and :class:`AsyncSecrets`, which send them (see ``_resource.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any

from .._core import Operation
from .._pages import awalk, walk
from .._resource import AsyncAPIResource, SyncAPIResource, async_call, segment, sync_call
from .._types import NOT_GIVEN, NotGiven, Timeout
from ..exceptions import RotationCheckFailed, SecretAlreadyExistsError, SecretNotFoundError
from ..models import (
    BatchGetResponse,
    BatchPutItem,
    BatchPutResponse,
    DeletedSecret,
    Rotation,
    Secret,
    SecretList,
    SecretPolicy,
    SecretVersionList,
)

# A policy as the calls take it: the model, or a mapping of the wire's fields.
PolicyArg = SecretPolicy | Mapping[str, Any]
# A rotation policy: the model, or {"every": "30d", "task_id": "..."}.
RotationArg = Rotation | Mapping[str, Any]


def _path(name: str) -> str:
    return f"/v1/secrets/{segment(name)}"


def _given(**fields: object) -> dict[str, object]:
    return {k: v for k, v in fields.items() if not isinstance(v, NotGiven)}


def _if_match(version: int | None) -> dict[str, str]:
    return {"If-Match": f'"{version}"'} if version is not None else {}


def policy_body(policy: PolicyArg) -> dict[str, Any]:
    """The wire form of a policy argument: a model sends the fields set when it was made
    (so ``SecretPolicy(readable=False)`` changes only ``readable``), a mapping is sent as
    it is. A list is sent as a list whatever iterable it was given as."""
    if isinstance(policy, SecretPolicy):
        given = policy.model_dump(exclude_unset=True)
    elif isinstance(policy, Mapping):
        given = dict(policy)
    else:
        raise TypeError(f"policy must be a SecretPolicy or a mapping, not {type(policy).__name__}")
    for field in ("allowed_destinations", "allowed_tools"):
        value = given.get(field)
        if value is not None and not isinstance(value, str | Mapping):
            given[field] = list(value)
    return given


def _time(when: dt.datetime | None) -> str | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise ValueError("give a time with its zone, e.g. datetime.now(timezone.utc)")
    return when.isoformat()


def _rotation_body(rotation: RotationArg | None) -> dict[str, Any] | None:
    if rotation is None:
        return None
    if isinstance(rotation, Rotation):
        return rotation.model_dump()
    return dict(rotation)


def _lifecycle(
    expires_at: dt.datetime | NotGiven | None, rotation: RotationArg | NotGiven | None
) -> dict[str, Any]:
    """The expiry and rotation fields given (None sends null: none)."""
    body: dict[str, Any] = {}
    if not isinstance(expires_at, NotGiven):
        body["expires_at"] = _time(expires_at)
    if not isinstance(rotation, NotGiven):
        body["rotation"] = _rotation_body(rotation)
    return body


def create_secret(
    name: str,
    value: str,
    *,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    policy: PolicyArg | None = None,
    expires_at: dt.datetime | None = None,
    rotation: RotationArg | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    """Create a secret; :class:`SecretAlreadyExistsError` if the name is taken (by a
    deleted secret too, until it is restored or purged). ``policy`` (a
    :class:`SecretPolicy` or a dict of its fields) restricts its use; ``expires_at``
    ends its reads; ``rotation`` (``{"every": "30d", "task_id": ...}``) has a task make
    a new value on schedule."""
    body = {
        "name": name,
        "value": value,
        "description": description,
        "metadata": metadata,
        "policy": None if policy is None else policy_body(policy),
        "expires_at": _time(expires_at),
        "rotation": _rotation_body(rotation),
    }
    return Operation(
        "POST",
        "/v1/secrets",
        Secret.model_validate,
        json={k: v for k, v in body.items() if v is not None},
        conflict=SecretAlreadyExistsError,
        timeout=timeout,
    )


def list_secrets(
    *,
    limit: int | None = None,
    offset: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    deleted: bool = False,
    expiring_before: dt.datetime | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[SecretList]:
    """One page of secrets, by name; values show as ``"ENCRYPTED"``. ``deleted=True``
    lists the deleted ones waiting for their purge instead; ``expiring_before`` only
    those that expire before then (or have)."""
    params = {
        "limit": limit,
        "offset": offset,
        "metadata": json.dumps(dict(metadata), separators=(",", ":")) if metadata else None,
        "deleted": "true" if deleted else None,
        "expiring_before": _time(expiring_before),
    }
    return Operation(
        "GET",
        "/v1/secrets",
        SecretList.model_validate,
        params=params,
        idempotent=True,
        timeout=timeout,
    )


def get_secret(
    name: str, *, version: int | None = None, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[Secret]:
    """The secret with its plaintext value (of ``version``, else the newest)."""
    return Operation(
        "GET",
        _path(name),
        Secret.model_validate,
        params={"version": version},
        idempotent=True,
        not_found=SecretNotFoundError,
        timeout=timeout,
    )


def update_secret(
    name: str,
    *,
    value: str | NotGiven = NOT_GIVEN,
    description: str | NotGiven | None = NOT_GIVEN,
    metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    new_name: str | NotGiven = NOT_GIVEN,
    expected_version: int | None = None,
    policy: PolicyArg | NotGiven = NOT_GIVEN,
    expires_at: dt.datetime | NotGiven | None = NOT_GIVEN,
    rotation: RotationArg | NotGiven | None = NOT_GIVEN,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    """Change only the fields given; ``description=None`` clears it, ``new_name``
    renames, ``expected_version`` makes it conditional, ``policy`` changes the policy
    fields it gives (loosening needs the ``secrets:admin`` scope), ``expires_at`` and
    ``rotation`` replace theirs (``None``: none). A value equal to the current one makes
    no version (for a key that may read it)."""
    body = _given(value=value, description=description, metadata=metadata, new_name=new_name)
    if expected_version is not None:
        body["expected_version"] = expected_version
    if not isinstance(policy, NotGiven):
        body["policy"] = policy_body(policy)
    body.update(_lifecycle(expires_at, rotation))
    return Operation(
        "PATCH",
        _path(name),
        Secret.model_validate,
        json=body,
        # A conditional update cannot apply twice: the second try meets a newer version.
        idempotent=expected_version is not None,
        not_found=SecretNotFoundError,
        conflict=SecretAlreadyExistsError,
        timeout=timeout,
    )


def upsert_secret(
    name: str,
    value: str,
    *,
    description: str | NotGiven | None = NOT_GIVEN,
    metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    expected_version: int | None = None,
    policy: PolicyArg | NotGiven = NOT_GIVEN,
    expires_at: dt.datetime | NotGiven | None = NOT_GIVEN,
    rotation: RotationArg | NotGiven | None = NOT_GIVEN,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    """Create the secret or give it a new value (fields left out are kept, and so
    are the policy fields ``policy`` leaves out)."""
    body = _given(value=value, description=description, metadata=metadata)
    if not isinstance(policy, NotGiven):
        body["policy"] = policy_body(policy)
    body.update(_lifecycle(expires_at, rotation))
    return Operation(
        "PUT",
        _path(name),
        Secret.model_validate,
        json=body,
        headers=_if_match(expected_version),
        idempotent=True,
        not_found=SecretNotFoundError,
        timeout=timeout,
    )


def delete_secret(
    name: str,
    *,
    expected_version: int | None = None,
    force: bool = False,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[DeletedSecret]:
    """Delete the secret: restorable (``restore``) until its ``purge_after``, its name
    held meanwhile. ``force=True`` purges it now, every version destroyed (needs
    ``secrets:admin``), and purges one already deleted."""
    return Operation(
        "DELETE",
        _path(name),
        DeletedSecret.model_validate,
        params={"force": "true" if force else None},
        headers=_if_match(expected_version),
        idempotent=True,
        not_found=SecretNotFoundError,
        timeout=timeout,
    )


def purge_secret(name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Operation[DeletedSecret]:
    """Destroy the secret (live or deleted) and every version now; ``secrets:admin``."""
    return delete_secret(name, force=True, timeout=timeout)


def restore_secret(name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Operation[Secret]:
    """Bring a deleted secret back, every version with it, before its purge."""
    return Operation(
        "POST",
        _path(name) + "/restore",
        Secret.model_validate,
        idempotent=True,
        not_found=SecretNotFoundError,
        timeout=timeout,
    )


def rollback_secret(
    name: str,
    version: int,
    *,
    expected_version: int | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    """Make ``version``'s value current again, as a new version (the value stays on the
    server, so this needs only ``secrets:write``)."""
    body: dict[str, Any] = {"version": version}
    if expected_version is not None:
        body["expected_version"] = expected_version
    return Operation(
        "POST",
        _path(name) + "/rollback",
        Secret.model_validate,
        json=body,
        idempotent=expected_version is not None,
        not_found=SecretNotFoundError,
        timeout=timeout,
    )


def rotate_secret_now(name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Operation[Secret]:
    """Make the secret's scheduled rotation due now (it needs a rotation policy)."""
    return Operation(
        "POST",
        _path(name) + "/rotate",
        Secret.model_validate,
        idempotent=True,
        not_found=SecretNotFoundError,
        timeout=timeout,
    )


def batch_get_secrets(
    names: Sequence[str], *, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[BatchGetResponse]:
    """The values of up to 1,000 secrets in one request (one audit record each); the
    names without one are in ``errors``, with the code a ``get`` would raise."""
    if isinstance(names, str):
        raise TypeError("names must be a list of names, not one string")
    return Operation(
        "POST",
        "/v1/secrets:batchGet",
        BatchGetResponse.model_validate,
        json={"names": list(names)},
        idempotent=True,
        timeout=timeout,
    )


def batch_put_secrets(
    secrets: Sequence[BatchPutItem],
    *,
    dry_run: bool = False,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[BatchPutResponse]:
    """Create or update up to 1,000 secrets, all or nothing. Each item is a mapping of
    ``name`` and ``value`` and, optionally, ``description``, ``metadata``, ``policy``
    and ``expires_at`` (left out: kept). ``dry_run`` says what would change."""
    items = []
    for given in secrets:
        item: dict[str, Any] = dict(given)
        if "policy" in item and item["policy"] is not None:
            item["policy"] = policy_body(item["policy"])
        if isinstance(item.get("expires_at"), dt.datetime):
            item["expires_at"] = _time(item["expires_at"])
        items.append(item)
    return Operation(
        "PUT",
        "/v1/secrets:batch",
        BatchPutResponse.model_validate,
        json={"secrets": items, "dry_run": dry_run},
        idempotent=True,
        timeout=timeout,
    )


def secret_versions(
    name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[SecretVersionList]:
    """The secret's versions, newest first (never their values)."""
    return Operation(
        "GET",
        _path(name) + "/versions",
        SecretVersionList.model_validate,
        idempotent=True,
        not_found=SecretNotFoundError,
        timeout=timeout,
    )


# -- rotate: what the two clients' versions share ------------------------------------------
@contextlib.contextmanager
def _check_errors() -> Iterator[None]:
    """A check that raised is a failed check. Its error is named, not kept in the message:
    it could quote the value it was checking."""
    try:
        yield
    except Exception as exc:
        raise RotationCheckFailed(
            f"the new value failed its check ({type(exc).__name__}); nothing was changed"
        ) from exc


def _require_passed(passed: object) -> None:
    if not passed:
        raise RotationCheckFailed("the new value failed its check; nothing was changed")


def _rotated_metadata(current: Secret, metadata: Mapping[str, Any] | NotGiven) -> Mapping[str, Any]:
    """The metadata after a rotation: as given, else the current one with ``lastRotated``."""
    if not isinstance(metadata, NotGiven):
        return metadata
    now = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    return {**current.metadata, "lastRotated": now}


class Secrets(SyncAPIResource):
    """``client.secrets``: create, list, read, update, rotate and delete secrets."""

    create = sync_call(create_secret)
    list = sync_call(list_secrets)
    get = sync_call(get_secret)
    update = sync_call(update_secret)
    upsert = sync_call(upsert_secret)
    delete = sync_call(delete_secret)
    purge = sync_call(purge_secret)
    restore = sync_call(restore_secret)
    rollback = sync_call(rollback_secret)
    rotate_now = sync_call(rotate_secret_now)
    batch_get = sync_call(batch_get_secrets)
    batch_put = sync_call(batch_put_secrets)
    versions = sync_call(secret_versions)

    def list_all(
        self, *, metadata: Mapping[str, Any] | None = None, page_size: int = 100
    ) -> Iterator[Secret]:
        """Every secret (matching ``metadata``), fetching pages as the loop goes."""
        return walk(lambda offset: self.list(limit=page_size, offset=offset, metadata=metadata))

    def rotate(
        self,
        name: str,
        new_value: str,
        *,
        check: Callable[[str], object] | None = None,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    ) -> Secret:
        """Replace the value once ``check(new_value)`` passes, in one conditional update.

        The secret exists throughout (no delete-and-rename window), the previous value
        stays readable as ``get(name, version=secret.version - 1)``, and a concurrent
        change makes this raise :class:`PreconditionFailedError` instead of being lost.
        ``check`` fails by returning a false value or raising; then nothing changes.
        """
        current = self.get(name)
        with _check_errors():
            passed = check is None or check(new_value)
        _require_passed(passed)
        return self.update(
            name,
            value=new_value,
            metadata=_rotated_metadata(current, metadata),
            expected_version=current.version,
        )


class AsyncSecrets(AsyncAPIResource):
    """``client.secrets``: create, list, read, update, rotate and delete secrets."""

    create = async_call(create_secret)
    list = async_call(list_secrets)
    get = async_call(get_secret)
    update = async_call(update_secret)
    upsert = async_call(upsert_secret)
    delete = async_call(delete_secret)
    purge = async_call(purge_secret)
    restore = async_call(restore_secret)
    rollback = async_call(rollback_secret)
    rotate_now = async_call(rotate_secret_now)
    batch_get = async_call(batch_get_secrets)
    batch_put = async_call(batch_put_secrets)
    versions = async_call(secret_versions)

    async def list_all(
        self, *, metadata: Mapping[str, Any] | None = None, page_size: int = 100
    ) -> AsyncIterator[Secret]:
        """Every secret (matching ``metadata``), fetching pages as the loop goes."""
        async for item in awalk(
            lambda offset: self.list(limit=page_size, offset=offset, metadata=metadata)
        ):
            yield item

    async def rotate(
        self,
        name: str,
        new_value: str,
        *,
        check: Callable[[str], object] | None = None,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
    ) -> Secret:
        """:meth:`Secrets.rotate`, awaited; ``check`` may also be a coroutine function."""
        current = await self.get(name)
        with _check_errors():
            passed = check is None or check(new_value)
            if inspect.isawaitable(passed):
                passed = await passed
        _require_passed(passed)
        return await self.update(
            name,
            value=new_value,
            metadata=_rotated_metadata(current, metadata),
            expected_version=current.version,
        )


__all__ = ["AsyncSecrets", "Secrets"]
