"""Strongroom's own database and files: what no tool may reach, whatever the allow-list says.

A task author picks hosts, ports and SQLite paths. The egress guard (``egress.py``) keeps
tools off the server's network unless ``STRONGROOM_EGRESS_ALLOW`` opens part of it, and
operators open exactly the part where strongroom's own database lives (``127.0.0.1`` for a
co-located PostgreSQL, or the data directory for SQLite). Reaching that database would
give a task every tenant's rows and, writing, any API key it likes. So :class:`Protected`
is checked before the allow-list and refuses, with :class:`EgressRefused`:

- **The database's endpoints**, for ``STRONGROOM_DATABASE_URL`` on PostgreSQL: its host
  name at its port, and every address that name resolved to at start-up at that port.
  When the database is on this machine (its host is loopback, unspecified, a socket
  directory, or an address of this machine's own), every address that reaches this
  machine is refused at that port too: the whole of ``127.0.0.0/8``, ``::1``, ``0.0.0.0``
  and ``::`` (which connect to this machine), IPv4 addresses inside IPv6 ones, and any
  address of this machine's interfaces. "An address of this machine" is decided when a
  tool is about to connect, by binding a socket to it, which succeeds only for local
  addresses: interfaces added after start-up count, and nothing is listed by hand.
- **The files**: the SQLite database's directory (the data directory, with its ``-wal``
  and ``-shm`` files and DBOS's ``<database>.dbos.sqlite``), and the master key file.
  A path is compared once resolved (symbolic links followed), and a file with more than
  one name (a hard link) is compared by identity with every file under those paths.

The check is by endpoint: the same PostgreSQL server reached another way (a second
listening address, a connection pooler or a port forward in front of it) is a different
endpoint, and refused only if the allow-list does not open it. Do not allow those.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo

from .egress import IPAddress, embedded_and_self, literal_address, normalize_host
from .errors import EgressRefused

OWN_DATABASE = "refused to connect: this is strongroom's own database"
OWN_FILES = "refused to open: this file is strongroom's own (its data directory or master key)"
DEFAULT_POSTGRES_PORT = 5432
# 0.0.0.0/8 is "this network": on Linux a connection to any of it reaches this machine.
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _bindable(address: IPAddress) -> bool:
    """Whether a socket can be bound to ``address``: only this machine's own addresses can
    (with ``ip_nonlocal_bind`` every address can, which refuses more, never less)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


def is_this_machine(address: IPAddress) -> bool:
    """Whether a connection to ``address`` reaches this machine."""
    for candidate in embedded_and_self(address):
        if candidate.is_loopback or candidate.is_unspecified:
            return True
        if isinstance(candidate, ipaddress.IPv4Address) and candidate in _THIS_NETWORK:
            return True
        if _bindable(candidate):
            return True
    return False


def _host_port(item: str, default_port: int) -> tuple[str, int]:
    """A libpq host entry that may carry its own port (SQLAlchemy's ``?host=h:p`` form)."""
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        return host, int(rest[1:]) if rest[1:].isdigit() else default_port
    host, sep, port = item.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return item, default_port


def _listed(value: object) -> list[str]:
    """A libpq comma-separated list (``host=a,b``), each entry stripped."""
    return [entry.strip() for entry in str(value or "").split(",")] if value else []


def postgres_endpoints(url: str) -> list[tuple[str, int]]:
    """Every ``(host, port)`` a ``postgresql://`` URL connects to, as libpq reads it: several
    hosts, ``?host=`` and ``hostaddr`` included, ``PGHOST``/``PGPORT`` when it names none.
    A socket directory (or no host at all) stands for ``localhost``: the database is then
    on this machine, and its TCP port is what tools could reach."""
    libpq_url = "postgresql://" + url.partition("://")[2]
    try:
        params = conninfo.conninfo_to_dict(libpq_url)
    except psycopg.Error:
        raise ValueError("STRONGROOM_DATABASE_URL is not a PostgreSQL URL libpq reads") from None
    hosts = _listed(params.get("host") or os.environ.get("PGHOST"))
    addrs = _listed(params.get("hostaddr") or os.environ.get("PGHOSTADDR"))
    ports = [
        int(p) if p.isdigit() else DEFAULT_POSTGRES_PORT
        for p in _listed(params.get("port") or os.environ.get("PGPORT")) or [""]
    ]
    found: list[tuple[str, int]] = []
    for index in range(max(len(hosts), len(addrs))):
        default_port = ports[min(index, len(ports) - 1)]
        for item in (hosts, addrs):
            entry = item[index] if index < len(item) else ""
            if not entry:
                continue
            host, port = _host_port(entry, default_port)
            if host.startswith(("/", "@")):
                host = "localhost"  # a Unix socket: the server is on this machine
            found.append((normalize_host(host), port))
    if not found:
        found.append(("localhost", ports[0]))
    return list(dict.fromkeys(found))


