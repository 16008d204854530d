"""One scenario through every surface, then a search of everything it left behind.

Canary secrets (plain ASCII, Unicode, multi-line, short, a database password, an OpenAI
key, and more) go in through every ``/v1`` and ``/julep`` secrets route and through bad
requests of every kind; tasks hand them to tools (an HTTP upstream that echoes what it
gets, a fake OpenAI, the real PostgreSQL) and build values from them; the Python SDK and
the command line read and write them; the master key is rotated and the server restarted
in the middle. Then every answer, every process's output, every byte the databases hold
and every file under the test's directory (the processes' ``TMPDIR`` and ``HOME``
included) are searched for each canary in every spelling the redactor scrubs. A value may
appear only where it was asked for: a GET of the secret, ``secrets get`` and ``secrets
export``, each checked to hold it exactly once.

Canaries sent in URL paths are searched like every other: the request log records the
route a request matched, never its path.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from dotenv import dotenv_values

from strongroom import Strongroom, StrongroomError
from strongroom.server.services import Services

from .conftest import MASTER_KEY, POSTGRES_URL, IssueKey
from .support import (
    STRONGROOM,
    ServerProcess,
    TcpRelay,
    canary,
    encodings,
    free_port,
    postgres_rows,
    start_server,
    wait_until,
)
from .upstream import Upstream, at, openai_upstream

pytestmark = pytest.mark.e2e

DEADLINE = 30.0  # seconds any one condition may take to come true


# -- what to look for --------------------------------------------------------------------------
def spellings(value: str) -> dict[str, bytes]:
    """``encodings(value)`` and the other spellings the redactor scrubs: lower-case ``%xx``,
    ``quote`` keeping ``/``, JSON without ASCII escapes and JSON escaped twice, HTML,
    upper-case hex and URL-safe base64 (at the three alignments)."""
    found = dict(encodings(value))
    raw = value.encode()
    inner = json.dumps(value)[1:-1]
    inner_utf8 = json.dumps(value, ensure_ascii=False)[1:-1]
    quoted = urllib.parse.quote(value, safe="")
    extra = {
        "url_lower": re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted),
        "url_path": urllib.parse.quote(value),
        "json_utf8": inner_utf8,
        "json_twice": json.dumps(inner)[1:-1],
        "json_utf8_twice": json.dumps(inner_utf8, ensure_ascii=False)[1:-1],
        "html": html.escape(value),
        "hex_upper": raw.hex().upper(),
    }
    for name, text in extra.items():
        found[name] = text.encode()
    for shift in range(3):
        encoded = base64.urlsafe_b64encode(b"\x00" * shift + raw)
        start = {0: 0, 1: 4, 2: 4}[shift]
        found[f"base64url_{shift}"] = encoded[start : len(encoded) - 4]
    unique: dict[bytes, str] = {}
    for name, needle in found.items():
        if len(needle) >= 8:
            unique.setdefault(needle, name)
    return {name: needle for needle, name in unique.items()}


def leaks_in(value: str, haystack: bytes) -> list[str]:
    return [name for name, needle in spellings(value).items() if needle in haystack]


def test_the_spellings_are_found_inside_longer_text() -> None:
    """Every spelling is found inside other text, and they include ``encodings``'."""
    value = "line-1 ünï-" + os.urandom(6).hex() + "\nline-2 <&/>?"
    needles = set(spellings(value).values())
    assert set(encodings(value).values()) <= needles
    for name, needle in spellings(value).items():
        assert leaks_in(value, b"before " + needle + b" after"), name
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            assert leaks_in(value, encode(b"x" * shift + value.encode() + b"tail"))


# -- local upstreams ---------------------------------------------------------------------------
@dataclass
class Echo:
    """An HTTP upstream on 127.0.0.1 answering every request with a JSON copy of it."""

    base_url: str
    seen: list[dict[str, Any]] = field(default_factory=list)

    def raw(self) -> bytes:
        return json.dumps(self.seen, ensure_ascii=False).encode()


