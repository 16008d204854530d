"""``strongroom serve`` in production: HTTPS with the operator's certificate, no plain
HTTP on a network address unless asked for, and a one-time bootstrap key that a failed
start cannot spend.

The refusals run as processes and must come before the database is opened: each test
checks the database file was never made.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import sqlite3
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from pydantic import SecretStr

from strongroom.server import listen
from strongroom.server.apikeys import create_api_key
from strongroom.server.app import create_app
from strongroom.server.services import open_services
from strongroom.server.settings import Settings

from .conftest import MASTER_KEY
from .support import ServerProcess, run_cli, start_server, wait_until

HSTS = "max-age=31536000"
ANY_IPV4 = "0.0.0.0"  # noqa: S104 - what these tests refuse, and allow with --insecure


# -- a certificate made here ----------------------------------------------------------------
def write_certificate(directory: Path, *, passphrase: bytes | None = None) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    key_path.chmod(0o600)
    return cert_path, key_path


def sqlite_env(tmp_path: Path) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
    }


def one_line(text: str) -> str:
    return " ".join(text.split())


# -- HTTPS ------------------------------------------------------------------------------------
@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, ssl.SSLContext, str]]:
    """A server over HTTPS on loopback: it, its https URL, a client context trusting its
    certificate, and a full-scope API key."""
    cert, key = write_certificate(tmp_path)
    env = sqlite_env(tmp_path)
    services = open_services(
        Settings(database_url=env["STRONGROOM_DATABASE_URL"], master_key=SecretStr(MASTER_KEY))
    )
    try:
        api_key, _ = create_api_key(services.store, services.barrier, "default")
    finally:
        services.store.close()
    server = start_server(
        tmp_path, env, ("--tls-cert", str(cert), "--tls-key", str(key)), wait=False
    )
    url = server.base_url.replace("http://", "https://")
    trust = ssl.create_default_context(cafile=str(cert))

    def ready() -> bool:
        assert server.process.poll() is None, server.log()
        try:
            return httpx.get(url + "/healthz", verify=trust, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(ready, "the HTTPS server answers /healthz")
        yield server, url, trust, api_key
    finally:
        server.stop()


@pytest.mark.e2e
def test_serve_over_https_marks_every_answer_and_the_session_cookie_secure(
    https_server: tuple[ServerProcess, str, ssl.SSLContext, str],
) -> None:
    server, url, trust, api_key = https_server
    with httpx.Client(base_url=url, verify=trust, timeout=10) as client:
        health = client.get("/healthz")
        assert health.headers["strict-transport-security"] == HSTS
        refused = client.get("/v1/secrets")  # no key: an error answer is marked too
        assert refused.status_code == 401
        assert refused.headers["strict-transport-security"] == HSTS
        login = client.post("/v1/sessions", headers={"Authorization": f"Bearer {api_key}"})
        assert login.status_code in (200, 201), login.text
        cookie = login.headers["set-cookie"]
        assert "; Secure" in cookie and "HttpOnly" in cookie
        assert login.headers["strict-transport-security"] == HSTS
    # The same port speaks no plain HTTP: a key sent in clear would get no answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.base_url + "/healthz", timeout=5)
    # Nor does a client that does not trust the certificate get through.
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/healthz", timeout=5)
    wait_until(lambda: f"serving on {url}" in server.log(), "the log says where it serves")


def test_hsts_only_over_https(tmp_path: Path) -> None:
    """In process: an answer reached over plain HTTP (loopback, or a proxy not trusted to
    say otherwise) carries no HSTS header; one over HTTPS does."""
    services = open_services(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", master_key=SecretStr(MASTER_KEY)
        )
    )
    try:
        app = create_app(services, run_engine=False)
        with TestClient(app, base_url="http://testserver") as plain:
            assert "strict-transport-security" not in plain.get("/healthz").headers
        with TestClient(app, base_url="https://testserver") as secure:
            assert secure.get("/healthz").headers["strict-transport-security"] == HSTS
            assert secure.get("/nowhere").headers["strict-transport-security"] == HSTS
    finally:
        services.store.close()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("cert-only", "give both --tls-cert and --tls-key"),
        ("key-only-in-settings", "give both --tls-cert and --tls-key"),
        ("missing-cert", "cannot read the TLS certificate"),
        ("unreadable-key", "cannot read the TLS key"),
        ("key-of-another-certificate", "cannot use the TLS certificate"),
        ("not-pem", "cannot use the TLS certificate"),
        ("encrypted-key", "is encrypted"),
    ],
)
def test_serve_refuses_unusable_tls_settings_before_opening_the_database(
    tmp_path: Path, case: str, expected: str
) -> None:
    cert, key = write_certificate(tmp_path)
    env = sqlite_env(tmp_path)
    args = ["serve", "--port", "0"]
    if case == "cert-only":
        args += ["--tls-cert", str(cert)]
    elif case == "key-only-in-settings":
        env["STRONGROOM_TLS_KEY"] = str(key)
    elif case == "missing-cert":
        args += ["--tls-cert", str(tmp_path / "nothing.pem"), "--tls-key", str(key)]
    elif case == "unreadable-key":
        env["STRONGROOM_TLS_CERT"], env["STRONGROOM_TLS_KEY"] = str(cert), str(tmp_path)
    elif case == "key-of-another-certificate":
        other = tmp_path / "other"
        other.mkdir()
        _, other_key = write_certificate(other)
        args += ["--tls-cert", str(cert), "--tls-key", str(other_key)]
    elif case == "not-pem":
        (tmp_path / "junk.pem").write_text("not a certificate\n")
        args += ["--tls-cert", str(tmp_path / "junk.pem"), "--tls-key", str(key)]
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        cert, key = write_certificate(locked, passphrase=b"correct horse")
        args += ["--tls-cert", str(cert), "--tls-key", str(key)]
    done = run_cli(args, env, cwd=tmp_path, timeout=30)
    assert done.returncode == 2, done.stderr
    assert expected in one_line(done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    assert "PRIVATE KEY" not in done.stderr + done.stdout
    assert not (tmp_path / "db.sqlite").exists()


# -- plain HTTP on a network address -----------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("host", "via_settings"),
    [(ANY_IPV4, False), ("::", True), ("192.0.2.10", False)],
    ids=["ipv4-any", "ipv6-any-from-settings", "an-interface-address"],
)
def test_serve_refuses_plain_http_on_a_network_address(
    tmp_path: Path, host: str, via_settings: bool
) -> None:
    env = sqlite_env(tmp_path)
    args = ["serve", "--port", "0"]
    if via_settings:
        env["STRONGROOM_HOST"] = host
    else:
        args += ["--host", host]
    done = run_cli(args, env, cwd=tmp_path, timeout=30)
    message = one_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert "refusing to serve plain HTTP" in message
    for advice in ("--insecure", "STRONGROOM_INSECURE_HTTP=true", "--tls-cert", "--tls-key"):
        assert advice in message, message
    assert not (tmp_path / "db.sqlite").exists()


@pytest.mark.e2e
def test_serve_insecure_on_a_network_address_serves_and_warns_once(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        {**sqlite_env(tmp_path), "STRONGROOM_INSECURE_HTTP": "true"},
        ("--host", ANY_IPV4),
    )
    try:
        assert httpx.get(server.base_url + "/healthz", timeout=5).status_code == 200
        assert "strict-transport-security" not in httpx.get(server.base_url + "/healthz").headers
    finally:
        server.stop()
    warnings = [
        json.loads(line)
        for line in server.log().splitlines()
        if line.startswith("{") and '"warning"' in line
    ]
    plain = [w for w in warnings if "plain HTTP" in w["message"]]
    assert len(plain) == 1, warnings
    assert plain[0]["host"] == ANY_IPV4


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        (ANY_IPV4, False),
        ("::", False),
        ("", False),
        ("10.1.2.3", False),
        ("::ffff:10.1.2.3", False),
        ("2001:db8::1", False),
        ("fe80::1%eth0", False),
    ],
)
def test_which_addresses_are_loopback(host: str, loopback: bool) -> None:
    assert listen.is_loopback(host) is loopback


def test_a_name_is_loopback_only_if_every_address_it_resolves_to_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {
        "only-loopback.test": ["127.0.0.1", "::1"],
        "mixed.test": ["127.0.0.1", "203.0.113.7"],
    }

    def resolve(host: str, *args: object, **kwargs: object) -> list[tuple[object, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(0, 0, 0, "", (address, 0)) for address in answers[host]]

    monkeypatch.setattr(listen.socket, "getaddrinfo", resolve)
    assert listen.is_loopback("only-loopback.test")
    assert not listen.is_loopback("mixed.test")
    assert not listen.is_loopback("unknown.test")
    with pytest.raises(listen.ListenRefused, match="--insecure"):
        listen.check_plain_http("mixed.test", tls=False, insecure=False)
    assert listen.check_plain_http("mixed.test", tls=False, insecure=True) is True
    assert listen.check_plain_http("mixed.test", tls=True, insecure=False) is False
    assert listen.check_plain_http("only-loopback.test", tls=False, insecure=False) is False


def test_bind_listens_at_once_and_a_taken_port_is_refused() -> None:
    sockets = listen.bind("127.0.0.1", 0)
    try:
        port = sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # the kernel queues it: listening before uvicorn starts
        with pytest.raises(listen.ListenRefused, match=f"cannot listen on 127.0.0.1:{port}"):
            listen.bind("127.0.0.1", port)
        assert listen.url_of(sockets, "127.0.0.1", tls=True) == f"https://127.0.0.1:{port}"
    finally:
        for sock in sockets:
            sock.close()
    six = listen.bind("[::1]", 0)
    try:
        assert listen.url_of(six, "[::1]", tls=False).startswith("http://[::1]:")
    finally:
        for sock in six:
            sock.close()


# -- the bootstrap key ---------------------------------------------------------------------------
def api_key_count(database: Path) -> int:
    if not database.exists():
        return 0
    with sqlite3.connect(database) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        if "api_keys" not in tables:
            return 0
        return int(conn.execute("SELECT count(*) FROM api_keys").fetchone()[0])


@pytest.mark.e2e
def test_a_failed_bind_spends_no_bootstrap_key(tmp_path: Path) -> None:
    env = {"STRONGROOM_DATABASE_URL": f"sqlite:///{tmp_path / 'data' / 'db.sqlite'}"}
    (tmp_path / "data").mkdir(mode=0o700)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = run_cli(["serve", "--dev", "--port", str(port)], env, cwd=tmp_path, timeout=30)
    assert done.returncode != 0, done.stdout + done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in one_line(done.stderr)
    assert "Bootstrap" not in done.stdout and "sr_" not in done.stdout + done.stderr
    assert api_key_count(tmp_path / "data" / "db.sqlite") == 0
    # The next start, on a port it can have, prints the key: it was never spent.
    server = start_server(tmp_path, env, ("--dev",))
    try:
        wait_until(lambda: "export STRONGROOM_API_KEY=sr_" in server.stdout(), "the key banner")
    finally:
        server.stop()
    assert server.stdout().count("Bootstrap API key") == 1
    assert api_key_count(tmp_path / "data" / "db.sqlite") == 1


@pytest.mark.e2e
def test_serve_on_port_zero_says_the_port_it_got(tmp_path: Path) -> None:
    # start_server's own --port comes first: the later one, 0, is the one taken.
    server = start_server(tmp_path, sqlite_env(tmp_path), ("--port", "0"), wait=False)
    try:
        wait_until(lambda: "serving on http://127.0.0.1:" in server.log(), "the serving line")
        line = next(
            json.loads(entry) for entry in server.log().splitlines() if "serving on" in entry
        )
        port = int(line["url"].rsplit(":", 1)[1])
        assert port != 0
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
