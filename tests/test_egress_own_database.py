"""Never the server's own database: whatever ``STRONGROOM_EGRESS_ALLOW`` says, tools refuse
the host:port of strongroom's own database and every file of its data directory.

Written from the attacker's side. The configuration is the one the README suggests for a
co-located database (``STRONGROOM_EGRESS_ALLOW=127.0.0.1,localhost,::1``, or wider), built
by the server's own ``tool_config``. Each attempt is shown to have made no connection:
``psycopg.connect`` is never called for the real PostgreSQL, and a listening socket of the
test's own, standing for the database on every address of this machine, accepts nothing
(while a plain connection to the same address does reach it, so the refusal is what kept
the tool out). SQLite files are kept per tenant. Last, a real ``strongroom serve`` on
PostgreSQL runs the review's attack as a task and the database is unchanged.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

from strongroom import Strongroom
from strongroom.server.services import tool_config
from strongroom.server.settings import Settings
from strongroom.server.tasks.tools import (
    REGISTRY,
    EgressPolicy,
    EgressRefused,
    Protected,
    ToolConfig,
    ToolContext,
    ToolError,
)
from strongroom.server.tasks.tools.database import DatabaseSettings

from .conftest import MASTER_KEY, IssueKey
from .support import run_cli, start_server
from .test_tools import Reply, Upstream

README_ALLOW = "127.0.0.1,localhost,::1"
EVERYTHING = "0.0.0.0/0,::/0,localhost"  # the widest allow-list there is
OWN = "refused to connect: this is strongroom's own database"


def run(
    tool: str,
    operation: str,
    arguments: dict[str, Any],
    config: ToolConfig,
    credential: str | None = None,
    tenant: str | None = "acme",
) -> Any:
    return REGISTRY.call(tool, operation, arguments, credential, ToolContext(config, tenant=tenant))


def server_tools(database_url: str, allow: str = README_ALLOW, **settings: Any) -> ToolConfig:
    """The tool configuration a server with this database and allow-list runs with."""
    return tool_config(Settings(database_url=database_url, egress_allow=allow, **settings))


# -- a stand-in for the database that counts what reaches it ------------------------------


class Listener:
    """A listening socket of the test's own on every address of this machine (IPv4 and
    IPv6 when the machine has both). A connection is queued by the kernel as soon as its
    handshake completes, so ``accepted()`` finds any that was ever made: no waiting."""

    def __init__(self) -> None:
        if socket.has_dualstack_ipv6():
            self.sock = socket.create_server(
                ("::", 0), family=socket.AF_INET6, dualstack_ipv6=True, backlog=64
            )
        else:
            self.sock = socket.create_server(("0.0.0.0", 0), backlog=64)  # noqa: S104
        self.port = int(self.sock.getsockname()[1])
        self.sock.setblocking(False)

    def accepted(self) -> int:
        """How many connections arrived since the last call (each is closed)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def reaches(self, host: str) -> bool:
        """Whether a plain connection to ``host`` at this port arrives here."""
        try:
            socket.create_connection((host, self.port), timeout=5).close()
        except OSError:
            return False
        return self.accepted() == 1

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/strongroom"

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    try:
        yield found
    finally:
        found.close()


def interface_address() -> str | None:
    """An address of this machine that is not loopback (the one a default route uses)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # UDP: nothing is sent
            address = str(probe.getsockname()[0])
    except OSError:
        return None
    return None if address.startswith("127.") else address


# Every spelling of "this machine" a step could use for a database on 127.0.0.1.
LOCAL_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "::1",
    "[::1]",
    "0.0.0.0",  # noqa: S104
    "127.0.0.2",
    "127.255.0.9",
    "::ffff:127.0.0.1",
    "::",
    "LOCALHOST.",
]


def spellings() -> list[str]:
    found = [*LOCAL_SPELLINGS, socket.gethostname()]
    address = interface_address()
    return [*found, address] if address else found


# -- PostgreSQL: the real database of the test session -------------------------------------


@pytest.fixture
def no_libpq(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Make ``psycopg.connect`` record its call and fail: libpq opens sockets only there."""
    calls: list[Any] = []

    def connect(*args: Any, **kwargs: Any) -> None:
        calls.append((args, {k: v for k, v in kwargs.items() if k != "password"}))
        raise AssertionError("a connection to the database was attempted")

    monkeypatch.setattr(psycopg, "connect", connect)
    return calls


