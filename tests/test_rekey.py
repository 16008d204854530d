"""Rekeying to a new master key, online; retired KEKs refused and destroyed.

What an operator relies on and an attacker would try, on SQLite and PostgreSQL:

- after a rekey every value reads with the new key alone, API keys still authenticate
  (the HMAC key moved, it did not change), and the old key is refused at unseal;
- a process started with only the new key mid-rekey unseals through the copies;
- the rekey does not finish while a live process holds only the old key (it would be left
  unable to unseal), and does once that process has read the new key from its key file;
- a rekey killed at any point converges when run again, with one new key, never two;
- KEK rotation waits its turn; a retired KEK opens nothing, and is destroyed only drained.

The e2e tests run the real commands against a real server under load, SIGKILLing the
rekey at seeded random points (set ``REKEY_SEED`` to replay a run).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import random
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.app import create_app
from strongroom.server.auth import Caller
from strongroom.server.crypto import Barrier, IntegrityFailure, WrongMasterKey
from strongroom.server.crypto.masterkey import key_id, read_key_file, write_key_file
from strongroom.server.crypto.rekey import (
    AnotherRekey,
    HoldersBehind,
    KeyFileRollout,
    RekeyRefused,
    RekeyRun,
    abort,
    begin,
    finish,
    in_progress,
)
from strongroom.server.crypto.rotation import (
    RotationRefused,
    destroy_retired,
    retired_keks,
    rotate,
)
from strongroom.server.secret_values import decrypt_value
from strongroom.server.services import Services, open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import Store, schema
from strongroom.server.storage.sql import SQLStore

from .conftest import MASTER_KEY
from .support import STRONGROOM, run_cli, start_server, wait_until

OLD = base64.b64decode(MASTER_KEY)
NEW = b"n" * 32
NEWER = b"w" * 32
SEED = int(os.environ.get("REKEY_SEED", "20261206"))
Values = dict[str, str]


# -- helpers ----------------------------------------------------------------------------------
def settings_for(database_url: str, key_file: Path | None = None, key: bytes = OLD) -> Settings:
    """A process's settings: its key from ``key_file`` (reread on each heartbeat), or
    ``key`` in the variable."""
    return Settings(
        database_url=database_url,
        master_key=None if key_file else SecretStr(base64.b64encode(key).decode()),
        master_key_file=key_file,
        rate_limit_per_key="off",
        rate_limit_per_address="off",
    )


def engine_of(store: Store) -> sa.Engine:
    assert isinstance(store, SQLStore)
    return store.engine


@contextlib.contextmanager
def opened(settings: Settings) -> Iterator[Services]:
    services = open_services(settings)
    try:
        yield services
    finally:
        services.close()


def caller_of(services: Services) -> Caller:
    _, record = create_api_key(services.store, services.barrier, "default")
    return Caller(record.tenant_id, record.tenant_name, record.id, record.scopes)


def populate(services: Services, count: int = 12) -> tuple[Caller, Values]:
    """``count`` secrets, across two KEKs (one retired by a rotation) and the new one."""
    caller = caller_of(services)
    values: Values = {}
    for i in range(count):
        values[f"s_{i:02d}"] = f"value-{i}-{os.urandom(6).hex()}"
        services.secrets.create(caller, f"s_{i:02d}", values[f"s_{i:02d}"])
        if i == count // 2:
            rotate(services.store, services.barrier)
    return caller, values


def assert_readable(services: Services, caller: Caller, values: Values) -> None:
    for name, value in values.items():
        assert services.secrets.get(caller, name).value == value, name


def master_rows(store: Store) -> dict[str, tuple[bytes, bytes | None]]:
    """Every ciphertext under the master key, and its copy under the incoming one."""
    with engine_of(store).connect() as conn:
        found = {
            f"barrier {r.id}": (bytes(r.verifier), r.next_sealed)
            for r in conn.execute(sa.select(schema.barrier))
        }
        found |= {
            f"kek {r.id}": (bytes(r.wrapped_key), r.wrapped_next)
            for r in conn.execute(sa.select(schema.keyring))
        }
    return found


def sealed_rows(store: Store) -> list[tuple[object, ...]]:
    v = schema.secret_versions.c
    with engine_of(store).connect() as conn:
        stmt = sa.select(v.secret_id, v.version, v.kek_id, v.wrapped_dek, v.ciphertext)
        return [tuple(r) for r in conn.execute(stmt.order_by(v.secret_id, v.version))]


def age_holders(store: Store, seconds: float) -> None:
    """Every holder last seen ``seconds`` earlier: as if they had stopped beating then."""
    h = schema.barrier_holders.c
    with engine_of(store).begin() as conn:
        for process_id, seen in conn.execute(sa.select(h.process_id, h.seen_at)).all():
            conn.execute(
                schema.barrier_holders.update()
                .where(h.process_id == process_id)
                .values(seen_at=seen - dt.timedelta(seconds=seconds))
            )


def holder_ids(store: Store, barrier: Barrier) -> tuple[str, ...]:
    with store.read() as tx:
        [mine] = [h for h in tx.keyring.holders() if h.process_id == barrier.process_id]
    return mine.master_key_ids


def rekey_in_progress(store: Store) -> bool:
    with store.read() as tx:
        return in_progress(tx)


GONE_AFTER = 60.0  # in-process holders never go stale by themselves within a test


# -- the whole rekey, in-process --------------------------------------------------------------
def test_rekey_moves_the_barrier_and_keks_to_the_new_key(database_url: str) -> None:
    with opened(settings_for(database_url)) as services:
        caller, values = populate(services)
        api_key, _ = create_api_key(services.store, services.barrier, "default")
        before_master, before_sealed = master_rows(services.store), sealed_rows(services.store)

        begin(services.store, services.barrier, NEW, batch_size=1)
        # Phase 1 only adds copies: every row keeps its own ciphertext meanwhile.
        during = master_rows(services.store)
        assert {k: v[0] for k, v in during.items()} == {k: v[0] for k, v in before_master.items()}
        assert all(copy is not None for _, copy in during.values())
        assert_readable(services, caller, values)

        finish(services.store, services.barrier, NEW, gone_after=GONE_AFTER)
        after = master_rows(services.store)
        assert set(after) == set(before_master)
        for name, (sealed, copy) in after.items():
            assert copy is None, name
            assert sealed == during[name][1], name  # the copy became the row's own
            assert sealed != before_master[name][0], name
        # Sealed data is under the KEKs, which did not change: not one byte of it moved.
        assert sealed_rows(services.store) == before_sealed
        assert not rekey_in_progress(services.store)

    # The new key alone opens everything, and the API key issued before still works.
    with opened(settings_for(database_url, key=NEW)) as fresh:
        assert fresh.barrier.key_ids == (key_id(NEW),)
        assert_readable(fresh, caller, values)
        with TestClient(
            create_app(fresh, run_engine=False), headers={"Authorization": f"Bearer {api_key}"}
        ) as client:
            answer = client.get("/v1/secrets/s_00")
            assert answer.status_code == 200, answer.text
            assert answer.json()["value"] == values["s_00"]
    # The old key opens nothing any more.
    with pytest.raises(WrongMasterKey, match="master key does not match") as refused:
        open_services(settings_for(database_url, key=OLD))
    assert key_id(OLD) in str(refused.value)
    assert MASTER_KEY not in str(refused.value)


def test_a_process_with_only_the_new_key_unseals_once_the_copies_are_complete(
    database_url: str,
) -> None:
    with opened(settings_for(database_url)) as services:
        caller, values = populate(services)

        class Interrupted(Exception):
            pass

        def interrupt(done: int, total: int) -> None:
            raise Interrupted

        with pytest.raises(Interrupted):
            begin(services.store, services.barrier, NEW, batch_size=1, on_batch=interrupt)
        # Copies under way, the verifier's not yet: the new key is no key yet.
        with pytest.raises(WrongMasterKey):
            open_services(settings_for(database_url, key=NEW))

        begin(services.store, services.barrier, NEW)
        with opened(settings_for(database_url, key=NEW)) as newcomer:
            assert newcomer.barrier.key_ids == (key_id(NEW),)
            assert_readable(newcomer, caller, values)
            # What it writes, the old-key process reads, and the other way round.
            newcomer.secrets.create(caller, "from_new", "written with the new key")
            services.secrets.create(caller, "from_old", "written with the old key")
            assert services.secrets.get(caller, "from_new").value == "written with the new key"
            assert newcomer.secrets.get(caller, "from_old").value == "written with the old key"
            # The old-key process is behind; the new-key one is not (nor this process,
            # which holds both).
            services.barrier.holds(NEW)
            services.barrier.refresh()
            finish(services.store, services.barrier, NEW, gone_after=GONE_AFTER)
            assert newcomer.secrets.get(caller, "s_01").value == values["s_01"]


def test_a_copy_under_a_planted_key_is_never_preferred(database_url: str) -> None:
    """An attacker who can write the database (not knowing the master key) plants copies
    under a key of their own: a process holding the current key reads only the current
    copies, and a rekey to another key refuses to build on the planted ones."""
    with opened(settings_for(database_url)) as services:
        caller, values = populate(services, count=4)
        planted = b"p" * 32
        begin(services.store, services.barrier, planted)  # as if the attacker had done it
        with opened(settings_for(database_url, key=OLD)) as victim:
            assert victim.barrier.key_ids == (key_id(OLD),)
            assert_readable(victim, caller, values)
        with pytest.raises(AnotherRekey, match="rekey to another master key"):
            begin(services.store, services.barrier, NEW)
        assert abort(services.store, services.barrier, gone_after=GONE_AFTER)
        assert not rekey_in_progress(services.store)


def test_finish_waits_for_every_live_process_to_hold_the_new_key(
    database_url: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "server.key"
    write_key_file(key_file, [OLD])
    with (
        opened(settings_for(database_url)) as admin,
        opened(settings_for(database_url, key_file)) as server,
    ):
        caller, values = populate(admin, count=4)
        admin.barrier.holds(NEW)
        begin(admin.store, admin.barrier, NEW)

        # The server holds only the old key: finishing would strand it.
        with pytest.raises(HoldersBehind) as behind:
            finish(admin.store, admin.barrier, NEW, gone_after=GONE_AFTER)
        message = str(behind.value)
        assert f"pid {os.getpid()}" in message
        assert key_id(OLD) in message and key_id(NEW) in message
        assert "last seen" in message and "STRONGROOM_MASTER_KEY_FILE" in message
        assert [h.holder.process_id for h in behind.value.holders] == [server.barrier.process_id]
        assert rekey_in_progress(admin.store)

        # Its key file gets the new key; its heartbeat rereads the file and says so.
        write_key_file(key_file, [OLD, NEW])
        server.heartbeat.interval = 0.05
        server.heartbeat.start()
        wait_until(
            lambda: key_id(NEW) in holder_ids(server.store, server.barrier),
            "the server's heartbeat picks up the new key",
        )
        finish(admin.store, admin.barrier, NEW, gone_after=GONE_AFTER)
        server.heartbeat.stop()

        # It still serves, and unseals again (a rotation's new KEK) with the new key.
        assert_readable(server, caller, values)
        rotate(admin.store, admin.barrier)
        server.secrets.create(caller, "after_rotation", "under the newest KEK")
        assert admin.secrets.get(caller, "after_rotation").value == "under the newest KEK"
        # Its next beat drops the old key, which opens nothing now.
        server.barrier.refresh()
        assert holder_ids(server.store, server.barrier) == (key_id(NEW),)


def test_a_gone_process_does_not_hold_the_rekey_back(database_url: str) -> None:
    with opened(settings_for(database_url)) as admin:
        crashed = Barrier(OLD, admin.store)  # unsealed, then never beat again
        crashed.unseal()
        begin(admin.store, admin.barrier, NEW)
        with pytest.raises(HoldersBehind):
            finish(admin.store, admin.barrier, NEW, gone_after=GONE_AFTER)
        age_holders(admin.store, GONE_AFTER + 1)
        finish(admin.store, admin.barrier, NEW, gone_after=GONE_AFTER)
        with admin.store.read() as tx:
            assert crashed.process_id not in {h.process_id for h in tx.keyring.holders()}


def test_rotation_is_refused_during_a_rekey(database_url: str) -> None:
    with opened(settings_for(database_url)) as services:
        caller, values = populate(services, count=4)
        begin(services.store, services.barrier, NEW, batch_size=1)
        with pytest.raises(RotationRefused, match="rekey is in progress"):
            rotate(services.store, services.barrier)
        with services.store.read() as tx:
            assert sorted(e.state for e in tx.keyring.entries()) == ["active", "retired"]
        assert abort(services.store, services.barrier, gone_after=GONE_AFTER)
        assert rotate(services.store, services.barrier).active_kek_id == 3
        assert_readable(services, caller, values)


def test_abort_is_refused_while_a_process_holds_only_the_new_key(database_url: str) -> None:
    with opened(settings_for(database_url)) as admin:
        caller, values = populate(admin, count=4)
        begin(admin.store, admin.barrier, NEW)
        with opened(settings_for(database_url, key=NEW)) as newcomer:
            with pytest.raises(HoldersBehind, match="cannot abandon the rekey"):
                abort(admin.store, admin.barrier, gone_after=GONE_AFTER)
            assert_readable(newcomer, caller, values)
        assert abort(admin.store, admin.barrier, gone_after=GONE_AFTER)
        assert not abort(admin.store, admin.barrier, gone_after=GONE_AFTER)
        assert all(copy is None for _, copy in master_rows(admin.store).values())
        with pytest.raises(WrongMasterKey):
            open_services(settings_for(database_url, key=NEW))
        assert_readable(admin, caller, values)


def test_a_key_file_line_that_opens_nothing_is_not_guessed_at(
    database_url: str, tmp_path: Path
) -> None:
    """A second key in the file, put there by hand (or a retired one left behind): the
    command will not guess whether to rekey to it, nor drop it silently."""
    key_file = tmp_path / "master.key"
    write_key_file(key_file, [OLD, NEW])
    with opened(settings_for(database_url, key_file)) as services:
        assert services.barrier.key_ids == (key_id(OLD),)
        run = RekeyRun(
            services.store, services.barrier, read_key_file(key_file), KeyFileRollout(key_file)
        )
        with pytest.raises(RekeyRefused, match=f"id {key_id(NEW)}, which opens nothing"):
            run.run()
        assert read_key_file(key_file) == [OLD, NEW]
        assert not rekey_in_progress(services.store)
        # Given as the new key, it is one.
        run.new_key = NEW
        report = run.run()
        assert (report.old_key_id, report.new_key_id) == (key_id(OLD), key_id(NEW))
        assert read_key_file(key_file) == [NEW]
        # Run again with the same key: nothing left to do.
        assert run.run().already_finished


# -- killed at every point ----------------------------------------------------------------------
class Killed(BaseException):
    """The rekeying process dying: not an Exception, so nothing on the way catches it."""


def test_a_rekey_killed_at_each_point_converges_when_run_again(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each step of the run (a file replaced, a batch committed, a phase done), killed
    just before it and then just after it; the run again always ends with one new key,
    in the key file alone, and everything readable with it."""
    key_file = tmp_path / "master.key"
    write_key_file(key_file, [OLD])
    rollout = KeyFileRollout(key_file)
    steps = 0
    kill_at: int | None = None

    def step() -> None:
        nonlocal steps
        steps += 1
        if steps == kill_at:
            raise Killed

    real_replace = os.replace

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        step()  # killed with the temporary file written, before the rename
        real_replace(source, target)
        step()

    # write_key_file renames with os.replace
    monkeypatch.setattr(os, "replace", replace)

    def run_once(server: Services) -> None:
        """One rekey run, as the command makes it, in a process of its own; killed, it
        leaves its holder row behind, as a killed process does."""
        admin = open_services(settings_for(database_url, key_file))
        try:
            RekeyRun(
                admin.store,
                admin.barrier,
                configured=read_key_file(key_file),
                rollout=rollout,
                batch_size=1,
                gone_after=GONE_AFTER,
                wait=60,
                poll=0,
                on_event=lambda _: step(),
                on_batch=lambda done, total: step(),
                # The server's heartbeat, beating each time the rekey looks.
                on_waiting=lambda holders, left: server.barrier.refresh(),
            ).run()
        except Killed:
            admin.store.close()
            # Its row counts as gone after a few heartbeat intervals; that long later:
            age_holders(admin.store, GONE_AFTER + 1)
            raise
        admin.close()

    with opened(settings_for(database_url, key_file)) as server:
        caller, values = populate(server, count=4)
        kill_at, steps = None, 0
        run_once(server)  # a clean run, to count its steps
        total = steps
        assert total >= 8
        for kill_at in range(1, total + 1):
            before = read_key_file(key_file)[0]
            steps = 0
            with pytest.raises(Killed):
                run_once(server)
            made = rollout.pending_key()  # the new key, if the killed run got to write it
            steps, kill_at_was, kill_at = 0, kill_at, None
            run_once(server)
            # Converged: the file holds one key, the rollout's file is gone, and that key
            # (a new one: one per rollout, however often killed) alone opens everything.
            [now] = read_key_file(key_file)
            assert now != before, kill_at_was
            assert made is None or now == made, kill_at_was
            assert not rollout.next_file.exists(), kill_at_was
            assert not rekey_in_progress(server.store), kill_at_was
            server.barrier.refresh()
            assert holder_ids(server.store, server.barrier) == (key_id(now),)
            with pytest.raises(WrongMasterKey):
                open_services(settings_for(database_url, key=before))
            with opened(settings_for(database_url, key=now)) as fresh:
                assert_readable(fresh, caller, values)


