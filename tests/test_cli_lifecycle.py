"""The lifecycle and bulk client commands, in-process: versions, rollback, delete,
restore, purge, list --deleted/--expiring, set's expiry, and import, export and
``run --all`` through batch requests.

Each command runs under click's CliRunner against the in-process app (as ``audit tail``'s
tests do): ``open_client`` is pointed at a TestClient that counts the requests the command
sends, which is how the bulk tests show that a thousand secrets take one batch request,
not a thousand reads. ``run`` would replace the test process with its command, so
``os.execvpe`` is replaced by one that records the environment it was given.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from click.testing import CliRunner, Result
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rich.console import Console

from strongroom import Strongroom
from strongroom.cli import progress
from strongroom.cli import run as run_command
from strongroom.cli import secrets as secrets_commands
from strongroom.cli.main import cli
from strongroom.cli.secrets import MAX_REQUEST_BYTES, import_requests
from strongroom.models import BatchPutItem
from strongroom.server.services import Services
from strongroom.server.storage import schema as t

from .conftest import ClientWith, IssueKey
from .support import canary, find_leaks

ADMIN = ("secrets:read", "secrets:write", "secrets:admin")
READ_WRITE = ("secrets:read", "secrets:write")
# What a drawn bar leaves in a stream: its glyphs, a cursor hidden, a line rewritten.
BAR_MARKS = ("━", "\x1b[", "\r")


@dataclass
class Cli:
    """The ``strongroom`` command against the in-process app, as one API key; ``sdk`` sets
    up and checks with the same key, its requests not counted."""

    key: str
    sdk: Strongroom
    app: FastAPI
    requests: Counter[str] = field(default_factory=Counter)

    def __call__(self, *args: str, stdin: str | None = None) -> Result:
        self.requests.clear()
        env = {"STRONGROOM_API_KEY": self.key, "STRONGROOM_BASE_URL": "http://testserver"}
        return CliRunner().invoke(cli, list(args), input=stdin, env=env)

    def versions(self, name: str) -> list[int]:
        return [v.version for v in self.sdk.secrets.versions(name).items]


MakeCli = Callable[..., Cli]


@pytest.fixture
def make_cli(
    app: FastAPI, issue_key: IssueKey, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeCli]:
    """``make_cli(scopes=...)``: a :class:`Cli` of a new key of tenant ``default``. The
    last one made is the one the commands use."""
    opened: list[httpx.Client] = []
    current: list[Cli] = []

    def counting_client(made: Cli) -> TestClient:
        http = TestClient(made.app)

        def count(request: httpx.Request) -> None:
            parts = request.url.path.split("/")
            if parts[:3] == ["", "v1", "secrets"] and len(parts) > 3:
                parts[3] = "{name}"  # one key per kind of request, not per secret
            made.requests[f"{request.method} {'/'.join(parts)}"] += 1

        http.event_hooks = {"request": [count], "response": []}
        opened.append(http)
        return http

    @contextmanager
    def in_process(_: object) -> Iterator[Strongroom]:
        made = current[-1]
        with Strongroom(api_key=made.key, http_client=counting_client(made)) as client:
            yield client

    for module in (secrets_commands, run_command):
        monkeypatch.setattr(module, "open_client", in_process)

    def make(
        scopes: tuple[str, ...] = (), key: str | None = None, target: FastAPI | None = None
    ) -> Cli:
        key = key or issue_key(scopes=scopes)
        sdk_http = TestClient(target or app)
        opened.append(sdk_http)
        made = Cli(key, Strongroom(api_key=key, http_client=sdk_http), target or app)
        current.append(made)
        return made

    yield make
    for made in current:
        made.sdk.close()
    for http in opened:
        http.close()


@pytest.fixture
def sr(make_cli: MakeCli) -> Cli:
    return make_cli()


def no_bar(result: Result) -> None:
    for mark in BAR_MARKS:
        assert mark not in result.stdout and mark not in result.stderr, (mark, result.output)


def leaks(result: Result, *values: str) -> list[str]:
    both = (result.stdout + result.stderr).encode()
    return [kind for value in values for kind in find_leaks(value, both)]


# -- versions, rollback -----------------------------------------------------------------------
def test_versions_and_rollback(sr: Cli) -> None:
    values = [canary(f"v{i}") for i in range(3)]
    sr.sdk.secrets.create("history", values[0])
    for value in values[1:]:
        sr.sdk.secrets.update("history", value=value)

    table = sr("secrets", "versions", "history")
    as_json = sr("secrets", "versions", "history", "--json")
    assert table.exit_code == 0, table.output
    assert all(word in table.stdout for word in ("version", "created_at", "created_by"))
    assert [line.split()[1] for line in table.stdout.splitlines() if line[:1] == "│"] == [
        "3",
        "2",
        "1",
    ]
    rows = json.loads(as_json.stdout)
    assert [r["version"] for r in rows] == [3, 2, 1]
    assert set(rows[0]) == {"version", "created_at", "created_by"}
    assert not leaks(table, *values) and not leaks(as_json, *values)

    asked = sr("secrets", "rollback", "history", "--to", "1")  # nobody to ask: needs --yes
    assert asked.exit_code == 2 and "--yes" in asked.stderr
    rolled = sr("secrets", "rollback", "history", "--to", "1", "--yes")
    assert rolled.exit_code == 0, rolled.output
    assert "now version 4" in rolled.stderr and not leaks(rolled, *values)
    assert sr.sdk.secrets.get("history").value == values[0]
    again = sr("secrets", "rollback", "history", "--to", "4", "--yes")
    assert again.exit_code == 0 and "no change" in again.stderr, again.output
    assert sr.versions("history") == [4, 3, 2, 1]
    missing = sr("secrets", "rollback", "history", "--to", "9", "--yes")
    assert missing.exit_code == 3 and "no version 9" in missing.stderr


def test_rollback_by_a_write_only_key(make_cli: MakeCli) -> None:
    """secrets:write alone cannot list versions, yet may roll back: the value stays put."""
    admin = make_cli(scopes=ADMIN)
    admin.sdk.secrets.create("pin", "one")
    admin.sdk.secrets.update("pin", value="two")
    writer = make_cli(scopes=("secrets:write",))
    rolled = writer("secrets", "rollback", "pin", "--to", "1", "--yes")
    assert rolled.exit_code == 0, rolled.output
    assert "now version 3" in rolled.stderr
    assert admin.sdk.secrets.get("pin").value == "one"


# -- delete, restore, purge, list --deleted -----------------------------------------------------
def test_delete_restore_and_list_deleted(sr: Cli) -> None:
    value = canary("doomed")
    sr.sdk.secrets.create("doomed", value)
    sr.sdk.secrets.update("doomed", value=value + "2")
    deleted = sr("secrets", "delete", "doomed", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted doomed; it can be restored until 20" in deleted.stderr
    assert "strongroom secrets restore doomed" in deleted.stderr

    listed, as_json, live = (
        sr("secrets", "list", "--deleted"),
        sr("secrets", "list", "--deleted", "--json"),
        sr("secrets", "list", "--json"),
    )
    assert listed.exit_code == 0, listed.output
    assert "doomed" in listed.stdout and "purged after" in listed.stdout
    [row] = json.loads(as_json.stdout)
    assert row["name"] == "doomed" and row["deleted_at"] and row["purge_after"]
    assert row["purge_after"][:19].replace("T", " ") in listed.stdout
    assert json.loads(live.stdout) == []

    restored = sr("secrets", "restore", "doomed")
    assert restored.exit_code == 0 and "restored doomed (version 2)" in restored.stderr
    assert sr.sdk.secrets.get("doomed").value == value + "2"
    assert sr.versions("doomed") == [2, 1]
    assert json.loads(sr("secrets", "list", "--deleted", "--json").stdout) == []
    for result in (deleted, listed, as_json, restored):
        assert not leaks(result, value)


def test_purge_needs_admin(make_cli: MakeCli) -> None:
    writer = make_cli(scopes=READ_WRITE)
    writer.sdk.secrets.create("doomed", "v")
    refused = writer("secrets", "purge", "doomed", "--yes")
    assert refused.exit_code == 5, refused.output
    assert "secrets:admin" in refused.stderr
    assert writer.sdk.secrets.get("doomed").value == "v"
    asked = writer("secrets", "purge", "doomed")
    assert asked.exit_code == 2 and "--yes" in asked.stderr
    help_text = writer("secrets", "purge", "--help").stdout
    assert "every version" in help_text and "secrets:admin" in help_text

    admin = make_cli(scopes=ADMIN)
    assert admin("secrets", "delete", "doomed", "--yes").exit_code == 0
    purged = admin("secrets", "purge", "doomed", "--yes")
    assert purged.exit_code == 0, purged.output
    assert "purged doomed: every version is destroyed" in purged.stderr
    assert json.loads(admin("secrets", "list", "--deleted", "--json").stdout) == []
    admin.sdk.secrets.create("doomed", "fresh")  # the name is free


def test_delete_without_a_recovery_window_says_purged(
    make_cli: MakeCli, client_with: ClientWith
) -> None:
    zero_window = client_with(secret_recovery_days=0)
    key = zero_window.headers["Authorization"].removeprefix("Bearer ")
    assert isinstance(zero_window.app, FastAPI)
    sr = make_cli(key=key, target=zero_window.app)
    sr.sdk.secrets.create("gone", "v")
    deleted = sr("secrets", "delete", "gone", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted gone and purged it: every version is destroyed" in deleted.stderr
    assert "restore" not in deleted.stderr
    sr.sdk.secrets.create("gone", "again")  # the name is free at once


# -- list --expiring, set's expiry -----------------------------------------------------------------
def expire_now(services: Services, name: str) -> None:
    """Move a secret's expiry into the past, as time passing would (no sleeping)."""
    with services.store.engine.begin() as conn:
        conn.execute(
            t.secrets.update()
            .where(t.secrets.c.name == name)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )


