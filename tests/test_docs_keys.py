"""docs/keys.md runs as printed: its Python blocks and its command-line blocks, against a
real server (the ``server`` fixture, so on SQLite and on PostgreSQL). Its Node.js block
is run by the Node.js SDK's own tests (clients/node/test/docs-keys.test.js).

Each ``print`` of the Python blocks must print what the comment at the end of its line
says, as the README's quick start is checked (tests/test_examples.py).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import strongroom
from strongroom import AuthenticationError, KeyRule, Strongroom
from strongroom.server.apikeys import create_api_key
from strongroom.server.storage import open_store

from .conftest import unsealed
from .support import STRONGROOM, ServerProcess

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "keys.md"


def blocks(section: str, language: str) -> list[str]:
    """The ``language`` code blocks between ``<!-- section:begin -->`` and its end."""
    text = DOC.read_text()
    found = re.search(rf"<!-- {section}:begin -->\n(.*?)<!-- {section}:end -->", text, re.DOTALL)
    assert found, f"docs/keys.md lost its {section} section"
    return re.findall(rf"```{language}\n(.*?)```", found.group(1), re.DOTALL)


@pytest.fixture
def admin_key(server: ServerProcess) -> str:
    """A key of tenant ``default`` with every scope (keys:admin included)."""
    store = open_store(server.env["STRONGROOM_DATABASE_URL"])
    try:
        key, _ = create_api_key(store, unsealed(store), "default", name="admin")
    finally:
        store.close()
    return key


def _environment(server: ServerProcess, key: str, home: Path) -> dict[str, str]:
    """What a user's shell has: the client's two settings, and `strongroom` on PATH."""
    return {
        "PATH": f"{Path(STRONGROOM).parent}:{os.environ.get('PATH', '')}",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "STRONGROOM_API_KEY": key,
        "STRONGROOM_BASE_URL": server.base_url,
    }


def test_the_python_blocks_import_only_public_names() -> None:
    for source in blocks("keys-python", "python"):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module == "strongroom":
                assert {a.name for a in node.names} <= set(strongroom.__all__)


def test_the_python_blocks_run_and_print_what_they_say(
    server: ServerProcess, admin_key: str, tmp_path: Path
) -> None:
    code = "\n".join(blocks("keys-python", "python"))
    expected = re.findall(r"^\s*print\(.*\)  # (.*)$", code, re.MULTILINE)
    assert len(expected) >= 5
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=_environment(server, admin_key, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert done.stdout.splitlines() == expected
    with Strongroom(api_key=admin_key, base_url=server.base_url) as admin:
        assert admin.secrets.list().items == []  # the example cleaned up after itself
        ci = [k for k in admin.keys.list_all(include_revoked=True) if k.name == "ci"]
        assert len(ci) == 2 and all(k.revoked_at is not None for k in ci)


def test_the_command_line_blocks_run_as_printed(
    server: ServerProcess, admin_key: str, tmp_path: Path
) -> None:
    first, second = blocks("keys-cli", "sh")
    env = _environment(server, admin_key, tmp_path)

    def bash(script: str, extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        return done

    made = bash(first, {})
    key = next(w for w in made.stdout.split() if w.startswith("sr_") and len(w) == 41)
    assert made.stdout.count(key) == 1 and "ci_*" in made.stdout
    with Strongroom(api_key=admin_key, base_url=server.base_url) as admin:
        [ci] = [k for k in admin.keys.list_all() if k.name == "ci"]
        assert ci.id in made.stdout  # the create's line, and the list
        with Strongroom(api_key=key, base_url=server.base_url) as as_ci:
            as_ci.secrets.list()  # a use, for the audit list to show none refused

        managed = bash(second, {"KEY_ID": ci.id})
        assert f"updated API key {ci.id}" in managed.stderr
        assert f"the old key {ci.id} works until" in managed.stderr
        assert f"revoked API key {ci.id}" in managed.stderr
        keys = {k.id: k for k in admin.keys.list_all(include_revoked=True) if k.name == "ci"}
        assert keys[ci.id].revoked_at is not None
        [new] = [k for k in keys.values() if k.id != ci.id]
        assert new.revoked_at is None and new.scopes == ["secrets:read"]
        assert new.rule == KeyRule(names=["ci_*"], metadata={"environment": "ci"})
    with (
        Strongroom(api_key=key, base_url=server.base_url) as as_ci,
        pytest.raises(AuthenticationError),
    ):
        as_ci.secrets.list()
