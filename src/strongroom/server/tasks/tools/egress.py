"""The egress guard: tools reach the public internet, not the server's own network.

A task author chooses URLs and database hosts, and the server runs inside someone's
network, next to its database, cloud metadata (``169.254.169.254``) and admin panels. So
every outbound connection a tool makes goes through an :class:`EgressPolicy`:

- The host is resolved **once**, every address it resolves to is checked, and the
  connection is made to a checked address, never to the name again, so a DNS answer that
  changes between check and connect (rebinding) cannot slip through. A name with one bad
  address among good ones is refused.
- Refused: private (RFC 1918), loopback, link-local (cloud metadata included),
  unique-local IPv6 (``fc00::/7``), unspecified, multicast, shared (``100.64.0.0/10``) and
  every other range that is not globally routable; IPv4 addresses embedded in IPv6
  (mapped, 6to4, NAT64) are checked as IPv4.
- Allowed despite that: what ``STRONGROOM_EGRESS_ALLOW`` lists, comma-separated host
  names (matched exactly against the name the tool was given), IP addresses and CIDR
  ranges (matched against the resolved address).

HTTP goes through :class:`GuardedTransport`, an ``httpx`` transport whose ``httpcore``
connection pool uses :class:`GuardedBackend` to open its sockets. The check therefore
happens for every connection the pool opens, redirects included, and TLS still verifies the
certificate against the host name from the URL. PostgreSQL takes the checked addresses as
libpq's ``hostaddr`` (see database.py). Unix sockets and proxies are never used.

Name resolution uses the system resolver (``getaddrinfo``), which has no timeout of its
own.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

from .base import ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "STRONGROOM_EGRESS_ALLOW"

_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class EgressRefused(ToolError):
    """A tool was about to connect somewhere the egress policy does not allow."""

    code = "egress_refused"


def _normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _embedded_ipv4(address: IPAddress) -> list[IPAddress]:
    """Any IPv4 address ``address`` carries inside (mapped, 6to4, NAT64), then itself."""
    found: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if any(address in net for net in _NAT64):
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [*found, address]


def non_public_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not a public destination ("loopback", "private", …), or None."""
    for candidate in _embedded_ipv4(address):
        if candidate.is_unspecified:
            return "unspecified"
        if candidate.is_loopback:
            return "loopback"
        if candidate.is_link_local:
            return "link-local"
        if isinstance(candidate, ipaddress.IPv6Address) and candidate in _UNIQUE_LOCAL:
            return "unique-local"
        if candidate.is_multicast:
            return "multicast"
        if candidate.is_private:
            return "private"
        if not candidate.is_global:
            return "non-public"
    return None


@dataclass(frozen=True)
class EgressPolicy:
    """Which non-public destinations tools may reach anyway; public ones always pass."""

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, setting: str | None) -> EgressPolicy:
        """The policy of a ``STRONGROOM_EGRESS_ALLOW`` value; ``ValueError`` on a bad entry."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in (setting or "").split(","):
            entry = _normalize_host(raw)
            if not entry:
                continue
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{SETTING}: {raw.strip()!r} is not a CIDR range") from None
            elif (address := _literal(entry)) is not None:
                networks.append(ipaddress.ip_network(address))
            elif _HOST_NAME.match(entry):
                hosts.add(entry)
            else:
                raise ValueError(
                    f"{SETTING}: {raw.strip()!r} is not a host name, IP address or CIDR range"
                )
        return cls(frozenset(hosts), tuple(networks))

    def _allowed(self, host: str, address: IPAddress) -> bool:
        if host in self.allowed_hosts:
            return True
        return any(
            candidate.version == net.version and candidate in net
            for candidate in _embedded_ipv4(address)
            for net in self.allowed_networks
        )

    def check(self, host: str, address: IPAddress) -> None:
        """Raise :class:`EgressRefused` unless connecting to ``address`` for ``host`` is fine."""
        host = _normalize_host(host)
        kind = non_public_kind(address)
        if kind is None or self._allowed(host, address):
            return
        if _literal(host) == address:
            why = f"{host} is a {kind} address"
        else:
            why = f"{host} resolves to a {kind} address ({address})"
        raise EgressRefused(f"refused to connect: {why}; allow it with {SETTING}")

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each checked; the caller connects only to these."""
        name = _normalize_host(host)
        if not name or name.startswith("/"):
            raise EgressRefused("refused to connect: only network hosts are allowed")
        literal = _literal(name)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError):
                raise ToolError(
                    f"cannot resolve host {name}", code="dns_failed", retryable=True
                ) from None
            addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
            if not addresses:
                raise ToolError(f"cannot resolve host {name}", code="dns_failed", retryable=True)
        for address in addresses:
            self.check(name, address)
        return [str(address) for address in addresses]


class GuardedBackend(httpcore.NetworkBackend):
    """An ``httpcore`` network backend that connects only to addresses the policy allows."""

    def __init__(self, policy: EgressPolicy, inner: httpcore.NetworkBackend | None = None):
        self.policy = policy
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
        for address in self.policy.resolve(host, port):
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
        policy: EgressPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
        super().__init__(verify=context, trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=10,
            max_keepalive_connections=5,
            http1=True,
            http2=False,
            retries=0,
            network_backend=GuardedBackend(policy, backend),
        )
