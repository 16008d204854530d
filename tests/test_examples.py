"""examples/ runs as documented: each script as a subprocess against a real server.

Every test checks what the script printed and then the server's state through the SDK,
on SQLite and on PostgreSQL (the ``server`` fixture).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import strongroom
from strongroom import SecretNotFoundError, Strongroom
from strongroom.server.apikeys import create_api_key
from strongroom.server.storage import open_store

from .conftest import unsealed
from .support import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
TESTED = {
    "create_secret",
    "list_secrets",
    "paginate_secrets",
    "filter_secrets",
    "get_secret",
    "update_secret",
    "partial_update",
    "delete_secret",
    "error_handling",
    "rotate_secret",
    "async_secrets",
}
STRIPE = {
    "name": "stripe_api_key",
    "value": "sk_test_original",
    "description": "Stripe API key for payment processing",
    "metadata": {"environment": "production", "owner": "payments-team"},
}

RunExample = Callable[[str], list[str]]


@pytest.fixture
def api_key(server: ServerProcess) -> str:
    """A key of tenant ``default`` with every scope, for the server's database."""
    store = open_store(server.env["STRONGROOM_DATABASE_URL"])
    try:
        key, _ = create_api_key(store, unsealed(store), "default", name="examples")
    finally:
        store.close()
    return key


def run_python(args: list[str], server: ServerProcess, api_key: str) -> list[str]:
    """Run Python as a user would, with only the two settings the examples read; its
    stdout lines, once it succeeded without printing anything to stderr (where the
    examples' error branches print)."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "STRONGROOM_API_KEY": api_key,
        "STRONGROOM_BASE_URL": server.base_url,
    }
    done = subprocess.run(
        [sys.executable, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stderr}{done.stdout}"
    assert done.stderr == "", f"{args}: {done.stderr}"
    return done.stdout.splitlines()


@pytest.fixture
def run_example(server: ServerProcess, api_key: str) -> RunExample:
    """``run_example("create_secret")`` runs ``python examples/create_secret.py``."""
    return lambda name: run_python([str(EXAMPLES / f"{name}.py")], server, api_key)


@pytest.fixture
def sdk(server: ServerProcess, api_key: str) -> Iterator[Strongroom]:
    with Strongroom(api_key=api_key, base_url=server.base_url) as client:
        yield client


def names(sdk: Strongroom) -> list[str]:
    return [secret.name for secret in sdk.secrets.list_all()]


def audit_trail(sdk: Strongroom, secret: str) -> list[str]:
    """The secret's audit records as "action outcome", oldest first."""
    records = sdk.audit.list_all(secret=secret)
    return [f"{record.action} {record.outcome}" for record in records][::-1]


def readme_python_blocks() -> list[str]:
    """The code blocks of the README's Python quick start."""
    readme = (ROOT / "README.md").read_text()
    section = re.search(
        r"<!-- python-quickstart:begin -->\n(.*?)<!-- python-quickstart:end -->", readme, re.DOTALL
    )
    assert section, "README lost its Python quick start"
    return re.findall(r"```python\n(.*?)```", section.group(1), re.DOTALL)


def test_every_example_has_a_test() -> None:
    assert {path.stem for path in EXAMPLES.glob("*.py")} == TESTED
    assert (EXAMPLES / "README.md").is_file()
    readme = (EXAMPLES / "README.md").read_text()
    for name in TESTED:
        assert f"{name}.py" in readme, f"examples/README.md does not list {name}.py"


def test_examples_and_readme_import_only_public_names() -> None:
    """What they import from ``strongroom`` is in its ``__all__``, which is what
    ``mypy --strict`` lets a program import from the package."""
    sources = {p.name: p.read_text() for p in EXAMPLES.glob("*.py")}
    sources["README.md"] = "\n".join(readme_python_blocks())
    for where, source in sources.items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module == "strongroom":
                for alias in node.names:
                    assert alias.name in strongroom.__all__, (where, alias.name)


def test_create_creates_the_guides_secret_and_a_second_run_leaves_it(
    run_example: RunExample, sdk: Strongroom
) -> None:
    assert run_example("create_secret") == ["Created secret: stripe_api_key"]
    secret = sdk.secrets.get(name="stripe_api_key")
    assert secret.value == "sk_test_..."
    assert secret.description == "Stripe API key for payment processing"
    assert secret.metadata == {"environment": "production", "owner": "payments-team"}
    assert secret.version == 1

    assert run_example("create_secret") == [
        "Secret stripe_api_key already exists (python examples/delete_secret.py removes it)"
    ]
    assert sdk.secrets.get(name="stripe_api_key").version == 1
    assert names(sdk) == ["stripe_api_key"]


