"""``strongroom backup`` and ``strongroom restore``, on SQLite and PostgreSQL.

The round trip runs the commands as processes against a real server: a backup taken
while a writer keeps creating secrets over HTTP, restored into a fresh database and
served again. Every value acknowledged before the backup began comes back, the writer's
secrets come back as a prefix of what it wrote (one commit's database), and versions,
metadata, a deleted secret in its recovery window and the API key survive. Every byte of
the backup (its members, and for PostgreSQL the SQL the dump holds) is scanned for the
master key and the secret values. A wrong master key, a damaged backup and a database in
use are refused, each saying why.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
import stat
import subprocess
import tarfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.backup import (
    BackupError,
    describe_database,
    pg_command_line,
    restore_backup,
)
from strongroom.server.services import open_services
from strongroom.server.settings import Settings
from strongroom.server.storage import open_store

from .conftest import POSTGRES_URL, truncate_postgres
from .support import (
    STRONGROOM,
    ServerProcess,
    canary,
    encodings,
    find_leaks,
    run_cli,
    start_server,
    wait_until,
)
from .tmpfs import tmpfs_or_fail

# The writer stops by itself before the list it is checked with needs a second page.
MAX_WRITES = 900

NewDatabase = Callable[[], str]


@pytest.fixture
def new_database(backend: str, tmp_path: Path) -> Iterator[NewDatabase]:
    """Fresh, empty databases of the test's backend (PostgreSQL: created, then dropped)."""
    made: list[str] = []

    def make() -> str:
        name = f"strongroom_restore_{os.getpid()}_{secrets.token_hex(4)}"
        made.append(name)
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / name / 'strongroom.db'}"
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return f"{POSTGRES_URL.rpartition('/')[0]}/{name}"

    yield make
    if backend == "postgres":
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            for name in made:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def key_file(directory: Path, key: bytes) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "master.key"
    path.write_text(base64.b64encode(key).decode() + "\n")
    path.chmod(0o600)
    return path


def server_env(url: str, master_key_file: Path) -> dict[str, str]:
    return {
        "STRONGROOM_DATABASE_URL": url,
        "STRONGROOM_MASTER_KEY_FILE": str(master_key_file),
        "STRONGROOM_RATE_LIMIT_PER_KEY": "off",
        "STRONGROOM_RATE_LIMIT_PER_ADDRESS": "off",
    }


def issue_key(url: str, master_key: bytes) -> str:
    """An API key of tenant ``default`` (migrating and unsealing the database first)."""
    settings = Settings(
        database_url=url, master_key=SecretStr(base64.b64encode(master_key).decode())
    )
    services = open_services(settings)
    try:
        key, _ = create_api_key(services.store, services.barrier, "default")
    finally:
        services.close()
    return key


class Writer:
    """Creates secrets over HTTP, one after another, until stopped: which were
    acknowledged, in order."""

    def __init__(self, base_url: str, key: str) -> None:
        self.client = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
        )
        self.acked: list[tuple[str, str]] = []
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for i in range(MAX_WRITES):
            if self.stop.is_set():
                return
            name, value = f"w{i:04d}", canary(f"w{i:04d}")
            answer = self.client.post("/v1/secrets", json={"name": name, "value": value})
            if answer.status_code != 201:
                self.failures.append(f"{name}: {answer.status_code} {answer.text[:200]}")
                return
            with self.lock:
                self.acked.append((name, value))

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.close()


def everything_in(backup: Path, work: Path) -> bytes:
    """Every byte of ``backup``, each member again as it is, and a pg_dump member as the
    SQL it holds (its data is compressed in the archive)."""
    parts = [backup.read_bytes()]
    with tarfile.open(backup) as tar:
        for member in tar.getmembers():
            source = tar.extractfile(member)
            assert source is not None
            data = source.read()
            parts.append(data)
            if member.name.endswith(".pgdump"):
                dump = work / "scan.pgdump"
                dump.write_bytes(data)
                sql = subprocess.run(
                    ["pg_restore", "--file=-", str(dump)], capture_output=True, check=True
                )
                parts.append(sql.stdout)
    return b"\n".join(parts)


def master_key_spellings(key: bytes) -> dict[str, bytes]:
    b64 = base64.b64encode(key)
    found = {
        "raw": key,
        "base64": b64,
        "base64url": base64.urlsafe_b64encode(key),
        "base64_unpadded": b64.rstrip(b"="),
        "hex": key.hex().encode(),
        "HEX": key.hex().upper().encode(),
    }
    found.update({f"text_{k}": v for k, v in encodings(b64.decode()).items()})
    return found


