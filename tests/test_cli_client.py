"""The client commands (``strongroom secrets ...`` and ``strongroom run``).

End-to-end tests run the real ``strongroom`` command against a real server process on
each backend. One server per backend serves the whole module (starting one per test would
be most of the run time) and each test works in a tenant of its own, so tests cannot see
each other's secrets. The .env reader and writer, and the failures that happen before any
request, are tested in-process.
"""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from dotenv import dotenv_values
from hypothesis import example, given, settings
from hypothesis import strategies as st

from strongroom import SecretNotFoundError, SecretPolicy, Strongroom
from strongroom.cli import envfile
from strongroom.cli.main import cli
from strongroom.server.apikeys import create_api_key
from strongroom.server.storage import open_store

from .conftest import BACKENDS, MASTER_KEY, truncate_postgres, unsealed
from .support import STRONGROOM, ServerProcess, canary, find_leaks, free_port, start_server

PYTHON = sys.executable


# -- running the command ------------------------------------------------------------------------
@dataclass(frozen=True)
class Done:
    code: int
    out: str  # decoded as UTF-8 only: no newline translation, so values compare exactly
    err: str

    def leaks(self, *values: str) -> list[str]:
        both = (self.out + self.err).encode()
        return [f"{v[:12]}…:{kind}" for v in values for kind in find_leaks(v, both)]


def sr(args: Sequence[str], env: dict[str, str], stdin: str | bytes | None = None) -> Done:
    """Run ``strongroom ARGS`` with only ``env`` (plus PATH and HOME) as its settings.

    Like ``support.run_cli``, but stdin is always given (``/dev/null`` by default): an
    inherited terminal would make ``set`` prompt and ``delete`` ask.
    """
    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [STRONGROOM, *args],
        env=full_env,
        input=data,
        stdin=subprocess.DEVNULL if data is None else None,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return Done(done.returncode, done.stdout.decode(), done.stderr.decode())


Call = tuple[Sequence[str], dict[str, str]] | tuple[Sequence[str], dict[str, str], str | None]


