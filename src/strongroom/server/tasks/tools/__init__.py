"""The tools task steps call: ``openai``/``chat``, ``database``/``query``, ``http``/``request``.

The engine uses :data:`REGISTRY` (:mod:`.registry`; the contract is in :mod:`.base`, the
errors in :mod:`.errors`; each tool's arguments, result, errors and settings in its own
module)::

    config = REGISTRY.config(settings)  # at start-up: ValueError refuses to start
    # task creation: one Problem per bad argument, location relative to the step
    problems = REGISTRY.validate(step["tool"], step["operation"], step.get("arguments"))
    # run time: evaluated arguments, the secret_name plaintext, a deadline
    result = REGISTRY.call(tool, operation, evaluated, credential,
                           ToolContext(config, deadline=time.monotonic() + 300, tenant="acme"))

Calls are synchronous and raise :class:`ToolError`. Every outbound connection and every
SQLite file goes through ``ToolContext.check_destination`` (the server's own database and
files, :mod:`.protected`, then the runner's guard) and, for connections, the egress guard
(:mod:`.egress`, :mod:`.transport`).
"""

from __future__ import annotations

from .base import JSON, Tool
from .config import ToolConfig, ToolSettings
from .context import Destination, ToolContext
from .egress import EgressPolicy
from .errors import EgressRefused, InvalidArguments, PolicyRefused, Problem, ToolError
from .protected import Protected
from .registry import REGISTRY, AllToolSettings, Registry

__all__ = [
    "JSON",
    "REGISTRY",
    "AllToolSettings",
    "Destination",
    "EgressPolicy",
    "EgressRefused",
    "InvalidArguments",
    "PolicyRefused",
    "Problem",
    "Protected",
    "Registry",
    "Tool",
    "ToolConfig",
    "ToolContext",
    "ToolError",
    "ToolSettings",
]
