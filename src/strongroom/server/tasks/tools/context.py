"""What a tool call gets besides its arguments: the server's tool configuration and a deadline.

The engine builds one :class:`ToolConfig` from the server settings at start-up (tools never
read the environment themselves, so tests and embedders configure them explicitly) and a
:class:`ToolContext` per call, with the step's deadline when it has one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .base import ToolError
from .egress import EgressPolicy

DEFAULT_OPENAI_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ToolConfig:
    """Server-wide tool settings.

    - ``egress``: the destinations allowed beyond the public internet
      (``EgressPolicy.parse(STRONGROOM_EGRESS_ALLOW)``).
    - ``openai_base_url``: where ``openai``/``chat`` goes unless the step names a
      ``base_url`` (``STRONGROOM_OPENAI_BASE_URL``).
    - ``sqlite_dir``: the directory ``database``/``query`` may open SQLite files in;
      ``None`` turns SQLite off, because a path is a path on the *server*, next to its own
      database and key files.
    - ``max_response_bytes``: the largest HTTP response body the ``http`` and ``openai``
      tools read.
    """

    egress: EgressPolicy = field(default_factory=EgressPolicy)
    openai_base_url: str = DEFAULT_OPENAI_BASE_URL
    sqlite_dir: Path | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES


@dataclass(frozen=True)
class ToolContext:
    """One call's context. ``deadline`` is a ``time.monotonic()`` instant or ``None``."""

    config: ToolConfig = field(default_factory=ToolConfig)
    deadline: float | None = None

    def time_left(self, wanted: float) -> float:
        """``wanted`` seconds, or less when the deadline is nearer; raises once it passed."""
        if self.deadline is None:
            return wanted
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise ToolError("the step ran out of time", code="timeout")
        return min(wanted, left)
