"""A task whose step builds a long secret-derived value no longer stalls the server.

``$ lower(secrets.api_key) * 30000`` then ``$ 1``: before taint-based containment, each
step rebuilt an Aho-Corasick redactor over every secret-derived value while holding the
GIL (super-linear in the value's length), so this 128-byte task froze ``/healthz`` and every
tenant's requests while it built: some 2 s per step at 9,300 characters, a minute at
31,000, far longer at this size. Now the derived value is hidden by its taint and only the
secret's own value is compiled, once per execution.

The secret here has 32 characters, so the value is 960,000 characters: under the
1,000,000 characters an expression may build and the 1 MiB a step may store. (With a
40-character secret, ``* 30000`` is 1.2 million characters and the step fails with an
``expression_error`` whose reason is withheld; ``bench/containment.py`` runs that case.)

Also a smoke run of ``bench/containment.py --quick``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import IssueKey
from .support import ServerProcess, find_leaks, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
SECRET = "sk-Resp-0123456789-ABCDEFGHIJ-kl"  # 32 characters
STEPS = [
    {"kind": "transform", "expression": "$ lower(secrets.api_key) * 30000"},
    {"kind": "transform", "expression": "$ 1"},
]
DONE = {"succeeded", "failed", "cancelled"}
HEALTHZ_BUDGET_S = 0.2
MIN_HEALTHZ = 20
RUN_BUDGET_S = 60.0
# Running lasts some 50-300 ms here; an execution seen only queued and then ended is
# submitted again, a few times at most.
ATTEMPTS = 5


def start_running(client: httpx.Client, task_id: str) -> tuple[str, float]:
    """Submit an execution and poll it until it is seen ``running``; its id and when it was
    submitted (``time.monotonic``)."""
    for _ in range(ATTEMPTS):
        posted = time.monotonic()
        created = client.post(f"/v1/tasks/{task_id}/executions", json={"input": None})
        assert created.status_code == 201, created.text
        execution_id = created.json()["id"]
        seen: list[str] = []

        def started(execution_id: str = execution_id, seen: list[str] = seen) -> bool:
            answer = client.get(f"/v1/executions/{execution_id}")
            assert answer.status_code == 200, answer.text
            seen.append(answer.json()["status"])
            return seen[-1] != "queued"

        wait_until(started, "the execution to leave the queue", timeout=RUN_BUDGET_S)
        if seen[-1] == "running":
            return execution_id, posted
        assert seen[-1] in DONE, seen
    pytest.fail(f"none of {ATTEMPTS} executions was seen running: each ended between two polls")


def test_api_answers_while_a_long_derived_value_is_contained(
    server: ServerProcess, issue_key: IssueKey
) -> None:
    headers = {"Authorization": f"Bearer {issue_key()}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        created = client.post("/v1/secrets", json={"name": "api_key", "value": SECRET})
        assert created.status_code == 201, created.text
        task = client.post("/v1/tasks", json={"steps": STEPS})
        assert task.status_code == 201, task.text
        execution_id, posted = start_running(client, task.json()["id"])

        # /healthz one request after another, from the moment the execution is seen running
        # until it has ended (and at least MIN_HEALTHZ in all); the execution is polled after
        # every second one, so the key's request budget is never the limit.
        healthz: list[tuple[float, int, bool]] = []  # (seconds, status, sent before the end)
        final: dict[str, Any] | None = None
        while final is None or len(healthz) < MIN_HEALTHZ:
            assert time.monotonic() - posted < RUN_BUDGET_S, (
                f"the execution did not end within {RUN_BUDGET_S:g} s"
            )
            sent = time.perf_counter()
            answer = client.get("/healthz")
            healthz.append((time.perf_counter() - sent, answer.status_code, final is None))
            if final is None and len(healthz) % 2 == 0:
                found = client.get(f"/v1/executions/{execution_id}").json()
                if found["status"] in DONE:
                    final = found
        ended_after = time.monotonic() - posted

        assert final is not None
        assert final["status"] == "succeeded", final
        assert ended_after < RUN_BUDGET_S
        during = sum(1 for _, _, before_end in healthz if before_end)
        slow = [
            f"{seconds * 1000:.0f} ms" for seconds, _, _ in healthz if seconds >= HEALTHZ_BUDGET_S
        ]
        assert during >= 1, healthz
        assert all(status == 200 for _, status, _ in healthz), healthz
        assert not slow, (
            f"/healthz took {', '.join(slow)} of {len(healthz)} requests "
            f"({during} sent while the execution ran)"
        )

        steps = client.get(f"/v1/executions/{execution_id}/steps")
        assert steps.status_code == 200, steps.text
        items = steps.json()["items"]
        assert [item["status"] for item in items] == ["succeeded", "succeeded"], items
        assert items[0]["output"] == "[REDACTED:api_key]"
        assert items[1]["output"] == 1
        assert final["output"] == 1
        shown = steps.content + json.dumps(final).encode()
        for value in (SECRET, SECRET.lower()):
            assert not find_leaks(value, shown)


def test_containment_bench_quick_run(tmp_path: Path) -> None:
    """``bench/containment.py --quick`` runs end to end and prints its tables."""
    out = tmp_path / "containment.json"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "containment.py"), "--quick", "--out", str(out)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| case: lower(secrets.api_key) * N, then 1 |" in done.stdout, done.stdout
    assert "| idle server (reference)" in done.stdout, done.stdout
    assert "| * 10,000 (400,000 chars)" in done.stdout, done.stdout
    assert "| secret alone (what the runner compiles now)" in done.stdout, done.stdout
    document = json.loads(out.read_text())
    (case,) = document["server"]["sqlite"]["cases"]
    assert case["statuses"] == ["succeeded"], case
    assert case["outputs_as_expected"] == case["runs"], case
    assert took < 60, f"the quick run took {took:.0f} s"
