"""The tools task steps call: ``openai``/``chat``, ``database``/``query``, ``http``/``request``.

The engine uses :data:`REGISTRY` (the contract is in :mod:`.base`; each tool's arguments,
result and errors in its own module)::

    config = ToolConfig(
        egress=EgressPolicy.parse(settings.egress_allow),  # STRONGROOM_EGRESS_ALLOW
        openai_base_url=settings.openai_base_url,          # STRONGROOM_OPENAI_BASE_URL
        sqlite_dir=settings.tool_sqlite_dir,               # None: SQLite off
        protected=Protected.of_server(settings.database_url, [settings.master_key_file]),
    )
    # task creation: one Problem per bad argument, location relative to the step
    problems = REGISTRY.validate(step["tool"], step["operation"], step.get("arguments"))
    # run time: evaluated arguments, the secret_name plaintext, a deadline
    result = REGISTRY.call(tool, operation, evaluated, credential,
                           ToolContext(config, deadline=time.monotonic() + 300, tenant="acme"))

Calls are synchronous and raise :class:`ToolError`. Every outbound connection and every
SQLite file goes through ``ToolContext.check_destination`` (the server's own database and
files, :mod:`.protected`, then the runner's guard) and, for connections, the egress guard
(:mod:`.egress`).
"""

from __future__ import annotations

from . import database, http, openai
from .base import JSON, InvalidArguments, Problem, Registry, Tool, ToolError
from .context import Destination, ToolConfig, ToolContext
from .egress import EgressPolicy, EgressRefused
from .protected import Protected

REGISTRY = Registry([openai.TOOL, database.TOOL, http.TOOL])

__all__ = [
    "JSON",
    "REGISTRY",
    "Destination",
    "EgressPolicy",
    "EgressRefused",
    "InvalidArguments",
    "Problem",
    "Protected",
    "Registry",
    "Tool",
    "ToolConfig",
    "ToolContext",
    "ToolError",
]
