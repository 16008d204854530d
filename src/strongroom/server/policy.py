"""A secret's usage policy: where tasks may send it, which tools may use it, who may read it.

A policy is stored with the secret and travels with it through every task step that uses
it (see ``tasks/containment.py``). Three rules, each absent by default:

- ``allowed_destinations``: host patterns a tool may send the secret, or anything derived
  from it, to: ``api.stripe.com`` (any port), ``api.stripe.com:443``, ``*.stripe.com`` (any
  subdomain, not the apex), an IP address, ``[2001:db8::1]:443``. ``None`` means any
  destination the egress guard allows; an empty tuple means none at all.
- ``allowed_tools``: ``tool/operation`` names (``http/request``) or a tool's name alone
  (``http``, every operation). ``None`` means every tool; empty means none.
- ``readable``: ``False`` makes a use-only secret: no API key can read its value, tasks can
  still use it. Making it readable again (or widening either list) is a loosening, which
  needs the ``secrets:admin`` scope.

The matching here is by the host name a tool was given (after case folding; an IP address
in its canonical spelling), not by resolved address: the policy names who may receive the
value, and the egress guard separately decides which addresses may be reached at all.

Entries are normalized only where that changes no meaning (a host name's case, its
trailing dot, an IP address's spelling) and are otherwise taken as written or refused,
never guessed at: no spaces, no scheme or path, ASCII only (an internationalized name in
its IDNA ``xn--`` form), tool names in lower case. A policy is a security boundary, and
an entry read as something other than what its author meant would be a hole nobody sees.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeVar

MAX_ENTRIES: Final = 64
MAX_ENTRY_LENGTH: Final = 255
FIELDS: Final = ("allowed_destinations", "allowed_tools", "readable")

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
# fullmatch, never match with "$": "$" also matches before a trailing newline.
_HOST = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*")
_TOOL = re.compile(r"[a-z][a-z0-9_]*(?:/[a-z][a-z0-9_]*)?")
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() admits "²", which int() refuses

# What a caller passes as the tools it knows: each tool's name and its operations' names.
KnownTools = Mapping[str, Collection[str]]
T = TypeVar("T")


class PolicyError(ValueError):
    """A policy entry that cannot be understood; the message names the entry, and
    ``location`` (when known) says where it is: ``allowed_destinations[2]``, ``readable``."""

    def __init__(self, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.location = location


def normalize_host(host: str) -> str:
    """A host as policies compare it: lower case, no trailing dot, no IPv6 brackets, and
    an IP address in its canonical spelling (``2001:DB8:0::1`` is ``2001:db8::1``), so
    that two spellings of one address cannot be told apart by a pattern."""
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host


def _strict_subdomain(host: str, domain: str) -> bool:
    """Whether ``host`` is below ``domain`` by at least one non-empty label."""
    suffix = "." + domain
    head = host[: -len(suffix)]
    return host.endswith(suffix) and bool(head) and all(head.split("."))


@dataclass(frozen=True, slots=True)
class DestinationPattern:
    """One ``allowed_destinations`` entry, parsed."""

    host: str  # normalized; a leading "*." matches any subdomain
    port: int | None

    @classmethod
    def parse(cls, entry: str) -> DestinationPattern:
        """One entry as written: ``host``, ``host:port``, ``*.domain``, an IPv4 address,
        an IPv6 address (``[v6]:port`` with a port). Anything else is a :class:`PolicyError`."""
        if not isinstance(entry, str):
            raise PolicyError(f"destination {entry!r} must be text, like api.stripe.com")
        if not entry or len(entry) > MAX_ENTRY_LENGTH:
            raise PolicyError(f"destination {entry!r} must be 1 to {MAX_ENTRY_LENGTH} characters")
        if any(c.isspace() for c in entry):
            raise PolicyError(f"destination {entry!r} must not hold spaces")
        if "/" in entry:
            raise PolicyError(
                f"destination {entry!r} is a URL or a path: give only the host, with an "
                "optional :port, like api.stripe.com or api.stripe.com:443 (no https://)"
            )
        if not entry.isascii():
            raise PolicyError(
                f"destination {entry!r} is not ASCII: give an internationalized name in "
                "its IDNA form (xn--...)"
            )
        host, port = entry, None
        if entry.startswith("["):  # [v6] or [v6]:port
            close = entry.find("]")
            if close < 0:
                raise PolicyError(f"destination {entry!r} has an unclosed '['")
            host, rest = entry[1:close], entry[close + 1 :]
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise PolicyError(
                    f"destination {entry!r}: brackets hold an IPv6 address only"
                ) from None
            if rest:
                if not rest.startswith(":"):
                    raise PolicyError(f"destination {entry!r} is not host or host:port")
                port = _port(rest[1:], entry)
        elif entry.count(":") == 1:
            host, _, given = entry.partition(":")
            port = _port(given, entry)
        host = normalize_host(host)
        if _is_ip(host):
            return cls(host, port)
        if not _HOST.fullmatch(host):
            raise PolicyError(
                f"destination {entry!r} is not a host name, IP address or *.domain, "
                "with an optional :port"
            )
        if host.rsplit(".", 1)[-1].isdigit():
            # "10.1.1" or "1.2.3.256" is no name; a resolver might read it as an address
            # all the same (inet_aton takes "10.1.1"), so it is refused.
            raise PolicyError(f"destination {entry!r} is neither a host name nor an IP address")
        return cls(host, port)

    def matches(self, host: str, port: int | None) -> bool:
        """Whether a tool given ``host`` and ``port`` (``None``: none was written) may
        send there. A pattern with a port needs that port, written or defaulted by the
        caller; ``*.domain`` matches the domain's subdomains, never the domain itself."""
        host = normalize_host(host)
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            return _strict_subdomain(host, self.host[2:])
        return host == self.host

    def covers(self, other: DestinationPattern) -> bool:
        """Whether every destination ``other`` matches, this pattern matches too: a
        policy changed from this entry to ``other`` allows nothing new."""
        if self.port is not None and other.port != self.port:
            return False
        if self.host == other.host:
            return True
        if not self.host.startswith("*."):
            return False
        # "*.stripe.com" covers "api.stripe.com" and "*.api.stripe.com" (all below it)
        return _strict_subdomain(other.host.removeprefix("*."), self.host[2:])

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tool_covered(entry: str, tools: tuple[str, ...]) -> bool:
    """Whether ``tools`` already allow everything ``entry`` does (``http`` covers
    ``http/request``; ``http/request`` does not cover ``http``)."""
    return entry in tools or entry.partition("/")[0] in tools


