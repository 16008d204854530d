"""The blocking client, :class:`Strongroom`."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from . import _operations as ops
from ._core import (
    DEFAULT_MAX_RETRIES,
    NOT_GIVEN,
    ClientConfig,
    NotGiven,
    Operation,
    Timeout,
    drive_sync,
    exchange,
)
from ._pages import walk
from ._waiting import poll_delays
from .exceptions import RotationCheckFailed, WaitTimeoutError
from .models import (
    AuditList,
    AuditRecord,
    DeletedSecret,
    Execution,
    ExecutionList,
    ExecutionStepList,
    Secret,
    SecretList,
    SecretPolicy,
    SecretVersionList,
    Task,
    TaskList,
)

T = TypeVar("T")


class _Resource:
    def __init__(self, client: Strongroom) -> None:
        self._client = client

    def _run(self, op: Operation[T], timeout: Timeout | NotGiven) -> T:
        return self._client._run(op, timeout)


class Secrets(_Resource):
    """``client.secrets``: create, list, read, update, rotate and delete secrets."""

    def create(
        self,
        name: str,
        value: str,
        *,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        policy: SecretPolicy | Mapping[str, Any] | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> Secret:
        """Create a secret; :class:`SecretAlreadyExistsError` if the name is taken.
        ``policy`` (a :class:`SecretPolicy` or a dict of its fields) restricts its use;
        fields left out have their defaults."""
        op = ops.create_secret(name, value, description, metadata, policy)
        return self._run(op, timeout)

    def list(
        self,
        *,
        limit: int | None = None,
        offset: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> SecretList:
        """One page of secrets, by name; values show as ``"ENCRYPTED"``."""
        return self._run(ops.list_secrets(limit, offset, metadata), timeout)

    def list_all(
        self, *, metadata: Mapping[str, Any] | None = None, page_size: int = 100
    ) -> Iterator[Secret]:
        """Every secret (matching ``metadata``), fetching pages as the loop goes."""
        return walk(lambda offset: self.list(limit=page_size, offset=offset, metadata=metadata))

    def get(
        self, name: str, *, version: int | None = None, timeout: Timeout | NotGiven = NOT_GIVEN
    ) -> Secret:
        """The secret with its plaintext value (of ``version``, else the newest)."""
        return self._run(ops.get_secret(name, version), timeout)

    def update(
        self,
        name: str,
        *,
        value: str | NotGiven = NOT_GIVEN,
        description: str | NotGiven | None = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        new_name: str | NotGiven = NOT_GIVEN,
        expected_version: int | None = None,
        policy: SecretPolicy | Mapping[str, Any] | NotGiven = NOT_GIVEN,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> Secret:
        """Change only the fields given; ``description=None`` clears it, ``new_name``
        renames, ``expected_version`` makes it conditional, ``policy`` changes the policy
        fields it gives (loosening needs the ``secrets:admin`` scope)."""
        op = ops.update_secret(
            name,
            value=value,
            description=description,
            metadata=metadata,
            new_name=new_name,
            expected_version=expected_version,
            policy=policy,
        )
        return self._run(op, timeout)

    def upsert(
        self,
        name: str,
        value: str,
        *,
        description: str | NotGiven | None = NOT_GIVEN,
        metadata: Mapping[str, Any] | NotGiven = NOT_GIVEN,
        expected_version: int | None = None,
        policy: SecretPolicy | Mapping[str, Any] | NotGiven = NOT_GIVEN,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> Secret:
        """Create the secret or give it a new value (fields left out are kept, and so
        are the policy fields ``policy`` leaves out)."""
        op = ops.put_secret(name, value, description, metadata, expected_version, policy)
        return self._run(op, timeout)

    def delete(
        self,
        name: str,
        *,
        expected_version: int | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> DeletedSecret:
        """Delete the secret and its history; the name is free at once."""
        return self._run(ops.delete_secret(name, expected_version), timeout)

    def versions(self, name: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> SecretVersionList:
        """The secret's versions, newest first (never their values)."""
        return self._run(ops.secret_versions(name), timeout)

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
        _checked(check, new_value)
        if isinstance(metadata, NotGiven):
            metadata = {**current.metadata, "lastRotated": _now()}
        return self.update(
            name, value=new_value, metadata=metadata, expected_version=current.version
        )


