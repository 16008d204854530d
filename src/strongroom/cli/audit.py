"""``strongroom audit ...``: read the tenant's audit trail through the API (``audit:read``);
``prune`` (:mod:`.audit_prune`) removes old events on the server's database.

``list`` prints the newest events that match; ``tail`` prints the newest few and then
each new one as it comes, until Ctrl-C. The server orders the trail by event id, newest
first; ``tail`` asks for the events of the last few seconds at each look (an event whose
transaction commits late still shows) and prints those it has not shown yet.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import Strongroom
from ..exceptions import APIConnectionError, InternalServerError, RateLimitError
from ..models import AuditRecord
from .audit_prune import prune_events
from .common import ClientOptions, api_errors, client_options, open_client, options_of, say, warn
from .times import parse_moment, shown

P = ParamSpec("P")
R = TypeVar("R")

# How far back each look of `tail` reaches behind the newest event it has shown: an event
# is stamped before its transaction commits, so one may appear a little after a newer one.
OVERLAP = dt.timedelta(seconds=10)
PAGE = 1000  # the server's largest page
# What `tail` rides out (with a warning) rather than stopping: the server restarting, busy.
PASSING = (APIConnectionError, InternalServerError, RateLimitError)


def _filter_options(func: Callable[P, R]) -> Callable[P, R]:
    """``--action``, ``--result``, ``--secret``, ``--key-id``: each given must hold."""
    for option in reversed(
        [
            click.option("--action", metavar="ACTION", help="only this action: secret.read, ..."),
            click.option(
                "--result",
                metavar="RESULT",
                help="only events that ended so: success, or an error code (forbidden, "
                "not_found, unauthorized, ...)",
            ),
            click.option("--secret", metavar="NAME", help="only events about this secret"),
            click.option("--key-id", metavar="ID", help="only events of this API key"),
        ]
    ):
        func = option(func)
    return func


def _filters(
    action: str | None, result: str | None, secret: str | None, key_id: str | None
) -> dict[str, Any]:
    return {"action": action, "result": result, "secret": secret, "key_id": key_id}


def _key(record: AuditRecord) -> str:
    return record.key_name or record.key_id or ""


def _line(record: AuditRecord) -> str:
    """One event on one line, for `tail`."""
    parts = [
        shown(record.time),
        f"{record.action:<16}",
        f"{record.outcome:<12}",
        record.secret_name or "-",
        f"key {_key(record) or '-'}",
    ]
    if record.detail:
        parts.append(" ".join(record.detail.split()))
    return "  ".join(parts)


def _as_json(record: AuditRecord) -> str:
    return json.dumps(record.model_dump(mode="json"), ensure_ascii=False)


# -- the group ----------------------------------------------------------------------------------
@click.group("audit")
@client_options(from_env=True)
@click.pass_context
def audit(ctx: click.Context, api_key: str | None, base_url: str | None) -> None:
    """Read the audit trail of the key's tenant (needs the audit:read scope).

    Every secret read, write and refusal, every key issued, changed or revoked, with the
    key that acted. A key with a rule sees only the events about secrets it reaches.
    `prune` works on the server's database instead (its STRONGROOM_* settings).
    """
    ctx.obj = ClientOptions(api_key, base_url)


audit.add_command(prune_events)


@audit.command("list")
@client_options(from_env=False)
@click.option(
    "--since", metavar="TIME", help="only events at or after TIME: 2026-11-28T09:00:00Z, or 2h ago"
)
@click.option("--until", metavar="TIME", help="only events before TIME (as --since)")
@_filter_options
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    metavar="N",
    help="at most N events, the newest",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON (a list of events)")
@click.pass_context
@api_errors
def list_events(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    since: str | None,
    until: str | None,
    action: str | None,
    result: str | None,
    secret: str | None,
    key_id: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List audit events, newest first, filtered by time, action, result, secret and key.

    TIME is RFC 3339 with a zone (2026-11-28T09:00:00Z), a date (midnight UTC), or a
    duration meaning that long ago (30m, 2h, 7d).
    """
    filters = _filters(action, result, secret, key_id)
    if since:
        filters["since"] = parse_moment(since, "--since")
    if until:
        filters["until"] = parse_moment(until, "--until")
    found: list[AuditRecord] = []
    with open_client(options_of(ctx, api_key, base_url)) as client:
        for record in client.audit.list_all(**filters, page_size=min(limit + 1, PAGE)):
            if len(found) == limit:
                say(f"more events match: these are the newest {limit} (--limit N shows more)")
                break
            found.append(record)
    if as_json:
        rows = [record.model_dump(mode="json") for record in found]
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table("time (UTC)", "key", "action", "result", "secret", "detail")
    for record in found:
        table.add_row(
            shown(record.time),
            Text(_key(record)),  # Text: names and details are not markup
            record.action,
            record.outcome,
            Text(record.secret_name or ""),
            Text(record.detail or ""),
        )
    console = Console(highlight=False) if sys.stdout.isatty() else Console(width=100_000)
    console.print(table)