@dataclass(frozen=True)
class Protected:
    """What no tool may reach (see the module docstring). Empty by default: a
    :class:`ToolConfig` built by hand (tests, embedders) protects nothing unless told.

    - ``names``: ``(host name, port)`` as a step may spell them, normalised.
    - ``addresses``: ``(address, port)`` the database's names resolved to.
    - ``local_ports``: ports at which every address of this machine is refused.
    - ``paths``: resolved files and directories; a directory covers everything under it.
    """

    names: frozenset[tuple[str, int]] = frozenset()
    addresses: frozenset[tuple[IPAddress, int]] = frozenset()
    local_ports: frozenset[int] = frozenset()
    paths: tuple[Path, ...] = ()

    @classmethod
    def of_server(cls, database_url: str, files: Iterable[Path | None] = ()) -> Protected:
        """What to protect for a server whose ``STRONGROOM_DATABASE_URL`` is
        ``database_url``, plus ``files`` (the master key file). Resolves the database's
        host names now, once; ``ValueError`` when one does not resolve, since an endpoint
        that cannot be recognised cannot be protected."""
        names: set[tuple[str, int]] = set()
        addresses: set[tuple[IPAddress, int]] = set()
        local_ports: set[int] = set()
        paths: list[Path] = []
        if database_url.startswith("sqlite:///"):
            database = database_url.removeprefix("sqlite:///").partition("?")[0]
            if database and database != ":memory:":
                file = Path(database).resolve()
                paths += [file.parent, Path(f"{file}.dbos.sqlite")]
        elif database_url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
            for host, port in postgres_endpoints(database_url):
                names.add((host, port))
                for address in _resolve(host, port):
                    addresses.add((address, port))
                    if is_this_machine(address):
                        local_ports.add(port)
            for port in local_ports:
                names.update((name, port) for name in _local_names())
        paths += [Path(f).resolve() for f in files if f is not None]
        return cls(frozenset(names), frozenset(addresses), frozenset(local_ports), tuple(paths))

    # -- the checks --------------------------------------------------------------------------
    def check_host(self, host: str, port: int | None) -> None:
        """Refuse ``host:port`` as a step named it, before any resolution (``port`` ``None``:
        the host at any protected port)."""
        name = normalize_host(host)
        ports = {port} if port is not None else {p for _, p in self.names} | self.local_ports
        if any((name, p) in self.names for p in ports):
            raise EgressRefused(OWN_DATABASE)
        literal = literal_address(name)
        if literal is not None:
            for p in ports:
                self.check_address(literal, p)

    def check_address(self, address: IPAddress, port: int) -> None:
        """Refuse a resolved ``address`` at ``port``: the database's, or this machine's when
        the database listens here."""
        for candidate in embedded_and_self(address):
            if (candidate, port) in self.addresses:
                raise EgressRefused(OWN_DATABASE)
        if port in self.local_ports and is_this_machine(address):
            raise EgressRefused(OWN_DATABASE)

    def check_path(self, path: Path) -> None:
        """Refuse a file under a protected path, once resolved, or one that is such a file
        under another name (a hard link)."""
        real = path.resolve()
        for protected in self.paths:
            if real == protected or protected in real.parents:
                raise EgressRefused(OWN_FILES)
        try:
            info = real.stat()
        except OSError:
            return  # nothing there: nothing of ours either
        if info.st_nlink > 1 and (info.st_dev, info.st_ino) in set(self._file_ids()):
            raise EgressRefused(OWN_FILES)

    def _file_ids(self) -> Iterator[tuple[int, int]]:
        for protected in self.paths:
            walked = os.walk(protected) if protected.is_dir() else [("", [], [str(protected)])]
            for folder, _, files in walked:
                for name in files:
                    try:
                        info = os.stat(os.path.join(folder, name))
                    except OSError:
                        continue
                    yield info.st_dev, info.st_ino

    def overlaps(self, directory: Path) -> Path | None:
        """The protected path ``directory`` is, contains or is inside, or ``None``; for
        refusing a tool SQLite directory at start-up."""
        real = directory.resolve()
        for protected in self.paths:
            if real == protected or protected in real.parents or real in protected.parents:
                return protected
        return None


def _resolve(host: str, port: int) -> list[IPAddress]:
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise ValueError(
            f"cannot resolve the database host {host!r} to keep task tools away from it"
        ) from None
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


def _local_names() -> set[str]:
    """Names that mean this machine, refused by name before any resolution; whatever else
    resolves here is refused by address."""
    names = {"localhost", "localhost.localdomain", "ip6-localhost"}
    name = socket.gethostname()  # not getfqdn(): a reverse lookup can stall the start
    if name:
        names.add(normalize_host(name))
    return names
