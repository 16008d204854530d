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
  ranges (matched against the resolved address), each for every port; or ``host:port``,
  ``ip:port`` and ``[v6]:port`` for that one port, so that allowing a co-located service
  does not also open every other port of that machine (its database among them).
- Never allowed, whatever the setting says: strongroom's own database (``protected.py``;
  :meth:`ToolContext.addresses_for` checks it before this policy, on the name and on every
  resolved address).

HTTP goes through ``transport.GuardedTransport``, whose sockets all pass the call's
:meth:`ToolContext.addresses_for` (its destination checks, then this policy), redirects
included. PostgreSQL takes the checked addresses as libpq's ``hostaddr`` (see
database.py). Unix sockets and proxies are never used.

Name resolution uses the system resolver (``getaddrinfo``), which has no timeout of its
own.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from pydantic import BaseModel, Field

from .errors import EgressRefused, ToolError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SETTING = "STRONGROOM_EGRESS_ALLOW"

_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class EgressSettings(BaseModel):
    """The allow-list, a server setting shared by every tool (``Settings`` inherits it)."""

    egress_allow: str = Field(
        "", description="hosts, IPs and CIDRs task tools may reach beyond the public internet"
    )


def normalize_host(host: str) -> str:
    """A host as given, compared: lower case, no trailing dot, no IPv6 brackets."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of an allow-list entry, port ``None`` when it names none; ``None``
    when the entry is malformed. ``[v6]:port`` needs its brackets: a bare IPv6 address is
    read as an address (``fd00::1:5432`` is one), never as an address and a port."""
    if entry.startswith("["):
        close = entry.find("]")
        if close < 0:
            return None
        host, rest = entry[1:close], entry[close + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":") or literal_address(host) is None:
            return None
        port_text = rest[1:]
    elif entry.count(":") == 1:
        host, _, port_text = entry.partition(":")
    else:
        return entry, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return None
    return normalize_host(host), int(port_text)


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


def embedded_and_self(address: IPAddress) -> list[IPAddress]:
    """``address`` and every IPv4 address it carries (for checks that must see both)."""
    return _embedded_ipv4(address)


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
    """Which non-public destinations tools may reach anyway; public ones always pass.

    ``allowed_hosts`` and ``allowed_networks`` admit every port; ``allowed_host_ports`` and
    ``allowed_network_ports`` (from ``host:port`` entries) only theirs.
    """

    allowed_hosts: frozenset[str] = frozenset()
    allowed_networks: tuple[IPNetwork, ...] = ()
    allowed_host_ports: frozenset[tuple[str, int]] = frozenset()
    allowed_network_ports: tuple[tuple[IPNetwork, int], ...] = ()

    @classmethod
    def parse(cls, setting: str | None) -> EgressPolicy:
        """The policy of a ``STRONGROOM_EGRESS_ALLOW`` value; ``ValueError`` on a bad entry."""
        hosts: set[str] = set()
        networks: list[IPNetwork] = []
        host_ports: set[tuple[str, int]] = set()
        network_ports: list[tuple[IPNetwork, int]] = []
        for raw in (setting or "").split(","):
            entry = normalize_host(raw)
            if not entry:
                continue
            if "/" in entry:
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(f"{SETTING}: {raw.strip()!r} is not a CIDR range") from None
                continue
            if (address := literal_address(entry)) is not None:
                networks.append(ipaddress.ip_network(address))
                continue
            split = _split_port(entry)
            if split is None or not split[0]:
                raise ValueError(
                    f"{SETTING}: {raw.strip()!r} is not host:port, [IPv6]:port or a port number "
                    "from 1 to 65535"
                )
            host, port = split
            if (address := literal_address(host)) is not None:
                if port is None:
                    networks.append(ipaddress.ip_network(address))
                else:
                    network_ports.append((ipaddress.ip_network(address), port))
            elif _HOST_NAME.match(host):
                if port is None:
                    hosts.add(host)
                else:
                    host_ports.add((host, port))
            else:
                raise ValueError(
                    f"{SETTING}: {raw.strip()!r} is not a host name, IP address or CIDR range "
                    "(each optionally with :port)"
                )
        return cls(frozenset(hosts), tuple(networks), frozenset(host_ports), tuple(network_ports))

    def _allowed(self, host: str, address: IPAddress, port: int | None) -> bool:
        if host in self.allowed_hosts or (host, port) in self.allowed_host_ports:
            return True
        ranges = [*self.allowed_networks]
        ranges += [net for net, only in self.allowed_network_ports if only == port]
        return any(
            candidate.version == net.version and candidate in net
            for candidate in _embedded_ipv4(address)
            for net in ranges
        )

    def check(self, host: str, address: IPAddress, port: int | None = None) -> None:
        """Raise :class:`EgressRefused` unless connecting to ``address`` (at ``port``; with
        ``None`` only entries without a port apply) for ``host`` is fine."""
        host = normalize_host(host)
        kind = non_public_kind(address)
        if kind is None or self._allowed(host, address, port):
            return
        if literal_address(host) == address:
            why = f"{host} is a {kind} address"
        else:
            why = f"{host} resolves to a {kind} address ({address})"
        at = f" (port {port})" if port is not None else ""
        raise EgressRefused(f"refused to connect: {why}{at}; allow it with {SETTING}")

    def resolve(self, host: str, port: int) -> list[str]:
        """Every address of ``host``, each checked; the caller connects only to these.

        Tools call :meth:`ToolContext.addresses_for` instead, which also refuses the
        server's own database; this is the policy alone."""
        addresses = self.lookup(host, port)
        for address in addresses:
            self.check(host, address, port)
        return [str(address) for address in addresses]

    def lookup(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to (itself, for an IP address), unchecked; each
        is then checked by the caller, which connects only to these."""
        name = normalize_host(host)
        if not name or name.startswith("/"):
            raise EgressRefused("refused to connect: only network hosts are allowed")
        literal = literal_address(name)
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
        return addresses
