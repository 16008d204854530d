"""Durations and times as the client commands take them: ``--expires-in 30d``,
``--grace 1h``, ``--since 2h`` or ``--since 2026-11-28T09:00:00Z``."""

from __future__ import annotations

import datetime as dt
import re

import click

from .._durations import is_duration
from .._durations import parse_duration as spelled_duration

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_duration(text: str, option: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w``, or several (``1h30m``); ``0`` is none."""
    if text.strip() == "0":
        return dt.timedelta(0)
    try:
        duration = spelled_duration(text)
    except OverflowError:
        raise click.BadParameter(f"{text!r} is too long a duration", param_hint=option) from None
    if duration is None:
        raise click.BadParameter(
            f"{text!r} is not a duration: a number and a unit, w d h m or s (30d, 12h, 90m, 1h30m)",
            param_hint=option,
        )
    return duration


def parse_time(text: str, option: str) -> dt.datetime:
    """An RFC 3339 time with its zone (``2026-11-28T09:00:00Z``), or a date (midnight UTC)."""
    spelled = text.strip()
    try:
        when = dt.datetime.fromisoformat(spelled)
    except ValueError:
        when = None
    if when is not None and when.tzinfo is None and _DATE.fullmatch(spelled):
        when = when.replace(tzinfo=dt.UTC)
    if when is None or when.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} is not a time with a zone: give RFC 3339 such as "
            "2026-11-28T09:00:00Z (or +02:00), or a date such as 2026-11-28 (midnight UTC)",
            param_hint=option,
        )
    return when


def parse_moment(text: str, option: str, now: dt.datetime | None = None) -> dt.datetime:
    """A time (see :func:`parse_time`), or a duration meaning that long ago (``2h``)."""
    if is_duration(text):
        return (now or dt.datetime.now(dt.UTC)) - parse_duration(text, option)
    return parse_time(text, option)


def shown(when: dt.datetime | None) -> str:
    """A time for a table: UTC to the second, ``2026-11-28 09:00:00``; empty for none."""
    if when is None:
        return ""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