# -- tail ---------------------------------------------------------------------------------------
def _pause(seconds: float) -> None:
    time.sleep(seconds)


@dataclass
class Follower:
    """What `tail` has shown: the ids of the events within :data:`OVERLAP` of the newest
    one (to show each once) and the newest time (where the next look starts)."""

    client: Strongroom
    filters: dict[str, Any]
    seen: dict[int, dt.datetime] = field(default_factory=dict)
    newest: dt.datetime | None = None

    def start(self, lines: int) -> list[AuditRecord]:
        """The newest ``lines`` events, oldest first; those just before count as shown."""
        head = self.client.audit.list(limit=max(lines, 1), **self.filters).items
        if head:
            since = max(r.time for r in head) - OVERLAP
            self._take([*head, *self._since(since)])
        return sorted(head, key=lambda r: r.id)[-lines:] if lines else []

    def look(self) -> list[AuditRecord]:
        """The events not shown yet, oldest first."""
        since = self.newest - OVERLAP if self.newest else None
        fresh = {r.id: r for r in self._since(since) if r.id not in self.seen}
        self._take(fresh.values())
        return sorted(fresh.values(), key=lambda r: r.id)

    def _since(self, since: dt.datetime | None) -> Iterable[AuditRecord]:
        return self.client.audit.list_all(since=since, **self.filters, page_size=PAGE)

    def _take(self, records: Iterable[AuditRecord]) -> None:
        for record in records:
            self.seen[record.id] = record.time
            if self.newest is None or record.time > self.newest:
                self.newest = record.time
        if self.newest is not None:
            horizon = self.newest - OVERLAP
            self.seen = {i: t for i, t in self.seen.items() if t >= horizon}


@audit.command("tail")
@client_options(from_env=False)
@_filter_options
@click.option(
    "-n",
    "--lines",
    type=click.IntRange(min=0, max=PAGE),
    default=10,
    show_default=True,
    metavar="N",
    help="start with the newest N events",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    metavar="SECONDS",
    help="how often to look for new events",
)
@click.option("--json", "as_json", is_flag=True, help="print each event as a line of JSON")
@click.pass_context
@api_errors
def tail_events(
    ctx: click.Context,
    api_key: str | None,
    base_url: str | None,
    action: str | None,
    result: str | None,
    secret: str | None,
    key_id: str | None,
    lines: int,
    interval: float,
    as_json: bool,
) -> None:
    """Print the newest events, then each new one as it comes, until Ctrl-C.

    One line per event (time, action, result, secret, key, detail), or a line of JSON
    each with --json. The server going away or answering 5xx is waited out, with a
    warning; a refused key (exit 5) or a bad filter (exit 1) ends it.
    """
    show = _as_json if as_json else _line
    try:
        with open_client(options_of(ctx, api_key, base_url)) as client:
            follower = Follower(client, _filters(action, result, secret, key_id))
            for record in follower.start(lines):
                click.echo(show(record))
            troubled = False
            while True:
                _pause(interval)
                try:
                    fresh = follower.look()
                except PASSING as exc:
                    if not troubled:
                        warn(f"{exc}; still trying every {interval:g} s")
                    troubled = True
                    continue
                if troubled:
                    say("the server answers again")
                    troubled = False
                for record in fresh:
                    click.echo(show(record))
    except KeyboardInterrupt:
        return
