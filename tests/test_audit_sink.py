"""The audit file (``STRONGROOM_AUDIT_FILE``), attacked through the real app: every event
that committed is a line before the answer is out, as ``GET /v1/audit`` shows it; a refusal
is a line too; an event whose change rolled back never is; lines are private, whole and
hold no value in any spelling; logrotate moving the file starts a new one; and a file that
cannot be written is said loudly while the answers still go out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from strongroom.server import trail
from strongroom.server.api.schemas.audit import AuditRecord
from strongroom.server.audit_file import CUT, MAX_LINE_BYTES, AuditFile, AuditFileError, line_of
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import AuditEvent, StorageUnavailable, schema
from strongroom.server.storage.audit import SQLAuditStorage
from strongroom.server.trail import Action, Actor

from . import canaries
from .conftest import MakeClient


@pytest.fixture
def audit_path(tmp_path: Path) -> Path:
    return tmp_path / "audit.jsonl"


@pytest.fixture
def settings(settings: Settings, audit_path: Path) -> Settings:
    """The suite's settings, with the audit file on."""
    return settings.model_copy(update={"audit_file": audit_path})


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def stored_ids(services: Services) -> set[int]:
    """Every event in the table, of every tenant: the trail of record."""
    with services.store.engine.connect() as conn:
        return set(conn.execute(sa.select(schema.audit_events.c.id)).scalars())


def listed(client: TestClient) -> dict[int, dict[str, Any]]:
    answer = client.get("/v1/audit", params={"limit": 1000})
    assert answer.status_code == 200, answer.text
    return {item["id"]: item for item in answer.json()["items"]}


def test_each_committed_event_is_a_line_as_the_api_lists_it_before_the_answer(
    make_client: MakeClient, services: Services, audit_path: Path
) -> None:
    api = make_client()
    for request in (
        lambda: api.post("/v1/secrets", json={"name": "db", "value": "v1"}),
        lambda: api.get("/v1/secrets/db"),
        lambda: api.patch("/v1/secrets/db", json={"value": "v2"}),
        lambda: api.post("/v1/keys", json={"name": "ci", "scopes": ["secrets:read"]}),
    ):
        answer = request()
        assert answer.status_code < 300, answer.text
        # The answer is here, so its line is too: nothing to wait for.
        newest = lines(audit_path)[-1]
        assert newest["request_id"] == answer.headers["X-Request-Id"]
        assert newest["outcome"] == "success"

    by_api = listed(api)
    written = lines(audit_path)
    assert [line["id"] for line in written] == sorted(line["id"] for line in written)
    assert {line["id"] for line in written} == stored_ids(services), "the file is the table"
    assert set(by_api) == {line["id"] for line in written}
    tenant = api_tenant(services)
    for line in written:
        api_fields = list(AuditRecord.model_fields)
        assert list(line) == [*api_fields[:2], "tenant_id", *api_fields[2:]]
        assert line.pop("tenant_id") == tenant, "whose event it is: the file holds all"
        assert line == by_api[line["id"]], "spelled as GET /v1/audit spells it"
    assert {line["action"] for line in written} >= {
        "secret.create",
        "secret.read",
        "secret.update",
        "key.create",
    }


def test_a_refused_request_is_a_line_too(
    make_client: MakeClient, app: FastAPI, audit_path: Path
) -> None:
    make_client().post("/v1/secrets", json={"name": "db", "value": "v1"})
    reader = make_client(scopes=("audit:read",))
    forbidden = reader.get("/v1/secrets/db")
    assert forbidden.status_code == 403
    assert lines(audit_path)[-1]["request_id"] == forbidden.headers["X-Request-Id"]
    assert lines(audit_path)[-1]["outcome"] == "forbidden"

    with TestClient(app, headers={"Authorization": "Bearer sr_" + "x" * 38}) as stranger:
        unknown = stranger.get("/v1/secrets")
    assert unknown.status_code == 401
    last = lines(audit_path)[-1]
    assert (last["action"], last["outcome"], last["key_id"]) == (
        "auth.authenticate",
        "unauthorized",
        None,
    )
    assert last["request_id"] == unknown.headers["X-Request-Id"]


