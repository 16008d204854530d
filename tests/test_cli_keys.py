"""``strongroom keys ...`` through the API and on the database, and ``strongroom audit``.

End-to-end tests run the real ``strongroom`` command against a real server process on
each backend, one server per backend for the module, each test in a tenant of its own (as
tests/test_cli_client.py does). Each runs with a HOME and XDG_CONFIG_HOME of its own, so
no saved login of the developer's decides which form ``keys`` takes. Parsing, the usage
errors and ``audit tail``'s bookkeeping are tested in-process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom import AuthenticationError, Strongroom
from strongroom.cli import audit as audit_commands
from strongroom.cli import profiles
from strongroom.cli.main import cli
from strongroom.cli.times import parse_duration, parse_moment, parse_time
from strongroom.exceptions import APIConnectionError

from .conftest import BACKENDS, MASTER_KEY, IssueKey, truncate_postgres
from .support import STRONGROOM, ServerProcess, start_server
from .test_cli_client import Done, issue_key, sr

PYTHON = sys.executable


# -- a server per backend, a tenant per test -----------------------------------------------------
@pytest.fixture(scope="module", params=BACKENDS)
def keys_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp(f"keys-{request.param}")
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


@dataclass
class Tenant:
    """A fresh tenant: ``env`` runs a command with its full key (every scope) through the
    API, ``database`` with the server's settings only; ``sdk`` checks what happened."""

    name: str
    key: str
    env: dict[str, str]
    database: dict[str, str]
    sdk: Strongroom
    base_url: str

    def run(self, *args: str, env: dict[str, str] | None = None) -> Done:
        return sr(list(args), self.env if env is None else env)

    def with_key(self, key: str) -> dict[str, str]:
        return {**self.env, "STRONGROOM_API_KEY": key}


@pytest.fixture
def tenant(keys_server: ServerProcess, tmp_path: Path) -> Iterator[Tenant]:
    name = f"keys_{uuid.uuid4().hex[:12]}"
    key = issue_key(keys_server, name)
    home = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    database = {
        **home,
        "STRONGROOM_DATABASE_URL": keys_server.env["STRONGROOM_DATABASE_URL"],
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
    }
    api = {**home, "STRONGROOM_API_KEY": key, "STRONGROOM_BASE_URL": keys_server.base_url}
    with Strongroom(api_key=key, base_url=keys_server.base_url) as sdk:
        yield Tenant(name, key, api, database, sdk, keys_server.base_url)


def _key_of(done: Done) -> str:
    assert done.code == 0, done.err
    return next(word for word in done.out.split() if word.startswith("sr_") and len(word) == 41)


def _by_name(tenant: Tenant, name: str) -> dict[str, Any]:
    listed = tenant.run("keys", "list", "--json", "--include-revoked")
    assert listed.code == 0, listed.err
    [row] = [k for k in json.loads(listed.out) if k["name"] == name]
    return dict(row)


def _works(tenant: Tenant, key: str) -> bool:
    with Strongroom(api_key=key, base_url=tenant.base_url, max_retries=0) as client:
        try:
            client.secrets.list()
        except AuthenticationError:
            return False
    return True