def damaged_copy(backup: Path, to: Path) -> Path:
    """``backup`` with one byte flipped in the middle of its first member's data."""
    with tarfile.open(backup) as tar:
        first = tar.getmembers()[0]
        at = first.offset_data + first.size // 2
    data = bytearray(backup.read_bytes())
    data[at] ^= 0xFF
    to.write_bytes(bytes(data))
    return to


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_round_trip_while_serving(
    backend: str, database_url: str, new_database: NewDatabase, tmp_path: Path
) -> None:
    master_key = os.urandom(32)
    # The key file sits beside the SQLite database, where a careless backup would find it.
    data_dir = (
        Path(database_url.removeprefix("sqlite:///")).parent if backend == "sqlite" else tmp_path
    )
    source_env = server_env(database_url, key_file(data_dir, master_key))
    api_key = issue_key(database_url, master_key)
    server = start_server(tmp_path, source_env)
    auth = {"Authorization": f"Bearer {api_key}"}
    values = {f"alpha{n}": canary(f"alpha{n}") for n in (1, 2, 3)}
    values |= {"beta": canary("beta"), "gone": canary("gone")}
    metadata = {"environment": "production", "owner": "payments-team"}
    writer: Writer | None = None
    try:
        with httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as api:
            create = {"name": "alpha", "value": values["alpha1"], "metadata": metadata}
            assert api.post("/v1/secrets", json={**create, "description": "d"}).status_code == 201
            for n in (2, 3):
                patch = {"value": values[f"alpha{n}"]}
                assert api.patch("/v1/secrets/alpha", json=patch).status_code == 200
            for name in ("beta", "gone"):
                body = {"name": name, "value": values[name], "metadata": {"k": name}}
                assert api.post("/v1/secrets", json=body).status_code == 201
            assert api.delete("/v1/secrets/gone").status_code == 200

        writer = running = Writer(server.base_url, api_key)
        wait_until(lambda: running.count() >= 5, "the writer writing")
        before = writer.count()
        backup = tmp_path / "strongroom.backup"
        # Both spellings of the master key in the command's settings: neither may reach it.
        backup_env = {**source_env, "STRONGROOM_MASTER_KEY": base64.b64encode(master_key).decode()}
        made = run_cli(["backup", str(backup)], backup_env)
        after = writer.count()
        writer.close()
        assert made.returncode == 0, made.stderr
        assert not writer.failures, writer.failures
        assert after > before, "the server stopped taking writes while the backup ran"
    finally:
        if writer is not None:
            writer.close()
        server.stop()

    # -- the file: private, complete, saying the master key is not in it ----------------
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert "master key" in made.stderr and "separately" in made.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".strongroom.backup")]
    with tarfile.open(backup) as tar:
        names = tar.getnames()
        found = tar.extractfile("manifest.json")
        assert found is not None
        manifest = json.loads(found.read())
    expected = (
        ["strongroom.sqlite", "strongroom.dbos.sqlite"]
        if backend == "sqlite"
        else ["strongroom.pgdump"]
    )
    assert names == [*expected, "manifest.json"]
    assert manifest["backend"] == ("sqlite" if backend == "sqlite" else "postgresql")
    assert manifest["format_version"] == 1 and manifest["schema_revision"]
    assert [m["name"] for m in manifest["members"]] == expected

    # -- nothing that opens it is in it ---------------------------------------------------
    everything = everything_in(backup, tmp_path)
    for spelling, needle in master_key_spellings(master_key).items():
        assert needle not in everything, f"the master key ({spelling}) is in the backup"
    for value in [*values.values(), *(v for _, v in writer.acked[:50])]:
        assert find_leaks(value, everything) == [], value

    # -- restored into a fresh database and served: what was acknowledged is there -------
    target = new_database()
    target_env = server_env(target, key_file(tmp_path / "target-key", master_key))
    restored_run = run_cli(["restore", str(backup)], target_env)
    assert restored_run.returncode == 0, restored_run.stderr
    assert "the configured master key opens it" in restored_run.stderr
    (tmp_path / "restored-server").mkdir()
    restored = start_server(tmp_path / "restored-server", target_env)
    try:
        check_restored(restored, auth, values, metadata, writer.acked, before, after)
        # -- a wrong master key (the command, into another database): the data is restored,
        # and it says the data cannot be read. Meanwhile, refused: a database in use, and a
        # damaged backup (into a fresh database).
        other = new_database()
        wrong_env = server_env(other, key_file(tmp_path / "wrong-key", os.urandom(32)))
        with ThreadPoolExecutor(1) as pool:
            wrong = pool.submit(run_cli, ["restore", str(backup)], wrong_env)
            with pytest.raises(BackupError, match="in use"):
                restore_backup(target, backup, force=True)
            fresh = new_database()
            damaged = damaged_copy(backup, tmp_path / "damaged.backup")
            with pytest.raises(BackupError, match="does not match its checksum"):
                restore_backup(fresh, damaged)
            assert describe_database(fresh).empty
    finally:
        restored.stop()
    assert wrong.result().returncode == 2, wrong.result().stderr
    assert "was restored, but the configured master key cannot read it" in wrong.result().stderr