def test_an_event_whose_change_rolls_back_is_never_a_line(
    make_client: MakeClient,
    services: Services,
    audit_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = make_client()
    insert = SQLAuditStorage.insert

    def then_fail(self: SQLAuditStorage, event: AuditEvent) -> int:
        event_id = insert(self, event)
        if event.action == "key.create":
            raise StorageUnavailable("the database went away before the commit")
        return event_id

    monkeypatch.setattr(SQLAuditStorage, "insert", then_fail)
    answer = api.post("/v1/keys", json={"name": "ci", "scopes": ["secrets:read"]})
    assert answer.status_code == 503
    monkeypatch.undo()
    assert not [line for line in lines(audit_path) if line["action"] == "key.create"]

    def change_that_fails() -> None:
        with services.store.write() as tx:
            trail.record(tx, trail.event(Actor(None, None), Action.AUDIT_READ, "success"))
            raise RuntimeError("the change fails after its event was recorded")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert api.post("/v1/secrets", json={"name": "db", "value": "v1"}).status_code == 201
    written = lines(audit_path)
    assert {line["id"] for line in written} == stored_ids(services)
    assert [line["action"] for line in written] == ["secret.create"]


@pytest.fixture(scope="module")
def planted() -> list[canaries.Canary]:
    """Three canary values. Module-scoped: making them reads the project's text and imports
    the execution engine, whose import runs a process (``file``), before any test's
    refusal of processes is in place."""
    return [canaries.Canary(f"value{i}", canaries.alpha()) for i in range(3)]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_lines_are_private_and_hold_no_value_in_any_spelling(
    make_client: MakeClient, audit_path: Path, planted: list[canaries.Canary]
) -> None:
    api = make_client()
    first, second, third = (canary.value for canary in planted)
    assert api.post("/v1/secrets", json={"name": "db", "value": first}).status_code == 201
    assert api.post("/v1/secrets", json={"name": "api", "value": second}).status_code == 201
    assert api.patch("/v1/secrets/db", json={"value": third}).status_code == 200
    assert api.get("/v1/secrets/db").json()["value"] == third
    assert api.get("/v1/secrets/db", params={"version": 1}).json()["value"] == first
    assert api.get("/v1/secrets/api").status_code == 200
    assert api.post("/v1/secrets", json={"name": "db", "value": second}).status_code == 409
    assert api.get("/v1/secrets/db/versions").status_code == 200

    data = audit_path.read_bytes()
    assert {"secret.create", "secret.update", "secret.read"} <= {
        line["action"] for line in lines(audit_path)
    }
    assert canaries.Scanner(planted).findings([("audit file", data)]) == []
    assert stat.S_IMODE(audit_path.stat().st_mode) == 0o600


@pytest.mark.parametrize("backend", ["sqlite"])
def test_logrotate_moving_the_file_away_starts_a_new_one(
    make_client: MakeClient, audit_path: Path
) -> None:
    api = make_client()
    api.post("/v1/secrets", json={"name": "db", "value": "v1"})
    before = audit_path.read_bytes()
    rotated = audit_path.with_name("audit.jsonl.1")
    audit_path.rename(rotated)  # what logrotate does (then, unless told, nothing more)

    answer = api.get("/v1/secrets/db")
    assert answer.status_code == 200
    assert rotated.read_bytes() == before, "nothing more goes to the moved file"
    [line] = lines(audit_path)
    assert line["request_id"] == answer.headers["X-Request-Id"]
    assert stat.S_IMODE(audit_path.stat().st_mode) == 0o600

    audit_path.rename(rotated)
    audit_path.touch(mode=0o600)  # logrotate's `create`: a new empty file in its place
    api.delete("/v1/secrets/db")
    assert [line["action"] for line in lines(audit_path)] == ["secret.delete"]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_file_that_cannot_be_written_is_said_and_counted_and_answers_go_out(
    make_client: MakeClient,
    services: Services,
    audit_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = make_client()
    assert services.audit_file is not None
    audit_path.rename(audit_path.with_name("old.jsonl"))
    audit_path.mkdir()  # no file can be opened there now

    with caplog.at_level(logging.WARNING, logger="strongroom.audit"):
        assert api.post("/v1/secrets", json={"name": "db", "value": "v1"}).status_code == 201
        assert api.get("/v1/secrets/db").status_code == 200
        assert services.audit_file.failures == 2
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1, "said once per reason, not once per event"
        assert "could not append to the audit file" in errors[0].getMessage()
        assert getattr(errors[0], "path", None) == str(audit_path)

        audit_path.rmdir()
        assert api.get("/v1/secrets/db").status_code == 200
        back = [r for r in caplog.records if "written again" in r.getMessage()]
        assert len(back) == 1 and getattr(back[0], "lost", None) == 2
    assert [line["action"] for line in lines(audit_path)] == ["secret.read"]
    with services.store.read() as tx:
        assert len(tx.audit.page(api_tenant(services), limit=100, offset=0).items) == 3, (
            "the database has every event all along"
        )


def api_tenant(services: Services) -> str:
    with services.store.read() as tx:
        tenant = tx.apikeys.tenant_by_name("default")
    assert tenant is not None
    return tenant.id


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_audit_file_that_cannot_be_opened_refuses_to_start(
    settings: Settings, tmp_path: Path
) -> None:
    missing = tmp_path / "no such directory" / "audit.jsonl"
    with pytest.raises(AuditFileError, match="no such directory"):
        open_services(settings.model_copy(update={"audit_file": missing}))
    assert Settings(audit_file="").audit_file is None, "empty is unset: no file"


# -- the line and the writer, alone -------------------------------------------------------------
def an_event(**changes: Any) -> AuditEvent:
    fields: dict[str, Any] = {
        "occurred_at": dt.datetime(2026, 11, 28, 9, 0, 0, 5, tzinfo=dt.UTC),
        "tenant_id": "t1",
        "key_id": "k1",
        "action": "secret.read",
        "outcome": "success",
        "secret_name": "db",
        "id": 7,
    }
    return AuditEvent(**{**fields, **changes})


def test_a_line_stays_within_bounds_whatever_its_detail() -> None:
    plain = line_of(an_event(detail="execution e1 step 0"))
    assert json.loads(plain)["detail"] == "execution e1 step 0"
    assert json.loads(plain)["time"] == "2026-11-28T09:00:00.000005Z"
    assert json.loads(plain)["tenant_id"] == "t1"

    for detail in ('"\\\n' * 40_000, "é😀" * 40_000, "x" * MAX_LINE_BYTES):
        line = line_of(an_event(detail=detail))
        assert len(line) <= MAX_LINE_BYTES and line.endswith(b"\n") and line.count(b"\n") == 1
        assert line.isascii()
        cut = json.loads(line)["detail"]
        assert cut.endswith(CUT) and detail.startswith(cut.removesuffix(CUT))


def test_threads_and_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    # Two descriptors on one file stand for two processes: O_APPEND, one write a line.
    writers = [AuditFile.open(path), AuditFile.open(path)]
    detail = "d" * 5000  # lines longer than a pipe's atomic write, far from the cap

    def append(n: int) -> None:
        for i in range(100):
            writers[n % 2].append(an_event(id=n * 1000 + i, detail=detail))

    threads = [threading.Thread(target=append, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for writer in writers:
        writer.close()
    written = lines(path)
    assert sorted(line["id"] for line in written) == sorted(
        n * 1000 + i for n in range(8) for i in range(100)
    )
    assert all(line["detail"] == detail for line in written)


def test_only_a_regular_file_is_taken_and_opening_never_hangs(tmp_path: Path) -> None:
    fifo = tmp_path / "audit.fifo"
    os.mkfifo(fifo)  # with no reader, a plain open for writing would wait for one forever
    with pytest.raises(AuditFileError, match="STRONGROOM_AUDIT_FILE="):
        AuditFile.open(fifo)
