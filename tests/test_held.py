"""Places that may hold a secret: a value a run stored through a tool stays marked when a
later run, which never reads the secret, fetches it back.

In process (the runner without the durable engine), on SQLite and PostgreSQL: a SQLite file
in the tenant's tool directory as the place, and the rules of ``tasks/held.py`` on their
own (which places are recorded, how names and addresses of one place compare, and that
the row names no place in clear).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from strongroom.server.auth import Caller
from strongroom.server.redact import marker
from strongroom.server.services import Services
from strongroom.server.storage import schema
from strongroom.server.tasks.held import HeldSecrets, place_of
from strongroom.server.tasks.runner import Runner
from strongroom.server.tasks.tools import ToolConfig
from strongroom.server.tasks.tools.context import Destination
from strongroom.server.tasks.tools.database import DatabaseSettings

from .support import canary, find_leaks
from .tasks_fixtures import run_all, start, steps_of


def db(query: str, *, file: str = "store.db", **more: Any) -> dict[str, Any]:
    return {
        "kind": "tool_call",
        "tool": "database",
        "operation": "query",
        "arguments": {"connection": {"url": f"sqlite:///{file}"}, "query": query, **more},
    }


@pytest.fixture
def tool_dir(tmp_path: Path) -> Path:
    found = tmp_path / "tools"
    (found / "default").mkdir(parents=True)
    for name in ("store.db", "other.db"):  # the tool opens files that exist, no others
        with closing(sqlite3.connect(found / "default" / name)) as conn:
            conn.execute("CREATE TABLE t (v TEXT)")
    return found


@pytest.fixture
def runner(services: Services, tool_dir: Path) -> Runner:
    tools = ToolConfig(tool_settings=(DatabaseSettings(tool_sqlite_dir=tool_dir),))
    return Runner(services.store, services.barrier, tools)


def shown_by(services: Services, execution_id: str) -> list[Any]:
    return [step.output for step in steps_of(services, execution_id)]


def test_a_value_stored_by_one_run_is_marked_when_another_run_reads_it(
    services: Services, caller: Caller, runner: Runner
) -> None:
    key = canary("k")
    services.secrets.create(caller, "k", key)
    write = start(
        services,
        caller,
        [db("INSERT INTO t VALUES (?)", params=["$ lower(secrets.k)[::-1]"], read_only=False)],
    )
    assert run_all(runner, write) == "succeeded"
    # a later run that never names k: the place it reads was sent k, so the rows are k's
    read = start(
        services,
        caller,
        [db("SELECT v FROM t"), {"kind": "transform", "expression": "$ _['rows'][0][0][::-1]"}],
    )
    assert run_all(runner, read) == "succeeded"
    assert shown_by(services, read) == [marker("k"), marker("k")]
    # so is an error the place answers with: SQLite quotes the text it cannot use
    fail = start(services, caller, [db("SELECT v FROM t WHERE json_extract(v, '$.x') = 1")])
    assert run_all(runner, fail) == "failed"
    [step] = steps_of(services, fail)
    assert step.error is not None
    assert marker("k") in step.error["message"]
    for run in (read, fail):
        for record in steps_of(services, run):
            text = repr((record.output, record.error)).encode()
            assert find_leaks(key.lower()[::-1], text) == []
            assert find_leaks(key, text) == []


def test_another_file_holds_nothing_and_reads_stay_readable(
    services: Services, caller: Caller, runner: Runner
) -> None:
    services.secrets.create(caller, "k", canary("k"))
    write = start(
        services,
        caller,
        [db("INSERT INTO t VALUES (?)", params=["$ secrets.k"], read_only=False)],
    )
    assert run_all(runner, write) == "succeeded"
    other = start(services, caller, [db("SELECT 41 + 1 AS n", file="other.db")])
    assert run_all(runner, other) == "succeeded"
    [shown] = shown_by(services, other)
    assert shown["rows"] == [[42]]


def places(services: Services) -> list[tuple[str, str, str]]:
    with services.store.engine.connect() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(schema.held_secrets.select()).all()
    return [(row.tenant_id, row.destination, row.secret_name) for row in rows]


def held(services: Services, caller: Caller, **more: Any) -> HeldSecrets:
    options: dict[str, Any] = {"sent": frozenset({"a", "b"}), "restricted": frozenset({"b"})}
    options.update(more)
    return HeldSecrets(services.store, services.barrier, caller.tenant_id, **options)


def test_which_places_are_recorded(services: Services, caller: Caller) -> None:
    public = Destination.network("93.184.215.14", 443)
    # a public address, not a store: only the secret whose policy lists destinations
    held(services, caller, stores=False).reach(public)
    assert {name for _, _, name in places(services)} == {"b"}
    # a name, not resolved yet: the same
    held(services, caller, stores=False).reach(Destination.network("api.example.com", 443))
    assert sorted(name for _, _, name in places(services)) == ["b", "b"]
    # a private address, or a store anywhere: every secret sent
    held(services, caller, stores=False).reach(Destination.network("10.1.2.3", 80))
    held(services, caller, stores=True).reach(Destination.network("db.example.com", 5432))
    assert sorted(name for _, _, name in places(services)) == ["a", "a", "b", "b", "b", "b"]
    # nothing sent: nothing recorded, and recording twice adds nothing
    held(services, caller, sent=frozenset(), stores=True).reach(public)
    held(services, caller, stores=False).reach(public)
    assert len(places(services)) == 6
    # the row names the place by a keyed digest only
    for _, destination, _ in places(services):
        assert len(destination) == 64 and "example" not in destination and "." not in destination


def test_what_a_call_finds_is_what_any_run_left_at_the_places_it_reached(
    services: Services, caller: Caller
) -> None:
    writer = held(services, caller, stores=True)
    writer.reach(Destination.network("127.0.0.1", 5432))
    reader = held(services, caller, sent=frozenset(), stores=True)
    assert reader.held() == frozenset()  # reached nothing yet
    reader.reach(Destination.network("localhost", 5432))  # another name: not the same
    assert reader.held() == frozenset()
    reader.reach(Destination.network("::ffff:127.0.0.1", 5432))  # an address of it: the same
    assert reader.held() == {"a", "b"}
    elsewhere = held(services, caller, sent=frozenset(), stores=True)
    elsewhere.reach(Destination.network("127.0.0.1", 5433))  # another port: another place
    assert elsewhere.held() == frozenset()


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "0.0.0.0", "LOCALHOST."],  # noqa: S104
)
def test_this_machine_is_one_place_under_every_address(host: str) -> None:
    expected = (
        "net:localhost:5432" if host.lower().startswith("localhost") else "net:this-machine:5432"
    )
    assert place_of(Destination.network(host, 5432)) == expected


def test_a_file_is_the_same_place_under_every_path(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    target = tmp_path / "dir" / "store.db"
    target.touch()
    (tmp_path / "link.db").symlink_to(target)
    assert place_of(Destination.file(tmp_path / "link.db")) == place_of(
        Destination.file(tmp_path / "dir" / ".." / "dir" / "store.db")
    )