def check_restored(
    server: ServerProcess,
    auth: dict[str, str],
    values: dict[str, str],
    metadata: dict[str, str],
    acked: list[tuple[str, str]],
    before: int,
    after: int,
) -> None:
    with httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as api:
        alpha = api.get("/v1/secrets/alpha")
        assert alpha.status_code == 200, alpha.text  # the API key works
        assert alpha.json()["value"] == values["alpha3"]
        assert alpha.json()["version"] == 3
        assert alpha.json()["metadata"] == metadata
        assert alpha.json()["description"] == "d"
        assert api.get("/v1/secrets/alpha?version=1").json()["value"] == values["alpha1"]
        assert len(api.get("/v1/secrets/alpha/versions").json()["items"]) == 3
        assert api.get("/v1/secrets/beta").json()["value"] == values["beta"]
        # The deleted secret is still in its recovery window, and restorable.
        assert api.get("/v1/secrets/gone").status_code == 404
        deleted = api.get("/v1/secrets", params={"deleted": "true"}).json()["items"]
        assert [d["name"] for d in deleted] == ["gone"]
        assert api.post("/v1/secrets/gone/restore").status_code == 200
        assert api.get("/v1/secrets/gone").json()["value"] == values["gone"]
        # The writer's secrets: a prefix of what it wrote, one commit's database, holding
        # at least everything acknowledged before the backup began.
        listed = api.get("/v1/secrets", params={"limit": 1000}).json()["items"]
        written = sorted(s["name"] for s in listed if s["name"].startswith("w"))
        assert before <= len(written) <= after
        assert written == [name for name, _ in acked[: len(written)]]
        read = api.post("/v1/secrets:batchGet", json={"names": written}).json()
        assert read["errors"] == []
        assert {s["name"]: s["value"] for s in read["secrets"]} == dict(acked[: len(written)])


# -- PostgreSQL's client programs ---------------------------------------------------------
@pytest.mark.e2e
def test_pg_dump_missing_or_older_than_the_server_is_refused(
    postgres_database: str, tmp_path: Path
) -> None:
    truncate_postgres(postgres_database)
    store = open_store(postgres_database)
    store.migrate()
    store.close()
    old = tmp_path / "old-client"
    old.mkdir()
    (old / "pg_dump").write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    (old / "pg_dump").chmod(0o755)
    empty = tmp_path / "no-client"
    empty.mkdir()
    env = {"STRONGROOM_DATABASE_URL": postgres_database}
    with ThreadPoolExecutor(2) as pool:
        older = pool.submit(
            run_cli,
            ["backup", str(tmp_path / "a.backup")],
            {**env, "PATH": f"{old}:{os.environ.get('PATH', '')}"},
        )
        missing = pool.submit(
            run_cli, ["backup", str(tmp_path / "b.backup")], {**env, "PATH": str(empty)}
        )
    assert older.result().returncode == 1
    assert "pg_dump 9.6 is older than the server" in older.result().stderr
    assert missing.result().returncode == 1
    assert "pg_dump is not installed" in missing.result().stderr
    assert list(tmp_path.glob("*.backup")) == []


def test_the_password_stays_off_the_command_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """argv is visible to every local user (``ps``): the password goes in the environment,
    and strongroom's own settings (the master key among them) go nowhere."""
    monkeypatch.setenv("STRONGROOM_MASTER_KEY", base64.b64encode(b"m" * 32).decode())
    conninfo, env = pg_command_line(
        "postgresql+psycopg://strongroom:s3cr3t-pw@db.internal:5433/vault?sslmode=require"
    )
    assert "s3cr3t-pw" not in conninfo
    assert env["PGPASSWORD"] == "s3cr3t-pw"
    assert not [name for name in env if name.startswith("STRONGROOM_")]
    for part in ("host=db.internal", "port=5433", "dbname=vault", "sslmode=require"):
        assert part in conninfo
    with pytest.raises(BackupError, match="sslpassword"):
        pg_command_line("postgresql://u@h/db?sslpassword=hunter2")