def _port(text: str, entry: str) -> int:
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise PolicyError(f"destination {entry!r} has a port that is not 1 to 65535")
    return int(text)


def _check_tool(entry: str, known: KnownTools | None = None) -> str:
    """A tool entry as written (``http``, ``http/request``); with ``known``, one of those
    tools and operations. Names are not case-folded: ``HTTP`` is refused, not read as
    ``http``."""
    if not isinstance(entry, str) or not _TOOL.fullmatch(entry):
        raise PolicyError(
            f"tool {entry!r} is not a tool name, like http or http/request (lower case)"
        )
    if known is not None:
        tool, _, operation = entry.partition("/")
        operations = known.get(tool)
        if operations is None:
            raise PolicyError(f"tool {tool!r} does not exist (known: {', '.join(sorted(known))})")
        if operation and operation not in operations:
            raise PolicyError(
                f"tool {tool!r} has no operation {operation!r} "
                f"(it has: {', '.join(sorted(operations))})"
            )
    return entry


def _entries(values: Iterable[str] | None, what: str) -> tuple[str, ...] | None:
    if values is None:
        return None
    if isinstance(values, str | bytes) or not isinstance(values, list | tuple):
        raise PolicyError(f"{what} must be a list of texts (or null), not {values!r}", what)
    listed = list(values)
    if len(listed) > MAX_ENTRIES:
        raise PolicyError(f"{what} has {len(listed)} entries; at most {MAX_ENTRIES}", what)
    for index, item in enumerate(listed):
        if not isinstance(item, str):
            raise PolicyError(f"{what} must be a list of texts", f"{what}[{index}]")
    return tuple(listed)


def _located(what: str, values: tuple[str, ...], parse: Callable[[str], T]) -> list[T]:
    """``parse`` of each entry; a :class:`PolicyError` names the entry's index."""
    parsed = []
    for index, value in enumerate(values):
        try:
            parsed.append(parse(value))
        except PolicyError as exc:
            raise PolicyError(exc.message, f"{what}[{index}]") from None
    return parsed


def _destinations(values: Iterable[str] | None) -> tuple[DestinationPattern, ...] | None:
    listed = _entries(values, "allowed_destinations")
    if listed is None:
        return None
    parsed = _located("allowed_destinations", listed, DestinationPattern.parse)
    return tuple(dict.fromkeys(parsed))


