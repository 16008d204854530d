"""Audit retention: ``prune`` removes exactly the events before its cutoff, in batches that
each commit, counts each event once however many processes prune, leaves an ``audit.prune``
event in every trail it shortened (even when stopped or failing part-way), and refuses a
cutoff in the future; the retention setting prunes through ``prune_expired`` and its
thread; ``strongroom audit prune`` does all that from the command line (in-process).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from rich.console import Console

from strongroom.cli import audit_prune
from strongroom.cli.main import cli
from strongroom.server import audit_retention
from strongroom.server.apikeys import ensure_tenant
from strongroom.server.app import create_app
from strongroom.server.audit_retention import FutureCutoff, Pruner, prune, prune_expired, stamp
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import AuditEvent, PrunedBatch, Store
from strongroom.server.storage.audit import SQLAuditStorage
from strongroom.server.trail import Action, Actor, event


@pytest.fixture
def store(services: Services) -> Store:
    return services.store


@pytest.fixture
def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def seed(store: Store, tenant_id: str | None, now: dt.datetime, *days_ago: float) -> None:
    """One event of ``tenant_id`` that many days before ``now`` for each age given."""
    with store.write() as tx:
        for days in days_ago:
            made = event(Actor(tenant_id, "k1"), Action.READ, "success", secret_name="db")
            tx.audit.insert(replace(made, occurred_at=now - dt.timedelta(days=days)))


def trail(store: Store, tenant_id: str) -> list[AuditEvent]:
    with store.read() as tx:
        return tx.audit.page(tenant_id, limit=1000, offset=0).items


def prunes(store: Store, tenant_id: str) -> list[str]:
    """The details of the tenant's ``audit.prune`` events, oldest first."""
    found = [e for e in trail(store, tenant_id) if e.action == Action.AUDIT_PRUNE]
    assert all(e.outcome == "success" and e.key_id is None for e in found)
    return [e.detail or "" for e in reversed(found)]


def left_before(store: Store, cutoff: dt.datetime) -> int:
    with store.read() as tx:
        return tx.audit.count_before(cutoff)


def removed_by_details(details: list[str]) -> int:
    return sum(int(detail.split()[1]) for detail in details)


# -- prune ---------------------------------------------------------------------------------------
def test_prune_removes_exactly_the_events_before_the_cutoff_and_says_so_in_each_trail(
    store: Store, now: dt.datetime
) -> None:
    acme, globex = ensure_tenant(store, "acme").id, ensure_tenant(store, "globex").id
    seed(store, acme, now, 400, 100, 31, 29, 1)
    seed(store, globex, now, 45, 2)
    seed(store, None, now, 60)  # a refused unknown key's: no tenant
    cutoff = now - dt.timedelta(days=30)

    report = prune(store, cutoff, now=now, by="a test")

    assert (report.count, report.removed, report.complete) == (
        5,
        {acme: 3, globex: 1, None: 1},
        True,
    )
    ages = [round((now - e.occurred_at) / dt.timedelta(days=1)) for e in trail(store, acme)]
    assert ages == [0, 1, 29], "the prune's own event, then the events after the cutoff"
    assert prunes(store, acme) == [f"removed 3 events before {stamp(cutoff)}, by a test"]
    assert prunes(store, globex) == [f"removed 1 event before {stamp(cutoff)}, by a test"]
    assert left_before(store, cutoff) == 0
    with store.read() as tx:
        rest = tx.audit.count_before(now + dt.timedelta(days=1))
    assert rest == 3 + 2 + 1, "acme's 2 and its prune, globex's 1 and its prune, no tenant's"

    again = prune(store, cutoff, now=now, by="a test")
    assert again.count == 0 and len(prunes(store, acme)) == 1, "nothing removed, nothing said"


def test_prune_deletes_in_batches_that_each_commit(store: Store, now: dt.datetime) -> None:
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, *[100 + i for i in range(25)])
    cutoff = now - dt.timedelta(days=30)
    seen: list[tuple[int, int]] = []

    report = prune(
        store,
        cutoff,
        now=now,
        by="a test",
        batch_size=10,
        # What another connection sees after each batch: the batch is committed already.
        on_batch=lambda removed: seen.append((removed, left_before(store, cutoff))),
    )
    assert seen == [(10, 15), (20, 5), (25, 0)]
    assert report.count == 25 and prunes(store, tenant) == [
        f"removed 25 events before {stamp(cutoff)}, by a test"
    ]
    with pytest.raises(ValueError, match="batch size"):
        prune(store, cutoff, now=now, by="a test", batch_size=audit_retention.MAX_BATCH + 1)


