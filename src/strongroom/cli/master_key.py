"""``strongroom master-key``: make a master key, rotate the KEKs it protects, rekey to a
new master key, destroy retired KEKs, and show where all of that stands.

They talk to the server's database directly, with the server's settings, as the other
server commands do (:mod:`.server_commands`). Only key ids are ever printed, never a key.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from .common import err, fail, say
from .progress import Bar, progress_bar
from .server_commands import (
    load_settings,
    open_migrated_store,
    open_services_or_fail,
    out,
    private_files,
)

if TYPE_CHECKING:
    from ..server.crypto.rekey import HolderStatus
    from ..server.services import Services
    from ..server.settings import Settings

# Not now, maybe later (sysexits' EX_TEMPFAIL): a rekey that live processes still hold
# back, a rotation during a rekey. Running the command again later may succeed.
EXIT_NOT_YET = 75


@click.group("master-key")
def master_key() -> None:
    """Generate a master key, rekey to a new one, and rotate the key-encryption keys."""


@master_key.command("generate")
@click.option("--file", "path", type=click.Path(path_type=Path), help="write to FILE (mode 0600)")
def master_key_generate(path: Path | None) -> None:
    """Print a new random master key (or write it to a new file)."""
    from ..server.crypto.masterkey import create_key_file, generate_master_key

    private_files()
    if path is None:
        click.echo(generate_master_key())
        return
    if not create_key_file(path):
        fail(f"{path} exists; refusing to overwrite a master key", code=2)
    err.print(f"wrote a new master key to {path}", highlight=False)


@master_key.command("rotate")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="data keys per transaction",
)
def master_key_rotate(batch_size: int) -> None:
    """Add a new key-encryption key and rewrap every data key under it.

    Safe to interrupt: running it again finishes the interrupted rotation. Secrets stay
    readable throughout, by running servers too. Refused (exit 75) during a rekey.
    """
    from ..server.crypto.rotation import RotationRefused, rotate

    services = open_services_or_fail(load_settings())
    services.heartbeat.start()
    try:
        with progress_bar("rewrapping data keys") as bar:
            total = _left_to_rewrap(services) if bar.live else 0

            def on_batch(done: int) -> None:
                # A line per batch where there is no bar: a log (and a test) reads them.
                if bar.live:
                    bar.update(completed=done, total=max(total, done))
                else:
                    err.print(f"rewrapped {done} data keys", highlight=False)

            bar.update(total=total)
            report = rotate(
                services.store, services.barrier, batch_size=batch_size, on_batch=on_batch
            )
    except RotationRefused as exc:
        fail(str(exc), code=EXIT_NOT_YET)
    finally:
        services.close()
    verb = "resumed and finished" if report.resumed else "finished"
    err.print(
        f"rotation {verb}: {report.rewrapped} data keys rewrapped under KEK "
        f"{report.active_kek_id}; retired KEKs: {report.retired_kek_ids or 'none'}",
        highlight=False,
    )


def _left_to_rewrap(services: Services) -> int:
    """The data keys a rotation will rewrap, for the bar's total: those under a draining
    KEK when one was interrupted, else under the active one (which it starts draining).
    Counted only for a bar: on a large table the count is a scan of its own."""
    with services.store.read() as tx:
        entries = tx.keyring.entries()
        counts = tx.keyring.count_sealed_by_kek()
    draining = [e.id for e in entries if e.state == "draining"]
    source = draining or [e.id for e in entries if e.state == "active"]
    return sum(counts.get(kek_id, 0) for kek_id in source)


# -- rekey --------------------------------------------------------------------------------------
class _RekeyDisplay:
    """Progress of a rekey on stderr: a bar on a terminal, else one line per step (what a
    log or a test reads)."""

    def __init__(self, bar: Bar) -> None:
        self.bar = bar
        self.last_waiting: tuple[str, ...] = ()

    def event(self, message: str) -> None:
        say(message)

    def batch(self, done: int, total: int) -> None:
        if self.bar.live:
            self.bar.update(completed=done, total=total)
        else:
            say(f"copied {done}/{total} KEKs and barrier rows under the new master key")

    def waiting(self, holders: list[HolderStatus], left: float) -> None:
        names = tuple(h.describe() for h in holders)
        self.bar.update(
            description=f"waiting {left:.0f} s more for {len(holders)} process(es) to "
            "hold the new key"
        )
        if names != self.last_waiting:
            self.last_waiting = names
            say(
                f"waiting up to {left:.0f} s for {len(holders)} process(es) to hold the new "
                f"key: {'; '.join(names)}"
            )


@master_key.command("rekey")
@click.option(
    "--new-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="the new master key (as `master-key generate --file` writes it); "
    "default: make one and roll it into the configured key file",
)
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="seconds to wait for every live process to hold the new key before refusing",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="KEKs and barrier rows copied per transaction",
)
@click.option("--abort", is_flag=True, help="abandon the rekey under way instead")
def master_key_rekey(new_key_file: Path | None, wait: float, batch_size: int, abort: bool) -> None:
    """Move the KEKs and the barrier to a new master key, online (docs/rekey.md).

    Every KEK and barrier row is first copied under the new key; running processes then
    pick the key up from their key file; once every live one holds it, the copies take
    over in one transaction and the old key opens nothing. Exit 75 when live processes
    still hold only the old key (they are named). Safe to kill: running it again goes
    on from where it stopped.
    """
    from ..server.crypto import MasterKeyError, UnsealError
    from ..server.crypto.heartbeat import gone_after
    from ..server.crypto.masterkey import key_id, load_master_keys, read_key_file
    from ..server.crypto.rekey import HoldersBehind, KeyFileRollout, RekeyRefused, RekeyRun

    if abort and new_key_file is not None:
        fail("--abort takes no --new-key-file", code=2)
    settings = load_settings()
    new_key = None
    if new_key_file is not None:
        try:
            [new_key] = read_key_file(new_key_file)
        except ValueError:
            fail(f"{new_key_file} must hold one master key", code=2)
        except MasterKeyError as exc:
            fail(str(exc), code=2)
    services = open_services_or_fail(settings)
    from_env = settings.master_key.get_secret_value() if settings.master_key else None
    file = settings.master_key_file if from_env is None else None
    interval = settings.barrier_heartbeat_seconds
    try:
        with progress_bar("copying under the new key") as bar:
            display = _RekeyDisplay(bar)
            run = RekeyRun(
                services.store,
                services.barrier,
                configured=load_master_keys(from_env, settings.master_key_file),
                rollout=KeyFileRollout(file) if file is not None else None,
                new_key=new_key,
                batch_size=batch_size,
                gone_after=gone_after(interval),
                wait=wait,
                poll=min(1.0, interval),
                on_event=display.event,
                on_batch=display.batch,
                on_waiting=display.waiting,
            )
            if abort:
                aborted = run.abort()
                say("rekey abandoned" if aborted else "no rekey was under way")
                return
            report = run.run()
    except HoldersBehind as exc:
        fail(
            f"{exc}. Run `strongroom master-key rekey` again then (or with --wait SECONDS)",
            code=EXIT_NOT_YET,
        )
    except RekeyRefused as exc:
        fail(str(exc), code=1)
    except (MasterKeyError, UnsealError) as exc:
        fail(str(exc), code=2)
    finally:
        services.close()
    if not report.already_finished:
        say(f"rekeyed: master key id {report.old_key_id} -> {report.new_key_id}")
    if file is None and new_key is not None:
        say(
            f"set every process's master key to the new one (id {key_id(new_key)}) "
            "before it restarts: the old one opens nothing now"
        )


# -- destroy-retired ----------------------------------------------------------------------------
@master_key.command("destroy-retired")
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def master_key_destroy_retired(yes: bool) -> None:
    """Delete the key material of retired KEKs that wrap no data key (asks first).

    A retired KEK still wrapping data keys (rows restored or written after its rotation)
    is kept and counted (exit 1). Off a terminal, --yes is required.
    """
    from ..server.crypto.rotation import destroy_retired, retired_keks

    store = open_migrated_store(load_settings())
    try:
        with store.read() as tx:
            found = retired_keks(tx)
        if found.drained and not yes:
            if not sys.stdin.isatty():
                fail("stdin is not a terminal: pass --yes to destroy without asking", code=2)
            ids = ", ".join(str(k) for k in found.drained)
            click.confirm(
                f"Destroy retired KEK(s) {ids}? Data under them could never be read again",
                abort=True,
                err=True,
            )
        done = destroy_retired(store, only=found.drained)
    finally:
        store.close()
    say(f"destroyed retired KEKs: {', '.join(str(k) for k in done.drained) or 'none'}")
    if done.still_wrapping:
        kept = "; ".join(
            f"KEK {kek} still wraps {n} data key(s)" for kek, n in done.still_wrapping.items()
        )
        fail(
            f"kept: {kept}. Rotation left nothing under a retired KEK, so these rows were "
            "restored or written around it; strongroom refuses to open them",
            code=1,
        )


# -- status -------------------------------------------------------------------------------------
def _kek_rows(services: Services) -> list[dict[str, Any]]:
    with services.store.read() as tx:
        entries = tx.keyring.entries()
        counts = tx.keyring.count_sealed_by_kek()
    return [
        {
            "kek_id": e.id,
            "state": e.state,
            "data_keys": counts.get(e.id, 0),
            "created_at": e.created_at.isoformat(),
            "retired_at": e.retired_at.isoformat() if e.retired_at else None,
            "copied_under_incoming_key": e.wrapped_next is not None,
        }
        for e in entries
    ]


def _rekey_state(services: Services, settings: Settings) -> dict[str, Any]:
    from ..server.crypto.heartbeat import gone_after
    from ..server.crypto.rekey import holder_statuses, in_progress

    with services.store.read() as tx:
        roles = services.barrier.roles(tx)
        rekeying = in_progress(tx)
        holders = holder_statuses(tx, gone_after(settings.barrier_heartbeat_seconds))
    return {
        "current_key_id": roles.current,
        "incoming_key_id": roles.incoming,
        "rekey_in_progress": rekeying,
        "holders": [
            {
                "hostname": h.holder.hostname,
                "pid": h.holder.pid,
                "master_key_ids": list(h.holder.master_key_ids),
                "started_at": h.holder.started_at.isoformat(),
                "seen_at": h.holder.seen_at.isoformat(),
                "seen_seconds_ago": round(h.seen_ago, 1),
                "live": h.live,
            }
            for h in holders
            if h.holder.process_id != services.barrier.process_id
        ],
    }


def _barrier_report() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The KEK rows and the rekey state, read once by ``status`` and ``holders``."""
    settings = load_settings()
    services = open_services_or_fail(settings)
    try:
        return _kek_rows(services), _rekey_state(services, settings)
    finally:
        services.close()