def pg_attacks(database_url: str) -> list[tuple[dict[str, Any], str | None]]:
    """``(arguments, credential)`` of the review's attacks on the database at ``url``."""
    parts = urlsplit(database_url)
    name, port = parts.path.lstrip("/"), parts.port or 5432
    write = "UPDATE api_keys SET scopes = '*'"
    attacks: list[tuple[dict[str, Any], str | None]] = [
        ({"query": write, "read_only": False}, database_url),  # the URL as the credential
        ({"query": "SELECT * FROM secrets"}, database_url),
        ({"connection": {"url": f"postgresql://postgres@localhost/{name}"}}, None),
        ({"connection": {"url": f"postgresql://postgres@[::1]:{port}/{name}"}}, None),
    ]
    for host in spellings():
        connection = {"host": host, "port": port, "user": "postgres", "database": name}
        attacks.append(({"query": write, "read_only": False, "connection": connection}, None))
    return attacks


def test_database_steps_never_reach_the_servers_own_postgresql(
    postgres_database: str, no_libpq: list[Any]
) -> None:
    for allow in (README_ALLOW, EVERYTHING, "127.0.0.1:5432,localhost:5432,[::1]:5432"):
        config = server_tools(postgres_database, allow)
        for arguments, credential in pg_attacks(postgres_database):
            with pytest.raises(EgressRefused) as caught:
                run("database", "query", arguments, config, credential)
            assert (str(caught.value), caught.value.code) == (OWN, "egress_refused"), arguments
    assert no_libpq == []


def test_without_the_protection_the_same_step_would_have_connected(
    postgres_database: str,
) -> None:
    # the control: the allow-list alone lets the step in (which is the hole being closed)
    bare = ToolConfig(egress=EgressPolicy.parse(README_ALLOW))
    got = run("database", "query", {"query": "SELECT 1 AS one"}, bare, postgres_database)
    assert got["rows"] == [[1]]


