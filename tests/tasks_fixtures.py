"""The runner as the engine drives it, for in-process task tests (a pytest plugin).

``conftest.py`` loads this module as a plugin, so the ``runner`` fixture is everywhere
without an import (importing a fixture into a test module shadows it, ruff F811); the
helpers are plain functions, imported where used. A test here plays the engine: it calls
``begin``, ``run_step`` and ``finish`` as the workflow would, against a local
OpenAI-compatible upstream on 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import pytest

from strongroom.server.auth import Caller
from strongroom.server.services import Services
from strongroom.server.storage import StepRecord
from strongroom.server.tasks.runner import Runner
from strongroom.server.tasks.status import SUCCEEDED
from strongroom.server.tasks.tools import EgressPolicy, ToolConfig
from strongroom.server.tasks.tools.openai import OpenAISettings

from .upstream import Upstream


def tools_for(upstream: Upstream) -> ToolConfig:
    """Tools that may reach 127.0.0.1, with ``openai`` pointed at ``upstream``."""
    return ToolConfig(
        egress=EgressPolicy.parse("127.0.0.1"),
        tool_settings=(OpenAISettings(openai_base_url=upstream.base_url),),
    )


@pytest.fixture
def runner(services: Services, upstream: Upstream) -> Runner:
    return Runner(services.store, services.barrier, tools_for(upstream))


def start(
    services: Services, caller: Caller, steps: list[dict[str, Any]], input: Any = None
) -> str:
    task, _ = services.tasks.create_task(caller, {"steps": steps})
    return services.tasks.execute(caller, task.id, input).id


def run_all(runner: Runner, execution_id: str) -> str:
    """What the engine's workflow does."""
    for index in range(runner.begin(execution_id)):
        if runner.run_step(execution_id, index) != SUCCEEDED:
            break
    return runner.finish(execution_id)


def steps_of(services: Services, execution_id: str) -> list[StepRecord]:
    with services.store.read() as tx:
        return tx.executions.steps(execution_id)


def execution(services: Services, caller: Caller, execution_id: str) -> Any:
    return services.tasks.get_execution(caller, execution_id)