def test_set_expiry_and_list_expiring(sr: Cli, services: Services) -> None:
    value = canary("soon")
    made = sr("secrets", "set", "soon", "--expires-in", "2d", stdin=value)
    assert made.exit_code == 0, made.output
    assert "soon expires at" in made.stderr and not leaks(made, value)
    expires = sr.sdk.secrets.list(limit=10).items[0].expires_at
    assert expires is not None
    assert abs(expires - (dt.datetime.now(dt.UTC) + dt.timedelta(days=2))).total_seconds() < 60
    assert sr("secrets", "set", "later", "v", "--expires-at", "2099-01-01").exit_code == 0
    assert sr("secrets", "set", "never", "v").exit_code == 0
    assert sr("secrets", "set", "gone", "v", "--expires-in", "1h").exit_code == 0
    expire_now(services, "gone")

    listed = sr("secrets", "list", "--expiring", "7d")
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if line[:1] == "│"}
    assert set(rows) == {"gone", "soon"}
    assert "expired" in rows["gone"] and "expired" not in rows["soon"]
    found = json.loads(sr("secrets", "list", "--expiring", "7d", "--json").stdout)
    assert [r["name"] for r in found] == ["gone", "soon"] and all(r["expires_at"] for r in found)

    # the expiry is kept unless given; --no-expiry removes it
    assert sr("secrets", "set", "later", "w").exit_code == 0
    assert sr.sdk.secrets.get("later").expires_at == dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
    cleared = sr("secrets", "set", "later", "x", "--no-expiry")
    assert cleared.exit_code == 0 and "later never expires" in cleared.stderr
    assert sr.sdk.secrets.get("later").expires_at is None
    both = sr("secrets", "set", "later", "x", "--no-expiry", "--expires-in", "1d")
    assert both.exit_code == 2 and "not several" in both.stderr
    bad = sr("secrets", "list", "--expiring", "soon")
    assert bad.exit_code == 2 and "not a duration" in bad.stderr