# -- keys through the API -----------------------------------------------------------------------
@pytest.mark.e2e
def test_create_use_list_rotate_and_revoke_through_the_api(tenant: Tenant) -> None:
    for name in ("ci_build", "ci_deploy", "prod_db"):
        tenant.sdk.secrets.create(name=name, value=f"value of {name}")
    quiet = tenant.run(
        "keys", "create", "--name", "ci", "--scope", "secrets:read", "--names", "ci_*", "-q"
    )
    assert quiet.code == 0, quiet.err
    key = quiet.out.strip()
    assert quiet.out == key + "\n" and key.startswith("sr_")
    with Strongroom(api_key=key, base_url=tenant.base_url) as ci:
        assert [s.name for s in ci.secrets.list_all()] == ["ci_build", "ci_deploy"]

    row = _by_name(tenant, "ci")
    assert (row["scopes"], row["rule"]) == (["secrets:read"], {"names": ["ci_*"], "metadata": {}})
    assert row["hint"].endswith(key[-4:]) and row["expires_at"] is None
    table = tenant.run("keys", "list")
    assert table.code == 0 and "ci_*" in table.out and row["hint"] in table.out
    assert key not in table.out + table.err and tenant.key not in table.out + table.err
    shown = tenant.run("keys", "show", row["id"], "--json")
    assert json.loads(shown.out) == {**row, "last_used_at": json.loads(shown.out)["last_used_at"]}

    rotated = tenant.run("keys", "rotate", row["id"], "--grace", "1h")
    new_key = _key_of(rotated)
    assert new_key != key and "It is shown only now" in rotated.out
    assert f"the old key {row['id']} works until" in rotated.err
    assert _works(tenant, key) and _works(tenant, new_key)  # the grace period
    new_id = next(k.id for k in tenant.sdk.keys.list_all() if k.hint.endswith(new_key[-4:]))

    revoked = tenant.run("keys", "revoke", new_id)
    assert revoked.code == 0 and f"revoked API key {new_id}" in revoked.err
    assert not _works(tenant, new_key) and _works(tenant, key)
    assert tenant.run("keys", "rotate", row["id"], "-q").code == 0  # no grace: at once
    assert not _works(tenant, key)
    assert tenant.run("keys", "show", "no-such-key").code == 3


@pytest.mark.e2e
def test_create_prints_the_key_once_and_update_changes_what_is_given(tenant: Tenant) -> None:
    made = tenant.run(
        "keys", "create", "--name", "worker", "--where", "team=infra", "--expires-in", "12h"
    )
    key = _key_of(made)
    assert made.out.count(key) == 1 and "team=infra" in made.out and "expires" in made.out
    row = _by_name(tenant, "worker")
    expires = dt.datetime.fromisoformat(row["expires_at"])
    now = dt.datetime.now(dt.UTC)
    assert now + dt.timedelta(hours=11) < expires < now + dt.timedelta(hours=13)
    assert row["scopes"] == ["*"]  # left out: the calling key's own

    as_json = tenant.run("keys", "create", "--name", "json", "--json")
    created = json.loads(as_json.out)
    assert created["key"].startswith("sr_") and created["name"] == "json"

    updated = tenant.run(
        "keys", "update", row["id"], "--name", "worker-2", "--scope", "secrets:read",
        "--expires-at", "2999-01-01T00:00:00Z", "--json",
    )  # fmt: skip
    assert updated.code == 0, updated.err
    changed = json.loads(updated.out)
    assert (changed["name"], changed["scopes"]) == ("worker-2", ["secrets:read"])
    assert changed["rule"] == {"names": [], "metadata": {"team": "infra"}}  # kept
    assert changed["expires_at"] == "2999-01-01T00:00:00Z"
    cleared = tenant.run(
        "keys", "update", row["id"], "--clear-name", "--clear-rule", "--clear-expiry", "--json"
    )
    assert json.loads(cleared.out) | {"last_used_at": None} == {
        **changed,
        "name": None,
        "rule": None,
        "expires_at": None,
        "last_used_at": None,
    }
    assert _works(tenant, key)


@pytest.mark.e2e
def test_a_key_cannot_issue_a_broader_one(tenant: Tenant) -> None:
    admin = _key_of(
        tenant.run("keys", "create", "--scope", "keys:admin", "--scope", "secrets:read")
    )
    broader = tenant.run("keys", "create", "--scope", "secrets:write", env=tenant.with_key(admin))
    assert broader.code == 5 and "forbidden (403)" in broader.err and broader.out == ""
    reader = _key_of(tenant.run("keys", "create", "--scope", "secrets:read"))
    refused = tenant.run("keys", "list", env=tenant.with_key(reader))
    assert refused.code == 5 and "keys:admin" in refused.err
    narrower = tenant.run(
        "keys", "create", "--scope", "secrets:read", "-q", env=tenant.with_key(admin)
    )
    assert narrower.code == 0 and narrower.out.startswith("sr_")


