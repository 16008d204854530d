"""Types the calls' signatures share: the ``NOT_GIVEN`` marker, timeouts and times.

``None`` is a value the API understands (``description=None`` clears a description), so
an argument that was left out needs a marker of its own: ``NOT_GIVEN``, of type
:class:`NotGiven`, as in openai-python. A field left out is not sent, so it keeps its value.
"""

from __future__ import annotations

import datetime as dt
from typing import Final, Literal, final

import httpx


@final
class NotGiven:
    """The type of :data:`NOT_GIVEN`: an argument left out, where ``None`` means null."""

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()

# Seconds for the whole request, an ``httpx.Timeout`` for each phase, or None for none.
Timeout = float | httpx.Timeout | None

# A time as the calls take it: an aware datetime, or an RFC 3339 string with its zone.
TimeArg = dt.datetime | str


def rfc3339(value: TimeArg, what: str) -> str:
    """A time argument as the wire's RFC 3339 string. A naive datetime is refused here,
    since the server would have to guess its zone; a string is sent as given (the server
    refuses one without a zone with a :class:`ValidationError`)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{what} needs a time zone: a naive datetime is ambiguous "
                "(e.g. datetime.now(timezone.utc) + timedelta(days=30))"
            )
        return value.isoformat()
    if isinstance(value, str):
        return value
    raise TypeError(f"{what} must be a datetime or an RFC 3339 string, not {type(value).__name__}")