class Tasks(_Resource):
    """``client.tasks``: define tasks whose steps use secrets, and run them."""

    def create(
        self,
        task: Mapping[str, Any] | None = None,
        *,
        steps: Sequence[Mapping[str, Any]] | None = None,
        name: str | None = None,
        description: str | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> Task:
        """Create a task from ``task={...}`` or from ``steps=[...]``."""
        return self._run(ops.create_task(task, steps, name, description), timeout)

    def get(self, task_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Task:
        return self._run(ops.get_task(task_id), timeout)

    def list(
        self,
        *,
        limit: int | None = None,
        offset: int | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> TaskList:
        return self._run(ops.list_tasks(limit, offset), timeout)

    def delete(self, task_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> dict[str, Any]:
        return self._run(ops.delete_task(task_id), timeout)

    def execute(
        self, task_id: str, input: Any = None, *, timeout: Timeout | NotGiven = NOT_GIVEN
    ) -> Execution:
        """Start an execution (status ``queued``); ``executions.wait`` follows it."""
        return self._run(ops.execute_task(task_id, input), timeout)


class Executions(_Resource):
    """``client.executions``: follow, inspect and cancel task runs."""

    def get(self, execution_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Execution:
        return self._run(ops.get_execution(execution_id), timeout)

    def list(
        self,
        *,
        task_id: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> ExecutionList:
        return self._run(ops.list_executions(task_id, limit, offset), timeout)

    def steps(
        self, execution_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN
    ) -> ExecutionStepList:
        return self._run(ops.execution_steps(execution_id), timeout)

    def cancel(self, execution_id: str, *, timeout: Timeout | NotGiven = NOT_GIVEN) -> Execution:
        return self._run(ops.cancel_execution(execution_id), timeout)

    def wait(self, execution_id: str, *, timeout: float = 300.0) -> Execution:
        """Poll until the execution succeeds, fails or is cancelled (at most ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        for delay in poll_delays():
            execution = self.get(execution_id)
            if execution.done:
                return execution
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(
                    f"execution {execution_id} is still {execution.status} after {timeout} s"
                )
            time.sleep(min(delay, remaining))
        raise AssertionError("unreachable")  # pragma: no cover


class Audit(_Resource):
    """``client.audit``: the tenant's audit trail (needs the ``audit:read`` scope)."""

    def list(
        self,
        *,
        limit: int | None = None,
        offset: int | None = None,
        secret: str | None = None,
        action: str | None = None,
        timeout: Timeout | NotGiven = NOT_GIVEN,
    ) -> AuditList:
        return self._run(ops.list_audit(limit, offset, secret, action), timeout)

    def list_all(
        self, *, secret: str | None = None, action: str | None = None, page_size: int = 100
    ) -> Iterator[AuditRecord]:
        return walk(
            lambda offset: self.list(limit=page_size, offset=offset, secret=secret, action=action)
        )


class Strongroom:
    """A client of a strongroom server.

    ``api_key`` defaults to ``STRONGROOM_API_KEY`` and ``base_url`` to
    ``STRONGROOM_BASE_URL`` (else ``http://127.0.0.1:8000``). ``timeout`` (seconds, or an
    ``httpx.Timeout``) applies to every call unless a call passes its own. Idempotent calls
    are retried up to ``max_retries`` times on connection errors, 429 and 5xx answers.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: Timeout | NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._config = ClientConfig.resolve(api_key, base_url, timeout, max_retries)
        self._owns_http = http_client is None
        self._http = self._config.configure(http_client or httpx.Client())
        self.secrets = Secrets(self)
        self.tasks = Tasks(self)
        self.executions = Executions(self)
        self.audit = Audit(self)

    @property
    def base_url(self) -> str:
        return self._config.base_url

    def _run(self, op: Operation[T], timeout: Timeout | NotGiven) -> T:
        return drive_sync(self._http, exchange(self._http, self._config, op, timeout))

    def close(self) -> None:
        """Close the connections (only those of an ``http_client`` this client made)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Strongroom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Strongroom(base_url={self.base_url!r})"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")


def _checked(check: Callable[[str], object] | None, value: str) -> None:
    if check is None:
        return
    try:
        passed = check(value)
    except Exception as exc:
        raise RotationCheckFailed(
            f"the new value failed its check ({type(exc).__name__}); nothing was changed"
        ) from exc
    if not passed:
        raise RotationCheckFailed("the new value failed its check; nothing was changed")
