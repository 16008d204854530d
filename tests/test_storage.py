"""The storage interface's contract, held by both backends alike."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from strongroom.server.apikeys import ensure_tenant
from strongroom.server.ids import new_id
from strongroom.server.metadata_entries import metadata_entry_hash
from strongroom.server.policy import SecretPolicy
from strongroom.server.services import Services
from strongroom.server.storage import (
    AuditEvent,
    AuditFilter,
    BarrierRow,
    ExecutionRecord,
    NameTaken,
    Sealed,
    SecretRecord,
    StepRecord,
    Store,
    StoredVersion,
    TaskRecord,
    Transaction,
)
from strongroom.server.storage.secret_listing import sparsest_entry
from strongroom.server.storage.secrets import SQLSecretStorage
from strongroom.server.trail import Action, Actor, event

NOW = dt.datetime(2026, 11, 28, 14, 33, 0, 123456, tzinfo=dt.UTC)


@pytest.fixture
def store(services: Services) -> Store:
    return services.store


@pytest.fixture
def tenant_id(store: Store) -> str:
    return ensure_tenant(store, "acme").id


def secret(tenant_id: str, name: str, **metadata: object) -> SecretRecord:
    return SecretRecord(new_id(), tenant_id, name, None, dict(metadata), 1, NOW, NOW)


def add(store: Store, record: SecretRecord) -> None:
    with store.write() as tx:
        tx.secrets.insert(record)
        sealed = Sealed(1, b"wrapped-" + record.id.encode(), b"ciphertext")
        tx.secrets.insert_version(StoredVersion(record.tenant_id, record.id, 1, sealed), NOW, None)


def names(
    store: Store, tenant_id: str, metadata_filter: dict[str, object] | None = None
) -> list[str]:
    with store.read() as tx:
        page = tx.secrets.page(tenant_id, limit=100, offset=0, metadata_filter=metadata_filter)
    return [s.name for s in page.items]


def test_round_trip_keeps_every_field_and_utc_times(store: Store, tenant_id: str) -> None:
    record = SecretRecord(
        new_id(), tenant_id, "api", "desc", {"n": 1, "nested": {"a": [1, "x"]}}, 1, NOW, NOW
    )
    add(store, record)
    with store.read() as tx:
        found = tx.secrets.by_name(tenant_id, "api")
        stored = tx.secrets.version(record.id, 1)
    assert found == record
    assert found.created_at.tzinfo == dt.UTC
    assert stored is not None
    assert stored.sealed == Sealed(1, b"wrapped-" + record.id.encode(), b"ciphertext")


def test_names_are_unique_per_tenant_and_case_sensitive(store: Store, tenant_id: str) -> None:
    add(store, secret(tenant_id, "token"))
    with pytest.raises(NameTaken), store.write() as tx:
        tx.secrets.insert(secret(tenant_id, "token"))
    add(store, secret(tenant_id, "Token"))
    other = ensure_tenant(store, "other").id
    add(store, secret(other, "token"))
    assert names(store, tenant_id) == ["Token", "token"]
    assert names(store, other) == ["token"]


def test_rename_onto_a_taken_name_raises_and_changes_nothing(store: Store, tenant_id: str) -> None:
    first, second = secret(tenant_id, "first"), secret(tenant_id, "second")
    add(store, first)
    add(store, second)
    with pytest.raises(NameTaken), store.write() as tx:
        tx.secrets.update(replace(first, name="second"))
    assert names(store, tenant_id) == ["first", "second"]


def test_list_orders_by_code_point_and_pages(store: Store, tenant_id: str) -> None:
    for name in ["beta", "Zeta", "alpha", "_under", "Alpha2"]:
        add(store, secret(tenant_id, name))
    assert names(store, tenant_id) == ["Alpha2", "Zeta", "_under", "alpha", "beta"]
    with store.read() as tx:
        page = tx.secrets.page(tenant_id, limit=2, offset=2)
        last = tx.secrets.page(tenant_id, limit=2, offset=4)
    assert [s.name for s in page.items] == ["_under", "alpha"]
    assert page.has_more
    assert [s.name for s in last.items] == ["beta"]
    assert not last.has_more


def test_metadata_filter_is_top_level_containment(store: Store, tenant_id: str) -> None:
    add(store, secret(tenant_id, "a", env="prod", owner="pay", n=1))
    add(store, secret(tenant_id, "b", env="prod", owner="ops", n=1.5))
    add(store, secret(tenant_id, "c", env="dev", owner="pay", flag=True, obj={"x": [1, 2]}))
    add(store, secret(tenant_id, "d"))
    assert names(store, tenant_id, metadata_filter={"env": "prod"}) == ["a", "b"]
    assert names(store, tenant_id, metadata_filter={"env": "prod", "owner": "pay"}) == ["a"]
    assert names(store, tenant_id, metadata_filter={"owner": "pay", "env": "dev"}) == ["c"]
    assert names(store, tenant_id, metadata_filter={"n": 1}) == ["a"]
    assert names(store, tenant_id, metadata_filter={"n": "1"}) == []
    assert names(store, tenant_id, metadata_filter={"flag": True}) == ["c"]
    assert names(store, tenant_id, metadata_filter={"obj": {"x": [1, 2]}}) == ["c"]
    assert names(store, tenant_id, metadata_filter={"env": "prod", "missing": "x"}) == []


def test_metadata_index_follows_updates_renames_and_deletes(store: Store, tenant_id: str) -> None:
    record = secret(tenant_id, "m", env="prod")
    add(store, record)
    changed = SecretRecord(record.id, tenant_id, "renamed", None, {"env": "dev"}, 1, NOW, NOW)
    with store.write() as tx:
        tx.secrets.update(changed)
    assert names(store, tenant_id, metadata_filter={"env": "prod"}) == []
    assert names(store, tenant_id, metadata_filter={"env": "dev"}) == ["renamed"]
    with store.write() as tx:
        tx.secrets.delete(record.id)
        assert tx.secrets.version(record.id, 1) is None
    assert names(store, tenant_id, metadata_filter={"env": "dev"}) == []
    add(store, secret(tenant_id, "renamed"))  # the name is free again


def under(tx: Transaction, *kek_ids: int) -> dict[tuple[str | int, ...], bytes]:
    """The wrapped data keys under ``kek_ids``, by row key."""
    return {row.key: row.sealed.wrapped_dek for row in tx.keyring.sealed_under(kek_ids, 100)}


def test_replace_wrapped_deks_moves_a_batch_and_skips_rows_already_moved(
    store: Store, tenant_id: str
) -> None:
    records = [secret(tenant_id, f"k{i}") for i in range(5)]
    for record in records:
        add(store, record)
    with store.write() as tx:
        rows = tx.keyring.sealed_under([1], 10)
        assert sorted(row.key for row in rows) == sorted((r.id, 1) for r in records)
        assert {(row.kind, row.tenant_id) for row in rows} == {("value", tenant_id)}
        first = rows[0]
        assert first.parts == (tenant_id, first.key[0], "1")
        # One row leaves KEK 1 first: the batch listed under KEK 1 must not overwrite it.
        tx.keyring.replace_wrapped_deks([(first, Sealed(3, b"elsewhere", b"c"))])
        tx.keyring.replace_wrapped_deks(
            [(row, Sealed(2, b"new %d" % i, b"c")) for i, row in enumerate(rows)]
        )
        tx.keyring.replace_wrapped_deks([])
        assert tx.secrets.count_versions_by_kek() == {2: 4, 3: 1}
        assert under(tx, 2) == {row.key: b"new %d" % i for i, row in enumerate(rows) if i}
        assert under(tx, 7) == {}
        assert len(tx.keyring.sealed_under([2, 3], 2)) == 2
    with store.read() as tx:
        kept = tx.secrets.version(str(first.key[0]), 1)
    assert kept is not None
    assert kept.sealed.wrapped_dek == b"elsewhere"  # it had left KEK 1: not overwritten
    assert kept.sealed.ciphertext == b"ciphertext"  # a rewrap never touches the value


def test_sealed_data_of_every_kind_is_listed_and_rewrapped_alike(
    store: Store, tenant_id: str
) -> None:
    record = secret(tenant_id, "v")
    add(store, record)
    task = TaskRecord(new_id(), tenant_id, None, None, [{"kind": "transform"}], NOW, NOW)
    run = ExecutionRecord(
        new_id(), tenant_id, task.id, "running", task.steps, None, None, None, None, NOW, NOW
    )
    with store.write() as tx:
        tx.tasks.insert(task)
        tx.executions.insert(run)
        result = Sealed(1, b"wrapped", b"result")
        tx.executions.save_step(StepRecord(run.id, 0, "transform", "succeeded", sealed=result))
        tx.executions.save_step(StepRecord(run.id, 1, "transform", "running"))
    with store.write() as tx:
        rows = tx.keyring.sealed_under([1], 10)
        # Secret versions first, then step results, each with its seal context's parts.
        assert [(row.kind, row.key, row.parts) for row in rows] == [
            ("value", (record.id, 1), (tenant_id, record.id, "1")),
            ("step", (run.id, 0), (tenant_id, run.id, "0")),
        ]
        assert [row.kind for row in tx.keyring.sealed_under([1], 1)] == ["value"]
        tx.keyring.replace_wrapped_deks(
            [(row, Sealed(2, b"re-" + row.kind.encode(), b"ignored")) for row in rows]
        )
        assert tx.keyring.sealed_under([1], 10) == []
        steps = tx.executions.steps(run.id)
    assert [step.sealed for step in steps] == [Sealed(2, b"re-step", b"result"), None]


def test_insert_many_writes_what_insert_and_insert_version_write(
    store: Store, tenant_id: str
) -> None:
    use_only = SecretPolicy(readable=False)
    records = [
        replace(secret(tenant_id, f"bulk{i}", env="prod", n=i % 2), description=f"d{i}")
        for i in range(3)
    ]
    records.append(replace(secret(tenant_id, "plain"), policy=use_only))
    sealed = {r.id: Sealed(1, b"w-" + r.id.encode(), b"c-" + r.id.encode()) for r in records}
    with store.write() as tx:
        tx.secrets.insert_many([(r, sealed[r.id]) for r in records], created_by="key")
    assert names(store, tenant_id) == ["bulk0", "bulk1", "bulk2", "plain"]
    assert names(store, tenant_id, metadata_filter={"env": "prod", "n": 1}) == ["bulk1"]
    with store.read() as tx:
        for record in records:
            assert tx.secrets.by_name(tenant_id, record.name) == record
            stored = tx.secrets.version(record.id, 1)
            assert stored == StoredVersion(tenant_id, record.id, 1, sealed[record.id])
            [version] = tx.secrets.list_versions(record.id)
            assert (version.created_at, version.created_by) == (NOW, "key")
    with pytest.raises(NameTaken), store.write() as tx:
        tx.secrets.insert(secret(tenant_id, "plain"))


def test_barrier_rows_are_written_once(store: Store) -> None:
    # The store was unsealed: both rows exist, and another process's second write of
    # either is refused (the barrier then reads the first one's).
    with store.read() as tx:
        assert all(tx.keyring.barrier_row(row) for row in BarrierRow)
    for row in BarrierRow:
        with pytest.raises(NameTaken), store.write() as tx:
            tx.keyring.insert_barrier_row(row, b"another", NOW)


def test_write_rolls_back_on_error(store: Store, tenant_id: str) -> None:
    def abandoned_write() -> None:
        with store.write() as tx:
            tx.secrets.insert(secret(tenant_id, "ghost"))
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        abandoned_write()
    assert names(store, tenant_id) == []


def test_audit_events_page_newest_first_and_filter(store: Store, tenant_id: str) -> None:
    with store.write() as tx:
        for i in range(5):
            tx.audit.insert(
                AuditEvent(NOW, tenant_id, "key", Action.READ.value, "success", f"s{i % 2}")
            )
        tx.audit.insert(event(Actor(None, None), Action.AUTHENTICATE, "unauthorized"))
    with store.read() as tx:
        page = tx.audit.page(tenant_id, limit=2, offset=0)
        only = tx.audit.page(tenant_id, limit=10, offset=0, where=AuditFilter(secret_name="s1"))
        reads = tx.audit.page(
            tenant_id, limit=10, offset=0, where=AuditFilter(action="secret.read")
        )
    assert [e.secret_name for e in page.items] == ["s0", "s1"]
    assert page.has_more
    assert page.items[0].id is not None
    assert len(only.items) == 2
    assert len(reads.items) == 5, "an event without a tenant is not the tenant's"


def test_audit_events_before_a_cutoff_are_counted_and_deleted_oldest_first_in_batches(
    store: Store, tenant_id: str
) -> None:
    def at(days_ago: float, tenant: str | None = tenant_id) -> AuditEvent:
        made = event(Actor(tenant, None), Action.READ, "success", secret_name="s")
        return replace(made, occurred_at=NOW - dt.timedelta(days=days_ago))

    cutoff = NOW - dt.timedelta(days=3)
    with store.write() as tx:
        # Five of the tenant's before the cutoff, then one of no tenant older than all of
        # them but written last, then two after the cutoff.
        ids = [tx.audit.insert(at(days)) for days in (10, 9, 8, 7, 6)]
        ids.append(tx.audit.insert(at(20, tenant=None)))
        ids += [tx.audit.insert(at(days)) for days in (1, 0)]
    assert ids == sorted(set(ids)), "insert answers the id the database gave, in order"
    with store.read() as tx:
        assert tx.audit.count_before(cutoff) == 6
        assert tx.audit.count_before(NOW - dt.timedelta(days=30)) == 0

    with store.write() as tx:
        first = tx.audit.delete_before(cutoff, limit=4)
    assert (first.removed, first.count, first.more) == ({tenant_id: 4}, 4, True)
    with store.write() as tx:
        second = tx.audit.delete_before(cutoff, limit=4)
    assert (second.removed, second.more) == ({tenant_id: 1, None: 1}, False)
    with store.write() as tx:
        third = tx.audit.delete_before(cutoff, limit=4)
    assert (third.removed, third.count, third.more) == ({}, 0, False)

    with store.read() as tx:
        left = tx.audit.page(tenant_id, limit=10, offset=0).items
        assert tx.audit.count_before(cutoff) == 0
    assert [e.id for e in left] == ids[:-3:-1], "the events after the cutoff stay"


def test_a_rolled_back_transaction_runs_no_after_commit_callback(store: Store) -> None:
    ran: list[str] = []

    def failing_change() -> None:
        with store.write() as tx:
            tx.after_commit(lambda: ran.append("rolled back"))
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        failing_change()
    with store.write() as tx:
        tx.after_commit(lambda: ran.append("first"))
        tx.after_commit(lambda: ran.append("second"))
        assert ran == [], "not before the commit"
    with store.read() as tx:
        tx.after_commit(lambda: ran.append("read"))
    assert ran == ["first", "second", "read"]


def test_tenant_by_id_finds_the_tenant_by_its_id_and_nothing_else(
    store: Store, tenant_id: str
) -> None:
    # the runner names a tool call's tenant by it (tools keep tenants' SQLite files apart)
    other = ensure_tenant(store, "other")
    with store.read() as tx:
        found = tx.apikeys.tenant_by_id(tenant_id)
        assert found is not None
        assert (found.id, found.name) == (tenant_id, "acme")
        assert found.created_at.tzinfo is not None
        assert tx.apikeys.tenant_by_id(other.id) == other
        assert tx.apikeys.tenant_by_id(new_id()) is None
        assert tx.apikeys.tenant_by_id("acme") is None  # a name is not an id


def test_the_engines_system_database_sits_beside_the_store(store: Store, database_url: str) -> None:
    found = store.system_database_url()
    if database_url.startswith("sqlite:///"):
        assert found == database_url + ".dbos.sqlite"
    else:
        assert found.startswith("postgresql://")
        assert found.rpartition("/")[2] == database_url.rpartition("/")[2]


def test_execution_status_moves_only_from_the_given_statuses(store: Store, tenant_id: str) -> None:
    task = TaskRecord(new_id(), tenant_id, None, None, [{"kind": "transform"}], NOW, NOW)
    run = ExecutionRecord(
        new_id(), tenant_id, task.id, "queued", task.steps, {"q": 1}, None, None, None, NOW, NOW
    )
    sealed = Sealed(1, b"wrapped", b"sealed result")
    with store.write() as tx:
        tx.tasks.insert(task)
        tx.executions.insert(run)
        tx.executions.save_step(StepRecord(run.id, 0, "transform", "running", started_at=NOW))
        tx.executions.save_step(
            StepRecord(run.id, 0, "transform", "succeeded", "out", None, NOW, NOW, sealed)
        )
        assert tx.executions.set_status(run.id, "running", NOW, only_from=("queued",))
        assert not tx.executions.set_status(run.id, "running", NOW, only_from=("queued",))
        assert tx.keyring.sealed_under([1], 10)[0].sealed == sealed
    with store.read() as tx:
        [step] = tx.executions.steps(run.id)
        assert (step.status, step.output, step.sealed) == ("succeeded", "out", sealed)
        assert tx.executions.unfinished_ids(10) == [run.id]
    with store.write() as tx:
        tx.executions.set_status(run.id, "succeeded", NOW, only_from=("running",), output="out")
        tx.executions.wipe_step_results(run.id)
        tx.tasks.delete(task.id)
    with store.read() as tx:
        found = tx.executions.by_id(run.id, tenant_id)
        assert found is not None
        assert (found.status, found.output, found.input) == ("succeeded", "out", {"q": 1})
        assert tx.executions.steps(run.id)[0].sealed is None
        assert tx.executions.by_id(run.id, "another tenant") is None
        assert tx.tasks.by_id(tenant_id, task.id) is None
        assert tx.executions.unfinished_ids(10) == []


# -- listing: pages walked in an index, the sparsest filter entry driving ----------------------
# Prefixes whose code-point order differs from any case-insensitive or locale order.
_PREFIXES = ("a", "A", "z", "Z", "é", "É", "日", "_", "0", "~")
RARE = ("tag", "rare")
TWIN = ("twin", "yes")  # on exactly the rare secrets: a tie with RARE at every depth
MID = ("half", "yes")


def _entry(pair: tuple[str, str]) -> bytes:
    return metadata_entry_hash(*pair)


def _common_hashed_first() -> tuple[str, str]:
    """An entry every secret holds, whose hash sorts before the others': the entry a walk
    in hash order would be driven by, though it filters out nothing."""
    others = min(_entry(RARE), _entry(TWIN), _entry(MID))
    candidates = (("env", f"prod{j}") for j in range(1000))
    return next(pair for pair in candidates if _entry(pair) < others)


COMMON = _common_hashed_first()


def _populate(store: Store, tenant_id: str, count: int) -> dict[str, dict[str, str]]:
    """``count`` secrets, inserted out of name order: all COMMON, every second MID, every
    seventh RARE and TWIN. Returns name -> metadata."""
    made: dict[str, dict[str, str]] = {}
    with store.write() as tx:
        for i in range(count):
            name = f"{_PREFIXES[i % len(_PREFIXES)]}{(i * 37) % 101:03d}"
            metadata = dict([COMMON])
            if i % 2 == 0:
                metadata.update([MID])
            if i % 7 == 0:
                metadata.update([RARE, TWIN])
            tx.secrets.insert(secret(tenant_id, name, **metadata))
            made[name] = metadata
    return made


def test_every_page_of_every_filter_matches_a_scan(store: Store, tenant_id: str) -> None:
    made = _populate(store, tenant_id, 60)
    filters: list[dict[str, str]] = [
        {},
        dict([COMMON]),
        dict([RARE]),
        dict([COMMON, RARE]),
        dict([RARE, COMMON]),
        dict([COMMON, MID, RARE]),
        dict([MID, TWIN]),
        dict([COMMON, ("env", "nowhere")]),
    ]
    for wanted in filters:
        expected = sorted(n for n, m in made.items() if wanted.items() <= m.items())
        # Every offset at one limit, and the edges (first, last, just past the end) at 1.
        edges = {0, len(expected) - 1, len(expected), len(expected) + 1} - {-1}
        pages = [(7, offset) for offset in range(len(expected) + 2)] + [(1, o) for o in edges]
        with store.read() as tx:
            for limit, offset in pages:
                page = tx.secrets.page(
                    tenant_id, limit=limit, offset=offset, metadata_filter=wanted
                )
                assert [s.name for s in page.items] == expected[offset : offset + limit]
                assert page.has_more == (offset + limit < len(expected)), (wanted, offset)
            deep = tx.secrets.page(tenant_id, limit=5, offset=10**9, metadata_filter=wanted)
        assert deep.items == []
        assert not deep.has_more
    # The rows themselves come back whole, not just their names.
    with store.read() as tx:
        [first] = tx.secrets.page(tenant_id, limit=1, offset=0, metadata_filter=dict([RARE])).items
    assert first.metadata == made[first.name]
    assert first.created_at == NOW


def test_the_sparsest_entry_drives_whatever_its_hash(store: Store, tenant_id: str) -> None:
    _populate(store, tenant_id, 60)
    # Another tenant's secrets, all of them RARE, must not make RARE look common here.
    other = ensure_tenant(store, "other").id
    for i in range(50):
        add(store, secret(other, f"n{i:02d}", **dict([RARE, TWIN])))
    by_hash = sorted([_entry(COMMON), _entry(MID), _entry(RARE)])
    with store.read() as tx:
        secrets = tx.secrets
        assert isinstance(secrets, SQLSecretStorage)
        for depth in (5, 100, 10_000):
            chosen = sparsest_entry(secrets.conn, tenant_id, by_hash, depth)
            assert by_hash[chosen] == _entry(RARE), depth
        # An entry no secret holds drives at once, whatever else is asked for.
        with_nowhere = sorted([*by_hash, _entry(("env", "nowhere"))])
        chosen = sparsest_entry(secrets.conn, tenant_id, with_nowhere, 100)
        assert with_nowhere[chosen] == _entry(("env", "nowhere"))
        # Equally sparse entries: the lower hash, so the plan does not flip between calls.
        twins = sorted([_entry(COMMON), _entry(RARE), _entry(TWIN)])
        for depth in (5, 100):
            chosen = sparsest_entry(secrets.conn, tenant_id, twins, depth)
            assert twins[chosen] == min(_entry(RARE), _entry(TWIN)), depth


def test_multi_entry_filters_stay_within_the_tenant(store: Store, tenant_id: str) -> None:
    # Here COMMON and RARE have one holder each, so COMMON (the lower hash) drives and RARE
    # is checked by name: the other tenant's "x" and "y" hold RARE and must not count.
    other = ensure_tenant(store, "other").id
    mine = secret(tenant_id, "x", **dict([COMMON]))
    add(store, mine)
    add(store, secret(tenant_id, "z", **dict([RARE])))
    add(store, secret(other, "x", **dict([COMMON, RARE])))
    add(store, secret(other, "y", **dict([COMMON, RARE])))
    both = dict([COMMON, RARE])
    assert names(store, tenant_id, metadata_filter=both) == []
    assert names(store, other, metadata_filter=both) == ["x", "y"]
    # After a rename onto another name the other tenant uses, still nothing here.
    with store.write() as tx:
        tx.secrets.update(replace(mine, name="y"))
    assert names(store, tenant_id, metadata_filter=dict([COMMON])) == ["y"]
    assert names(store, tenant_id, metadata_filter=both) == []
    assert names(store, tenant_id, metadata_filter=dict([RARE, COMMON])) == []
    # The rows are this tenant's own, not the other's of the same name.
    with store.read() as tx:
        for wanted in ({}, dict([COMMON])):
            page = tx.secrets.page(tenant_id, limit=10, offset=0, metadata_filter=wanted)
            assert {s.tenant_id for s in page.items} == {tenant_id}
            assert page.items[-1 if wanted else 0].id == mine.id