def test_http_to_the_database_port_is_refused_before_any_socket(
    postgres_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_connection(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(socket, "create_connection", no_connection)
    config = server_tools(postgres_database)
    for url in ("http://127.0.0.1:5432/", "http://localhost:5432/x", "https://[::1]:5432/"):
        with pytest.raises(EgressRefused, match=OWN):
            run("http", "request", {"url": url}, config)
    chat = {
        "model": "m",
        "base_url": "http://127.0.0.1:5432/v1",
        "messages": [{"role": "user", "content": "hi"}],
    }
    with pytest.raises(EgressRefused, match=OWN):
        run("openai", "chat", chat, config, credential="sk-test")


# -- every address of this machine, proven with a socket of our own ------------------------


def test_every_local_spelling_of_the_database_endpoint_is_refused_and_nothing_arrives(
    listener: Listener,
) -> None:
    config = server_tools(listener.url, EVERYTHING)
    reachable = [h for h in spellings() if listener.reaches(h.strip("[]").rstrip("."))]
    # the spellings do lead to the database's port (so refusing them is what matters);
    # Linux routes all of 127.0.0.0/8 and 0.0.0.0 here, other systems may not
    expected = {"127.0.0.1", "localhost"}
    if sys.platform == "linux":
        expected |= {"0.0.0.0", "127.0.0.2", "127.255.0.9"}  # noqa: S104
    assert expected <= set(reachable)
    for host in spellings():
        bracketed = f"[{host}]" if ":" in host and not host.startswith("[") else host
        with pytest.raises(EgressRefused, match=OWN):
            run("http", "request", {"url": f"http://{bracketed}:{listener.port}/"}, config)
        connection = {"host": host, "port": listener.port, "user": "postgres"}
        with pytest.raises(EgressRefused, match=OWN):
            run("database", "query", {"connection": connection}, config)
    assert listener.accepted() == 0


def test_a_redirect_from_an_allowed_local_server_to_the_database_port_is_refused(
    listener: Listener,
) -> None:
    upstream = Upstream()
    try:
        config = server_tools(listener.url, README_ALLOW)
        for target in (
            f"http://127.0.0.1:{listener.port}/",
            f"http://localhost:{listener.port}/",
            f"http://[::1]:{listener.port}/",
            f"http://0.0.0.0:{listener.port}/",
        ):
            upstream.seen.clear()
            upstream.replies["/from"] = Reply(302, b"", {"Location": target})
            with pytest.raises(EgressRefused, match=OWN):
                run(
                    "http",
                    "request",
                    {"url": upstream.url("/from"), "follow_redirects": True},
                    config,
                    credential="tok-1234",
                )
            assert [s.path for s in upstream.seen] == ["/from"]  # the allowed hop happened
        assert listener.accepted() == 0
    finally:
        upstream.close()


def test_a_name_that_resolves_to_the_database_is_refused_by_address(
    listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = server_tools(listener.url, f"{README_ALLOW},pg-alias.test,rebind.test")
    real = socket.getaddrinfo
    answers = {"pg-alias.test": "127.0.0.1", "rebind.test": "::ffff:127.0.0.1"}

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            family = socket.AF_INET6 if ":" in answers[host] else socket.AF_INET
            return [(family, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    for host in answers:
        with pytest.raises(EgressRefused, match=OWN):
            run("http", "request", {"url": f"http://{host}:{listener.port}/"}, config)
    assert listener.accepted() == 0


def test_a_remote_database_is_protected_by_name_and_address_and_nothing_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = {"db.internal": "10.1.2.3", "alias.internal": "10.1.2.3"}

    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    protected = Protected.of_server("postgresql://app@db.internal:6432/strongroom")
    assert protected.local_ports == frozenset()
    context = ToolContext(
        ToolConfig(egress=EgressPolicy.parse("10.0.0.0/8,127.0.0.1"), protected=protected)
    )
    for host in ("db.internal", "DB.Internal.", "alias.internal", "10.1.2.3", "::ffff:10.1.2.3"):
        with pytest.raises(EgressRefused, match=OWN):
            context.addresses_for(host, 6432)
    # another port of that machine, and this machine at that port, are not the database
    assert context.addresses_for("10.1.2.3", 5432) == ["10.1.2.3"]
    assert context.addresses_for("127.0.0.1", 6432) == ["127.0.0.1"]


def test_the_database_endpoints_are_read_as_libpq_reads_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from strongroom.server.tasks.tools.protected import postgres_endpoints

    monkeypatch.delenv("PGHOST", raising=False)
    monkeypatch.delenv("PGPORT", raising=False)
    assert postgres_endpoints("postgresql://u@db:6000/x") == [("db", 6000)]
    assert postgres_endpoints("postgresql+psycopg://u@[::1]/x") == [("::1", 5432)]
    assert postgres_endpoints("postgresql://u@a:1,b:2/x") == [("a", 1), ("b", 2)]
    assert postgres_endpoints("postgresql:///x?host=/var/run/postgresql") == [("localhost", 5432)]
    assert postgres_endpoints("postgresql://u@db/x?hostaddr=10.0.0.9") == [
        ("db", 5432),
        ("10.0.0.9", 5432),
    ]
    monkeypatch.setenv("PGHOST", "envhost")
    monkeypatch.setenv("PGPORT", "7777")
    assert postgres_endpoints("postgresql:///x") == [("envhost", 7777)]


# -- the allow-list's host:port entries ---------------------------------------------------


def test_a_host_port_entry_admits_exactly_that_port(listener: Listener) -> None:
    upstream = Upstream()
    try:
        only = EgressPolicy.parse(f"127.0.0.1:{upstream.port}")
        config = ToolConfig(egress=only)
        assert run("http", "request", {"url": upstream.url("/ok")}, config)["status"] == 200
        with pytest.raises(
            EgressRefused, match=rf"127.0.0.1 is a loopback address \(port {listener.port}\)"
        ):
            run("http", "request", {"url": f"http://127.0.0.1:{listener.port}/"}, config)
        with pytest.raises(EgressRefused):
            run("http", "request", {"url": f"http://[::1]:{upstream.port}/"}, config)
        named = ToolConfig(egress=EgressPolicy.parse(f"localhost:{upstream.port}"))
        assert (
            run("http", "request", {"url": upstream.url("/n", "localhost")}, named)["status"] == 200
        )
        with pytest.raises(EgressRefused):
            run("http", "request", {"url": f"http://localhost:{listener.port}/"}, named)
        assert listener.accepted() == 0
        assert [s.path for s in upstream.seen] == ["/ok", "/n"]
    finally:
        upstream.close()


def test_allow_list_entries_with_ports_parse() -> None:
    policy = EgressPolicy.parse(
        "127.0.0.1:8080,db.internal:5432,10.0.0.0/8,[::1]:8443,Api.Test.:80"
    )
    assert policy.allowed_host_ports == {("db.internal", 5432), ("api.test", 80)}
    assert [(str(net), port) for net, port in policy.allowed_network_ports] == [
        ("127.0.0.1/32", 8080),
        ("::1/128", 8443),
    ]
    assert [str(net) for net in policy.allowed_networks] == ["10.0.0.0/8"]
    assert policy.resolve("10.9.9.9", 1) == ["10.9.9.9"]  # a range: every port
    assert policy.resolve("::1", 8443) == ["::1"]
    with pytest.raises(EgressRefused):
        policy.resolve("::1", 8080)
    # a bare IPv6 address is an address: a port needs brackets
    assert EgressPolicy.parse("fd00::1:5432").allowed_networks[0].prefixlen == 128
    for bad in ("db:0", "db:65536", "db:http", "[::1]x", "[::1]:", "[db]:80", ":80", "a:b:c"):
        with pytest.raises(ValueError, match="STRONGROOM_EGRESS_ALLOW"):
            EgressPolicy.parse(bad)


# -- SQLite: one directory per tenant, never the data directory ---------------------------


def make_db(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v TEXT)")
        conn.execute("INSERT INTO t VALUES (?)", (value,))
    conn.close()


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A server's data directory (its database and DBOS's) and key file, and a tool SQLite
    directory apart from them with tenants ``alpha`` and ``beta``."""
    data, tools, keys = tmp_path / "data", tmp_path / "tools", tmp_path / "keys"
    make_db(data / "strongroom.db", "server's own")
    make_db(data / "strongroom.db.dbos.sqlite", "engine's own")
    keys.mkdir()
    (keys / "master.key").write_text(MASTER_KEY)
    make_db(tools / "alpha" / "a.db", "alpha's")
    make_db(tools / "beta" / "b.db", "beta's")
    return {"data": data, "tools": tools, "key": keys / "master.key"}


def sqlite_tools(layout: dict[str, Path], sqlite_dir: Path | None = None) -> ToolConfig:
    return server_tools(
        f"sqlite:///{layout['data'] / 'strongroom.db'}",
        tool_sqlite_dir=sqlite_dir or layout["tools"],
        master_key_file=layout["key"],
    )


def read(config: ToolConfig, url: str, tenant: str | None) -> Any:
    got = run(
        "database",
        "query",
        {"query": "SELECT v FROM t", "connection": {"url": url}},
        config,
        tenant=tenant,
    )
    return got["rows"]


def refused_sqlite(config: ToolConfig, url: str, tenant: str | None) -> ToolError:
    with pytest.raises(ToolError) as caught:
        read(config, url, tenant)
    assert caught.value.code in ("not_allowed", "egress_refused"), caught.value
    return caught.value


def test_a_tenant_opens_its_own_files_and_no_one_elses(layout: dict[str, Path]) -> None:
    config = sqlite_tools(layout)
    tools = layout["tools"]
    assert read(config, "sqlite:///a.db", "alpha") == [["alpha's"]]
    assert read(config, "sqlite:///b.db", "beta") == [["beta's"]]
    # alpha after beta's file, every way a path can be spelled
    (tools / "alpha" / "link.db").symlink_to(tools / "beta" / "b.db")
    (tools / "alpha" / "beta").symlink_to(tools / "beta", target_is_directory=True)
    with pytest.raises(ToolError, match="it must exist"):  # alpha's own name space: no b.db
        read(config, "sqlite:///b.db", "alpha")
    for url in (
        "sqlite:///../beta/b.db",
        "sqlite:///./../beta/./b.db",
        "sqlite:///%2E%2E/beta/b.db",
        f"sqlite:///{tools / 'beta' / 'b.db'}",
        f"sqlite:////{tools / 'alpha' / 'a.db'}",  # absolute, even to its own file
        "sqlite:///link.db",
        "sqlite:///beta/b.db",
    ):
        error = refused_sqlite(config, url, "alpha")
        assert error.code == "not_allowed", url
    # no tenant, a tenant without a directory, a tenant name that walks
    assert "has no tenant" in str(refused_sqlite(config, "sqlite:///a.db", None))
    assert "no directory" in str(refused_sqlite(config, "sqlite:///a.db", "gamma"))
    assert "no directory" in str(refused_sqlite(config, "sqlite:///a.db", "Alpha"))
    for walker in ("..", "../alpha", "alpha/..", "."):
        refused_sqlite(config, "sqlite:///a.db", walker)
    # a tenant directory that is a link to another's is not that tenant's
    (tools / "gamma").symlink_to(tools / "beta", target_is_directory=True)
    assert "no directory" in str(refused_sqlite(config, "sqlite:///b.db", "gamma"))


def test_the_servers_own_files_are_refused_even_through_links(layout: dict[str, Path]) -> None:
    config = sqlite_tools(layout)
    home = layout["tools"] / "alpha"
    (home / "own.db").symlink_to(layout["data"] / "strongroom.db")
    refused_sqlite(config, "sqlite:///own.db", "alpha")
    os.link(layout["data"] / "strongroom.db", home / "hard.db")
    error = refused_sqlite(config, "sqlite:///hard.db", "alpha")
    assert (error.code, str(error)) == (
        "egress_refused",
        "refused to open: this file is strongroom's own (its data directory or master key)",
    )


def test_files_under_the_data_directory_are_refused_when_the_tool_directory_overlaps(
    layout: dict[str, Path],
) -> None:
    # built by hand (tool_config refuses this at start-up): the data directory is then
    # tenant "data"'s directory, and still none of its files opens
    protected = Protected.of_server(
        f"sqlite:///{layout['data'] / 'strongroom.db'}", [layout["key"]]
    )
    overlapping = (DatabaseSettings(tool_sqlite_dir=layout["data"].parent),)
    config = ToolConfig(protected=protected, tool_settings=overlapping)
    for name in ("strongroom.db", "strongroom.db.dbos.sqlite"):
        error = refused_sqlite(config, f"sqlite:///{name}", "data")
        assert error.code == "egress_refused"
    assert read(ToolConfig(tool_settings=overlapping), "sqlite:///strongroom.db", "data") == [
        ["server's own"]
    ]  # the control: without the protection it would have opened


def test_tool_config_refuses_a_tool_directory_that_overlaps_the_servers_files(
    layout: dict[str, Path],
) -> None:
    data = layout["data"]
    for overlapping in (data, data / "tenants", data.parent, layout["key"].parent):
        with pytest.raises(ValueError, match=r"STRONGROOM_TOOL_SQLITE_DIR .* apart from"):
            sqlite_tools(layout, overlapping)
    assert sqlite_tools(layout).settings(DatabaseSettings).tool_sqlite_dir == layout["tools"]


@pytest.mark.e2e
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_serve_and_worker_refuse_to_start_with_a_tool_directory_in_the_data_directory(
    tmp_path: Path, command: list[str]
) -> None:
    data = tmp_path / "data"
    env = {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{data / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_TOOL_SQLITE_DIR": str(data / "tenants"),
    }
    done = run_cli(command, env, cwd=tmp_path)
    assert done.returncode != 0
    assert "STRONGROOM_TOOL_SQLITE_DIR" in done.stderr
    assert "apart from strongroom's own files" in " ".join(done.stderr.split())
    assert not (data / "strongroom.db").exists()  # refused before the database was opened


# -- end to end: the review's attack, as a task, on a real server -------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("backend", ["postgres"])
def test_a_task_cannot_reach_the_servers_own_postgresql(
    database_url: str, tmp_path: Path, issue_key: IssueKey
) -> None:
    def snapshot() -> list[Any]:
        with psycopg.connect(database_url) as conn:
            keys = conn.execute("SELECT t::text FROM api_keys t ORDER BY id").fetchall()
            secrets = conn.execute("SELECT t::text FROM secrets t ORDER BY id").fetchall()
            return [keys, secrets]

    server = start_server(
        tmp_path,
        {
            "STRONGROOM_DATABASE_URL": database_url,
            "STRONGROOM_MASTER_KEY": MASTER_KEY,
            "STRONGROOM_EGRESS_ALLOW": README_ALLOW,
        },
    )
    try:
        key = issue_key("default", ("secrets:write", "tasks:run"))
        parts = urlsplit(database_url)
        with Strongroom(api_key=key, base_url=server.base_url) as client:
            client.secrets.create(name="own_db", value=database_url)
            name = parts.path.lstrip("/")
            attacks = [
                {
                    "kind": "tool_call",
                    "tool": "database",
                    "operation": "query",
                    "secret_name": "own_db",
                    "arguments": {"query": "UPDATE api_keys SET scopes = '*'", "read_only": False},
                },
                {
                    "kind": "tool_call",
                    "tool": "database",
                    "operation": "query",
                    "secret_name": "own_db",
                    "arguments": {"query": "SELECT * FROM secrets"},
                },
                {
                    "kind": "tool_call",
                    "tool": "database",
                    "operation": "query",
                    "arguments": {
                        "query": "UPDATE api_keys SET scopes = '*'",
                        "read_only": False,
                        "connection": {"host": "localhost", "user": "postgres", "database": name},
                    },
                },
                {
                    "kind": "tool_call",
                    "tool": "http",
                    "operation": "request",
                    "arguments": {"url": f"http://127.0.0.1:{parts.port or 5432}/"},
                },
            ]
            before = snapshot()
            for step in attacks:
                task = client.tasks.create(steps=[step])
                done = client.executions.wait(client.tasks.execute(task.id).id, timeout=60)
                assert done.status == "failed", step
                assert done.error is not None
                assert done.error["code"] == "egress_refused", done.error
                # a URL credential's errors are withheld (they would quote its host)
                message = done.error["message"]
                assert "strongroom's own database" in message or "withheld" in message
            assert snapshot() == before
    finally:
        server.stop()
