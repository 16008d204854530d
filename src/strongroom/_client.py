"""The blocking client, :class:`Strongroom`: the core's exchanges, sent with
``httpx.Client`` and paused with ``time.sleep``."""

from __future__ import annotations

import time
from typing import TypeVar

import httpx

from ._core import (
    DEFAULT_MAX_RETRIES,
    BaseClient,
    ClientConfig,
    Done,
    Exchange,
    Operation,
    Pause,
    exchange,
    proceed,
)
from ._types import NOT_GIVEN, NotGiven, Timeout
from .resources import Audit, Executions, Keys, Secrets, Tasks

T = TypeVar("T")


class Strongroom(BaseClient[httpx.Client]):
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
        config = ClientConfig.resolve(api_key, base_url, timeout, max_retries)
        super().__init__(config, http_client, httpx.Client)
        self.secrets = Secrets(self)
        self.tasks = Tasks(self)
        self.executions = Executions(self)
        self.audit = Audit(self)
        self.keys = Keys(self)

    def _run(self, op: Operation[T]) -> T:
        return drive(self._http, exchange(self._http, self._config, op))

    def close(self) -> None:
        """Close the connections (only those of an ``http_client`` this client made)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Strongroom:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def drive(client: httpx.Client, steps: Exchange[T]) -> T:
    """Run an exchange with blocking I/O."""
    step = proceed(steps, None)
    while not isinstance(step, Done):
        if isinstance(step, Pause):
            time.sleep(step.seconds)
            step = proceed(steps, None)
            continue
        try:
            response = client.send(step.request)  # reads the body and closes
        except httpx.TransportError as exc:
            step = proceed(steps, exc)  # in the except: the client's error keeps it as context
        else:
            step = proceed(steps, response)
    return step.value
