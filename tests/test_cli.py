"""The server-side commands, run as a user runs them: a real ``strongroom`` process."""

from __future__ import annotations

import base64
import json
import socket
import stat
from pathlib import Path

import httpx
import pytest

from .conftest import MASTER_KEY
from .support import run_cli, start_server, wait_until

# Every test here runs the `strongroom` command as a process.
pytestmark = pytest.mark.e2e


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    return {"STRONGROOM_DATABASE_URL": database_url, "STRONGROOM_MASTER_KEY": MASTER_KEY}


def test_keys_create_quiet_prints_only_the_key(env: dict[str, str]) -> None:
    done = run_cli(["keys", "create", "--tenant", "acme", "--quiet"], env)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert key.startswith("sr_") and len(key) == 41 and done.stdout == key + "\n"


def test_keys_create_list_revoke(env: dict[str, str], tmp_path: Path) -> None:
    made = run_cli(
        ["keys", "create", "--tenant", "acme", "--name", "ci", "--scope", "secrets:read"], env
    )
    assert made.returncode == 0, made.stderr
    key = next(word for word in made.stdout.split() if word.startswith("sr_") and len(word) == 41)
    assert "secrets:read" in made.stdout

    listed = run_cli(["keys", "list", "--json"], env)
    rows = json.loads(listed.stdout)
    assert [(r["tenant"], r["name"], r["scopes"]) for r in rows] == [
        ("acme", "ci", ["secrets:read"])
    ]
    assert key not in listed.stdout and rows[0]["hint"].endswith(key[-4:])
    table = run_cli(["keys", "list"], env)
    assert table.returncode == 0 and "acme" in table.stdout and key not in table.stdout

    server = start_server(tmp_path, env)
    try:
        client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})
        assert client.get("/v1/secrets").status_code == 200
        assert client.post("/v1/secrets", json={"name": "x", "value": "y"}).status_code == 403

        revoked = run_cli(["keys", "revoke", rows[0]["id"]], env)
        assert revoked.returncode == 0, revoked.stderr
        answer = client.get("/v1/secrets")
        assert answer.status_code == 401 and "revoked" in answer.json()["error"]["message"]
    finally:
        server.stop()
    again = run_cli(["keys", "revoke", rows[0]["id"]], env)
    assert again.returncode == 3 and "no active API key" in again.stderr


def test_keys_create_without_scope_has_every_scope(env: dict[str, str]) -> None:
    assert run_cli(["keys", "create", "--tenant", "t1", "-q"], env).returncode == 0
    rows = json.loads(run_cli(["keys", "list", "--json", "--tenant", "t1"], env).stdout)
    assert rows[0]["scopes"] == ["*"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "acme", "--scope", "secrets:everything"], "unknown scope"),
        (["--tenant", "not a name"], "--tenant"),
    ],
)
def test_keys_create_refuses_bad_input(env: dict[str, str], args: list[str], message: str) -> None:
    done = run_cli(["keys", "create", *args], env)
    assert done.returncode == 2 and message in done.stderr


def test_master_key_generate(tmp_path: Path) -> None:
    printed = run_cli(["master-key", "generate"], {})
    assert len(base64.b64decode(printed.stdout.strip(), validate=True)) == 32

    path = tmp_path / "keys" / "master.key"
    assert run_cli(["master-key", "generate", "--file", str(path)], {}).returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text().strip())) == 32
    refused = run_cli(["master-key", "generate", "--file", str(path)], {})
    assert refused.returncode == 2 and "refusing to overwrite" in refused.stderr


def test_master_key_file_setting_is_used(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_text(MASTER_KEY + "\n")
    env = {"STRONGROOM_DATABASE_URL": database_url, "STRONGROOM_MASTER_KEY_FILE": str(path)}
    status = run_cli(["master-key", "status", "--json"], env)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)[0]["state"] == "active"


def test_serve_without_master_key_refuses_with_advice(database_url: str, tmp_path: Path) -> None:
    done = run_cli(["serve"], {"STRONGROOM_DATABASE_URL": database_url}, cwd=tmp_path)
    assert done.returncode == 2
    assert "STRONGROOM_MASTER_KEY" in done.stderr and "--dev" in done.stderr


