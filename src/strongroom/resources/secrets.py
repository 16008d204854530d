"""``client.secrets``: create, list, read, update, rotate and delete secrets.

The request builders come first, one per call, each with the call's signature; then
:class:`Secrets` and :class:`AsyncSecrets`, which send them (see ``_resource.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from .._core import Operation
from .._pages import awalk, walk
from .._resource import AsyncAPIResource, SyncAPIResource, async_call, segment, sync_call
from .._types import NOT_GIVEN, NotGiven, Timeout
from ..exceptions import RotationCheckFailed, SecretAlreadyExistsError, SecretNotFoundError
from ..models import DeletedSecret, Secret, SecretList, SecretPolicy, SecretVersionList

# A policy as the calls take it: the model, or a mapping of the wire's fields.
PolicyArg = SecretPolicy | Mapping[str, Any]


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


def create_secret(
    name: str,
    value: str,
    *,
    description: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    policy: PolicyArg | None = None,
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    """Create a secret; :class:`SecretAlreadyExistsError` if the name is taken.
    ``policy`` (a :class:`SecretPolicy` or a dict of its fields) restricts its use;
    fields left out have their defaults."""
    body = {
        "name": name,
        "value": value,
        "description": description,
        "metadata": metadata,
        "policy": None if policy is None else policy_body(policy),
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
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[SecretList]:
    """One page of secrets, by name; values show as ``"ENCRYPTED"``."""
    params = {
        "limit": limit,
        "offset": offset,
        "metadata": json.dumps(dict(metadata), separators=(",", ":")) if metadata else None,
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
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    """Change only the fields given; ``description=None`` clears it, ``new_name``
    renames, ``expected_version`` makes it conditional, ``policy`` changes the policy
    fields it gives (loosening needs the ``secrets:admin`` scope)."""
    body = _given(value=value, description=description, metadata=metadata, new_name=new_name)
    if expected_version is not None:
        body["expected_version"] = expected_version
    if not isinstance(policy, NotGiven):
        body["policy"] = policy_body(policy)
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
    timeout: Timeout | NotGiven = NOT_GIVEN,
) -> Operation[Secret]:
    """Create the secret or give it a new value (fields left out are kept, and so
    are the policy fields ``policy`` leaves out)."""
    body = _given(value=value, description=description, metadata=metadata)
    if not isinstance(policy, NotGiven):
        body["policy"] = policy_body(policy)
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
    name: str, *, expected_version: int | None = None, timeout: Timeout | NotGiven = NOT_GIVEN
) -> Operation[DeletedSecret]:
    """Delete the secret and its history; the name is free at once."""
    return Operation(
        "DELETE",
        _path(name),
        DeletedSecret.model_validate,
        headers=_if_match(expected_version),
        idempotent=True,
        not_found=SecretNotFoundError,
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