def test_a_prune_stopped_or_failing_part_way_records_what_it_removed(
    store: Store, now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, *[100 + i for i in range(10)])
    cutoff = now - dt.timedelta(days=30)

    stopped = prune(store, cutoff, now=now, by="a test", batch_size=3, keep_going=lambda: False)
    assert (stopped.count, stopped.complete, left_before(store, cutoff)) == (3, False, 7)

    calls = 0
    delete = SQLAuditStorage.delete_before

    def failing(self: SQLAuditStorage, cutoff: dt.datetime, *, limit: int) -> PrunedBatch:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("the database went away")
        return delete(self, cutoff, limit=limit)

    monkeypatch.setattr(SQLAuditStorage, "delete_before", failing)
    with pytest.raises(OSError, match="went away"):
        prune(store, cutoff, now=now, by="a test", batch_size=3)
    assert left_before(store, cutoff) == 4
    end = "; stopped before the end"
    assert prunes(store, tenant) == [
        f"removed 3 events before {stamp(cutoff)}, by a test{end}",
        f"removed 3 events before {stamp(cutoff)}, by a test{end}",
    ]


def test_a_cutoff_in_the_future_is_refused(store: Store, now: dt.datetime) -> None:
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, 10, 0)
    with pytest.raises(FutureCutoff, match="is in the future"):
        prune(store, now + dt.timedelta(seconds=1), now=now, by="a test")
    assert len(trail(store, tenant)) == 2


def test_concurrent_prunes_count_each_event_once(store: Store, now: dt.datetime) -> None:
    tenants = [ensure_tenant(store, name).id for name in ("t1", "t2", "t3")]
    for tenant in tenants:
        seed(store, tenant, now, *[40 + i for i in range(60)])
    cutoff = now - dt.timedelta(days=30)
    start = threading.Barrier(4)
    reports: list[audit_retention.PruneReport] = []

    def run() -> None:
        start.wait()
        reports.append(prune(store, cutoff, now=now, by="a test", batch_size=25))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(reports) == 4, "every prune finished"
    assert sum(report.count for report in reports) == 180
    assert left_before(store, cutoff) == 0
    for tenant in tenants:
        assert removed_by_details(prunes(store, tenant)) == 60, "the trail's counts add up"


# -- the retention setting -----------------------------------------------------------------------
def test_prune_expired_keeps_forever_at_zero_and_prunes_past_the_retention(
    store: Store, now: dt.datetime
) -> None:
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, 91, 90.5, 89, 3)
    assert prune_expired(store, 0, now) == 0
    assert len(trail(store, tenant)) == 4
    assert prune_expired(store, 90, now) == 2
    assert prunes(store, tenant) == [
        f"removed 2 events before {stamp(now - dt.timedelta(days=90))}, "
        "by STRONGROOM_AUDIT_RETENTION_DAYS=90"
    ]
    assert prune_expired(store, 90, now) == 0, "run again (or elsewhere at once): harmless"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_pruner_prunes_at_start_and_stops_at_once(store: Store, now: dt.datetime) -> None:
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, 40, 35, 1)
    idle = Pruner(store, 0, interval=0.01)
    idle.start()
    assert not idle.running, "a retention of 0 keeps every event: nothing to run"

    pruner = Pruner(store, 30, interval=3600)
    pruner.start()
    try:
        deadline = time.monotonic() + 10
        while prunes(store, tenant) == [] and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        began = time.monotonic()
        pruner.stop()
    assert time.monotonic() - began < 5, "stop does not wait out the interval"
    assert not pruner.running
    assert left_before(store, now - dt.timedelta(days=30)) == 0
    assert len(prunes(store, tenant)) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_services_prune_as_the_settings_say(settings: Settings) -> None:
    services = open_services(
        settings.model_copy(
            update={"audit_retention_days": 30, "audit_prune_interval_seconds": 60.0}
        )
    )
    try:
        assert (services.pruner.retention_days, services.pruner.interval) == (30, 60.0)
        assert not services.pruner.running, "started by the app's lifespan and worker only"
    finally:
        services.close()
    assert Settings().audit_retention_days == 0, "by default the trail is kept forever"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_app_prunes_for_its_lifetime(
    settings: Settings, now: dt.datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = open_services(settings.model_copy(update={"audit_retention_days": 30}))
    # The lifespan's execution engine (DBOS) is not this test's: the pruner beside it is.
    monkeypatch.setattr(services.engine, "start", lambda: None)
    monkeypatch.setattr(services.engine, "stop", lambda: None)
    tenant = ensure_tenant(services.store, "acme").id
    seed(services.store, tenant, now, 45, 1)
    try:
        with TestClient(create_app(services)):
            assert services.pruner.running
            deadline = time.monotonic() + 10
            while not prunes(services.store, tenant) and time.monotonic() < deadline:
                time.sleep(0.01)
        assert not services.pruner.running, "stopped with the app"
        assert len(prunes(services.store, tenant)) == 1
    finally:
        services.close()


# -- strongroom audit prune ------------------------------------------------------------------------
@pytest.fixture
def sr(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[CliRunner, dict[str, str]]]:
    """The CLI in-process, on the test's database. The server commands set the umask to
    077 (their files are private): put the test process's back afterwards."""
    monkeypatch.chdir(tmp_path)  # no ./data/master.key of the developer's
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        yield (
            CliRunner(),
            {
                "STRONGROOM_DATABASE_URL": database_url,
                "STRONGROOM_AUDIT_FILE": str(tmp_path / "audit.jsonl"),
            },
        )
    finally:
        os.umask(umask)


def test_cli_prune_dry_run_counts_and_removes_nothing(
    sr: tuple[CliRunner, dict[str, str]], store: Store, now: dt.datetime
) -> None:
    runner, env = sr
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, 100, 95, 1)
    done = runner.invoke(cli, ["audit", "prune", "--before", "90d", "--dry-run"], env=env)
    assert done.exit_code == 0, done.output
    assert "would remove 2 audit events before" in done.stderr
    assert len(trail(store, tenant)) == 3