def test_serve_with_the_database_down_says_so_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = {
        "STRONGROOM_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/strongroom",
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
    }
    done = run_cli(["serve", "--port", "0"], env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "cannot open the database" in done.stderr
    assert "Traceback" not in done.stderr


def test_invalid_settings_are_reported(tmp_path: Path) -> None:
    done = run_cli(["migrate"], {"STRONGROOM_DATABASE_URL": "mysql://nope/db"}, cwd=tmp_path)
    assert done.returncode == 1 and "sqlite:///" in done.stderr
    done = run_cli(["migrate"], {"STRONGROOM_PORT": "high"}, cwd=tmp_path)
    assert done.returncode == 1 and "STRONGROOM_PORT" in done.stderr


def test_migrate_is_idempotent(env: dict[str, str]) -> None:
    for _ in range(2):
        done = run_cli(["migrate"], env)
        assert done.returncode == 0, done.stderr


def test_serve_dev_generates_key_and_prints_bootstrap_key_once(tmp_path: Path) -> None:
    """What `make run` does on a fresh checkout: SQLite and a key file under ./data."""
    server = start_server(tmp_path, {}, extra_args=("--dev",))
    try:
        key_file = tmp_path / "data" / "master.key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert (tmp_path / "data" / "strongroom.db").exists()
        assert "generated a development master key" in server.log()
        words = server.stdout().split()
        key = next(w for w in words if w.startswith("sr_") and len(w) == 41)
        client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})
        created = client.post("/v1/secrets", json={"name": "kept", "value": "still here"})
        assert created.status_code == 201
    finally:
        server.stop()

    again = start_server(tmp_path, {}, extra_args=("--dev",))
    try:
        assert "sr_" not in again.stdout(), "the bootstrap key is issued only once"
        assert "generated a development master key" not in again.log()
        client = httpx.Client(base_url=again.base_url, headers={"Authorization": f"Bearer {key}"})
        assert client.get("/v1/secrets/kept").json()["value"] == "still here"
    finally:
        again.stop()


def test_keys_create_without_a_master_key_says_why(database_url: str, tmp_path: Path) -> None:
    """Issuing a key needs the master key (keys are stored as HMACs under a key it wraps);
    listing and revoking do not, so a leaked key can be revoked with database access."""
    made = run_cli(["keys", "create", "--tenant", "acme", "-q"], {}, cwd=tmp_path)
    assert made.returncode == 2 and made.stdout == ""
    message = " ".join(made.stderr.split())
    assert "`strongroom keys create` needs the master key" in message
    assert "STRONGROOM_MASTER_KEY or STRONGROOM_MASTER_KEY_FILE" in message
    assert "Traceback" not in made.stderr
    # With the development key `serve --dev` keeps in data/master.key, every command
    # finds it (and says so) when nothing else is configured.
    generated = run_cli(["master-key", "generate", "--file", "data/master.key"], {}, cwd=tmp_path)
    assert generated.returncode == 0, generated.stderr
    dev = run_cli(["keys", "create", "--tenant", "acme", "-q"], {}, cwd=tmp_path)
    assert dev.returncode == 0, dev.stderr
    assert dev.stdout.startswith("sr_")
    notice = "using the development master key in data/master.key"
    assert " ".join(dev.stderr.split()).count(notice) == 1

    env = {"STRONGROOM_DATABASE_URL": database_url}
    key = run_cli(
        ["keys", "create", "--tenant", "acme", "-q"], {**env, "STRONGROOM_MASTER_KEY": MASTER_KEY}
    )
    assert key.returncode == 0, key.stderr
    listed = run_cli(["keys", "list", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert run_cli(["keys", "revoke", row["id"]], env).returncode == 0


def test_files_the_server_creates_are_private(tmp_path: Path) -> None:
    """The database, its -wal and -shm, the execution engine's state and the directories
    the server makes have no group or other access, whatever the umask it starts with."""
    data = tmp_path / "fresh" / "data"
    env = {
        "STRONGROOM_DATABASE_URL": f"sqlite:///{data / 'strongroom.db'}",
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
    }
    # As a shell with the usual umask 022 starts it; --dev prints a bootstrap key, so the
    # server is the only process that creates anything.
    umask_022 = ("sh", "-c", 'umask 022 && exec "$@"', "sh")
    server = start_server(tmp_path, env, extra_args=("--dev",), prefix=umask_022)
    try:
        key = next(w for w in server.stdout().split() if w.startswith("sr_") and len(w) == 41)
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.base_url, headers=auth, timeout=30) as client:
            created = client.post("/v1/secrets", json={"name": "greeting", "value": "hello"})
            assert created.status_code == 201, created.text
            steps = [{"kind": "transform", "expression": "$ len(secrets.greeting)"}]
            task = client.post("/v1/tasks", json={"steps": steps})
            assert task.status_code == 201, task.text
            run = client.post(f"/v1/tasks/{task.json()['id']}/executions", json={})
            assert run.status_code in (201, 202), run.text
            execution = f"/v1/executions/{run.json()['id']}"
            wait_until(
                lambda: client.get(execution).json()["status"] == "succeeded",
                "the execution succeeds",
            )
        names = {path.name for path in data.iterdir()}
        assert {"strongroom.db", "strongroom.db-wal", "strongroom.db-shm"} <= names
        assert any(name.startswith("strongroom.db.dbos.sqlite") for name in names), names
        for path in [tmp_path / "fresh", data, *data.iterdir()]:
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode & 0o077 == 0, f"{path.name} is {mode:o}"
    finally:
        server.stop()