# -- import ------------------------------------------------------------------------------------
def write_env(path: Path, values: dict[str, str], extra: str = "") -> Path:
    path.write_text("".join(f"{k}={json.dumps(v)}\n" for k, v in values.items()) + extra)
    return path


def test_import_dry_run_names_what_would_change_and_prints_no_value(
    sr: Cli, tmp_path: Path
) -> None:
    same, old, new, fresh, held, bad = map(canary, ["same", "old", "new", "fresh", "held", "bad"])
    sr.sdk.secrets.create("SAME", same)
    sr.sdk.secrets.create("CHANGED", old)
    sr.sdk.secrets.create("HELD", held)
    sr.sdk.secrets.delete("HELD")
    path = write_env(
        tmp_path / "plan.env",
        {"SAME": same, "CHANGED": new, "FRESH": fresh, "HELD": held},
        extra=f"bad-name={bad}\n",
    )
    kept, overwrite = (
        sr("secrets", "import", str(path), "--dry-run", *flag) for flag in ([], ["--overwrite"])
    )
    assert kept.exit_code == 1, kept.output  # an entry cannot be imported, as the import
    assert kept.stdout.splitlines() == [
        "dry run: nothing was changed",
        "add 1: FRESH",
        "change 0",
        "unchanged 1: SAME",
        "skip (existing; --overwrite replaces them) 1: CHANGED",
        "skip (deleted; restore or purge them first) 1: HELD",
        "skip (cannot be imported, see above) 1",
    ]
    assert "change 1: CHANGED" in overwrite.stdout
    assert "skip (existing; --overwrite replaces them) 0" in overwrite.stdout
    for result in (kept, overwrite):
        assert not leaks(result, same, old, new, fresh, held, bad), leaks(result)
        no_bar(result)
    # nothing changed
    assert {s.name for s in sr.sdk.secrets.list_all()} == {"SAME", "CHANGED"}
    assert sr.sdk.secrets.get("CHANGED").value == old
    assert sr.versions("CHANGED") == [1]
    # dry runs, and the list of deleted secrets that told why a dry run met a 409
    assert set(sr.requests) == {"PUT /v1/secrets:batch", "GET /v1/secrets"}