# -- which form -----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_the_database_form_without_a_key_or_with_tenant_or_database(
    tenant: Tenant, tmp_path: Path
) -> None:
    other = f"other_{uuid.uuid4().hex[:8]}"
    # --tenant: the database, whatever key is configured
    both = {**tenant.database, **tenant.env}
    made = sr(["keys", "create", "--tenant", other, "--name", "db", "--names", "x_*", "-q"], both)
    assert made.code == 0, made.err
    in_db = json.loads(sr(["keys", "list", "--json", "--tenant", other], tenant.database).out)
    assert [(r["tenant"], r["name"], r["rule"]) for r in in_db] == [
        (other, "db", {"names": ["x_*"], "metadata": {}})
    ]
    # through the API, only the caller's tenant: the other tenant's key is not there
    assert other not in tenant.run("keys", "list", "--json").out
    assert "db" not in [k["name"] for k in json.loads(tenant.run("keys", "list", "--json").out)]
    # with no key given or saved, the database (every tenant); --database says so outright
    everyone = sr(["keys", "list", "--json"], tenant.database)
    assert {other, tenant.name} <= {r["tenant"] for r in json.loads(everyone.out)}
    forced = sr(["keys", "list", "--json", "--database"], both)
    assert {other, tenant.name} <= {r["tenant"] for r in json.loads(forced.out)}
    revoked = sr(["keys", "revoke", "--database", in_db[0]["id"]], both)
    assert revoked.code == 0, revoked.err
    again = sr(["keys", "revoke", in_db[0]["id"]], tenant.database)
    assert again.code == 3 and "no active API key" in again.err
    # a saved login (strongroom login) is a key configured: the API form
    profiles.save_profile(
        profiles.DEFAULT_PROFILE,
        profiles.Profile(tenant.base_url, tenant.key),
        Path(tenant.database["XDG_CONFIG_HOME"]) / "strongroom" / "config.toml",
    )
    saved = sr(["keys", "list", "--json"], tenant.database)
    assert saved.code == 0, saved.err
    assert "tenant" not in json.loads(saved.out)[0]  # the API's rows
    assert tenant.name not in saved.out
    # the two forms at once is a usage error
    mixed = sr(["keys", "list", "--tenant", other, "--api-key", tenant.key], tenant.database)
    assert mixed.code == 2 and "one or the other" in mixed.err


@pytest.mark.e2e
def test_keys_and_audit_load_and_say_what_they_need_without_the_server() -> None:
    """With only the client installed (the server's packages unimportable) the commands
    load; `keys` with no key at all cannot take the database form, and says both needs."""
    script = (
        "import sys\n"
        "for name in ('fastapi', 'uvicorn', 'sqlalchemy', 'alembic', 'psycopg',\n"
        "             'cryptography', 'pydantic_settings', 'strongroom.server'):\n"
        "    sys.modules[name] = None\n"
        "from click.testing import CliRunner\n"
        "from strongroom.cli.main import cli\n"
        "for args in (['keys', '--help'], ['keys', 'rotate', '--help'], ['audit', 'tail', '-h']):\n"
        "    assert CliRunner().invoke(cli, args).exit_code == 0, args\n"
        "done = CliRunner().invoke(cli, ['keys', 'list'])\n"
        "assert done.exit_code == 5, done.output\n"
        "assert 'strongroom login' in done.stderr and \"strongroom[server]\" in done.stderr\n"
        "server = [m for m, v in sys.modules.items() if v and m.startswith('strongroom.server')]\n"
        "assert not server, server\n"
        "print('ok')\n"
    )
    home = {"HOME": "/nonexistent", "PATH": os.environ.get("PATH", "")}
    done = subprocess.run(
        [PYTHON, "-c", script], env=home, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout) == (0, "ok\n"), done.stderr


