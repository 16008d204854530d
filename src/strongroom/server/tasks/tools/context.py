"""What a tool call gets besides its arguments: the server's tool configuration, a deadline,
the tenant it runs for, and the check every destination passes before a connection.

The runner builds a :class:`ToolContext` per call, over the one :class:`~.config.ToolConfig`
of the process, with the step's deadline when it has one.

Every place a tool is about to reach something (a TCP connection, each redirect's included;
a PostgreSQL server; a SQLite file) first calls :meth:`ToolContext.check_destination` with a
:class:`Destination`. That is where the server's own database is refused and where the
runner's ``destination_guard`` applies the usage policies of the secrets the call carries,
so a refusal always comes before any byte is sent. Once every check passed, the runner's
``on_reach`` is told of it too (the name as given, then each address it resolved to), still
before the connection: it records where a secret sent as data may now be held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .config import ToolConfig
from .errors import ToolError


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a tool call is about to send something: a network host and port (as the step
    named them, before resolution), or a local file (SQLite)."""

    host: str | None = None
    port: int | None = None
    path: Path | None = None

    @classmethod
    def network(cls, host: str, port: int | None) -> Destination:
        return cls(host=host, port=port)

    @classmethod
    def file(cls, path: Path) -> Destination:
        return cls(path=path)

    def __str__(self) -> str:
        if self.path is not None:
            return "a local SQLite file"
        host = f"[{self.host}]" if self.host and ":" in self.host else str(self.host)
        return host if self.port is None else f"{host}:{self.port}"


DestinationGuard = Callable[[Destination], None]
DestinationHook = Callable[[Destination], None]


@dataclass(frozen=True)
class ToolContext:
    """One call's context. ``deadline`` is a ``time.monotonic()`` instant or ``None``;
    ``tenant`` is the name of the tenant the call runs for; ``destination_guard`` (set by
    the runner) raises a ``ToolError`` for a destination the call's secrets may not reach;
    ``on_reach`` (set by the runner) is told of every destination the call is let through to,
    before it connects."""

    config: ToolConfig = field(default_factory=ToolConfig)
    deadline: float | None = None
    tenant: str | None = None
    destination_guard: DestinationGuard | None = None
    on_reach: DestinationHook | None = None

    def check_destination(self, destination: Destination) -> None:
        """Raise unless the call may reach ``destination``; call before connecting.

        The server's own database and files are refused first (``EgressRefused``): no
        allow-list entry and no usage policy can open them."""
        protected = self.config.protected
        if destination.path is not None:
            protected.check_path(destination.path)
        elif destination.host is not None:
            protected.check_host(destination.host, destination.port)
        if self.destination_guard is not None:
            self.destination_guard(destination)
        if self.on_reach is not None:
            self.on_reach(destination)

    def addresses_for(self, host: str, port: int) -> list[str]:
        """The addresses a tool may connect to for ``host:port``, or a ``ToolError``; what
        every TCP connection of a tool goes through, before it is opened.

        In order: :meth:`check_destination` on the name as given; one resolution; the
        server's own database refused by each address (a DNS name or an alias of this
        machine that leads to it); then the egress policy on each address. The caller
        connects to these addresses only, never to the name again."""
        self.check_destination(Destination.network(host, port))
        addresses = self.config.egress.lookup(host, port)
        for address in addresses:
            self.config.protected.check_address(address, port)
        for address in addresses:
            self.config.egress.check(host, address, port)
        if self.on_reach is not None:  # an address is the same place under every name
            for address in addresses:
                self.on_reach(Destination.network(str(address), port))
        return [str(address) for address in addresses]

    def time_left(self, wanted: float) -> float:
        """``wanted`` seconds, or less when the deadline is nearer; raises once it passed."""
        if self.deadline is None:
            return wanted
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ToolError("the step ran out of time", code="timeout")
        return min(wanted, left)
