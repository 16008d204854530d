"""The registry: which tools a task step may name, and the server settings they declare.

A tool is one module: its operations (``TOOL``) and, when it needs server settings, its
:class:`~.config.ToolSettings` subclass. Registering it is two lines here: ``TOOL`` in
:data:`REGISTRY`, and its settings class among :class:`AllToolSettings`' bases, which the
server's ``Settings`` inherits (so the variables are read, validated and documented with
every other setting). :meth:`Registry.config` then builds the :class:`ToolConfig` of the
process from the server's settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from . import database, http, openai
from .base import JSON, Operation, Tool
from .config import ToolConfig, ToolSettings
from .context import ToolContext
from .egress import EgressPolicy, EgressSettings
from .errors import Problem, ToolError
from .protected import Protected


class ServerSettings(Protocol):
    """What :meth:`Registry.config` reads of the server's settings besides the tools' own
    fields (which it reads through each tool's settings class)."""

    @property
    def database_url(self) -> str: ...
    @property
    def master_key_file(self) -> Path | None: ...
    @property
    def task_max_result_bytes(self) -> int: ...
    @property
    def egress_allow(self) -> str: ...


class Registry:
    """The tools a task step may name."""

    def __init__(self, tools: Iterable[Tool]) -> None:
        self._tools = {tool.name: tool for tool in tools}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._tools))

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def operation(self, tool: str, operation: str) -> Operation | None:
        found = self._tools.get(tool)
        return found.operations.get(operation) if found else None

    def validate(self, tool: str, operation: str, arguments: object) -> list[Problem]:
        found = self._tools.get(tool)
        if found is None:
            return [Problem("tool", f"no such tool (known: {', '.join(self.names)})")]
        return found.validate(operation, arguments)

    def call(
        self,
        tool: str,
        operation: str,
        arguments: Mapping[str, Any] | None,
        credential: str | None,
        context: ToolContext,
    ) -> JSON:
        found = self._tools.get(tool)
        if found is None:
            raise ToolError(f"no such tool: {tool}")
        return found.call(operation, arguments, credential, context)

    @property
    def settings(self) -> tuple[type[ToolSettings], ...]:
        """The settings classes the tools declare, once each."""
        declared = (tool.settings for tool in self._tools.values() if tool.settings)
        return tuple(dict.fromkeys(declared))

    def config(self, settings: ServerSettings) -> ToolConfig:
        """What the tools may reach and where, from the server's settings.

        ``protected`` is the server's own database (its PostgreSQL host and port, by name
        and by every address; or SQLite's data directory) and its master key file: refused
        to every tool whatever ``STRONGROOM_EGRESS_ALLOW`` says, since a task that reached
        them would read every tenant's rows and could write itself API keys. ``ValueError``
        (a refusal to start) for a database host that does not resolve, a tool's settings
        that would open the server's own files (``ToolSettings.check_protected``), or a
        bad allow-list.
        """
        protected = Protected.of_server(settings.database_url, [settings.master_key_file])
        own = tuple(
            kind.model_validate({name: getattr(settings, name) for name in kind.model_fields})
            for kind in self.settings
        )
        for tool_settings in own:
            tool_settings.check_protected(protected)
        return ToolConfig(
            egress=EgressPolicy.parse(settings.egress_allow),
            max_response_bytes=settings.task_max_result_bytes,
            protected=protected,
            tool_settings=own,
        )


REGISTRY = Registry([openai.TOOL, database.TOOL, http.TOOL])


class AllToolSettings(EgressSettings, openai.OpenAISettings, database.DatabaseSettings):
    """Every setting of the tools, as fields the server's ``Settings`` inherits."""
