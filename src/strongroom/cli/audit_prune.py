"""``strongroom audit prune``: remove old events from the audit trail.

It works on the server's database with the server's settings, as the other server
commands do (:mod:`.server_commands`): there is no API for it. The deleting, in batches, and
the ``audit.prune`` event it leaves in each tenant's trail are
:mod:`strongroom.server.audit_retention`'s.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from .common import err, fail, say
from .server_commands import load_settings, open_migrated_store
from .times import parse_moment

if TYPE_CHECKING:
    from ..server.audit_file import AuditFile
    from ..server.audit_retention import PruneReport
    from ..server.storage import Store

# audit_retention's BATCH and MAX_BATCH (not imported: the client-only install has no server).
BATCH = 1000
MAX_BATCH = 10_000


class _PruneDisplay:
    """A progress bar on stderr when a terminal watches a prune of more than one batch;
    otherwise nothing until the summary."""

    def __init__(self, total: int, batch_size: int) -> None:
        self.live = err.is_terminal and total > batch_size
        self.progress = Progress(
            TextColumn("removing audit events"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.task = self.progress.add_task("prune", total=total)

    def __enter__(self) -> _PruneDisplay:
        if self.live:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live:
            self.progress.stop()

    def batch(self, removed: int) -> None:
        if self.live:
            self.progress.update(self.task, completed=removed)


@click.command("prune")
@click.option(
    "--before",
    "before_text",
    required=True,
    metavar="WHEN",
    help="remove the events before WHEN: 2026-01-01T00:00:00Z, a date (midnight UTC), or a "
    "duration meaning that long ago (90d)",
)
@click.option("--dry-run", is_flag=True, help="only count the events that would be removed")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=MAX_BATCH),
    default=BATCH,
    show_default=True,
    metavar="N",
    help="events deleted per transaction",
)
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def prune_events(before_text: str, dry_run: bool, batch_size: int, yes: bool) -> None:
    """Remove the audit events, of every tenant, that occurred before WHEN.

    On the server's database, with its STRONGROOM_* settings (not through the API). Each
    tenant that loses events gets an audit.prune event saying how many and before when,
    and STRONGROOM_AUDIT_FILE gets it too. Asks first (off a terminal, pass --yes);
    --dry-run only counts. Deletes in batches, each its own transaction: safe beside a
    running server, and an interrupted prune keeps what it did and records it.
    """
    now = dt.datetime.now(dt.UTC)
    before = parse_moment(before_text, "--before", now)
    if before > now:
        raise click.BadParameter(
            f"{before_text} is in the future: a prune removes the events before a time "
            "that has passed",
            param_hint="--before",
        )
    settings = load_settings()
    from ..server.audit_file import AuditFileError
    from ..server.audit_retention import prune, stamp
    from ..server.services import attach_audit_file
    from ..server.storage import StorageUnavailable

    store = open_migrated_store(settings)
    audit_file: AuditFile | None = None
    try:
        audit_file = attach_audit_file(store, settings)
        with store.read() as tx:
            found = tx.audit.count_before(before)
        events = f"{found} audit event{'' if found == 1 else 's'} before {stamp(before)}"
        if dry_run or not found:
            say(f"would remove {events}" if dry_run else f"no audit events before {stamp(before)}")
            return
        _confirm(events, yes)
        with _PruneDisplay(found, batch_size) as display:
            report = prune(
                store,
                before,
                now=now,
                by="strongroom audit prune",
                batch_size=batch_size,
                on_batch=display.batch,
            )
    except AuditFileError as exc:
        fail(str(exc), code=2)
    except StorageUnavailable as exc:
        fail(f"the database failed: {exc}")
    finally:
        _close(store, audit_file)
    _summary(report)


def _confirm(events: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        fail("stdin is not a terminal: pass --yes to prune without asking", code=2)
    click.confirm(f"Remove {events}? They cannot be recovered", abort=True, err=True)


def _close(store: Store, audit_file: AuditFile | None) -> None:
    store.close()
    if audit_file is not None:
        audit_file.close()


def _summary(report: PruneReport) -> None:
    from ..server.audit_retention import stamp

    tenants = sum(1 for tenant in report.removed if tenant is not None)
    say(
        f"removed {report.count} audit event{'' if report.count == 1 else 's'} before "
        f"{stamp(report.before)}; recorded as audit.prune in the trail of {tenants} tenant"
        f"{'' if tenants == 1 else 's'}"
    )