def test_list_prints_every_secret_by_name_with_its_description(
    run_example: RunExample, sdk: Strongroom
) -> None:
    sdk.secrets.create(name="aws_access_key", value="AKIA-example", description="AWS access")
    sdk.secrets.create(name="zendesk_token", value="zd-example")
    assert run_example("list_secrets") == [
        "aws_access_key: AWS access",
        "stripe_api_key: Stripe API key for payment processing",
        "zendesk_token: None",
    ]
    # the example made the secret it lists, and made it only once
    assert run_example("list_secrets")[1] == "stripe_api_key: Stripe API key for payment processing"
    assert sdk.secrets.get(name="stripe_api_key").version == 1


def test_paginate_shows_two_pages_of_ten_then_removes_its_secrets(
    run_example: RunExample, sdk: Strongroom
) -> None:
    expected = [f"paginate_example_{i:02d}" for i in range(1, 16)]
    assert run_example("paginate_secrets") == [
        f"Page 1 (10 secrets, has_more=True): {', '.join(expected[:10])}",
        f"Page 2 (5 secrets, has_more=False): {', '.join(expected[10:])}",
        "All pages: 15 secrets",
    ]
    assert names(sdk) == []
    assert audit_trail(sdk, "paginate_example_01") == [
        "secret.create success",
        "secret.purge success",
    ]


def test_filter_matches_one_field_and_several(run_example: RunExample, sdk: Strongroom) -> None:
    sdk.secrets.create(name="other_secret", value="x", metadata={"environment": "production"})
    assert run_example("filter_secrets") == [
        "Production: filter_example_sendgrid, filter_example_stripe, other_secret",
        "Production, payments-team: filter_example_stripe",
    ]
    assert names(sdk) == ["other_secret"]  # the example removed its own secrets


def test_get_prints_name_creation_time_and_value(run_example: RunExample, sdk: Strongroom) -> None:
    created = sdk.secrets.create(**STRIPE)
    assert run_example("get_secret") == [
        f"Secret: stripe_api_key, Created: {created.created_at.isoformat()}",
        "Secret value: sk_test_original",
    ]
    assert audit_trail(sdk, "stripe_api_key") == [
        "secret.create success",
        "secret.create conflict",  # the example's "create it if it is missing"
        "secret.read success",
    ]


def test_get_on_a_fresh_server_makes_the_secret_it_reads(run_example: RunExample) -> None:
    lines = run_example("get_secret")
    assert lines[0].startswith("Secret: stripe_api_key, Created: 20")
    assert lines[1:] == ["Secret value: sk_test_..."]


def test_update_makes_a_new_version_with_description_and_metadata(
    run_example: RunExample, sdk: Strongroom
) -> None:
    sdk.secrets.create(**STRIPE)
    assert run_example("update_secret") == ["Updated secret: stripe_api_key"]
    secret = sdk.secrets.get(name="stripe_api_key")
    assert secret.value == "sk_test_new_value..."
    assert secret.version == 2
    assert secret.description == "Updated Stripe API key"
    assert secret.metadata == {
        "environment": "production",
        "owner": "payments-team",
        "rotated": "2025-05-10",
    }
    assert sdk.secrets.get(name="stripe_api_key", version=1).value == "sk_test_original"


def test_partial_updates_change_only_the_fields_given(
    run_example: RunExample, sdk: Strongroom
) -> None:
    sdk.secrets.create(**STRIPE)
    assert run_example("partial_update") == [
        "Description: New description for Stripe API key",
        "Metadata: {'lastRotated': '2025-05-10'}",
        "Value unchanged: still version 1",
    ]
    secret = sdk.secrets.get(name="stripe_api_key")
    assert secret.value == "sk_test_original"
    assert secret.version == 1
    assert [v.version for v in sdk.secrets.versions(name="stripe_api_key").items] == [1]
    assert secret.description == "New description for Stripe API key"
    assert secret.metadata == {"lastRotated": "2025-05-10"}  # metadata is replaced whole


def test_delete_removes_the_secret_and_its_history(
    run_example: RunExample, sdk: Strongroom
) -> None:
    sdk.secrets.create(**STRIPE)
    sdk.secrets.update(name="stripe_api_key", value="sk_test_second")
    assert run_example("delete_secret") == ["Secret deleted"]
    with pytest.raises(SecretNotFoundError):
        sdk.secrets.get(name="stripe_api_key")
    with pytest.raises(SecretNotFoundError):
        sdk.secrets.get(name="stripe_api_key", version=1)
    assert names(sdk) == []
    # a fresh server: the example makes the secret it deletes
    assert run_example("delete_secret") == ["Secret deleted"]
    assert names(sdk) == []