# -- audit ----------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_audit_list_filters_and_names_the_key(tenant: Tenant) -> None:
    worker = _key_of(tenant.run("keys", "create", "--name", "worker", "--scope", "secrets:write"))
    worker_id = _by_name(tenant, "worker")["id"]
    with Strongroom(api_key=worker, base_url=tenant.base_url) as client:
        client.secrets.create(name="audited", value="v")
        with pytest.raises(Exception, match="forbidden"):
            client.secrets.get("audited")  # secrets:write does not read

    def events(*args: str) -> list[tuple[str, str, str | None]]:
        done = tenant.run("audit", "list", "--json", *args)
        assert done.code == 0, done.err
        return [(e["action"], e["outcome"], e["key_name"]) for e in json.loads(done.out)]

    assert events("--key-id", worker_id) == [
        ("secret.read", "forbidden", "worker"),
        ("secret.create", "success", "worker"),
    ]
    assert events("--result", "forbidden") == [("secret.read", "forbidden", "worker")]
    assert events("--secret", "audited", "--action", "secret.create") == [
        ("secret.create", "success", "worker")
    ]
    assert events("--since", "1h", "--action", "key.create")[-1][:2] == ("key.create", "success")
    assert events("--until", "2000-01-01") == []
    limited = tenant.run("audit", "list", "--limit", "1", "--key-id", worker_id)
    assert limited.code == 0 and "worker" in limited.out and "secret.read" in limited.out
    assert "secret.create" not in limited.out and "more events match" in limited.err
    bad = tenant.run("audit", "list", "--action", "secret.peek")
    assert bad.code == 1 and "query.action" in bad.err


@pytest.mark.e2e
def test_audit_tail_prints_each_new_event_until_interrupted(tenant: Tenant) -> None:
    tenant.sdk.secrets.create(name="before_tail", value="v")
    full_env = {"PATH": os.environ.get("PATH", ""), **tenant.env}
    process = subprocess.Popen(
        [STRONGROOM, "audit", "tail", "-n", "1", "--interval", "0.1", "--json"],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = process.stdout, process.stderr
    assert stdout is not None and stderr is not None
    lines: list[dict[str, Any]] = []
    buffered = b""

    def read_until(found: Callable[[], bool], what: str) -> None:
        nonlocal buffered
        deadline = time.monotonic() + 30
        while not found():
            assert time.monotonic() < deadline, f"{what}: not within 30 s; {lines}"
            assert process.poll() is None, stderr.read()
            if select.select([stdout], [], [], 0.1)[0]:
                buffered += os.read(stdout.fileno(), 65536)
                *whole, buffered = buffered.split(b"\n")
                lines.extend(json.loads(line) for line in whole)

    try:
        read_until(lambda: len(lines) >= 1, "the newest event")
        assert [(e["action"], e["secret_name"]) for e in lines] == [
            ("secret.create", "before_tail")
        ]
        for name in ("first", "second"):
            tenant.sdk.secrets.create(name=name, value="v")
        read_until(lambda: len(lines) >= 3, "the new events")
        tenant.sdk.secrets.get("first")
        read_until(lambda: len(lines) >= 4, "the read")
        assert [(e["action"], e["secret_name"]) for e in lines[1:]] == [
            ("secret.create", "first"),
            ("secret.create", "second"),
            ("secret.read", "first"),
        ]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
        assert b"Traceback" not in stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        stdout.close()
        stderr.close()


# -- in process -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--expires-in", "soon"], "not a duration"),
        (["keys", "create", "--expires-in", "0"], "longer than 0"),
        (["keys", "create", "--expires-in", "1d", "--expires-at", "2999-01-01"], "not both"),
        (["keys", "create", "--expires-at", "2999-01-01T00:00:00"], "with a zone"),
        (["keys", "create", "--scope", "secrets:everything"], "unknown scope"),
        (["keys", "create", "--where", "novalue"], "is not KEY=VALUE"),
        (["keys", "create", "--json", "--database", "--tenant", "t"], "--json is for the API"),
        (["keys", "create", "--database"], "give --tenant"),
        (["keys", "list", "--tenant", "t", "--base-url", "http://x"], "one or the other"),
        (["keys", "update", "k"], "nothing to change"),
        (["keys", "update", "k", "--name", "n", "--clear-name"], "not both"),
        (["keys", "update", "k", "--names", "a*", "--clear-rule"], "not both"),
        (["keys", "update", "k", "--expires-in", "1h", "--clear-expiry"], "not both"),
        (["keys", "rotate", "k", "--grace", "an hour"], "not a duration"),
        (["audit", "list", "--since", "yesterday"], "with a zone"),
        (["audit", "list", "--limit", "0"], "--limit"),
        (["audit", "tail", "--interval", "0"], "--interval"),
    ],
)
def test_usage_errors_exit_2_before_any_request(args: list[str], message: str) -> None:
    env = {"STRONGROOM_BASE_URL": "http://127.0.0.1:9", "STRONGROOM_API_KEY": "sr_x"}
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_durations_and_times() -> None:
    assert parse_duration("30d", "-") == dt.timedelta(days=30)
    assert parse_duration("1h30m", "-") == dt.timedelta(minutes=90)
    assert parse_duration("2W", "-") == dt.timedelta(weeks=2)
    assert parse_duration("0", "-") == dt.timedelta(0)
    for bad in ("", "1", "d", "1.5h", "-1h", "1h 30m", "9" * 30 + "w"):
        with pytest.raises(click.BadParameter):
            parse_duration(bad, "-")
    assert parse_time("2026-11-28T09:00:00Z", "-") == dt.datetime(2026, 11, 28, 9, tzinfo=dt.UTC)
    assert parse_time("2026-11-28", "-") == dt.datetime(2026, 11, 28, tzinfo=dt.UTC)
    assert parse_time("2026-11-28T10:00:00+01:00", "-") == dt.datetime(
        2026, 11, 28, 9, tzinfo=dt.UTC
    )
    for bad in ("2026-11-28T09:00:00", "tomorrow", "28/11/2026"):
        with pytest.raises(click.BadParameter):
            parse_time(bad, "-")
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    assert parse_moment("2h", "-", now) == dt.datetime(2026, 11, 28, 10, tzinfo=dt.UTC)
    assert parse_moment("2026-11-28", "-", now) == dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


