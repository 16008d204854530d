"""The HTTP tools' transport: every socket it opens goes through the call's destination
checks and the egress policy, so the first request and every redirect hop are checked.

:class:`GuardedTransport` is an ``httpx`` transport whose ``httpcore`` connection pool
uses :class:`GuardedBackend` to open its sockets. The backend asks
:meth:`ToolContext.addresses_for` (the server's own database, the secrets' usage policies,
then :class:`~.egress.EgressPolicy`) and connects only to the addresses it returns, never
to the name again; TLS still verifies the certificate against the host name from the URL.
Unix sockets and proxies are never used.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from .context import ToolContext
from .errors import EgressRefused


class GuardedBackend(httpcore.NetworkBackend):
    """An ``httpcore`` network backend that connects only to addresses the call may reach.

    It holds the call's :class:`ToolContext`, not only the policy: every connection the
    pool opens (a redirect's included) passes ``context.addresses_for``, which checks the
    destination (the server's own database, the secrets' usage policies) before the
    egress policy, and resolves the name once.
    """

    def __init__(self, context: ToolContext, inner: httpcore.NetworkBackend | None = None):
        self.context = context
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        failure: Exception | None = None
        for address in self.context.addresses_for(host, port):
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # try the next address, as socket.create_connection does
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        raise EgressRefused("refused to connect: only network hosts are allowed")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` whose connections all go through a :class:`GuardedBackend`.

    httpx has no public way to hand its transport a network backend, so this swaps the
    transport's connection pool (``_pool``, stable since httpx 0.18) for an
    ``httpcore.ConnectionPool`` built the same way with the guarded backend. The egress
    tests fail if that ever stops taking effect. No proxy is used: a proxy would connect
    on our behalf, out of the guard's sight.
    """

    def __init__(
        self,
        context: ToolContext,
        *,
        verify: ssl.SSLContext | bool = True,
        backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        tls = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        super().__init__(verify=tls, trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls,
            max_connections=10,
            max_keepalive_connections=5,
            http1=True,
            http2=False,
            retries=0,
            network_backend=GuardedBackend(context, backend),
        )