def _tools(values: Iterable[str] | None, known: KnownTools | None) -> tuple[str, ...] | None:
    listed = _entries(values, "allowed_tools")
    if listed is None:
        return None
    parsed = _located("allowed_tools", listed, lambda entry: _check_tool(entry, known))
    return tuple(dict.fromkeys(parsed))


def _readable(value: object) -> bool:
    # Only true or false: bool("false") is True, and this field decides who reads a value.
    if not isinstance(value, bool):
        raise PolicyError(f"readable must be true or false, not {value!r}", "readable")
    return value


@dataclass(frozen=True, slots=True)
class SecretPolicy:
    """How a secret may be used. The default policy restricts nothing."""

    allowed_destinations: tuple[DestinationPattern, ...] | None = None
    allowed_tools: tuple[str, ...] | None = None
    readable: bool = True

    @classmethod
    def build(
        cls,
        allowed_destinations: Iterable[str] | None = None,
        allowed_tools: Iterable[str] | None = None,
        readable: bool = True,
        *,
        known_tools: KnownTools | None = None,
    ) -> SecretPolicy:
        """A policy from its wire form; :class:`PolicyError` names a bad entry. With
        ``known_tools`` (tool name to its operations), each tool must be one of them."""
        return cls(
            _destinations(allowed_destinations),
            _tools(allowed_tools, known_tools),
            _readable(readable),
        )

    def changed(
        self, change: Mapping[str, Any], *, known_tools: KnownTools | None = None
    ) -> SecretPolicy:
        """This policy with the fields ``change`` gives replaced (a partial update: a
        field left out keeps its value; ``None`` for a list removes that restriction).
        Only the given fields are checked, so an entry that was valid when it was stored
        never blocks a change to another field."""
        unknown = sorted(set(change) - set(FIELDS))
        if unknown:
            raise PolicyError(
                f"unknown policy field {unknown[0]!r} (fields: {', '.join(FIELDS)})", unknown[0]
            )
        return SecretPolicy(
            _destinations(change["allowed_destinations"])
            if "allowed_destinations" in change
            else self.allowed_destinations,
            _tools(change["allowed_tools"], known_tools)
            if "allowed_tools" in change
            else self.allowed_tools,
            _readable(change["readable"]) if "readable" in change else self.readable,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SecretPolicy:
        """The policy as stored (``to_json``'s output, or ``None`` for the default)."""
        if not data:
            return DEFAULT_POLICY
        return cls.build(
            data.get("allowed_destinations"), data.get("allowed_tools"), data.get("readable", True)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "allowed_destinations": None
            if self.allowed_destinations is None
            else [str(d) for d in self.allowed_destinations],
            "allowed_tools": None if self.allowed_tools is None else list(self.allowed_tools),
            "readable": self.readable,
        }

    @property
    def is_default(self) -> bool:
        return self == DEFAULT_POLICY

    @property
    def restricts_destinations(self) -> bool:
        return self.allowed_destinations is not None

    def allows_tool(self, tool: str, operation: str) -> bool:
        if self.allowed_tools is None:
            return True
        return tool in self.allowed_tools or f"{tool}/{operation}" in self.allowed_tools

    def allows_destination(self, host: str, port: int | None) -> bool:
        if self.allowed_destinations is None:
            return True
        return any(pattern.matches(host, port) for pattern in self.allowed_destinations)

    def loosened_by(self, new: SecretPolicy) -> bool:
        """Whether ``new`` allows something this policy does not (which needs
        ``secrets:admin``): readable again, or a list widened or removed."""
        return bool(self.loosenings(new))

    def loosenings(self, new: SecretPolicy) -> list[str]:
        """What ``new`` allows that this policy does not, said for a person: empty when
        ``new`` is as strict or stricter. Narrowing ``*.stripe.com`` to ``api.stripe.com``,
        or ``http`` to ``http/request``, is no loosening."""
        found = []
        if new.readable and not self.readable:
            found.append("makes it readable again")
        if self.allowed_destinations is not None:
            old_destinations = self.allowed_destinations
            if new.allowed_destinations is None:
                found.append("removes allowed_destinations")
            elif not all(
                any(o.covers(d) for o in old_destinations) for d in new.allowed_destinations
            ):
                found.append("widens allowed_destinations")
        if self.allowed_tools is not None:
            old_tools = self.allowed_tools
            if new.allowed_tools is None:
                found.append("removes allowed_tools")
            elif not all(_tool_covered(t, old_tools) for t in new.allowed_tools):
                found.append("widens allowed_tools")
        return found


DEFAULT_POLICY: Final = SecretPolicy()
