"""Types the calls' signatures share: the ``NOT_GIVEN`` marker and timeouts.

``None`` is a value the API understands (``description=None`` clears a description), so
an argument that was left out needs a marker of its own: ``NOT_GIVEN``, of type
:class:`NotGiven`, as in openai-python. A field left out is not sent, so it keeps its value.
"""

from __future__ import annotations

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
