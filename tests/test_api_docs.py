"""The API docs page works with no network but this server's: every file it loads comes
from the app, and its Content-Security-Policy lets nothing else run."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from strongroom.server.app import create_app
from strongroom.server.services import open_services
from strongroom.server.settings import Settings

from .conftest import MASTER_KEY


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    services = open_services(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", master_key=SecretStr(MASTER_KEY)
        )
    )
    try:
        with TestClient(create_app(services, run_engine=False)) as client:
            yield client
    finally:
        services.store.close()


def policy_of(header: str) -> dict[str, list[str]]:
    directives = (d.split() for d in header.split(";") if d.strip())
    return {name: values for name, *values in directives}


def test_the_docs_page_loads_everything_from_the_server_itself(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 3, assets  # the script, the stylesheet, the icon
    kinds = {}
    for asset in assets:
        assert asset.startswith("/"), asset
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 0, asset
        kinds[asset.rsplit(".", 1)[1]] = answer.headers["content-type"]
    assert kinds["js"].startswith(("text/javascript", "application/javascript"))
    assert kinds["css"].startswith("text/css")
    assert kinds["png"] == "image/png"
    # The OpenAPI document the page reads is this server's, as it was.
    assert "url: '/openapi.json'" in html
    assert client.get("/openapi.json").json()["info"]["title"] == "strongroom"


def test_the_docs_page_runs_only_its_own_scripts_and_styles(client: TestClient) -> None:
    page = client.get("/docs")
    policy = policy_of(page.headers["content-security-policy"])
    assert policy["default-src"] == ["'none'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["connect-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    scripts = policy["script-src"]
    assert "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts
    # Swagger UI's start-up script is inline: its hash, and only it, is allowed.
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert scripts == ["'self'", f"'sha256-{digest}'"]
    # No directive names another host, a scheme or a wildcard (data: only for images).
    for name, values in policy.items():
        allowed = [v for v in values if v in ("'self'", "'none'") or v.startswith("'sha256-")]
        extra = [v for v in values if v not in allowed]
        assert extra == (["data:"] if name == "img-src" else []), (name, values)
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_docs_are_no_part_of_the_api_contract(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith(("/docs", "/redoc"))]
    # No ReDoc page: it writes its styles into the page, which this policy would block.
    assert client.get("/redoc").status_code == 404
    assert client.head("/docs").status_code == 200


def test_the_docs_files_are_the_offline_package_s_not_a_path_out_of_it(
    client: TestClient,
) -> None:
    for path in ("/docs/static/../../../etc/passwd", "/docs/static/%2e%2e/__init__.py"):
        assert client.get(path).status_code == 404, path
