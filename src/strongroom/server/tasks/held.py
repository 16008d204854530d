"""Destinations that may hold a secret: what a run sent there as data can come back later.

Taint follows a value through one execution. It cannot follow it out of the server and
back: a run writes ``secrets.k`` into a table of the tenant's SQLite file (or posts it to
an API that stores it), and a later run, which never reads ``k``, selects it again. So
the destination itself is marked. Before a tool call that carries secrets as data
connects anywhere, each place it is about to reach is recorded as holding those secrets
(``held_secrets``, per tenant); after any tool call, its answer and its error are tainted
by every secret held at any place the call reached, whichever run sent it there.

Which places are recorded: every place a database is reached at (a database is a store:
holding what it is sent is its job), every non-public address (only strongroom's tasks
can reach it, so it is where a task could hide a value from the attacker's own eyes and
fetch it later), and, for a secret whose policy lists its destinations, every place.
A public host that a secret without such a policy is sent to is not recorded: a task
could as well have sent the value to a host of the attacker's (the egress guard and the
usage policy bound that, not this), and recording it would mark every later answer of,
say, an LLM API, for every run of the tenant, because one prompt once held a secret.

A place is a SQLite file (its full path), or a host and port: the name the step gave and
each address it resolved to, this machine's addresses all counting as one, so that
``localhost`` reads what ``127.0.0.1`` wrote. It is stored as an HMAC under a key of the
barrier (:meth:`.Keyring.fingerprint`), since a host may itself be a secret.

What this cannot see: a place reached under a name and an address neither of which the
writing run used (another of the upstream's addresses, say), and the same data reached
through another tenant. Usage policies (``allowed_destinations``) are what bound where a
secret can go at all; this keeps what a destination they allow hands back marked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import threading

from ..crypto import Barrier
from ..storage import Store
from .tools.context import Destination
from .tools.egress import literal_address, non_public_kind, normalize_host
from .tools.protected import is_this_machine


def place_of(destination: Destination) -> str:
    """How ``destination`` is compared with the places recorded before it."""
    if destination.path is not None:
        return f"file:{destination.path.resolve()}"
    host = normalize_host(destination.host or "")
    address = literal_address(host)
    if address is not None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        host = "this-machine" if is_this_machine(address) else str(address)
    port = "" if destination.port is None else str(destination.port)
    return f"net:{host}:{port}"


def _non_public(destination: Destination) -> bool:
    """A file, or an address outside the public internet (a name: not known yet)."""
    if destination.path is not None:
        return True
    address = literal_address(normalize_host(destination.host or ""))
    return address is not None and non_public_kind(address) is not None


class HeldSecrets:
    """The places one tool call reached, and what they hold.

    ``sent`` is the secrets the call carries as data; ``restricted`` those of them whose
    policy lists destinations; ``stores`` whether the destination keeps what it is sent
    (``Operation.stores``). Each place is recorded as holding what it may hold (see the
    module) as it is reached, before the connection: a later run that reads the place
    while this call still sends finds the record already.
    """

    def __init__(
        self,
        store: Store,
        barrier: Barrier,
        tenant_id: str,
        *,
        sent: frozenset[str],
        restricted: frozenset[str],
        stores: bool,
    ) -> None:
        self._store = store
        self._barrier = barrier
        self._tenant_id = tenant_id
        self._sent = sent
        self._restricted = sent & restricted
        self._stores = stores
        self._reached: set[str] = set()
        self._lock = threading.Lock()  # a tool may connect from more than one thread

    def reach(self, destination: Destination) -> None:
        """The call is about to reach ``destination`` (a ``ToolContext.on_reach`` hook)."""
        place = self._barrier.fingerprint(place_of(destination))
        with self._lock:
            if place in self._reached:
                return
            self._reached.add(place)
        everything = self._stores or _non_public(destination)
        names = sorted(self._sent if everything else self._restricted)
        if names:
            with self._store.write() as tx:
                tx.executions.hold_secrets(self._tenant_id, place, names, dt.datetime.now(dt.UTC))

    def held(self) -> frozenset[str]:
        """Every secret any place this call reached was ever sent, by any run."""
        with self._lock:
            places = sorted(self._reached)
        if not places:
            return frozenset()
        with self._store.read() as tx:
            return tx.executions.secrets_held(self._tenant_id, places)
