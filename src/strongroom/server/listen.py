"""Where ``strongroom serve`` listens, and how: the address policy, the TLS files, and the
listening socket.

Everything here runs before the database is opened, so a server that could not serve
refuses at once and changes nothing: a plain-HTTP listener on a network address (API
keys and secret values would cross the wire in clear), a certificate that cannot be
read, a port already taken. The socket is bound before ``serve --dev`` issues its
one-time bootstrap key, so a failed bind cannot spend that key.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

# uvicorn's default: connections the kernel queues while the server is busy or starting.
BACKLOG = 2048


class ListenRefused(Exception):
    """``serve`` cannot or must not listen as asked; the message says why and what to do."""


@dataclass(frozen=True)
class TlsFiles:
    """A certificate chain and its private key, both PEM files, checked to load together."""

    cert: Path
    key: Path


def tls_files(cert: Path | None, key: Path | None) -> TlsFiles | None:
    """The TLS files to serve with (None: plain HTTP), after loading them once: a missing
    or unreadable file, a key that does not match the certificate, or an encrypted key
    (nobody would be there to type its passphrase) is refused here, before anything is
    served. Messages name the files, never their contents."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ListenRefused(
            "give both --tls-cert and --tls-key (STRONGROOM_TLS_CERT and STRONGROOM_TLS_KEY), "
            "or neither"
        )
    for what, path in (("certificate", cert), ("key", key)):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ListenRefused(f"cannot read the TLS {what} {path}: {exc.strerror}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except _EncryptedKey:
        raise ListenRefused(
            f"the TLS key {key} is encrypted: give it unencrypted, readable by this user only"
        ) from None
    except (ssl.SSLError, ValueError) as exc:
        raise ListenRefused(
            f"cannot use the TLS certificate {cert} with the key {key}: they are not a PEM "
            f"certificate chain and its matching private key ({exc.__class__.__name__})"
        ) from None
    return TlsFiles(cert, key)


class _EncryptedKey(Exception):
    pass


def _no_passphrase() -> bytes:
    # OpenSSL asks for a passphrase only for an encrypted key; without this callback it
    # would prompt on the terminal, or hang a server started without one.
    raise _EncryptedKey


def check_plain_http(host: str, *, tls: bool, insecure: bool) -> bool:
    """Refuse plain HTTP on an address other machines can reach, unless ``insecure`` says
    a proxy in front terminates TLS. Returns whether this is that insecure case (the
    caller warns). Loopback addresses (127.0.0.0/8, ::1, and names resolving only to
    them, such as localhost) need neither."""
    if tls or is_loopback(host):
        return False
    if insecure:
        return True
    raise ListenRefused(
        f"refusing to serve plain HTTP on {host or 'every address'}, which other machines "
        "can reach: API keys and secret values would cross the network unencrypted. Give "
        "--tls-cert and --tls-key (STRONGROOM_TLS_CERT, STRONGROOM_TLS_KEY), or, behind a "
        "proxy that terminates TLS, --insecure (STRONGROOM_INSECURE_HTTP=true)"
    )


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` stands for is a loopback one. An empty host, the
    unspecified addresses (0.0.0.0, ::) and a name that does not resolve are not."""
    if not host:
        return False
    try:
        return _loopback_address(host.strip("[]"))
    except ValueError:
        pass  # a host name: look at every address it resolves to
    try:
        found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    addresses = {str(info[4][0]) for info in found}
    return bool(addresses) and all(_loopback_address(a) for a in addresses)


def _loopback_address(text: str) -> bool:
    address = ipaddress.ip_address(text.partition("%")[0])  # an IPv6 zone is no address
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def bind(host: str, port: int) -> list[socket.socket]:
    """TCP sockets bound to every address of ``host`` (a name may have an IPv4 and an
    IPv6 one; empty: every interface) on ``port``, and listening (port 0: one the system
    picks), for uvicorn to serve on. Listening at once, rather than when uvicorn starts,
    means a second server started on the same port fails here too."""
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (OSError, UnicodeError) as exc:
        raise ListenRefused(f"cannot listen on {_where(host, port)}: {_reason(exc)}") from None
    bound: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    unavailable: OSError | None = None
    try:
        for family, kind, proto, _, address in infos:
            if (family, str(address[0])) in seen:
                continue
            seen.add((family, str(address[0])))
            if port == 0 and bound:
                # Port 0 on a name with two addresses: the same port the first one got.
                address = (address[0], bound[0].getsockname()[1], *address[2:])
            sock = socket.socket(family, kind, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    # As asyncio does: the IPv4 socket, if any, serves IPv4.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(BACKLOG)
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRNOTAVAIL:
                    raise
                # As asyncio does: an address of a family this host has not enabled (a
                # name's ::1 without IPv6) is skipped, if another one can be had.
                unavailable = exc
                continue
            bound.append(sock)
        if not bound:
            raise unavailable or OSError(errno.EADDRNOTAVAIL, "no address to listen on")
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise ListenRefused(f"cannot listen on {_where(host, port)}: {_reason(exc)}") from None
    return bound


def url_of(sockets: list[socket.socket], host: str, *, tls: bool) -> str:
    """The URL a client would use (with the actual port, when 0 was asked)."""
    port = int(sockets[0].getsockname()[1])
    host = host.strip("[]")
    shown = f"[{host}]" if ":" in host else host or "*"
    return f"{'https' if tls else 'http'}://{shown}:{port}"


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host or '*'}:{port}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
