"""The tools task steps call: ``openai``/``chat``, ``database``/``query``, ``http``/``request``.

The engine uses :data:`REGISTRY` (the contract is in :mod:`.base`; each tool's arguments,
result and errors in its own module)::

    config = ToolConfig(
        egress=EgressPolicy.parse(settings.egress_allow),  # STRONGROOM_EGRESS_ALLOW
        openai_base_url=settings.openai_base_url,          # STRONGROOM_OPENAI_BASE_URL
        sqlite_dir=settings.tool_sqlite_dir,               # None: SQLite off
    )
    # task creation: one Problem per bad argument, location relative to the step
    problems = REGISTRY.validate(step["tool"], step["operation"], step.get("arguments"))
    # run time: evaluated arguments, the secret_name plaintext, a deadline
    result = REGISTRY.call(tool, operation, evaluated, credential,
                           ToolContext(config, deadline=time.monotonic() + 300))

Calls are synchronous and raise :class:`ToolError`. Every outbound connection goes through
the egress guard (:mod:`.egress`).
"""

from __future__ import annotations

from . import database, http, openai
from .base import JSON, InvalidArguments, Problem, Registry, Tool, ToolError
from .context import ToolConfig, ToolContext
from .egress import EgressPolicy, EgressRefused

REGISTRY = Registry([openai.TOOL, database.TOOL, http.TOOL])

__all__ = [
    "JSON",
    "REGISTRY",
    "EgressPolicy",
    "EgressRefused",
    "InvalidArguments",
    "Problem",
    "Registry",
    "Tool",
    "ToolConfig",
    "ToolContext",
    "ToolError",
]