def sr_all(*calls: Call) -> list[Done]:
    """Independent commands (``(args, env[, stdin])``), run at the same time: each is
    mostly interpreter start-up."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: sr(*call), calls))


def on_terminal(
    args: Sequence[str], env: dict[str, str], prompt: bytes, answer: bytes
) -> tuple[int, bytes]:
    """Run ``strongroom ARGS`` on a pseudo-terminal (its controlling terminal and its
    standard streams); once ``prompt`` shows, type ``answer``. Returns the exit code and
    everything the terminal displayed, echo included."""
    master, slave = pty.openpty()

    def take_terminal() -> None:  # in the child, after setsid: make the pty its terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    full_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **env}
    process = subprocess.Popen(
        [STRONGROOM, *args],
        env=full_env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        preexec_fn=take_terminal,  # a test: no threads in flight to deadlock
    )
    os.close(slave)
    shown, answered = b"", False
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.1)[0]:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if not answered and shown.endswith(prompt):
                os.write(master, answer)
                answered = True
        return process.wait(timeout=30), shown
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)


# -- a server per backend, a tenant per test -----------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def cli_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"cli-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{workdir / 'strongroom.db'}"
    else:
        url = request.getfixturevalue("postgres_database")
        truncate_postgres(url)
    server = start_server(
        workdir, {"STRONGROOM_DATABASE_URL": url, "STRONGROOM_MASTER_KEY": MASTER_KEY}
    )
    try:
        yield server
    finally:
        server.stop()


def issue_key(server: ServerProcess, tenant: str, scopes: tuple[str, ...] = ()) -> str:
    store = open_store(server.env["STRONGROOM_DATABASE_URL"])
    try:
        key, _ = create_api_key(store, unsealed(store), tenant, scopes=scopes)
    finally:
        store.close()
    return key


@dataclass
class Tenant:
    """A fresh tenant: the environment the command runs with, and an SDK client to set up
    and check what the command did."""

    name: str
    env: dict[str, str]
    sdk: Strongroom

    def values(self) -> dict[str, str]:
        return {s.name: self.sdk.secrets.get(s.name).value for s in self.sdk.secrets.list_all()}


@contextmanager
def new_tenant(server: ServerProcess) -> Iterator[Tenant]:
    name = f"cli_{uuid.uuid4().hex[:12]}"
    key = issue_key(server, name)
    with Strongroom(api_key=key, base_url=server.base_url) as sdk:
        yield Tenant(name, {"STRONGROOM_API_KEY": key, "STRONGROOM_BASE_URL": server.base_url}, sdk)


@pytest.fixture
def tenant(cli_server: ServerProcess) -> Iterator[Tenant]:
    with new_tenant(cli_server) as made:
        yield made


# -- set, get, list, rename, delete -------------------------------------------------------------
@pytest.mark.e2e
def test_set_takes_the_value_from_argument_stdin_or_file(tenant: Tenant, tmp_path: Path) -> None:
    arg_value, stdin_value = canary("arg"), canary("stdin")
    metadata = ["--metadata", "env=prod", "--metadata", "team=infra"]
    done = sr(
        ["secrets", "set", "api_token", arg_value, "--description", "CI [token]", *metadata],
        tenant.env,
    )
    assert done.code == 0, done.err
    assert "command line" in done.err and "created api_token (version 1)" in done.err
    assert done.out == "" and not done.leaks(arg_value)
    secret = tenant.sdk.secrets.get("api_token")
    assert (secret.value, secret.description) == (arg_value, "CI [token]")
    assert secret.metadata == {"env": "prod", "team": "infra"}

    # stdin: the one newline `echo` adds is dropped; description and metadata are kept
    done = sr(["secrets", "set", "api_token"], tenant.env, stdin=stdin_value + "\n")
    assert done.code == 0, done.err
    assert "value read from stdin" in done.err and "to version 2" in done.err
    assert not done.leaks(stdin_value)
    secret = tenant.sdk.secrets.get("api_token")
    assert (secret.value, secret.version, secret.description) == (stdin_value, 2, "CI [token]")
    assert secret.metadata == {"env": "prod", "team": "infra"}

    # --from-file: byte for byte, trailing newline and all
    pem = "-----BEGIN KEY-----\r\nü密\n" + canary("file") + "\n-----END KEY-----\n"
    path = tmp_path / "key.pem"
    path.write_bytes(pem.encode())
    done = sr(["secrets", "set", "tls_key", "--from-file", str(path)], tenant.env)
    assert done.code == 0, done.err
    assert f"value read from {path}" in done.err and not done.leaks(pem)
    assert tenant.sdk.secrets.get("tls_key").value == pem


@pytest.mark.e2e
def test_get_prints_the_value_alone_or_the_secret_as_json(tenant: Tenant) -> None:
    first, second = "first\r\nvalue ü", canary("second") + "\n"
    tenant.sdk.secrets.create("multi", first, metadata={"k": "v"})
    tenant.sdk.secrets.update("multi", value=second)
    plain, old, whole = sr_all(
        (["secrets", "get", "multi"], tenant.env),
        (["secrets", "get", "multi", "--version", "1"], tenant.env),
        (["secrets", "get", "multi", "--json"], tenant.env),
    )
    assert (plain.code, plain.out, plain.err) == (0, second + "\n", "")
    assert (old.code, old.out) == (0, first + "\n")
    assert whole.code == 0, whole.err
    body = json.loads(whole.out)
    assert set(body) == {
        "id",
        "name",
        "description",
        "metadata",
        "value",
        "version",
        "created_at",
        "updated_at",
        "policy",
        *LIFECYCLE_FIELDS,
    }
    assert (body["name"], body["value"], body["version"], body["metadata"]) == (
        "multi",
        second,
        2,
        {"k": "v"},
    )


# Expiry, rotation and the recovery window (docs/lifecycle.md): null on a plain secret.
LIFECYCLE_FIELDS = (
    "expires_at",
    "rotation",
    "last_rotated_at",
    "next_rotation_at",
    "deleted_at",
    "purge_after",
)


@pytest.mark.e2e
def test_list_shows_names_never_values(tenant: Tenant) -> None:
    values = {name: canary(name) for name in ("alpha", "beta", "gamma")}
    for name, value in values.items():
        env = "prod" if name != "beta" else "dev"
        tenant.sdk.secrets.create(name, value, description=f"[{name}] desc", metadata={"env": env})
    long_name = "n" * 128
    tenant.sdk.secrets.create(long_name, canary("long"))
    table, as_json, filtered, limited = sr_all(
        (["secrets", "list"], tenant.env),
        (["secrets", "list", "--json"], tenant.env),
        (["secrets", "list", "--metadata", "env=prod", "--json"], tenant.env),
        (["secrets", "list", "--limit", "2", "--json"], tenant.env),
    )
    for done in (table, as_json, filtered, limited):
        assert done.code == 0, done.err
        assert not done.leaks(*values.values()), done.leaks(*values.values())
    for name in [*values, long_name]:  # whole names, even off a terminal
        assert name in table.out
    assert "[alpha] desc" in table.out and "env=prod" in table.out  # brackets are not markup
    for word in ("name", "version", "description", "metadata", "updated"):
        assert word in table.out

    rows = json.loads(as_json.out)
    assert [r["name"] for r in rows] == ["alpha", "beta", "gamma", long_name]
    assert all("value" not in r for r in rows)
    assert set(rows[0]) == {
        "id",
        "name",
        "description",
        "metadata",
        "version",
        "created_at",
        "updated_at",
        "policy",
        *LIFECYCLE_FIELDS,
    }
    assert rows[0]["policy"] == {
        "allowed_destinations": None,
        "allowed_tools": None,
        "readable": True,
    }
    assert rows[0]["metadata"] == {"env": "prod"} and rows[0]["version"] == 1
    assert [r["name"] for r in json.loads(filtered.out)] == ["alpha", "gamma"]
    assert [r["name"] for r in json.loads(limited.out)] == ["alpha", "beta"]


@pytest.mark.e2e
def test_rename_and_delete(tenant: Tenant) -> None:
    tenant.sdk.secrets.create("old_name", "v1")
    done = sr(["secrets", "rename", "old_name", "new_name"], tenant.env)
    assert done.code == 0 and "renamed old_name to new_name" in done.err, done.err
    assert tenant.sdk.secrets.get("new_name").value == "v1"
    with pytest.raises(SecretNotFoundError):
        tenant.sdk.secrets.get("old_name")

    refused = sr(["secrets", "delete", "new_name"], tenant.env)  # nobody to ask: needs --yes
    assert refused.code == 2 and "--yes" in refused.err
    assert tenant.sdk.secrets.get("new_name").value == "v1"
    done = sr(["secrets", "delete", "new_name", "--yes"], tenant.env)
    assert done.code == 0 and "deleted new_name" in done.err, done.err
    assert list(tenant.sdk.secrets.list_all()) == []


@pytest.mark.e2e
def test_a_terminal_gets_a_hidden_prompt_and_a_confirmation(tenant: Tenant) -> None:
    typed = canary("typed")
    code, shown = on_terminal(
        ["secrets", "set", "typed_in"], tenant.env, b"Value of typed_in: ", typed.encode() + b"\n"
    )
    assert code == 0, shown
    assert b"value read from the prompt" in shown
    assert typed.encode() not in shown  # not echoed
    assert tenant.sdk.secrets.get("typed_in").value == typed

    code, shown = on_terminal(["secrets", "delete", "typed_in"], tenant.env, b"[y/N]: ", b"y\n")
    assert code == 0 and b"deleted typed_in" in shown, shown
    assert list(tenant.sdk.secrets.list_all()) == []


# -- import and export --------------------------------------------------------------------------
SKIPPED = [canary("skipped") for _ in range(3)]
EDGE_ENV = (
    "# exported by hand\n"  # 1
    "\n"  # 2
    "PLAIN=simple value   # a comment\n"  # 3
    "export EXPORTED=from-export\n"  # 4
    "SINGLE='single $HOME \"double\" # not a comment'\n"  # 5
    'DOUBLE="tab\\there \\"quoted\\" back\\\\slash"\n'  # 6
    "EQUALS=a=b==c\n"  # 7
    "HASH=abc#def\n"  # 8
    'MULTI="line one\nline two"\n'  # 9-10
    "SINGLE_MULTI='first\n  second'\n"  # 11-12
    "UNICODE='päßwörd ✓ 密码 🔑'\n"  # 13
    "LITERAL=${HOME}/x\n"  # 14
    "  SPACED = padded  \n"  # 15
    f"bad-name={SKIPPED[0]}\n"  # 16
    f"1DIGIT={SKIPPED[1]}\n"  # 17
    f"{SKIPPED[2]}\n"  # 18: no "=", and the token is not echoed
    "EMPTY=\n"  # 19
    "PLAIN=again\n"  # 20
    'UNTERMINATED="never closed\n'  # 21
)
EDGE_VALUES = {
    "EXPORTED": "from-export",
    "SINGLE": 'single $HOME "double" # not a comment',
    "DOUBLE": 'tab\there "quoted" back\\slash',
    "EQUALS": "a=b==c",
    "HASH": "abc#def",
    "MULTI": "line one\nline two",
    "SINGLE_MULTI": "first\n  second",
    "UNICODE": "päßwörd ✓ 密码 🔑",
    "LITERAL": "${HOME}/x",
    "SPACED": "padded",
    "PLAIN": "again",
}


@pytest.mark.e2e
def test_import_reads_env_edge_cases_and_skips_invalid_entries(
    tenant: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "edge.env"
    path.write_text(EDGE_ENV, encoding="utf-8")
    done = sr(["secrets", "import", str(path)], tenant.env)
    assert done.code == 1, done.err  # something was skipped
    assert tenant.values() == EDGE_VALUES
    for line in (16, 17, 18, 19, 21):
        assert f"line {line}:" in done.err
    assert "'bad-name' is not a secret name" in done.err and "'1DIGIT'" in done.err
    assert "EMPTY has an empty value" in done.err and "PLAIN repeats line 3" in done.err
    assert "imported 11: 11 created, 0 replaced; 5 skipped" in done.err
    assert not done.leaks(*SKIPPED, *EDGE_VALUES.values())

    update = tmp_path / "update.env"
    update.write_text("PLAIN=replaced\nFRESH=new\n")
    kept, replaced = (
        sr(["secrets", "import", str(update), *flag], tenant.env) for flag in ([], ["--overwrite"])
    )
    assert kept.code == 4 and "kept 1 existing secrets" in kept.err and "PLAIN" in kept.err
    # FRESH has the file's value already: unchanged, no new version
    assert replaced.code == 0 and "1 replaced; 0 skipped; 1 unchanged" in replaced.err, replaced.err
    secret = tenant.sdk.secrets.get("PLAIN")
    assert (secret.value, secret.version) == ("replaced", 2)
    fresh = tenant.sdk.secrets.get("FRESH")
    assert (fresh.value, fresh.version) == ("new", 1)


ROUND_TRIP = {
    "newlines": "line1\nline2\n",
    "carriage_returns": "a\r\nb\rc",
    "quotes": 'it\'s "quoted" `back`',
    "backslashes": "C:\\path\\to\\ end\\",
    "escapes_as_text": "\\n \\t \\\" \\' \\\\",
    "dollars": "${HOME} $USER $(id) ${X:-y}",
    "hashes": "# not a comment #",
    "spaces": "  padded  ",
    "unicode": "päßwörd ✓ 密码 🔑 \u2028\x85\ufeff",
    "nul": "a\x00b",
    "equals": "=a=b=",
    "one_single_quote": "'",
    "one_double_quote": '"',
}


@pytest.mark.e2e
def test_export_then_import_round_trips_byte_for_byte(
    cli_server: ServerProcess, tenant: Tenant, tmp_path: Path
) -> None:
    values = ROUND_TRIP | {f"{name}_2": value + canary() for name, value in ROUND_TRIP.items()}
    for name, value in values.items():
        tenant.sdk.secrets.create(name, value, metadata={"batch": "rt"})
    tenant.sdk.secrets.create("not_in_batch", "left out")
    out = tmp_path / "secrets.env"
    out.write_text("old content\n")
    out.chmod(0o644)

    env_export, json_export = sr_all(
        (["secrets", "export", "--metadata", "batch=rt", "-o", str(out)], tenant.env),
        (["secrets", "export", "--metadata", "batch=rt", "--format", "json"], tenant.env),
    )
    assert env_export.code == 0, env_export.err
    assert env_export.out == "" and "exported 26 secrets" in env_export.err
    assert not env_export.leaks(*values.values())
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json_export.code == 0, json_export.err
    assert json.loads(json_export.out) == values
    # python-dotenv's public reader agrees (without interpolation)
    assert dotenv_values(out, interpolate=False) == values
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind

    with new_tenant(cli_server) as from_env, new_tenant(cli_server) as from_json:
        env_import, json_import = sr_all(
            (["secrets", "import", str(out)], from_env.env),
            (["secrets", "import", "-", "--format", "json"], from_json.env, json_export.out),
        )
        assert env_import.code == 0, env_import.err
        assert json_import.code == 0, json_import.err
        assert from_env.values() == values
        assert from_json.values() == values


# -- run --------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_run_gives_the_command_secrets_without_printing_them(tenant: Tenant) -> None:
    first, second, third = canary("first"), canary("second"), canary("third")
    tenant.sdk.secrets.create("FIRST", first, metadata={"group": "g"})
    tenant.sdk.secrets.create("second_secret", second, metadata={"group": "g"})
    tenant.sdk.secrets.create("THIRD", third)
    tenant.sdk.secrets.create("with_nul", "a\x00b")
    check = (
        "import os, sys\n"
        f"print(os.environ['FIRST'] == {first!r}, os.environ['MAPPED'] == {second!r},"
        " 'second_secret' in os.environ, 'THIRD' in os.environ)\n"
        "sys.stderr.write('child stderr\\n')\n"
        "sys.exit(7)\n"
    )
    names = (
        "import os\n"
        "print(sorted(k for k in os.environ if k in {'FIRST', 'second_secret', 'THIRD'}))"
    )
    upper = "import sys; print(sys.stdin.read().upper())"
    started = [PYTHON, "-c", "print('started')"]
    mapped, by_metadata, with_stdin, missing, nul, no_command = sr_all(
        (
            [
                "run",
                "--secret",
                "FIRST",
                "--secret",
                "MAPPED=second_secret",
                "--",
                PYTHON,
                "-c",
                check,
            ],
            tenant.env,
        ),
        (["run", "--metadata", "group=g", PYTHON, "-c", names], tenant.env),
        (["run", "--secret", "THIRD", "--", PYTHON, "-c", upper], tenant.env, "piped in"),
        (["run", "--secret", "FIRST", "--secret", "absent", "--", *started], tenant.env),
        (["run", "--secret", "with_nul", "--", *started], tenant.env),
        (["run", "--secret", "THIRD", "--", "no-such-command-for-strongroom"], tenant.env),
    )
    assert (mapped.code, mapped.out, mapped.err) == (7, "True True False False\n", "child stderr\n")
    assert (by_metadata.code, by_metadata.out) == (0, "['FIRST', 'second_secret']\n")
    assert (with_stdin.code, with_stdin.out) == (0, "PIPED IN\n")
    assert missing.code == 3 and "started" not in missing.out and "absent" in missing.err
    assert nul.code == 1 and "NUL" in nul.err and "started" not in nul.out
    assert no_command.code == 127 and "command not found" in no_command.err
    for done in (mapped, by_metadata, with_stdin, missing, nul, no_command):
        assert not done.leaks(first, second, third), done


# Names that --all and --metadata must leave out: each would make the command run code
# or talk to somewhere else, if a secret of that name were planted in the tenant.
PLANTED = ("BASH_ENV", "LD_PRELOAD", "PYTHONSTARTUP", "GIT_SSH_COMMAND", "STRONGROOM_BASE_URL")
SHOW_ENVIRONMENT = (
    "import json, os\n"
    # STRONGROOM_BASE_URL is inherited: its value shows whether the planted one won
    f"watched = {{'SAFE_TOKEN', 'MAPPED', *{PLANTED!r}}} - {{'STRONGROOM_BASE_URL'}}\n"
    "print(json.dumps({'names': sorted(k for k in os.environ if k in watched),\n"
    "                  'base_url': os.environ.get('STRONGROOM_BASE_URL'),\n"
    "                  'api_key': os.environ.get('STRONGROOM_API_KEY')}))\n"
)


@pytest.mark.e2e
def test_run_leaves_out_unsafe_names_and_its_own_api_key(tenant: Tenant) -> None:
    safe = canary("safe")
    planted = {name: canary(name.lower()) for name in PLANTED}
    tenant.sdk.secrets.create("SAFE_TOKEN", safe, metadata={"group": "g"})
    for name, value in planted.items():
        tenant.sdk.secrets.create(name, value, metadata={"group": "g"})
    show = [PYTHON, "-c", SHOW_ENVIRONMENT]
    key = tenant.env["STRONGROOM_API_KEY"]
    every, by_metadata, named, passed = sr_all(
        (["run", "--all", "--", *show], tenant.env),
        (["run", "--metadata", "group=g", "--", *show], tenant.env),
        (["run", "--all", "--secret", "GIT_SSH_COMMAND", "--", *show], tenant.env),
        (["run", "--secret", "MAPPED=SAFE_TOKEN", "--pass-api-key", "--", *show], tenant.env),
    )
    for done in (every, by_metadata):
        assert done.code == 0, done.err
        assert json.loads(done.out) == {
            "names": ["SAFE_TOKEN"],
            "base_url": tenant.env["STRONGROOM_BASE_URL"],  # the planted one did not win
            "api_key": None,
        }
        assert "unsafe" in done.err and all(name in done.err for name in PLANTED), done.err
        assert "SAFE_TOKEN" not in done.err
    # Named with --secret, an unsafe name is set: the user chose it.
    assert named.code == 0, named.err
    assert json.loads(named.out)["names"] == ["GIT_SSH_COMMAND", "SAFE_TOKEN"]
    assert "GIT_SSH_COMMAND" not in named.err and "LD_PRELOAD" in named.err
    assert passed.code == 0, passed.err
    assert json.loads(passed.out) == {
        "names": ["MAPPED"],
        "base_url": tenant.env["STRONGROOM_BASE_URL"],
        "api_key": key,
    }
    assert passed.err == ""
    for done in (every, by_metadata, named, passed):
        assert not done.leaks(safe, *planted.values()), done
        assert key not in done.err


@pytest.mark.e2e
def test_run_skips_a_use_only_secret_it_found_and_fails_on_one_it_was_given(
    tenant: Tenant,
) -> None:
    """A use-only secret (policy readable: false) answers 403 to every value read: --all
    goes on without it and says so; naming it with --secret is an authorisation failure."""
    readable, use_only = canary("readable"), canary("use_only")
    tenant.sdk.secrets.create("READABLE", readable)
    headers = {"Authorization": f"Bearer {tenant.env['STRONGROOM_API_KEY']}"}
    created = httpx.post(
        f"{tenant.env['STRONGROOM_BASE_URL']}/v1/secrets",
        json={"name": "USE_ONLY", "value": use_only, "policy": {"readable": False}},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    names = "import os; print(sorted(k for k in os.environ if k in {'READABLE', 'USE_ONLY'}))"
    started = [PYTHON, "-c", "print('started')"]
    every, named = sr_all(
        (["run", "--all", "--", PYTHON, "-c", names], tenant.env),
        (["run", "--secret", "READABLE", "--secret", "USE_ONLY", "--", *started], tenant.env),
    )
    assert (every.code, every.out) == (0, "['READABLE']\n"), every.err
    assert "USE_ONLY" in every.err and "may not read" in every.err
    assert named.code == 5 and "started" not in named.out
    assert "forbidden (403)" in named.err
    for done in (every, named):
        assert not done.leaks(readable, use_only), done


@pytest.mark.e2e
def test_run_becomes_the_command_so_signals_reach_it(tenant: Tenant) -> None:
    tenant.sdk.secrets.create("TOKEN", "t")
    child = (
        "import os, signal, time\n"
        "def on_term(*_):\n"  # os.write: the signal may land inside print('ready')
        "    os.write(1, b'got SIGTERM\\n')\n"
        "    os._exit(42)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    full_env = {"PATH": os.environ.get("PATH", ""), **tenant.env}
    process = subprocess.Popen(
        [STRONGROOM, "run", "--secret", "TOKEN", "--", PYTHON, "-c", child],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)  # to the pid we started: it is the command now
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (process.returncode, out) == (42, b"got SIGTERM\n"), err


# -- exit codes -----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_exit_codes_tell_failures_apart(cli_server: ServerProcess, tenant: Tenant) -> None:
    tenant.sdk.secrets.create("taken_a", "a")
    tenant.sdk.secrets.create("taken_b", "b")
    read_only = {
        **tenant.env,
        "STRONGROOM_API_KEY": issue_key(cli_server, tenant.name, scopes=("secrets:read",)),
    }
    bad_key = {**tenant.env, "STRONGROOM_API_KEY": "sr_" + "x" * 38}
    no_key = {"STRONGROOM_BASE_URL": cli_server.base_url}
    nowhere = {**tenant.env, "STRONGROOM_BASE_URL": f"http://127.0.0.1:{free_port()}"}
    results = sr_all(
        (["secrets", "list"], tenant.env),
        (["secrets", "get", "absent"], tenant.env),
        (["secrets", "get", "taken_a", "--version", "9"], tenant.env),
        (["secrets", "rename", "taken_a", "taken_b"], tenant.env),
        (["secrets", "list"], bad_key),
        (["secrets", "set", "taken_a", "new"], read_only),
        (["secrets", "list"], no_key),
        (["secrets", "list"], nowhere),
        (["secrets", "get", "not-a-name"], tenant.env),
    )
    codes = [done.code for done in results]
    assert codes == [0, 3, 3, 4, 5, 5, 5, 6, 2], [d.err for d in results]
    for done in results[1:-1]:  # one line on stderr, from str(error), nothing on stdout
        assert done.out == "" and done.err.count("error: ") == 1
        assert done.err.splitlines()[-1].startswith("error: ")
    assert "request_id=req_" in results[1].err  # brackets of the message survive rich
    assert "forbidden (403)" in results[5].err and "no API key" in results[6].err
    assert "could not reach" in results[7].err
    assert tenant.sdk.secrets.get("taken_a").value == "a"


# -- in-process: the .env writer and reader, and failures before any request ---------------------
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)
tricky = st.text(
    st.one_of(
        st.sampled_from("\n\r\t'\"\\$#= `{}:-\x00\u2028\x85\ufeff"),
        st.characters(codec="utf-8"),  # any text a server can hold: no lone surrogates
    ),
    min_size=1,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(names, st.one_of(tricky, st.text(min_size=1)), max_size=8))
@example({"A": "ends with a backslash\\", "B": '"', "C": "'\\''"})
@example({"A": "\r", "B": "\r\n", "C": "x\\\r"})
@example({"A": "${HOME}", "B": " # c", "C": " lead and trail "})
def test_env_writer_and_reader_round_trip(values: dict[str, str]) -> None:
    text = envfile.render_env(values)
    # through bytes and the decoding `import` uses, as a file would go
    assert envfile.parse_env(envfile.decode(text.encode("utf-8"))).values == values
    assert dotenv_values(stream=io.StringIO(text), interpolate=False) == values


def test_shell_safe_values_are_single_quoted() -> None:
    assert envfile.quote('a $b "c" #d\nü') == "'a $b \"c\" #d\nü'"
    assert envfile.quote("it's") == '"it\'s"'
    assert envfile.quote("a\\b\r\n") == '"a\\\\b\\r\\n"'


def test_env_reader_reports_lines_and_keeps_the_last_repeat() -> None:
    parsed = envfile.parse_env(EDGE_ENV)
    assert parsed.values == EDGE_VALUES
    assert [p.line for p in parsed.problems] == [16, 17, 18, 19, 21]
    assert [str(p) for p in parsed.repeated] == [
        "line 20: PLAIN repeats line 3; the later value wins"
    ]
    for problem in parsed.problems:
        assert not any(skipped in str(problem) for skipped in SKIPPED)
    # a BOM and Windows line endings read as python-dotenv reads them
    assert envfile.parse_env(envfile.decode(b"\xef\xbb\xbfA=1\r\nB='x\r\ny'\r\n")).values == {
        "A": "1",
        "B": "x\ny",
    }


def test_json_reader_skips_what_is_not_a_name_and_a_string() -> None:
    parsed = envfile.parse_json('{"ok": "v", "bad-name": "v", "number": 1, "empty": ""}')
    assert parsed.values == {"ok": "v"} and len(parsed.problems) == 3
    assert envfile.parse_json("[]").problems and envfile.parse_json("{").problems


def test_a_value_the_reader_would_misread_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """As python-dotenv before 1.2.3 misread a value ending in a backslash: export says
    which secret, never its value, and points to --format json."""
    real = envfile.parse_env

    def misreading(text: str) -> envfile.Parsed:
        parsed = real(text)
        parsed.values = {k: v.rstrip("\\") for k, v in parsed.values.items()}
        return parsed

    monkeypatch.setattr(envfile, "parse_env", misreading)
    value = canary() + "\\"
    with pytest.raises(envfile.UnrepresentableError, match="value of TRAILING"):
        envfile.render_env({"OK": "fine", "TRAILING": value})

    class FakeSecrets:
        def list_all(self, **_: Any) -> list[Any]:
            return [SimpleNamespace(name="TRAILING", policy=SecretPolicy())]

        def batch_get(self, names: list[str]) -> Any:
            return SimpleNamespace(values=lambda: dict.fromkeys(names, value), errors=[])

    @contextmanager
    def fake_client(_: object) -> Iterator[Any]:
        yield SimpleNamespace(secrets=FakeSecrets())

    monkeypatch.setattr("strongroom.cli.secrets.open_client", fake_client)
    result = CliRunner().invoke(cli, ["secrets", "export"])
    assert result.exit_code == 1
    assert "TRAILING" in result.stderr and "--format json" in result.stderr
    assert value not in result.output and result.stdout == ""
    as_json = CliRunner().invoke(cli, ["secrets", "export", "--format", "json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == {"TRAILING": value}


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["run", "--", "true"], None, "choose secrets with --secret, --all or --metadata"),
        (["run", "--secret", "bad-name", "--", "true"], None, "not a secret name"),
        (["run", "--secret", "1ENV=good", "--", "true"], None, "not a variable name"),
        (["run", "--secret", "A=x", "--secret", "A=y", "--", "true"], None, "given twice"),
        (["secrets", "set", "x", "v", "--from-file", __file__], None, "not both"),
        (["secrets", "set", "x"], "", "the value is empty"),
        (["secrets", "set", "x"], "\n", "the value is empty"),
        (["secrets", "list", "--metadata", "novalue"], None, "is not KEY=VALUE"),
        (["secrets", "delete", "x"], None, "pass --yes"),
        (["secrets", "import", "/nonexistent/file.env"], None, "cannot read"),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    args: list[str], stdin: str | None, message: str
) -> None:
    env = {"STRONGROOM_BASE_URL": "http://127.0.0.1:9", "STRONGROOM_API_KEY": "sr_x"}
    result = CliRunner().invoke(cli, args, input=stdin, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


@pytest.mark.e2e
def test_client_commands_need_no_server_packages() -> None:
    """With the server's packages unimportable, the client commands still load and work
    (as with only ``strongroom[cli]`` installed)."""
    script = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'sqlalchemy', 'alembic', 'psycopg',\n"
        "             'cryptography', 'pydantic_settings', 'strongroom.server'):\n"
        "    sys.modules[name] = None\n"
        "from click.testing import CliRunner\n"
        "from strongroom.cli.main import cli\n"
        "from strongroom.cli import envfile\n"
        "for args in (['secrets', '--help'], ['run', '--help'], ['secrets', 'export', '--help']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
        "assert envfile.parse_env(envfile.render_env({'A': 'x'})).values == {'A': 'x'}\n"
        "server = [m for m, v in sys.modules.items() if v and m.startswith('strongroom.server')]\n"
        "assert not server, server\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr
