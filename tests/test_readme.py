"""The README's curl quick start runs as printed against a real server."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import httpx

from strongroom.server.apikeys import create_api_key
from strongroom.server.storage import open_store

from .conftest import unsealed
from .support import ServerProcess

README = Path(__file__).resolve().parents[1] / "README.md"


def quickstart() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- quickstart:begin -->\n```sh\n(.*?)```\n<!-- quickstart:end -->", text, re.DOTALL
    )
    assert block, "README lost its quick start block"
    return block.group(1)


def json_documents(text: str) -> list[dict[str, object]]:
    """curl prints the answers back to back, without newlines between them."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while at < len(text):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def test_readme_curl_quickstart_works_as_printed(server: ServerProcess, tmp_path: Path) -> None:
    store = open_store(server.env["STRONGROOM_DATABASE_URL"])
    try:
        key, _ = create_api_key(store, unsealed(store), "default")
    finally:
        store.close()
    script = quickstart().replace("http://127.0.0.1:8000", server.base_url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={"PATH": "/usr/bin:/bin", "STRONGROOM_API_KEY": key},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    answers = json_documents(done.stdout)
    created, listed, page, filtered, got, updated, partial, renamed, deleted = answers
    assert created["value"] == "ENCRYPTED"
    assert created["name"] == "stripe_api_key"
    assert [s["name"] for s in listed["items"]] == ["stripe_api_key"]
    assert page["limit"] == 10
    assert [s["name"] for s in filtered["items"]] == ["stripe_api_key"]
    assert got["value"] == "sk_test_51abc"
    assert updated["version"] == 2
    assert updated["metadata"]["rotated"] == "2025-05-10"
    assert partial["description"] == "New description for Stripe API key"
    assert partial["version"] == 2
    assert renamed["name"] == "stripe_secret_key"
    assert deleted["name"] == "stripe_secret_key"

    client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {key}"})
    assert client.get("/v1/secrets").json()["items"] == []
    actions = [e["action"] for e in client.get("/v1/audit").json()["items"]]
    assert actions[::-1] == [
        "secret.create",
        "secret.read",
        "secret.update",
        "secret.update",
        "secret.rename",
        "secret.delete",
    ]