@master_key.command("status")
@click.option("--json", "as_json", is_flag=True, help="print the KEKs as JSON")
def master_key_status(as_json: bool) -> None:
    """Show each KEK's state and how many data keys it wraps, the rekey state, and the
    processes holding the barrier open (with the ids of the master keys they hold)."""
    rows, rekey = _barrier_report()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table("KEK", "state", "data keys", "created", "retired")
    for row in rows:
        table.add_row(
            str(row["kek_id"]),
            row["state"],
            str(row["data_keys"]),
            row["created_at"][:19],
            (row["retired_at"] or "")[:19],
        )
    out.print(table)
    _print_rekey(rekey, rows)


def _print_rekey(rekey: dict[str, Any], kek_rows: list[dict[str, Any]]) -> None:
    keks = [row for row in kek_rows if row["state"] != "destroyed"]  # nothing left to copy
    copied = sum(row["copied_under_incoming_key"] for row in keks)
    current, incoming = rekey["current_key_id"], rekey["incoming_key_id"]
    held = f"current {current}" if current else "not the current one"
    out.print(
        f"master key: this command holds {held}" + (f", incoming {incoming}" if incoming else ""),
        highlight=False,
    )
    if rekey["rekey_in_progress"]:
        out.print(
            f"rekey: under way, {copied} of {len(keks)} KEKs copied under the incoming key "
            "(`strongroom master-key rekey` goes on, `--abort` abandons it)",
            highlight=False,
        )
    else:
        out.print("rekey: none under way", highlight=False)
    if not rekey["holders"]:
        out.print("processes holding the barrier: none besides this one", highlight=False)
        return
    names = {current: "current", incoming: "incoming"}
    table = Table("host", "pid", "master key ids", "started", "last seen", "live")
    for h in rekey["holders"]:
        ids = " ".join(f"{i} ({names[i]})" if i in names and i else i for i in h["master_key_ids"])
        table.add_row(
            h["hostname"],
            str(h["pid"]),
            ids,
            h["started_at"][:19],
            f"{h['seen_seconds_ago']} s ago",
            "yes" if h["live"] else "gone",
        )
    out.print(table)


@master_key.command("holders")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def master_key_holders(as_json: bool) -> None:
    """Show the rekey state and the processes holding the barrier open."""
    rows, rekey = _barrier_report()
    if as_json:
        click.echo(json.dumps(rekey, indent=2))
        return
    _print_rekey(rekey, rows)
