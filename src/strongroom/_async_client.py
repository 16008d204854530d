"""The asyncio client, :class:`AsyncStrongroom` (every call of :class:`Strongroom`,
awaited): the core's exchanges, sent with ``httpx.AsyncClient`` and paused with
``asyncio.sleep``."""

from __future__ import annotations

import asyncio
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
from .resources import AsyncAudit, AsyncExecutions, AsyncKeys, AsyncSecrets, AsyncTasks

T = TypeVar("T")


class AsyncStrongroom(BaseClient[httpx.AsyncClient]):
    """An asyncio client of a strongroom server; see :class:`strongroom.Strongroom`.

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
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        config = ClientConfig.resolve(api_key, base_url, timeout, max_retries)
        super().__init__(config, http_client, httpx.AsyncClient)
        self.secrets = AsyncSecrets(self)
        self.tasks = AsyncTasks(self)
        self.executions = AsyncExecutions(self)
        self.audit = AsyncAudit(self)
        self.keys = AsyncKeys(self)

    async def _run(self, op: Operation[T]) -> T:
        return await drive(self._http, exchange(self._http, self._config, op))

    async def close(self) -> None:
        """Close the connections (only those of an ``http_client`` this client made)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncStrongroom:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def drive(client: httpx.AsyncClient, steps: Exchange[T]) -> T:
    """Run an exchange with asyncio I/O."""
    step = proceed(steps, None)
    while not isinstance(step, Done):
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            step = proceed(steps, None)
            continue
        try:
            response = await client.send(step.request)  # reads the body and closes
        except httpx.TransportError as exc:
            step = proceed(steps, exc)  # in the except: the client's error keeps it as context
        else:
            step = proceed(steps, response)
    return step.value