# -- retired KEKs -------------------------------------------------------------------------------
def test_a_retired_kek_is_refused_and_destroyed_once_drained(database_url: str) -> None:
    with opened(settings_for(database_url)) as services:
        caller = caller_of(services)
        services.secrets.create(caller, "kept", "value under KEK 1")
        [restored] = sealed_rows(services.store)  # a backup of the row, under KEK 1
        rotate(services.store, services.barrier)
        with services.store.read() as tx:
            assert {e.id: e.state for e in tx.keyring.entries()} == {1: "retired", 2: "active"}

        # The row put back as the backup had it: KEK 1 drained, so it was not rotation's.
        v = schema.secret_versions.c
        with engine_of(services.store).begin() as conn:
            conn.execute(
                schema.secret_versions.update()
                .where(v.secret_id == restored[0], v.version == restored[1])
                .values(kek_id=restored[2], wrapped_dek=restored[3])
            )
        with services.store.read() as tx:
            stored = tx.secrets.version(str(restored[0]), 1)
        assert stored is not None
        started_now = Barrier(OLD, services.store)
        for keyring in (services.barrier.keyring, started_now.unseal()):
            with pytest.raises(IntegrityFailure, match="retired KEK 1"):
                decrypt_value(
                    keyring,
                    stored,
                    secret_tenant_id=caller.tenant_id,
                    caller_tenant_id=caller.tenant_id,
                )
        started_now.release()
        # Rotation does not launder it under the active KEK either (it drains KEK 2).
        assert rotate(services.store, services.barrier).rewrapped == 0

        # Not destroyed while it wraps a data key: counted, and kept; KEK 2 goes.
        with services.store.read() as tx:
            assert retired_keks(tx).still_wrapping == {1: 1}
        report = destroy_retired(services.store)
        assert (report.drained, report.still_wrapping) == ([2], {1: 1})
        with engine_of(services.store).begin() as conn:
            conn.execute(schema.secret_versions.delete().where(v.secret_id == restored[0]))
            conn.execute(schema.secrets.delete().where(schema.secrets.c.id == restored[0]))

        # Drained: destroyed. Its row stays (its id is never reused), its material goes.
        assert destroy_retired(services.store).drained == [1]
        with services.store.read() as tx:
            [one, two, three] = tx.keyring.entries()
        assert (one.state, one.wrapped_key, one.wrapped_next) == ("destroyed", b"", None)
        assert (two.state, three.state) == ("destroyed", "active")
        assert destroy_retired(services.store).drained == []
        # A server starts on it, and a rekey leaves destroyed KEKs alone.
        with opened(settings_for(database_url)) as restarted:
            restarted.secrets.create(caller, "after", "under KEK 3")
            begin(restarted.store, restarted.barrier, NEW)
            services.barrier.holds(NEW)
            services.barrier.refresh()
            finish(restarted.store, restarted.barrier, NEW, gone_after=GONE_AFTER)
        with opened(settings_for(database_url, key=NEW)) as rekeyed:
            assert rekeyed.secrets.get(caller, "after").value == "under KEK 3"


