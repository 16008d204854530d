"""Test helpers: a real server process, canary values and their encodings."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

STRONGROOM = str(Path(sys.executable).with_name("strongroom"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    stdout_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# The engine of a test's server looks at its queue ten times a second (a deployment's
# default is once): tests wait on executions, never on how long they wait to start.
TEST_ENGINE_POLL = {"STRONGROOM_ENGINE_POLL_SECONDS": "0.1"}


def process_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of a server or worker a test starts: ``env`` over a minimal base."""
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return {**base, **TEST_ENGINE_POLL, **env}


def run_cli(
    args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``strongroom`` command with only ``env`` (plus PATH) as its settings."""
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    return subprocess.run(
        [STRONGROOM, *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_server(
    workdir: Path,
    env: dict[str, str],
    extra_args: tuple[str, ...] = (),
    wait: bool = True,
    prefix: tuple[str, ...] = (),
) -> ServerProcess:
    """Start ``strongroom serve``; ``prefix`` runs it through another command (``nsenter``)."""
    port = free_port()
    log_path = workdir / f"server-{port}.log"
    stdout_path = workdir / f"server-{port}.out"
    full_env = process_env(env)
    with log_path.open("wb") as log, stdout_path.open("wb") as out:
        process = subprocess.Popen(
            [*prefix, STRONGROOM, "serve", "--port", str(port), *extra_args],
            env=full_env,
            cwd=workdir,
            stdout=out,
            stderr=log,
        )
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log_path, stdout_path, full_env)
    if wait:
        wait_ready(server)
    return server


def wait_ready(server: ServerProcess, timeout: float = 30) -> None:
    """Poll /healthz until the server answers (readiness, not a timing assumption)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}:\n{server.log()}")
        try:
            if httpx.get(server.base_url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"server did not become ready:\n{server.log()}")


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout`` seconds.

    For something another process makes true (a server's log line, an execution's end,
    a database back up): the wait ends as soon as it is, never after a guessed delay.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.02)


def canary(label: str = "canary") -> str:
    """A value that cannot occur by chance, to look for wherever it must not be."""
    return f"{label}-{os.urandom(12).hex()}-SECRET"


def encodings(value: str) -> dict[str, bytes]:
    """The spellings of ``value`` a leak could take: plain, base64 (all three
    alignments, so a value inside a longer base64 string is found), URL- and JSON-quoted."""
    raw = value.encode()
    found = {
        "plain": raw,
        "url": urllib.parse.quote(value, safe="").encode(),
        "url_plus": urllib.parse.quote_plus(value).encode(),
        "json": json.dumps(value).encode()[1:-1],
        "hex": raw.hex().encode(),
    }
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + raw)
        # drop the characters that depend on the prefix and on what follows
        start = {0: 0, 1: 4, 2: 4}[shift]
        found[f"base64_{shift}"] = encoded[start : len(encoded) - 4]
    return {k: v for k, v in found.items() if len(v) >= 8}


def find_leaks(value: str, haystack: bytes) -> list[str]:
    """Names of the encodings of ``value`` present in ``haystack``."""
    return [name for name, needle in encodings(value).items() if needle in haystack]


ERROR_FIELDS = {"code", "message", "request_id", "details"}


def postgres_rows(url: str) -> bytes:
    """Every row of every table of every schema of a PostgreSQL database (the execution
    engine's ``dbos`` schema included), as text and as raw values: what a leak scan reads."""
    chunks: list[bytes] = []
    with psycopg.connect(url) as conn:
        tables = conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE'"
            " AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            for (text,) in conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t'):
                chunks.append(text.encode())
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"'):
                for value in row:
                    chunks.append(value if isinstance(value, bytes) else str(value).encode())
    return b"\n".join(chunks)


def assert_error(
    response: httpx.Response, status: int, code: str, location: str | None = None
) -> dict[str, Any]:
    """Check ``response`` is the contract's error envelope, exactly
    ``{"error": {"code", "message", "request_id", "details"}}``, with this status and code,
    and the request id of its ``X-Request-Id`` header; with ``location``, that some detail
    names it. Returns the ``error`` object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert error["request_id"], error
    assert error["request_id"] == response.headers["x-request-id"]
    assert isinstance(error["details"], list), error
    for detail in error["details"]:
        assert set(detail) == {"location", "message"}, detail
        assert isinstance(detail["location"], str), detail
        assert isinstance(detail["message"], str), detail
        assert detail["message"], detail
    if location is not None:
        assert location in [d["location"] for d in error["details"]], error
    return error


class TcpRelay:
    """A TCP port on 127.0.0.1 that forwards every connection to ``target`` (host, port):
    the same server at another endpoint. Tools refuse the endpoint of strongroom's own
    database, so a test whose tasks query another database on the one shared PostgreSQL
    points the *server* at this relay, and the tasks at PostgreSQL's own port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url_for(self, url: str) -> str:
        """``url`` (a ``postgresql://`` URL of the target) through this relay."""
        parts = urllib.parse.urlsplit(url)
        user = f"{parts.username}@" if parts.username else ""
        return urllib.parse.urlunsplit(
            parts._replace(netloc=f"{user}127.0.0.1:{self.port}")  # no password: trust auth
        )

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass  # the other side closed: shut both down
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()
