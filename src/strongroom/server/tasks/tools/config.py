"""The server-wide tool configuration, and the settings each tool declares for itself.

The engine builds one :class:`ToolConfig` at start-up (``REGISTRY.config(settings)`` in
:mod:`.registry`); tools never read the environment themselves, so tests and embedders
configure them explicitly, with ``ToolConfig(...)``. What is common to every tool (where
it may connect, the server's own database, how much of an answer to read) is a field;
what one tool needs is that tool's :class:`ToolSettings`, read with
``config.settings(OpenAISettings)``, so a new tool adds no field here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from .egress import EgressPolicy
from .protected import Protected

DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024


class ToolSettings(BaseModel):
    """A tool's own server settings, declared in the tool's module.

    Each field is a field of the server's ``Settings`` too (which inherits every tool's
    class, see :mod:`.registry`), read from ``STRONGROOM_<FIELD NAME>`` and listed in the
    README's settings table. Every field has a default: a tool runs with its defaults when
    a configuration built by hand does not name its settings.
    """

    def check_protected(self, protected: Protected) -> None:
        """Refuse to start (``ValueError``) on values that would hand tasks the server's own
        database or files; nothing to refuse by default."""


SettingsT = TypeVar("SettingsT", bound=ToolSettings)


@dataclass(frozen=True)
class ToolConfig:
    """What every tool call may use.

    - ``egress``: the destinations allowed beyond the public internet
      (``EgressPolicy.parse(STRONGROOM_EGRESS_ALLOW)``).
    - ``max_response_bytes``: the largest answer the ``http`` and ``openai`` tools read,
      and the most a ``database`` query fetches.
    - ``protected``: the server's own database endpoints and files, refused whatever
      ``egress`` allows (``Protected.of_server``; empty when built by hand).
    - ``tool_settings``: each tool's own settings (one instance per class; a tool whose
      class is not here gets its defaults).
    """

    egress: EgressPolicy = field(default_factory=EgressPolicy)
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    protected: Protected = field(default_factory=Protected)
    tool_settings: tuple[ToolSettings, ...] = ()

    def settings(self, kind: type[SettingsT]) -> SettingsT:
        """The tool settings of class ``kind``: as configured, else its defaults."""
        for candidate in self.tool_settings:
            if isinstance(candidate, kind):
                return candidate
        return kind()