@contextmanager
def echo_upstream() -> Iterator[Echo]:
    lock = threading.Lock()
    state: list[Echo] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            received = {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": raw.decode("utf-8", "replace"),
            }
            with lock:
                state[0].seen.append(received)
            payload = json.dumps(received).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.append(Echo(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server_database_url(database_url: str) -> Iterator[str]:
    """Where the servers find their database. Tools refuse the endpoint of strongroom's
    own database, and the ``database`` step queries another database on the same shared
    PostgreSQL: on PostgreSQL the servers reach theirs through a relay on another port."""
    if not database_url.startswith("postgresql://"):
        yield database_url
        return
    parts = urlsplit(database_url)
    relay = TcpRelay((parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield relay.url_for(database_url)
    finally:
        relay.close()


@pytest.fixture
def fake_openai() -> Iterator[Upstream]:
    with openai_upstream() as found:
        yield found


@pytest.fixture
def echo() -> Iterator[Echo]:
    with echo_upstream() as found:
        yield found


def tool_database(database_url: str) -> str | None:
    """The PostgreSQL database the ``database`` step queries: the test's own on PostgreSQL;
    on SQLite the local server's default database. Without a reachable server the SQLite
    run leaves that one step out (under ``CI=true`` a missing server fails instead)."""
    if database_url.startswith("postgresql://"):
        return database_url
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
        return None
    return POSTGRES_URL


# -- the trail of everything seen ----------------------------------------------------------------
@dataclass
class Trail:
    """Every answer and process output of the scenario, to search afterwards.

    ``send`` and ``cli`` check the expected outcome; where a value was asked for (a GET of
    the secret, ``secrets get``/``export``) they check it is there exactly once and keep
    the rest, so the value is searched for everywhere else in the same answer too.
    """

    client: httpx.Client
    places: list[tuple[str, bytes]] = field(default_factory=list)
    shown: Counter[str] = field(default_factory=Counter)  # secret name -> values shown

    def send(
        self,
        method: str,
        url: str,
        expect: int | tuple[int, ...],
        *,
        reveals: tuple[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        response = self.client.request(method, url, **kwargs)
        label = f"{method} {url[:80]} -> {response.status_code}"
        expected = expect if isinstance(expect, tuple) else (expect,)
        assert response.status_code in expected, f"{label}: {response.text[:500]}"
        body = response.content
        if reveals is not None:
            name, value = reveals
            assert response.json()["value"] == value, label
            assert response.headers["cache-control"] == "no-store", label
            body = _drop_once(body, value, label)
            self.shown[name] += 1
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.places.append((label, headers.encode() + b"\n\n" + body))
        return response

    def keep(self, label: str, data: str | bytes) -> None:
        self.places.append((label, data.encode() if isinstance(data, str) else data))

    def cli(
        self,
        args: list[str],
        env: dict[str, str],
        *,
        stdin: str | None = None,
        expect: int = 0,
        check_stdout: Callable[[str], None] | None = None,
    ) -> tuple[str, str]:
        """Run ``strongroom ARGS``; ``check_stdout`` is given a stdout that shows values on
        purpose (it must check them), which is then left out of the search."""
        done = subprocess.run(
            [STRONGROOM, *args],
            env=env,
            input=None if stdin is None else stdin.encode(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        label = f"strongroom {' '.join(args)[:80]} -> {done.returncode}"
        stdout, stderr = done.stdout.decode(), done.stderr.decode()
        assert done.returncode == expect, f"{label}\n{stdout}\n{stderr}"
        if check_stdout is not None:
            check_stdout(stdout)
        else:
            self.places.append((f"{label} stdout", done.stdout))
        self.places.append((f"{label} stderr", done.stderr))
        return stdout, stderr

    def wait(self, execution_id: str) -> dict[str, Any]:
        """The execution once it has ended (polled through the API, answers kept)."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            found: dict[str, Any] = self.send("GET", f"/v1/executions/{execution_id}", 200).json()
            if found["status"] in ("succeeded", "failed", "cancelled"):
                return found
            time.sleep(0.05)
        raise AssertionError(f"execution {execution_id} did not end within {DEADLINE} s")


def _drop_once(body: bytes, value: str, label: str) -> bytes:
    """``body`` less the one JSON string that is ``value`` (as sent, with or without
    ASCII escapes)."""
    for spelled in {json.dumps(value).encode(), json.dumps(value, ensure_ascii=False).encode()}:
        if spelled in body:
            assert body.count(spelled) == 1, label
            return body.replace(spelled, b'"[the value asked for]"')
    raise AssertionError(f"{label}: the value is not in the answer as a JSON string")


def finished(server: ServerProcess, execution_id: str) -> bool:
    """Whether the server has logged the end of that execution's run."""
    return any(
        b'"execution finished"' in line and execution_id.encode() in line
        for line in server.log_path.read_bytes().splitlines()
    )


# -- what the databases and files hold ------------------------------------------------------------
def files_under(root: Path, skip: set[Path]) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink() and path not in skip
    }


# -- the tasks -------------------------------------------------------------------------------------
def http_task(echo: Echo) -> dict[str, Any]:
    """The echo upstream gets the key as a bearer token, derived values in the query, a
    header and the JSON body; its answer (holding them all) is the step's result."""
    return {
        "name": "echo",
        "steps": [
            {
                "kind": "tool_call",
                "tool": "http",
                "operation": "request",
                "secret_name": "ascii_key",
                "arguments": {
                    "url": f"{echo.base_url}/hook",
                    "method": "POST",
                    "headers": {"X-Token": "$ 'Token ' + secrets.short_key"},
                    "params": {"sig": "$ b64encode(secrets.short_key)"},
                    "json": {
                        "unicode": "$ secrets.unicode_key",
                        "pem": "$ secrets.multiline_key",
                        "basic": "$ b64encode('user:' + secrets.ascii_key)",
                    },
                },
                "output": "echo",
            },
            {
                "kind": "transform",
                "expression": {
                    "status": "$ outputs.echo['status']",
                    "auth": "$ outputs.echo['json']['headers']['authorization']",
                },
            },
        ],
    }


TRANSFORM_TASK = {
    "name": "derive",
    "steps": [
        {
            "kind": "transform",
            "expression": "$ f'https://api.example.com/v1?api_key={secrets.ascii_key}&q={input}'",
            "input": "weather",
            "output": "url",
        },
        {
            "kind": "transform",
            "expression": "$ {'joined': 'pre-' + secrets.unicode_key + '-post',"
            " 'b64': b64encode(secrets.multiline_key), 'quoted': quote(secrets.unicode_key),"
            " 'lines': split(secrets.multiline_key, '\\n'),"
            " 'json': json_dumps({'k': secrets.short_key}), 'url': outputs.url}",
            "output": "derived",
        },
        {"kind": "transform", "expression": "$ [len(outputs.url), outputs.derived['url']]"},
    ],
}


def openai_task(fake: Upstream) -> dict[str, Any]:
    """The fake answers ``echo:...`` messages with the message: a reply quoting a secret."""
    return {
        "name": "chat",
        "steps": [
            {
                "kind": "tool_call",
                "tool": "openai",
                "operation": "chat",
                "secret_name": "openai_key",
                "arguments": {
                    "model": "m",
                    "base_url": fake.base_url,
                    "messages": [{"role": "user", "content": "$ 'echo:' + secrets.short_key"}],
                },
            }
        ],
    }


def database_task(url: str) -> dict[str, Any]:
    """The password is the secret (trust authentication accepts any), a parameter another."""
    target = urlsplit(url)
    return {
        "name": "query",
        "steps": [
            {
                "kind": "tool_call",
                "tool": "database",
                "operation": "query",
                "secret_name": "dbpw_key",
                "arguments": {
                    "query": "SELECT current_user AS who, %s::text AS echoed",
                    "params": ["$ secrets.short_key"],
                    "connection": {
                        "host": "127.0.0.1",
                        "port": target.port or 5432,
                        "user": target.username or "postgres",
                        "database": target.path.lstrip("/"),
                    },
                },
            }
        ],
    }


def failing_tasks(fake: Upstream) -> dict[str, dict[str, Any]]:
    """Steps whose error would quote a secret: an upstream's 400 quoting the request, a
    conversion of a secret that fails, a refused connection to a URL holding a secret."""
    return {
        "upstream_400": {
            "steps": [
                {
                    "kind": "tool_call",
                    "tool": "openai",
                    "operation": "chat",
                    "secret_name": "openai_key",
                    "arguments": {
                        "model": "m",
                        "base_url": at(fake, "fail"),
                        "messages": [
                            {"role": "user", "content": "$ 'cannot use ' + secrets.ascii_key"}
                        ],
                    },
                }
            ]
        },
        "conversion": {
            "steps": [{"kind": "transform", "expression": "$ int(secrets.unicode_key)"}]
        },
        "refused": {
            "steps": [
                {
                    "kind": "tool_call",
                    "tool": "http",
                    "operation": "request",
                    "arguments": {
                        "url": f"$ 'http://127.0.0.1:{free_port()}/x?key=' + secrets.ascii_key",
                        "timeout": 5,
                    },
                }
            ]
        },
    }


def cancelled_task(fake: Upstream) -> dict[str, Any]:
    return {
        "steps": [
            {
                "kind": "tool_call",
                "tool": "openai",
                "operation": "chat",
                "secret_name": "openai_key",
                "arguments": {
                    "model": "m",
                    "base_url": at(fake, "blocking"),
                    "messages": [{"role": "user", "content": "$ 'hold ' + secrets.short_key"}],
                },
            },
            {"kind": "transform", "expression": "$ 'never reached'"},
        ]
    }


CLI_TASK = {
    "task": {
        "steps": [
            {
                "kind": "transform",
                "expression": "$ f'Hello {secrets.unicode_key}!'",
                "output": "greeting",
            },
            {"kind": "transform", "expression": ["$ outputs.greeting", "$ 2 + 2"]},
        ]
    }
}


# -- the scenario ----------------------------------------------------------------------------------
def test_no_canary_is_left_anywhere_but_where_it_was_asked_for(
    database_url: str,
    server_database_url: str,
    tmp_path: Path,
    issue_key: IssueKey,
    services: Services,
    fake_openai: Upstream,
    echo: Echo,
) -> None:
    pem = [canary(f"pem{i}") for i in range(3)]
    values = {  # the secrets, by name
        "ascii_key": canary("ascii"),
        "unicode_key": canary("ünïcødé-秘密"),
        "multiline_key": "\n".join(pem),
        "short_key": "Zq" + os.urandom(4).hex(),  # 10 characters, still unique
        "dbpw_key": canary("dbpw"),
        "openai_key": canary("sk"),
    }
    c = {  # every other canary: old versions, refused requests, SDK and CLI values
        label: canary(label)
        for label in (
            *("unicode_old", "put_v1", "put_v2", "renamed", "cond_v1", "cond_v2"),
            *("julep_v1", "julep_v2", "sdk_v1", "sdk_v2", "dup", "precondition"),
            *("bad_name", "bad_meta", "long_description", "unknown_field", "value_limit"),
            *("body_limit", "streamed", "bad_json", "if_match", "api_key", "api_key_sr"),
            *("basic", "request_id", "request_id_long", "query_limit", "query_version"),
            *("query_unknown", "query_filter", "query_action", "query_secret", "forbidden"),
            *("julep_dup", "sdk_conflict", "sdk_rejected", "cli_bad_name", "rate_key"),
            "rate_limited",
        )
    }
    in_path = {
        label: canary(label)
        for label in ("path_name", "path_route", "path_task", "path_execution", "path_julep")
    }
    workdir, proc_tmp, home = tmp_path / "work", tmp_path / "proc-tmp", tmp_path / "home"
    for folder in (workdir, proc_tmp, home):
        folder.mkdir()
    common = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "TMPDIR": str(proc_tmp),
        "TEMP": str(proc_tmp),
        "TMP": str(proc_tmp),
    }
    server_env = {
        **common,
        "STRONGROOM_DATABASE_URL": server_database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_EGRESS_ALLOW": "127.0.0.1,localhost",
        "STRONGROOM_OPENAI_BASE_URL": fake_openai.base_url,
        "STRONGROOM_MAX_BODY_BYTES": "65536",
        "STRONGROOM_MAX_VALUE_BYTES": "4096",
        "STRONGROOM_LOG_LEVEL": "DEBUG",  # the most the server ever says
    }
    key, reader_key = issue_key(), issue_key(scopes=("secrets:read",))
    pg_target = tool_database(database_url)
    # The one file written with values on purpose (``export -o``), checked on its own. The
    # task file the CLI runs holds none, and is searched like every other file.
    written_on_purpose = {tmp_path / "exported.json"}
    servers: list[ServerProcess] = []

    def serve() -> ServerProcess:
        server = start_server(workdir, server_env)
        servers.append(server)
        return server

    first = serve()
    client = httpx.Client(
        base_url=first.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    trail = Trail(client)
    send = trail.send
    cli_env = {**common, "STRONGROOM_API_KEY": key, "STRONGROOM_BASE_URL": first.base_url}
    try:
        # -- /v1 secrets, every route -----------------------------------------------------
        send("GET", "/healthz", 200)
        send(
            "POST",
            "/v1/secrets",
            201,
            json={"name": "ascii_key", "value": values["ascii_key"], "metadata": {"env": "prod"}},
        )
        send("POST", "/v1/secrets", 201, json={"name": "unicode_key", "value": c["unicode_old"]})
        send("PATCH", "/v1/secrets/unicode_key", 200, json={"value": values["unicode_key"]})
        for name in ("short_key", "dbpw_key", "openai_key"):
            send("POST", "/v1/secrets", 201, json={"name": name, "value": values[name]})
        # from stdin, which loses the one trailing newline an echo adds
        trail.cli(
            ["secrets", "set", "multiline_key"], cli_env, stdin=values["multiline_key"] + "\n"
        )
        send("PUT", "/v1/secrets/put_key", 201, json={"value": c["put_v1"]})
        send("PUT", "/v1/secrets/put_key", 200, json={"value": c["put_v2"]})
        send("POST", "/v1/secrets", 201, json={"name": "rename_me", "value": c["renamed"]})
        send("PATCH", "/v1/secrets/rename_me", 200, json={"new_name": "renamed_key"})
        send("PATCH", "/v1/secrets/ascii_key", 200, json={"description": "the ASCII one"})
        send("POST", "/v1/secrets", 201, json={"name": "cond_key", "value": c["cond_v1"]})
        send(
            "PATCH",
            "/v1/secrets/cond_key",
            200,
            json={"value": c["cond_v2"]},
            headers={"If-Match": '"1"'},
        )
        send("GET", "/v1/secrets", 200)
        send("GET", "/v1/secrets", 200, params={"metadata": '{"env": "prod"}'})
        send("GET", "/v1/secrets", 200, params={"metadata[env]": "prod"})
        for name, value in values.items():
            got = send("GET", f"/v1/secrets/{name}", 200, reveals=(name, value))
            assert got.headers["etag"] == f'"{got.json()["version"]}"'
        send(
            "GET",
            "/v1/secrets/unicode_key?version=1",
            200,
            reveals=("unicode_key", c["unicode_old"]),
        )
        send("GET", "/v1/secrets/put_key", 200, reveals=("put_key", c["put_v2"]))
        send("GET", "/v1/secrets/put_key?version=1", 200, reveals=("put_key", c["put_v1"]))
        send("GET", "/v1/secrets/renamed_key", 200, reveals=("renamed_key", c["renamed"]))
        send("GET", "/v1/secrets/cond_key", 200, reveals=("cond_key", c["cond_v2"]))
        versions = send("GET", "/v1/secrets/put_key/versions", 200).json()["items"]
        assert [v["version"] for v in versions] == [2, 1]
        send("DELETE", "/v1/secrets/put_key", 200, headers={"If-Match": '"2"'})

        # -- /julep ------------------------------------------------------------------------
        made = send(
            "POST", "/julep/secrets", 201, json={"name": "julep_key", "value": c["julep_v1"]}
        ).json()
        assert made["value"] == "ENCRYPTED"
        newest = send("GET", "/julep/secrets", 200).json()[0]
        assert newest["name"] == "julep_key"
        send(
            "PUT",
            f"/julep/secrets/{made['id']}",
            200,
            json={"name": "julep_renamed", "value": c["julep_v2"]},
        )
        send("GET", "/v1/secrets/julep_renamed", 200, reveals=("julep_renamed", c["julep_v2"]))
        send("DELETE", f"/julep/secrets/{made['id']}", 202)

        # -- refused requests carrying canaries -----------------------------------------------
        send("POST", "/v1/secrets", 409, json={"name": "ascii_key", "value": c["dup"]})
        send(
            "PATCH",
            "/v1/secrets/cond_key",
            412,
            json={"value": c["precondition"]},
            headers={"If-Match": '"1"'},
        )
        send(
            "PATCH",
            "/v1/secrets/cond_key",
            422,
            json={"value": "x"},
            headers={"If-Match": c["if_match"]},
        )
        send("POST", "/v1/secrets", 422, json={"name": c["bad_name"], "value": "x"})
        send(
            "POST",
            "/v1/secrets",
            422,
            json={"name": "ok_name", "value": "x", "metadata": c["bad_meta"]},
        )
        send(
            "POST",
            "/v1/secrets",
            422,
            json={"name": "ok_name", "value": "x", "description": c["long_description"] * 40},
        )
        send(
            "POST",
            "/v1/secrets",
            422,
            json={"name": "ok_name", "value": "x", "vaule": c["unknown_field"]},
        )
        send(
            "POST",
            "/v1/secrets",
            422,
            json={"name": "ok_name", "value": c["value_limit"] * 100},  # over 4096 bytes
        )
        send(
            "POST",
            "/v1/secrets",
            413,
            json={"name": "ok_name", "value": c["body_limit"] + "x" * 70_000},
        )
        streamed = json.dumps({"name": "ok_name", "value": c["streamed"] * 2000}).encode()
        send(
            "POST",
            "/v1/secrets",
            413,
            content=iter([streamed[i : i + 8192] for i in range(0, len(streamed), 8192)]),
        )
        send(
            "POST",
            "/v1/secrets",
            422,
            content=b'{"name": "ok_name", "value": "' + c["bad_json"].encode() + b'"',
            headers={"content-type": "application/json"},
        )
        for header in (
            f"Bearer {c['api_key']}",
            f"Bearer sr_{c['api_key_sr']}",
            "Basic " + base64.b64encode(f"user:{c['basic']}".encode()).decode(),
        ):
            send("GET", "/v1/secrets", 401, headers={"Authorization": header})
        for request_id in (f"{c['request_id']}/x", c["request_id_long"] * 3):
            answer = send("GET", "/v1/secrets", 200, headers={"X-Request-Id": request_id})
            assert answer.headers["x-request-id"].startswith("req_")
        send("GET", f"/v1/secrets?limit={c['query_limit']}", 422)
        send("GET", f"/v1/secrets/ascii_key?version={c['query_version']}", 422)
        send("GET", "/v1/secrets", 200, params={"unknown": c["query_unknown"]})
        filtered = send("GET", "/v1/secrets", 200, params={"metadata[env]": c["query_filter"]})
        assert filtered.json()["items"] == []
        send("GET", "/v1/audit", 422, params={"action": c["query_action"]})
        # Not a secret name: refused, or a filter that finds nothing.
        send("GET", "/v1/audit", (200, 422), params={"secret": c["query_secret"]})
        send(
            "POST",
            "/v1/secrets",
            403,
            json={"name": "forbidden_key", "value": c["forbidden"]},
            headers={"Authorization": f"Bearer {reader_key}"},
        )
        send("POST", "/julep/secrets", 409, json={"name": "ascii_key", "value": c["julep_dup"]})
        send("GET", f"/v1/secrets/{in_path['path_name']}", 422)
        send("GET", f"/v1/{in_path['path_route']}", 404)
        send("GET", f"/v1/tasks/{in_path['path_task']}", 404)
        send("GET", f"/v1/executions/{in_path['path_execution']}", 404)
        send(
            "PUT", f"/julep/secrets/{in_path['path_julep']}", 422, json={"name": "x", "value": "y"}
        )
        # Nothing refused changed anything.
        send("GET", "/v1/secrets/cond_key", 200, reveals=("cond_key", c["cond_v2"]))
        send("GET", "/v1/secrets/ascii_key", 200, reveals=("ascii_key", values["ascii_key"]))

        # -- tasks ---------------------------------------------------------------------------
        definitions = {
            "http": http_task(echo),
            "transform": TRANSFORM_TASK,
            "openai": openai_task(fake_openai),
            **({"database": database_task(pg_target)} if pg_target else {}),
            **failing_tasks(fake_openai),
        }
        tasks = {}
        for label, definition in definitions.items():
            created = send("POST", "/v1/tasks", 201, json={"task": definition}).json()
            assert created["warnings"] == [], (label, created["warnings"])
            tasks[label] = created["id"]
        runs = {
            label: send("POST", f"/v1/tasks/{task_id}/executions", 201, json={}).json()["id"]
            for label, task_id in tasks.items()
        }
        done = {label: trail.wait(run) for label, run in runs.items()}
        steps = {
            label: send("GET", f"/v1/executions/{run}/steps", 200).json()["items"]
            for label, run in runs.items()
        }
        cancel_task = send("POST", "/v1/tasks", 201, json=cancelled_task(fake_openai)).json()
        cancelled = send("POST", f"/v1/tasks/{cancel_task['id']}/executions", 201).json()["id"]
        assert fake_openai.arrived.wait(DEADLINE)
        assert send("GET", f"/v1/executions/{cancelled}", 200).json()["status"] == "running"
        assert send("POST", f"/v1/executions/{cancelled}/cancel", 200).json()["status"] == (
            "cancelled"
        )
        fake_openai.release.set()
        wait_until(lambda: finished(first, cancelled), "the cancelled run ends", DEADLINE)

        # -- master-key rotation with the server running, then a read through it --------------
        _, rotated = trail.cli(["master-key", "rotate"], server_env)
        pattern = r"rotation finished: [1-9]\d* data keys rewrapped .*; retired KEKs: \[1\]"
        assert re.search(pattern, rotated), rotated
        send("GET", "/v1/secrets/dbpw_key", 200, reveals=("dbpw_key", values["dbpw_key"]))
        # the files as a running server leaves them (SQLite's journals among them)
        snapshots = {
            f"{name} (first server running)": data
            for name, data in files_under(tmp_path, written_on_purpose).items()
        }
    finally:
        client.close()
        first_status = first.stop()
    assert first_status in (0, -signal.SIGTERM), first.log()
    assert "Application shutdown complete" in first.log()

    # -- a second server on the same database: start-up, reads, SDK, CLI ----------------------
    second = serve()
    client = httpx.Client(
        base_url=second.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    trail.client = client
    cli_env["STRONGROOM_BASE_URL"] = second.base_url
    try:
        send("GET", "/healthz", 200)
        for name, value in values.items():
            send("GET", f"/v1/secrets/{name}", 200, reveals=(name, value))
        for label, run in [*runs.items(), ("cancelled", cancelled)]:
            execution = send("GET", f"/v1/executions/{run}", 200).json()
            assert execution["status"] == (done[label]["status"] if label in done else "cancelled")
        cancelled_steps = send("GET", f"/v1/executions/{cancelled}/steps", 200).json()["items"]
        send("GET", "/v1/executions", 200)
        send("GET", "/v1/executions", 200, params={"task_id": tasks["http"]})
        send("GET", "/v1/tasks", 200)
        send("GET", f"/v1/tasks/{tasks['http']}", 200)
        send("DELETE", f"/v1/tasks/{tasks['transform']}", 200)

        with Strongroom(api_key=key, base_url=second.base_url) as sdk:
            sdk.secrets.create(name="sdk_key", value=c["sdk_v1"])
            done_rotation = sdk.secrets.rotate("sdk_key", c["sdk_v2"], check=lambda v: len(v) > 8)
            trail.shown["sdk_key"] += 1  # rotate reads the current version first
            trail.keep("sdk rotate", repr(done_rotation) + str(done_rotation))
            fetched = sdk.secrets.get(name="sdk_key")
            assert fetched.value == c["sdk_v2"]
            trail.shown["sdk_key"] += 1
            trail.keep("sdk get repr", repr(fetched) + str(fetched))
            trail.keep("sdk versions", sdk.secrets.versions("sdk_key").model_dump_json())
            refused_calls: list[Callable[[], object]] = [
                lambda: sdk.secrets.create(name="ascii_key", value=c["sdk_conflict"]),
                lambda: sdk.secrets.rotate("sdk_key", c["sdk_rejected"], check=lambda v: False),
            ]
            for attempt in refused_calls:
                with pytest.raises(StrongroomError) as raised:
                    attempt()
                trail.keep(f"sdk error {raised.value.code}", f"{raised.value!r} {raised.value}")
            trail.shown["sdk_key"] += 1  # the refused rotation read the current version too

        listed, _ = trail.cli(["secrets", "list", "--metadata", "env=prod", "--json"], cli_env)
        assert [s["name"] for s in json.loads(listed)] == ["ascii_key"]

        def shows(value: str) -> Callable[[str], None]:
            def check(stdout: str) -> None:
                assert stdout == value + "\n"

            return check

        trail.cli(["secrets", "get", "ascii_key"], cli_env, check_stdout=shows(values["ascii_key"]))
        trail.cli(
            ["secrets", "get", "unicode_key", "--version", "1"],
            cli_env,
            check_stdout=shows(c["unicode_old"]),
        )
        trail.shown.update(["ascii_key", "unicode_key"])
        trail.cli(["secrets", "set", "9bad"], cli_env, stdin=c["cli_bad_name"], expect=2)
        current = {
            **values,
            "cond_key": c["cond_v2"],
            "renamed_key": c["renamed"],
            "sdk_key": c["sdk_v2"],
        }

        def exported(stdout: str) -> None:
            assert dotenv_values(stream=io.StringIO(stdout), interpolate=False) == current

        trail.cli(["secrets", "export"], cli_env, check_stdout=exported)
        exported_file = tmp_path / "exported.json"
        trail.cli(["secrets", "export", "--format", "json", "-o", str(exported_file)], cli_env)
        assert json.loads(exported_file.read_text(encoding="utf-8")) == current
        assert exported_file.stat().st_mode & 0o777 == 0o600
        trail.shown.update([*current, *current])  # two exports, each read every secret

        script = (
            "import hashlib, os; print('nothing to see here'); "
            "print(hashlib.sha256(os.environ['API'].encode()).hexdigest())"
        )
        ran, _ = trail.cli(
            ["run", "--secret", "API=ascii_key", "--", sys.executable, "-c", script], cli_env
        )
        digest = hashlib.sha256(values["ascii_key"].encode()).hexdigest()
        assert ran == f"nothing to see here\n{digest}\n"  # the value reached the command
        trail.shown["ascii_key"] += 1

        task_file = tmp_path / "task.json"
        task_file.write_text(json.dumps(CLI_TASK))
        output, _ = trail.cli(["tasks", "run", str(task_file), "--timeout", "30"], cli_env)
        # the greeting's slot is marked; the other slot read no secret and shows as it is
        assert json.loads(output) == ["[REDACTED:unicode_key]", 4]

        audit: list[dict[str, Any]] = []
        while True:
            page = send("GET", "/v1/audit", 200, params={"limit": 1000, "offset": len(audit)})
            audit += page.json()["items"]
            if not page.json()["has_more"]:
                break

        # -- last, as it shuts this address out for a while: failed authentications from
        # one address until the server refuses it with 429
        for _ in range(40):
            refused = send(
                "POST",
                "/v1/secrets",
                (401, 429),
                json={"name": "limited", "value": c["rate_limited"]},
                headers={"Authorization": f"Bearer sr_{c['rate_key']}"},
            )
            if refused.status_code == 429:
                break
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        snapshots |= {
            f"{name} (second server running)": data
            for name, data in files_under(tmp_path, written_on_purpose).items()
        }
    finally:
        client.close()
        second_status = second.stop()
    assert second_status in (0, -signal.SIGTERM), second.log()

    # -- the scenario did what it says --------------------------------------------------------
    statuses = {label: execution["status"] for label, execution in done.items()}
    assert statuses == {
        "http": "succeeded",
        "transform": "succeeded",
        "openai": "succeeded",
        **({"database": "succeeded"} if pg_target else {}),
        "upstream_400": "failed",
        "conversion": "failed",
        "refused": "failed",
    }, {label: e["error"] for label, e in done.items()}
    # the echo's answer was sent secrets as data (a header, the query, the body): every
    # part of it is marked, the status included
    sent_as_data = "[REDACTED:ascii_key,multiline_key,short_key,unicode_key]"
    assert done["http"]["output"] == {"status": sent_as_data, "auth": sent_as_data}
    # a length, and everything built from the URL, are as secret as the URL
    assert done["transform"]["output"] == "[REDACTED:ascii_key,multiline_key,short_key,unicode_key]"
    assert steps["transform"][1]["output"] == (
        "[REDACTED:ascii_key,multiline_key,short_key,unicode_key]"
    )
    # the prompt carried a secret as data: the reply is marked whole
    assert done["openai"]["output"] == "[REDACTED:short_key]"
    if pg_target:
        # a parameter is data: the rows are marked whole
        assert done["database"]["output"] == "[REDACTED:short_key]"
    # withheld, naming ascii_key (and short_key: the same upstream was sent it as data
    # by an earlier run, so it may hold it)
    assert done["upstream_400"]["error"]["message"].endswith("[REDACTED:ascii_key,short_key]")
    assert done["refused"]["error"]["code"] == "connect_failed"  # names the origin alone
    assert done["conversion"]["error"]["step"] == 0
    assert [s["index"] for s in cancelled_steps] == [0]

    # The upstreams got the secrets (they are meant to).
    [hook] = echo.seen
    assert hook["headers"]["authorization"] == f"Bearer {values['ascii_key']}"
    assert hook["headers"]["x-token"] == f"Token {values['short_key']}"
    sent = json.loads(hook["body"])
    assert (sent["unicode"], sent["pem"]) == (values["unicode_key"], values["multiline_key"])
    sig = base64.b64encode(values["short_key"].encode()).decode()
    assert urllib.parse.parse_qs(urlsplit(hook["path"]).query)["sig"] == [sig]
    chats = {r.path: r for r in fake_openai.seen}
    assert chats["/v1/chat/completions"].headers["authorization"] == (
        f"Bearer {values['openai_key']}"
    )
    failed_chat = chats["/fail/v1/chat/completions"].body["messages"][0]["content"]
    assert failed_chat == f"cannot use {values['ascii_key']}"

    # The audit trail counts every value shown as one read, and every change.
    tally = Counter((e["action"], e["outcome"]) for e in audit)
    reads = [e for e in audit if (e["action"], e["outcome"]) == ("secret.read", "success")]
    api_reads = Counter(e["secret_name"] for e in reads if e["request_id"])
    assert api_reads == trail.shown
    task_reads = {(e["secret_name"], e["detail"]) for e in reads if not e["request_id"]}
    assert ("ascii_key", f"execution {runs['http']} step 0") in task_reads
    assert ("openai_key", f"execution {runs['openai']} step 0") in task_reads
    if pg_target:
        assert ("dbpw_key", f"execution {runs['database']} step 0") in task_reads
    assert tally[("secret.delete", "success")] == 2
    assert tally[("secret.rename", "success")] >= 2
    assert tally[("secret.create", "forbidden")] == 1
    assert tally[("secret.create", "conflict")] == 3
    assert tally[("execution.cancel", "success")] == 1

    # -- the search -----------------------------------------------------------------------------
    services.store.close()  # every handle closed: the files are what a backup would copy
    files = files_under(tmp_path, written_on_purpose)
    assert any(name.startswith("work/server-") and name.endswith(".log") for name in files)
    if database_url.startswith("sqlite:///"):
        assert {"strongroom.db", "strongroom.db.dbos.sqlite"} <= set(files), sorted(files)
        assert "strongroom.db-wal (second server running)" in snapshots, sorted(snapshots)
        stored = b""  # the database files are among the files
        ours, engines = files["strongroom.db"], files["strongroom.db.dbos.sqlite"]
    else:
        stored = ours = engines = postgres_rows(database_url)
    # what is searched is what the scenario wrote: names, and DBOS's workflow ids
    assert b"renamed_key" in ours
    assert runs["http"].encode() in engines
    logs = b"\n".join(s.log_path.read_bytes() for s in servers)
    assert logs.count(b'"message": "request"') >= 100
    assert b'"step succeeded"' in logs
    haystacks = [
        *trail.places,
        *((f"file {name}", data) for name, data in files.items()),
        *((f"file {name}", data) for name, data in snapshots.items()),
        ("database rows", stored),
    ]

    def search(value: str) -> list[str]:
        return [f"{place}: {hits}" for place, data in haystacks if (hits := leaks_in(value, data))]

    targets = {**values, **c, **{f"multiline_key line {i}": line for i, line in enumerate(pem)}}
    leaks = {label: found for label, value in targets.items() if (found := search(value))}
    leaks |= {label: found for label, value in in_path.items() if (found := search(value))}
    assert leaks == {}