@contextmanager
def _tail_against(app: FastAPI, key: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Point `audit tail` at the in-process app."""
    http = TestClient(app)

    @contextmanager
    def in_process(_: object) -> Iterator[Strongroom]:
        with Strongroom(api_key=key, http_client=http) as client:
            yield client

    monkeypatch.setattr(audit_commands, "open_client", in_process)
    try:
        yield
    finally:
        http.close()


def test_tail_shows_each_event_once_and_rides_out_an_outage(
    app: FastAPI, issue_key: IssueKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between its looks (where it would sleep), events happen: each shows once, in order,
    an event the overlap finds again is not repeated, and a look that fails is retried."""
    key = issue_key()
    sdk = Strongroom(api_key=key, http_client=TestClient(app))
    for name in ("a", "b", "c"):
        sdk.secrets.create(name=name, value="v")
    real_look = audit_commands.Follower.look
    failures = [APIConnectionError("could not reach the server")]

    def flaky_look(self: audit_commands.Follower) -> list[Any]:
        if failures and pauses == 3:
            raise failures.pop()
        return real_look(self)

    pauses = 0

    def between_looks(seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 1:
            sdk.secrets.create(name="d", value="v")
            sdk.secrets.get("a")
        elif pauses == 2:
            pass  # nothing new: nothing shown
        elif pauses == 4:
            sdk.secrets.create(name="e", value="v")
        elif pauses == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(audit_commands, "_pause", between_looks)
    monkeypatch.setattr(audit_commands.Follower, "look", flaky_look)
    with _tail_against(app, key, monkeypatch):
        done = CliRunner().invoke(cli, ["audit", "tail", "-n", "2", "--json"])
    sdk.close()
    assert done.exit_code == 0, done.output
    shown = [(e["action"], e["secret_name"]) for e in map(json.loads, done.stdout.splitlines())]
    assert shown == [
        ("secret.create", "b"),
        ("secret.create", "c"),
        ("secret.create", "d"),
        ("secret.read", "a"),
        ("secret.create", "e"),
    ]
    assert done.stderr.count("could not reach the server") == 1
    assert "the server answers again" in done.stderr


def test_tail_of_an_empty_trail_and_its_lines(
    app: FastAPI, issue_key: IssueKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = issue_key()
    sdk = Strongroom(api_key=key, http_client=TestClient(app))
    pauses = 0

    def between_looks(seconds: float) -> None:
        nonlocal pauses
        pauses += 1
        if pauses == 1:
            sdk.secrets.create(name="first_ever", value="v")
        elif pauses == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(audit_commands, "_pause", between_looks)
    with _tail_against(app, key, monkeypatch):
        done = CliRunner().invoke(cli, ["audit", "tail", "--action", "secret.create"])
    sdk.close()
    assert done.exit_code == 0, done.output
    [line] = done.stdout.splitlines()
    assert "secret.create" in line and "success" in line and "first_ever" in line