# -- free space -----------------------------------------------------------------------------
@pytest.mark.e2e
def test_too_little_free_space_is_refused_before_writing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'strongroom.db'}"
    store = open_store(url)
    store.migrate()
    store.close()
    disk = tmpfs_or_fail(tmp_path / "disk", size="256k")
    try:
        result = disk.run(
            STRONGROOM,
            "backup",
            str(tmp_path / "disk" / "strongroom.backup"),
            env={"STRONGROOM_DATABASE_URL": url},
            check=False,
        )
        assert result.returncode == 1, result.stderr
        assert "free some space" in result.stderr
        assert disk.run("ls", "-A", str(tmp_path / "disk")).stdout == ""
    finally:
        disk.close()


# -- refused before anything is touched -----------------------------------------------------
def fake_backup(path: Path, manifest: dict[str, object], members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in [*members.items(), ("manifest.json", json.dumps(manifest).encode())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def manifest_of(members: dict[str, bytes], **changes: object) -> dict[str, object]:
    import hashlib

    return {
        "format": "strongroom-backup",
        "format_version": 1,
        "strongroom_version": "0.1.0",
        "schema_revision": "0001",
        "backend": "sqlite",
        "created_at": "2026-01-01T00:00:00Z",
        "members": [
            {"name": n, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()}
            for n, d in members.items()
        ],
        "counts": {},
        **changes,
    }


@pytest.mark.parametrize(
    ("changes", "extra", "refusal"),
    [
        ({"format_version": 2}, {}, "restore it with a newer strongroom"),
        ({"schema_revision": "9999"}, {}, "newer than this strongroom"),
        ({"backend": "postgresql"}, {}, "unexpected members"),
        ({"format": "something-else"}, {}, "not a strongroom backup"),
        ({}, {"../escape": b"x"}, "not those its manifest names"),
    ],
    ids=["format", "revision", "backend", "not-ours", "extra-member"],
)
def test_a_backup_it_cannot_trust_is_refused(
    tmp_path: Path, changes: dict[str, object], extra: dict[str, bytes], refusal: str
) -> None:
    members = {"strongroom.sqlite": b"SQLite format 3\x00" + b"\x00" * 100}
    backup = fake_backup(tmp_path / "b.tar", manifest_of(members, **changes), {**members, **extra})
    target = tmp_path / "target" / "strongroom.db"
    with pytest.raises(BackupError, match=refusal):
        restore_backup(f"sqlite:///{target}", backup)
    assert not target.exists()


def test_not_a_tar_file_is_refused(tmp_path: Path) -> None:
    backup = tmp_path / "b.tar"
    backup.write_bytes(os.urandom(4096))
    with pytest.raises(BackupError, match="not a strongroom backup"):
        restore_backup(f"sqlite:///{tmp_path / 'x.db'}", backup)


# -- an older backup over a newer database ------------------------------------------------
def migrate_to(url: str, revision: str) -> None:
    """Bring the database ``url`` names to ``revision`` exactly (not to the newest)."""
    from alembic import command

    from strongroom.server.storage.migrate import alembic_config
    from strongroom.server.storage.sql import SQLStore

    store = open_store(url)
    assert isinstance(store, SQLStore)
    try:
        with store.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        store.close()


def revision_of(url: str) -> str | None:
    return describe_database(url).revision


@pytest.mark.e2e
def test_an_older_backup_restored_over_a_newer_database_is_brought_forward(
    new_database: NewDatabase, tmp_path: Path
) -> None:
    """The way back from an upgrade: a backup made before it, restored over the upgraded
    database, then migrated again (on PostgreSQL, the tables only the newer schema has are
    dropped, or the migrations would meet them)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from strongroom.server.backup import create_backup
    from strongroom.server.storage.migrate import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    assert head is not None
    older = script.get_revision(head).down_revision
    assert isinstance(older, str)

    source = new_database()
    migrate_to(source, older)
    report = create_backup(source, tmp_path / "older.backup")
    assert report.manifest.schema_revision == older

    target = new_database()
    issue_key(target, os.urandom(32))  # the newest schema, a barrier, a key: not empty
    assert revision_of(target) == head
    with pytest.raises(BackupError, match="give --force"):
        restore_backup(target, report.path)
    restore_backup(target, report.path, force=True)
    assert revision_of(target) == older
    store = open_store(target)
    try:
        store.migrate()
    finally:
        store.close()
    restored = describe_database(target)
    assert restored.revision == head
    assert restored.counts.get("api_keys") == 0