# -- e2e: the commands, a real server, load and SIGKILL ----------------------------------------
def server_env(database_url: str, key_file: Path) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY_FILE": str(key_file),
        "STRONGROOM_BARRIER_HEARTBEAT_SECONDS": "0.2",
        "STRONGROOM_RATE_LIMIT_PER_KEY": "off",
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "off",
    }


class Load:
    """Reads and writes through HTTP from a thread until stopped, recording every answer
    that was not a success and the value each secret was last acknowledged with."""

    def __init__(self, base_url: str, api_key: str, values: Values, seed: int) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )
        self.values = dict(values)
        self.failures: list[str] = []
        self.requests = 0
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            name = self.rng.choice(sorted(self.values))
            try:
                if self.rng.random() < 0.3:
                    value = f"written-{os.urandom(6).hex()}"
                    answer = self.client.patch(f"/v1/secrets/{name}", json={"value": value})
                    if answer.status_code == 200:
                        self.values[name] = value
                elif self.rng.random() < 0.1:
                    name = f"new_{len(self.values):04d}"
                    answer = self.client.post("/v1/secrets", json={"name": name, "value": name})
                    if answer.status_code == 201:
                        self.values[name] = name
                else:
                    answer = self.client.get(f"/v1/secrets/{name}")
                    if answer.status_code == 200 and answer.json()["value"] != self.values[name]:
                        self.failures.append(f"{name}: read a value never written")
                if answer.status_code >= 300:
                    self.failures.append(f"{answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
            self.requests += 1

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.close()


def rekey_killed(env: dict[str, str], rng: random.Random) -> str:
    """Run ``master-key rekey`` and SIGKILL it at a random point: after a random number of
    its progress lines (each printed once its step is done, the next step under way), or
    after a random time. Returns what happened."""
    process = subprocess.Popen(
        [STRONGROOM, "master-key", "rekey", "--batch-size", "1", "--wait", "30"],
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    lines = 0
    try:
        if rng.random() < 0.3:
            seconds = rng.uniform(0.3, 2.0)
            after = f"{seconds:.2f} s"
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=seconds)  # it may finish first: nothing to kill
        else:
            wanted = rng.randint(1, 9)
            for _ in process.stderr:
                lines += 1
                if lines >= wanted:
                    break
            after = f"{lines} lines"
        process.send_signal(signal.SIGKILL)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    return f"killed after {after} (exit {code})"


@pytest.mark.e2e
def test_rekey_under_load_killed_at_random_points(
    database_url: str, tmp_path: Path, backend: str
) -> None:
    rng = random.Random(f"{SEED}-{backend}")
    key_file = tmp_path / "master.key"
    write_key_file(key_file, [OLD])
    env = server_env(database_url, key_file)
    with opened(settings_for(database_url, key_file)) as services:
        _, values = populate(services, count=30)
        api_key, _ = create_api_key(services.store, services.barrier, "default")

    server = start_server(tmp_path, env)
    try:
        with Load(server.base_url, api_key, values, SEED) as load:
            wait_until(lambda: load.requests > 20, "the load is under way")
            outcomes = [rekey_killed(env, rng) for _ in range(3)]
            for _ in range(5):
                done = run_cli(["master-key", "rekey", "--batch-size", "1", "--wait", "30"], env)
                if done.returncode == 0:
                    break
                outcomes.append(f"{done.returncode}: {done.stderr[-300:]}")
            assert done.returncode == 0, (outcomes, done.stderr)
            assert "rekeyed: master key id" in done.stderr or "nothing left" in done.stderr
            requests = load.requests
            wait_until(lambda: load.requests > requests + 20, "the load goes on after")
        assert load.failures == [], (load.failures[:5], outcomes, SEED)
        assert server.process.poll() is None
    finally:
        server.stop()
    assert "Traceback" not in server.log()

    [new] = read_key_file(key_file)
    assert new != OLD and not KeyFileRollout(key_file).next_file.exists()
    for secret in (MASTER_KEY, base64.b64encode(new).decode()):
        assert secret not in done.stdout + done.stderr + server.log()

    # Restarted with the new key alone (in the variable), every value reads.
    restarted = start_server(
        tmp_path,
        {
            **{k: v for k, v in env.items() if k != "STRONGROOM_MASTER_KEY_FILE"},
            "STRONGROOM_MASTER_KEY": base64.b64encode(new).decode(),
        },
    )
    try:
        with httpx.Client(
            base_url=restarted.base_url, headers={"Authorization": f"Bearer {api_key}"}
        ) as client:
            for name, value in load.values.items():
                answer = client.get(f"/v1/secrets/{name}")
                assert answer.status_code == 200, answer.text
                assert answer.json()["value"] == value, name
    finally:
        restarted.stop()
    # The old key is refused.
    old_env = {"STRONGROOM_DATABASE_URL": database_url, "STRONGROOM_MASTER_KEY": MASTER_KEY}
    refused = run_cli(["master-key", "status"], old_env)
    assert refused.returncode == 2
    assert "master key does not match" in " ".join(refused.stderr.split())


@pytest.mark.e2e
def test_rekey_of_the_dev_key_and_a_server_that_cannot_pick_it_up(tmp_path: Path) -> None:
    """`make run`, then the commands in the same directory: they find data/master.key.
    A second server whose key is in a variable cannot reread it: the rekey names it
    (exit 75) until it is gone; `--abort` then puts everything back."""
    fast = {"STRONGROOM_BARRIER_HEARTBEAT_SECONDS": "0.2"}
    dev = start_server(tmp_path, fast, extra_args=("--dev",))
    try:
        status = run_cli(["master-key", "status"], fast, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert "using the development master key in data/master.key" in status.stderr
        assert "active" in status.stdout and "rekey: none under way" in status.stdout

        old = read_key_file(tmp_path / "data" / "master.key")
        # This test's process holds the barrier open with the key in a variable, which it
        # cannot reread: it beats, but never holds the new key.
        pinned = open_services(
            Settings(
                database_url=f"sqlite:///{tmp_path / 'data' / 'strongroom.db'}",
                master_key=SecretStr(base64.b64encode(old[0]).decode()),
                barrier_heartbeat_seconds=0.2,
            )
        )
        pinned.heartbeat.start()
        try:
            held = run_cli(["master-key", "rekey", "--wait", "1"], fast, cwd=tmp_path)
            assert held.returncode == 75, held.stderr
            stderr = " ".join(held.stderr.split())
            message = stderr[stderr.index("error: ") :]
            assert f"pid {os.getpid()}" in message, message
            # The dev server reread its key file: only a while in the waiting lines.
            assert f"pid {dev.process.pid}" not in message, stderr
            assert "STRONGROOM_MASTER_KEY_FILE" in message
            assert len(read_key_file(tmp_path / "data" / "master.key")) == 2
            holders = run_cli(["master-key", "status"], fast, cwd=tmp_path)
            assert "rekey: under way" in holders.stdout, holders.stdout
            rotation = run_cli(["master-key", "rotate"], fast, cwd=tmp_path)
            assert rotation.returncode == 75, rotation.stderr
            assert "rekey is in progress" in " ".join(rotation.stderr.split())
        finally:
            pinned.close()
        aborted = run_cli(["master-key", "rekey", "--abort"], fast, cwd=tmp_path)
        assert aborted.returncode == 0, aborted.stderr
        assert read_key_file(tmp_path / "data" / "master.key") == old
        assert not (tmp_path / "data" / "master.key.next").exists()

        done = run_cli(["master-key", "rekey", "--wait", "20"], fast, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        [new] = read_key_file(tmp_path / "data" / "master.key")
        assert new != old[0]
        assert f"-> {key_id(new)}" in done.stderr
        assert dev.process.poll() is None
        # The server unseals again (a rotation's new KEK) with the key it reread.
        rotated = run_cli(["master-key", "rotate"], fast, cwd=tmp_path)
        assert rotated.returncode == 0, rotated.stderr
        with httpx.Client(base_url=dev.base_url) as client:
            assert client.get("/healthz").status_code == 200
        # KEK 1 is retired and drained: destroyed only when confirmed.
        unasked = run_cli(["master-key", "destroy-retired"], fast, cwd=tmp_path)
        assert unasked.returncode == 2 and "--yes" in unasked.stderr, unasked.stderr
        destroyed = run_cli(["master-key", "destroy-retired", "--yes"], fast, cwd=tmp_path)
        assert destroyed.returncode == 0, destroyed.stderr
        assert "destroyed retired KEKs: 1" in destroyed.stderr
        status = run_cli(["master-key", "status", "--json"], fast, cwd=tmp_path)
        assert [k["state"] for k in json.loads(status.stdout)] == ["destroyed", "active"]
        holders = run_cli(["master-key", "holders", "--json"], fast, cwd=tmp_path)
        state = json.loads(holders.stdout)
        assert (state["current_key_id"], state["rekey_in_progress"]) == (key_id(new), False)
        live = [(h["pid"], h["master_key_ids"]) for h in state["holders"] if h["live"]]
        assert live == [(dev.process.pid, [key_id(new)])], state
    finally:
        dev.stop()
    assert "no master key this process holds opens" not in dev.log()