def test_error_handling_takes_each_expected_branch(
    run_example: RunExample, sdk: Strongroom
) -> None:
    # run_example also checks stderr is empty: no "Error ...:" branch was taken
    not_found, invalid, duplicate = run_example("error_handling")
    assert not_found == "Secret not found"
    assert invalid.startswith("Validation error: ")
    assert "body.name" in invalid
    assert "valid identifier" in invalid
    assert duplicate == "Secret already exists"
    # nothing was left behind: not the invalid name, not the duplicate's original
    assert names(sdk) == []
    assert audit_trail(sdk, "existing_secret") == [
        "secret.create success",
        "secret.create conflict",  # the refused duplicate
        "secret.purge success",
    ]


def test_rotation_guides_way_then_the_sdks(run_example: RunExample, sdk: Strongroom) -> None:
    sdk.secrets.create(**STRIPE)
    assert run_example("rotate_secret") == [
        "Rotated secret: stripe_api_key",
        "Rotated secret: stripe_api_key (version 2)",
        "Previous value still readable as version 1",
    ]
    assert audit_trail(sdk, "stripe_api_key") == [
        "secret.create success",  # this test's
        "secret.create conflict",  # the example's "create it if it is missing"
        # rotate_secret, the guide's way
        "secret.read success",
        "secret.update success",  # archived metadata on the old secret
        "secret.delete success",
        "secret.rename success",  # the temporary secret takes the name ...
        "secret.update success",  # ... and the description and metadata
        "secret.read success",
        # secrets.rotate: read, then one conditional update; the example reads version 1
        "secret.read success",
        "secret.update success",
        "secret.read success",
    ]
    assert names(sdk) == ["stripe_api_key"]  # no temporary secret is left
    created = {r.secret_name or "" for r in sdk.audit.list_all(action="secret.create")}
    temporary = [name for name in created if name.startswith("stripe_api_key_rotation_")]
    assert len(temporary) == 1
    assert re.fullmatch(r"stripe_api_key_rotation_[0-9a-f]{8}", temporary[0])
    secret = sdk.secrets.get(name="stripe_api_key")
    assert secret.value == "sk_test_rotated_safely"
    assert secret.version == 2
    assert secret.description == STRIPE["description"]  # carried over by the guide's rename
    assert set(secret.metadata) == {"lastRotated"}
    # secrets.rotate kept the value it replaced ...
    previous = sdk.secrets.get(name="stripe_api_key", version=1)
    assert previous.value == "sk_test_new_value_after_rotation"
    # ... while the guide's delete-and-rename lost the original and its history
    assert [v.version for v in sdk.secrets.versions(name="stripe_api_key").items] == [2, 1]


def test_async_example_creates_lists_and_cleans_up(
    run_example: RunExample, sdk: Strongroom
) -> None:
    sdk.secrets.create(**STRIPE)
    assert run_example("async_secrets") == [
        "Created secret: database_password",
        "Secrets: database_password, stripe_api_key",
        "Deleted secret: database_password",
    ]
    assert names(sdk) == ["stripe_api_key"]
    assert audit_trail(sdk, "database_password") == [
        "secret.create success",
        "secret.purge success",
    ]


def test_examples_run_on_a_fresh_server_in_any_order_and_again(
    run_example: RunExample, sdk: Strongroom
) -> None:
    order = sorted(TESTED)
    for name in [*order, *reversed(order)]:
        run_example(name)  # succeeds, with nothing on stderr
    # the run ended with create_secret after delete_secret: the guide's secret is back
    assert names(sdk) == ["stripe_api_key"]
    assert sdk.secrets.get(name="stripe_api_key").value == "sk_test_..."


def test_readme_python_quick_start_works_as_printed(
    server: ServerProcess, api_key: str, sdk: Strongroom
) -> None:
    readme = (ROOT / "README.md").read_text()
    assert readme.index("## Quick start with curl") < readme.index("## Python quick start")
    assert readme.index("## Python quick start") < readme.index("## The API")
    blocks = readme_python_blocks()
    assert len(blocks) == 4
    # what the comments in the README say each print shows
    assert run_python(["-c", "\n".join(blocks)], server, api_key) == [
        "stripe_api_key: ENCRYPTED",
        "sk_test_51abc 1",
        "database_password",
        "Secret not found",
        "2 sk-old",
    ]
    assert names(sdk) == []
    assert audit_trail(sdk, "stripe_api_key") == [
        "secret.create success",
        "secret.read success",
        "secret.update success",
        "secret.update success",
        "secret.delete success",
    ]