def test_import_of_unchanged_values_makes_no_versions(sr: Cli, tmp_path: Path) -> None:
    values = {f"KEEP_{i}": canary(f"keep{i}") for i in range(5)}
    sr.sdk.secrets.batch_put([{"name": n, "value": v} for n, v in values.items()])
    path = write_env(tmp_path / "same.env", values)
    for flag in ([], ["--overwrite"]):
        done = sr("secrets", "import", str(path), *flag)
        assert done.exit_code == 0, done.output
        assert "imported 0: 0 created, 0 replaced; 0 skipped; 5 unchanged" in done.stderr
        assert not leaks(done, *values.values())
    assert all(sr.versions(name) == [1] for name in values)

    changed = {**values, "KEEP_0": "new value"}
    kept = sr("secrets", "import", str(write_env(tmp_path / "changed.env", changed)))
    assert kept.exit_code == 4 and "kept 1 existing secrets" in kept.stderr
    replaced = sr("secrets", "import", str(tmp_path / "changed.env"), "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert "1 replaced; 0 skipped; 4 unchanged" in replaced.stderr
    assert sr.versions("KEEP_0") == [2, 1] and sr.versions("KEEP_1") == [1]


def test_import_export_and_run_all_go_a_thousand_to_a_request(
    sr: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    count = 1001  # one more than a batch holds: two requests of each kind
    values = {f"BULK_{i:04d}": f"value-{i}" for i in range(count)}
    path = write_env(tmp_path / "bulk.env", values)

    imported = sr("secrets", "import", str(path))
    assert imported.exit_code == 0, imported.output
    assert f"imported {count}: {count} created" in imported.stderr
    assert "takes 2 requests; each is all-or-nothing" in imported.stderr
    assert sr.requests == Counter({"PUT /v1/secrets:batch": 4})  # 2 dry runs, 2 writes
    no_bar(imported)

    exported = sr("secrets", "export", "--format", "json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout) == values
    assert sr.requests == Counter({"GET /v1/secrets": 2, "POST /v1/secrets:batchGet": 2})
    no_bar(exported)

    seen: dict[str, str] = {}

    def execvpe(file: str, args: list[str], env: dict[str, str]) -> NoReturn:
        seen.update(env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execvpe", execvpe)
    ran = sr("run", "--all", "--", "true")
    assert ran.exit_code == 0, ran.output
    assert {name: seen[name] for name in values} == values
    assert sr.requests == Counter({"GET /v1/secrets": 2, "POST /v1/secrets:batchGet": 2})
    assert ran.stdout == "" and not leaks(ran, *list(values.values())[:3])
    no_bar(ran)


def test_import_splits_requests_by_bytes(sr: Cli, tmp_path: Path) -> None:
    """400 values of 5,000 characters: 2 MB of JSON, past the server's 1 MiB body limit
    in one request, and far below 1,000 items."""
    values = {f"BIG_{i:03d}": f"{i:03d}" + "é" * 4997 for i in range(400)}
    imported = sr("secrets", "import", "-", "--format", "json", stdin=json.dumps(values))
    assert imported.exit_code == 0, imported.output
    writes = sr.requests["PUT /v1/secrets:batch"]
    assert writes == 2 * len(import_requests([{"name": n, "value": v} for n, v in values.items()]))
    assert writes >= 2 * 3
    exported = sr("secrets", "export", "--format", "json")
    assert json.loads(exported.stdout) == values


def test_import_requests_are_bounded_by_count_and_bytes() -> None:
    small: list[BatchPutItem] = [{"name": f"S{i}", "value": "v"} for i in range(2500)]
    assert [len(r) for r in import_requests(small)] == [1000, 1000, 500]
    wide: list[BatchPutItem] = [{"name": f"W{i}", "value": "密" * 10_000} for i in range(40)]
    requests = import_requests(wide)
    for request in requests:  # as measured (escaped), and as the SDK sends it (UTF-8)
        assert len(json.dumps({"secrets": request, "dry_run": False})) <= MAX_REQUEST_BYTES
        sent = json.dumps({"secrets": request, "dry_run": False}, ensure_ascii=False)
        assert len(sent.encode()) <= MAX_REQUEST_BYTES
    assert [item["name"] for r in requests for item in r] == [i["name"] for i in wide]
    assert [len(r) for r in requests] == [14, 14, 12]  # 60 KB each, escaped
    huge: list[BatchPutItem] = [{"name": "H", "value": "x" * (MAX_REQUEST_BYTES + 1)}]
    assert import_requests([*small[:2], *huge, *small[2:4]]) == [small[:2], huge, small[2:4]]


def test_export_and_run_keep_their_error_rules(
    make_cli: MakeCli, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Per-name errors of a batch read end as their own read did: a use-only secret is left
    out of --all and fails when named; an expired one fails the export (exit 1)."""
    sr = make_cli(scopes=READ_WRITE)
    readable, hidden = canary("readable"), canary("hidden")
    sr.sdk.secrets.create("READABLE", readable)
    sr.sdk.secrets.create("USE_ONLY", hidden, policy={"readable": False})
    seen: dict[str, str] = {}

    def execvpe(file: str, args: list[str], env: dict[str, str]) -> NoReturn:
        seen.update(env)
        raise SystemExit(0)

    monkeypatch.setattr(os, "execvpe", execvpe)
    every = sr("run", "--all", "--", "true")
    assert every.exit_code == 0, every.output
    assert seen.get("READABLE") == readable and "USE_ONLY" not in seen
    assert "may not read their values: USE_ONLY" in every.stderr
    named = sr("run", "--secret", "READABLE", "--secret", "USE_ONLY", "--", "true")
    assert named.exit_code == 5 and "forbidden (403)" in named.stderr
    missing = sr("run", "--secret", "READABLE", "--secret", "absent", "--", "true")
    assert missing.exit_code == 3 and "absent" in missing.stderr

    exported = sr("secrets", "export")
    assert exported.exit_code == 0 and "left out 1 use-only secrets" in exported.stderr
    sr.sdk.secrets.update("READABLE", expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    expire_now(services, "READABLE")
    expired = sr("secrets", "export")
    assert expired.exit_code == 1 and "expired" in expired.stderr, expired.output
    assert expired.stdout == ""
    for result in (every, named, missing, expired):
        assert not leaks(result, readable, hidden)
    assert readable in exported.stdout and hidden not in exported.stdout + exported.stderr


# -- progress ------------------------------------------------------------------------------------
def test_progress_stays_off_a_non_terminal_even_with_force_color(
    sr: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich alone would take this for a terminal
    sr.sdk.secrets.batch_put([{"name": f"P{i}", "value": "v"} for i in range(20)])
    exported = sr("secrets", "export", "--format", "json")
    assert exported.exit_code == 0 and len(json.loads(exported.stdout)) == 20
    no_bar(exported)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # whatever pytest's -s leaves there
    with progress.progress_bar("x", 3) as bar, progress.spinner("y") as waiting:
        assert not bar.live and not waiting.live
        bar.advance()  # no-ops
        waiting.update(description="z")


def test_progress_on_a_terminal_goes_to_stderr_only(
    sr: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn = io.StringIO()
    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(progress, "err", Console(file=drawn, force_terminal=True, width=80))
    sr.sdk.secrets.batch_put([{"name": f"P{i}", "value": "v"} for i in range(20)])
    exported = sr("secrets", "export", "--format", "json")
    assert exported.exit_code == 0
    assert json.loads(exported.stdout) == {f"P{i}": "v" for i in range(20)}  # stdout clean
    assert "exporting" in drawn.getvalue() and "━" in drawn.getvalue()


def test_rotation_is_shown_set_made_due_and_ended(sr: Cli) -> None:
    value = canary("rotated")
    assert sr("secrets", "set", "api_key", stdin=value).exit_code == 0
    steps = [{"kind": "set_secret", "name": "api_key", "value": "new"}]
    task = sr.sdk.tasks.create(steps=steps)
    shown = sr("secrets", "rotation", "api_key")
    assert shown.exit_code == 0 and "no scheduled rotation" in shown.stderr
    made = sr("secrets", "rotation", "api_key", "--every", "30d", "--task", task.id)
    assert made.exit_code == 0, made.output
    assert f"rotated every 30d by task {task.id}" in made.stderr
    due = json.loads(sr("secrets", "rotation", "api_key", "--now", "--json").stdout)
    assert due["rotation"] == {"every": "30d", "task_id": task.id}
    next_at = dt.datetime.fromisoformat(due["next_rotation_at"])
    assert next_at <= dt.datetime.now(dt.UTC)
    bad = sr("secrets", "rotation", "api_key", "--every", "10s", "--task", task.id)
    assert bad.exit_code == 1 and "body.rotation.every" in bad.stderr
    assert sr("secrets", "rotation", "api_key", "--every", "1d").exit_code == 2
    ended = sr("secrets", "rotation", "api_key", "--off")
    assert ended.exit_code == 0 and "no scheduled rotation" in ended.stderr
    for result in (shown, made, ended):
        assert not leaks(result, value)
    # showing it reads no value: no secret.read besides the set's own
    reads = [e for e in sr.sdk.audit.list_all() if e.action == "secret.read"]
    assert reads == []