def test_cli_prune_removes_records_and_copies_the_record_to_the_audit_file(
    sr: tuple[CliRunner, dict[str, str]], store: Store, now: dt.datetime, tmp_path: Path
) -> None:
    runner, env = sr
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, 400, 100, 95, 1)
    refused = runner.invoke(cli, ["audit", "prune", "--before", "90d"], env=env)
    assert refused.exit_code == 2 and "pass --yes" in refused.stderr, "stdin is no terminal"
    assert len(trail(store, tenant)) == 4

    done = runner.invoke(cli, ["audit", "prune", "--before", "90d", "--yes"], env=env)
    assert done.exit_code == 0, done.output
    assert "removed 3 audit events before" in done.stderr
    assert "in the trail of 1 tenant" in done.stderr
    [detail] = prunes(store, tenant)
    assert detail.startswith("removed 3 events before ") and "by strongroom audit prune" in detail
    [line] = [json.loads(text) for text in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert (line["action"], line["detail"]) == ("audit.prune", detail)

    by_date = runner.invoke(cli, ["audit", "prune", "--before", "2000-01-01", "-y"], env=env)
    assert (
        by_date.exit_code == 0 and "no audit events before 2000-01-01T00:00:00Z" in by_date.stderr
    )


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--before", "2999-01-01T00:00:00Z", "--yes"], "is in the future"),
        (["--before", "yesterday"], "with a zone"),
        (["--before", "90d", "--batch-size", "0"], "--batch-size"),
        ([], "Missing option '--before'"),
    ],
)
def test_cli_prune_refuses_bad_input_with_exit_2(
    sr: tuple[CliRunner, dict[str, str]],
    store: Store,
    now: dt.datetime,
    args: list[str],
    message: str,
) -> None:
    runner, env = sr
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, 100)
    done = runner.invoke(cli, ["audit", "prune", *args], env=env)
    assert done.exit_code == 2, done.output
    assert message in done.stderr
    assert len(trail(store, tenant)) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_cli_prune_shows_a_progress_bar_to_a_terminal(
    sr: tuple[CliRunner, dict[str, str]],
    store: Store,
    now: dt.datetime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner, env = sr
    tenant = ensure_tenant(store, "acme").id
    seed(store, tenant, now, *[100 + i for i in range(7)])
    screen = io.StringIO()
    monkeypatch.setattr(audit_prune, "err", Console(file=screen, force_terminal=True, width=80))
    done = runner.invoke(
        cli, ["audit", "prune", "--before", "90d", "--batch-size", "2", "--yes"], env=env
    )
    assert done.exit_code == 0, done.output
    assert "removing audit events" in screen.getvalue() and "7/7" in screen.getvalue()
    assert "removed 7 audit events" in done.stderr


def test_cli_prune_batches_are_those_of_the_server() -> None:
    assert (audit_prune.BATCH, audit_prune.MAX_BATCH) == (
        audit_retention.BATCH,
        audit_retention.MAX_BATCH,
    )
