"""What a tool call raises, and how its messages stay safe to show.

Every module of the tools raises these, and the context, the egress guard and the tools
import them from here, below all of them, so none of those modules needs another just for
its errors::

    ToolError                 code "tool_error" and more specific codes, see below
    ├── InvalidArguments      code "invalid_arguments": the evaluated arguments are wrong
    ├── PolicyRefused         code "policy_refused": a secret's usage policy forbids the call
    └── EgressRefused         code "egress_refused": a refused destination (the server's
                              own database and files, or the egress policy)

Other codes a plain ``ToolError`` carries: ``timeout``, ``connect_failed``,
``dns_failed``, ``upstream_error`` (HTTP status in ``status``), ``response_too_large``,
``database_error``, ``not_allowed`` (e.g. SQLite outside its directory). ``retryable``
says whether running the step again may succeed (timeouts, 429, 5xx, refused
connections); ``retry_after`` is the upstream's ``Retry-After`` in seconds when it sent
one. The tools never retry by themselves, so that retries are decided in one place (the
engine).

Messages are written to be shown to the task's author: they never contain the
credential, a password, an ``Authorization`` header or a full URL (only
``scheme://host:port``); upstream text that is quoted is first passed through
:func:`scrub`. The engine redacts again, but the tools do not rely on it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ...errors import Detail

# The service's validation detail: a location (here relative to the step) and a message.
Problem = Detail

# Values shorter than this are not scrubbed from messages: replacing every "ab" would make
# the text unreadable, and a value that short is no secret worth the name.
MIN_SCRUB_LENGTH = 4


class ToolError(Exception):
    """A tool call failed; ``message`` is safe to show to the task's author."""

    code = "tool_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, str | int]:
        """The error as a step's ``error`` field."""
        out: dict[str, str | int] = {"code": self.code, "message": self.message}
        if self.status is not None:
            out["status"] = self.status
        return out


class InvalidArguments(ToolError):
    """The evaluated arguments do not fit the operation."""

    code = "invalid_arguments"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        listed = "; ".join(f"{p.location}: {p.message}" for p in problems)
        super().__init__(f"invalid arguments: {listed}")


class PolicyRefused(ToolError):
    """A secret the call carries may not go to this tool or destination (its policy).
    ``secrets`` names the secrets whose policies refused."""

    code = "policy_refused"

    def __init__(self, message: str, secrets: Iterable[str]) -> None:
        super().__init__(message)
        self.secrets = tuple(sorted(secrets))


class EgressRefused(ToolError):
    """A tool was about to connect somewhere the egress policy does not allow, or reach the
    server's own database or files (``protected.py``)."""

    code = "egress_refused"


def scrub(text: str, *values: str | None) -> str:
    """``text`` with every occurrence of each value replaced by ``[hidden]``."""
    for value in sorted((v for v in values if v), key=len, reverse=True):
        if len(value) >= MIN_SCRUB_LENGTH:
            text = text.replace(value, "[hidden]")
    return text
