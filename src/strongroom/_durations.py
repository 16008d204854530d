"""The duration grammar the CLI's options and the server's rotation periods share:
``30d``, ``12h``, ``90m``, ``45s``, ``2w``, or several at once (``1h30m``)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Final

UNITS: Final = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
# At most nine digits a part: no text makes the sum (or timedelta) work hard or overflow.
_DURATION = re.compile(r"(?:[0-9]{1,9}[wdhms])+")
_PART = re.compile(r"([0-9]+)([wdhms])")


def parse_duration(text: str) -> dt.timedelta | None:
    """The duration ``text`` spells (any case, spaces around ignored), or None when it
    spells none."""
    spelled = text.strip().lower()
    if not _DURATION.fullmatch(spelled):
        return None
    return dt.timedelta(seconds=sum(int(n) * UNITS[unit] for n, unit in _PART.findall(spelled)))


def is_duration(text: str) -> bool:
    return _DURATION.fullmatch(text.strip().lower()) is not None
