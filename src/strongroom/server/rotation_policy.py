"""A secret's rotation policy: how often its rotation task runs, and as which key.

The policy is stored with the secret (``secrets.rotation_json``); the time of the next
rotation is a column of its own (``next_rotation_at``) so that the scheduler finds the due
secrets in an index. The task runs on behalf of the key that set the policy, as that key
is when the rotation runs: a revoked, expired or narrowed key stops its rotations, so a
policy can never do more than the key that wrote it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Final

from .._durations import UNITS, parse_duration

MIN_PERIOD: Final = dt.timedelta(minutes=1)
MAX_PERIOD: Final = dt.timedelta(days=3650)


def parse_period(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``1h30m``, ``2w``: a period of at least a minute and at most ten
    years; anything else is a ``ValueError`` saying what is expected."""
    try:
        period = parse_duration(text)
    except OverflowError:
        period = MAX_PERIOD * 2  # past the bound: refused below
    if period is None:
        raise ValueError(
            f"{text!r} is not a period: a number and a unit, w d h m or s (30d, 12h, 1h30m)"
        )
    if not MIN_PERIOD <= period <= MAX_PERIOD:
        raise ValueError(f"a rotation period is between 1m and 3650d, not {text!r}")
    return period


def spell_period(period: dt.timedelta) -> str:
    """The shortest spelling :func:`parse_period` reads back as ``period``."""
    seconds = int(period.total_seconds())
    parts = []
    for unit, size in UNITS.items():
        if unit == "w":
            continue  # "14d" reads better than "2w" in a policy
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """Run task ``task_id`` every ``every``, for key ``key_id`` (the one that set it)."""

    every: dt.timedelta
    task_id: str
    key_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "every_seconds": int(self.every.total_seconds()),
            "task_id": self.task_id,
            "key_id": self.key_id,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RotationPolicy:
        return cls(
            every=dt.timedelta(seconds=int(data["every_seconds"])),
            task_id=str(data["task_id"]),
            key_id=data.get("key_id"),
        )
