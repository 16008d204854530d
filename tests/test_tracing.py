"""Request spans to an OTLP/HTTP collector (STRONGROOM_OTEL_ENDPOINT): named by route
template, with nothing of what a request carried, and nothing at all when unset.

The collector is a small HTTP server on loopback that keeps every body POSTed to
/v1/traces; the spans are read back with the OTLP protobuf definitions, and the raw bytes
scanned for a canary (in every encoding) sent in a path, a query, a body and a header,
and for the API key.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from pydantic import SecretStr

from strongroom.server.apikeys import create_api_key
from strongroom.server.services import open_services
from strongroom.server.settings import Settings
from strongroom.server.tracing import EXPORTED

from .conftest import MASTER_KEY
from .support import canary, find_leaks, start_server


class Collector:
    """An OTLP/HTTP traces endpoint on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.paths: list[str] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                collector.paths.append(self.path)
                collector.bodies.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[str, dict[str, object]]]:
        found = []
        for body in self.bodies:
            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    for span in scope.spans:
                        attributes = {a.key: a.value for a in span.attributes}
                        assert not span.events and not span.links, span
                        found.append((span.name, attributes))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    try:
        yield found
    finally:
        found.close()


@pytest.mark.e2e
def test_spans_name_the_route_template_and_carry_nothing_a_request_held(
    tmp_path: Path, collector: Collector
) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    services = open_services(Settings(database_url=database_url, master_key=SecretStr(MASTER_KEY)))
    try:
        key, _ = create_api_key(services.store, services.barrier, "default")
    finally:
        services.store.close()
    value = canary("traced")
    env = {
        "STRONGROOM_DATABASE_URL": database_url,
        "STRONGROOM_MASTER_KEY": MASTER_KEY,
        "STRONGROOM_OTEL_ENDPOINT": collector.url,
    }
    server = start_server(tmp_path, env)
    try:
        with httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {key}", "X-Note": value},
            timeout=10,
        ) as client:
            assert client.post("/v1/secrets", json={"name": "traced", "value": value}).is_success
            assert client.get("/v1/secrets/traced").json()["value"] == value
            # A value pasted where it does not belong: the path and the query string.
            assert client.get(f"/v1/secrets/{value}").status_code in (404, 422)
            assert client.get("/v1/secrets", params={"metadata": f"k={value}"}).status_code < 500
            assert client.get(f"/nowhere/{value}").status_code == 404
    finally:
        # Stopping sends the last batch: no waiting on the exporter's timer.
        assert server.stop() in (0, -signal.SIGTERM), server.log()
    assert collector.paths and set(collector.paths) == {"/v1/traces"}
    spans = collector.spans()
    names = [name for name, _ in spans]
    assert "POST /v1/secrets" in names
    assert names.count("GET /v1/secrets/{name}") == 2
    assert "GET /v1/secrets" in names
    assert "GET" in names  # the unmatched path: a method, and no path at all
    for name, attributes in spans:
        assert set(attributes) <= EXPORTED, (name, attributes)
        assert "http.request.method" in attributes and "http.response.status_code" in attributes
    sent = b"".join(collector.bodies)
    assert b"/v1/secrets/{name}" in sent
    assert find_leaks(value, sent) == []
    assert find_leaks(key, sent) == []
    assert b"traced" not in sent.replace(b"traced-", b"")  # the secret's name is not there
    assert b"nowhere" not in sent


@pytest.mark.e2e
def test_without_an_endpoint_nothing_of_the_sdk_is_loaded_and_no_tracer_is_set(
    tmp_path: Path,
) -> None:
    script = f"""
import sys
from fastapi.testclient import TestClient
from opentelemetry import trace
from pydantic import SecretStr
from strongroom.server.app import create_app
from strongroom.server.services import open_services
from strongroom.server.settings import Settings

services = open_services(Settings(
    database_url="sqlite:///{tmp_path / "db.sqlite"}", master_key=SecretStr("{MASTER_KEY}")))
app = create_app(services, run_engine=False)
with TestClient(app) as client:
    assert client.get("/v1/secrets").status_code == 401
loaded = [m for m in sys.modules
          if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter"))]
print(loaded, type(trace.get_tracer_provider()).__name__)
"""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "ProxyTracerProvider"], done.stdout
