"""The one error type of expressions, and how messages name a value without showing it.

Every refusal (at task creation) and every failure (at run time) is an
:class:`ExpressionError`; the runner turns it into the step's ``expression_error``. Its
text may quote the expression, which the task's author wrote, but never a value: once an
evaluation has read a secret-derived value, :class:`WithheldError` replaces the reason.
"""

from __future__ import annotations


class ExpressionError(Exception):
    """Why an expression was refused or stopped.

    ``message`` may quote the expression's text (which is not secret) but never a value the
    evaluation computed or read. ``location`` is a field path such as ``arguments.url``.
    """

    def __init__(self, message: str, location: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.location = location

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message

    def at(self, location: str) -> ExpressionError:
        """The same problem, reported at ``location``."""
        return ExpressionError(self.message, location)


class WithheldError(ExpressionError):
    """An evaluation failed after it had read a secret-derived value: the reason is not
    given, since it could describe the value. ``secrets`` names what was read."""

    def __init__(self, secrets: frozenset[str], location: str = "") -> None:
        names = ", ".join(sorted(secrets))
        super().__init__(
            f"the expression failed on a value derived from secrets ({names}); the reason "
            "is withheld because it could describe the value",
            location,
        )
        self.secrets = secrets

    def at(self, location: str) -> ExpressionError:
        return WithheldError(self.secrets, location)


def kind(value: object) -> str:
    """A value's type, for messages that must not show the value."""
    return "None" if value is None else type(value).__name__
