"""``strongroom tasks ...``: define tasks from JSON files, run them, follow their steps.

Outputs and errors shown here are the server's, already redacted of every secret value
the run used; nothing on this side handles a value.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from .._waiting import poll_delays
from ..models import Execution, ExecutionStep
from .common import (
    ClientOptions,
    ExitCode,
    api_errors,
    client_options,
    fail,
    open_client,
    options_of,
    say,
)
from .progress import Bar, spinner


def _read_task(path: Path) -> dict[str, Any]:
    """A task file: ``{"task": {...}}`` or the task's fields at the top level."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="FILE") from None
    except ValueError as exc:
        raise click.BadParameter(f"{path} is not valid JSON: {exc}", param_hint="FILE") from None
    if not isinstance(document, dict):
        raise click.BadParameter(f"{path} must hold a JSON object", param_hint="FILE")
    task = document.get("task", document)
    if not isinstance(task, dict):
        raise click.BadParameter(f"{path}: 'task' must be an object", param_hint="FILE")
    return task


def _parse_input(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # a plain string input, as the guide's transform takes


def _show_step(step: ExecutionStep) -> None:
    line = f"step {step.index} {step.kind}: {step.status}"
    if step.error:
        line += f" — {step.error}"
    say(line)


def _follow(client: Any, execution: Execution, timeout: float, waiting: Bar) -> Execution:
    """Print each step as it changes status until the execution ends (or ``timeout``);
    ``waiting`` (a spinner on a terminal) shows the status meanwhile."""
    shown: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    for delay in poll_delays():
        execution = client.executions.get(execution.id)
        waiting.update(description=f"execution {execution.id}: {execution.status}")
        for step in client.executions.steps(execution.id).items:
            if shown.get(step.index) != step.status:
                shown[step.index] = step.status
                _show_step(step)
        if execution.done:
            return execution
        if time.monotonic() >= deadline:
            fail(f"execution {execution.id} is still {execution.status} after {timeout:g} s")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
    raise AssertionError("unreachable")  # pragma: no cover


@click.group()
@client_options(from_env=True)
@click.pass_context
def tasks(ctx: click.Context, api_key: str | None, base_url: str | None) -> None:
    """Create tasks from JSON files and run them."""
    ctx.obj = ClientOptions(api_key, base_url)


@tasks.command("create")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the task as JSON")
@click.pass_context
@api_errors
def tasks_create(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Create a task from FILE.json; prints its id (warnings go to stderr)."""
    definition = _read_task(file)
    with open_client(options_of(ctx, None, None)) as client:
        task = client.tasks.create(task=definition)
    for warning in (task.model_extra or {}).get("warnings") or []:
        say(f"warning: {warning.get('location')}: {warning.get('message')}")
    click.echo(task.model_dump_json(indent=2) if as_json else task.id)


@tasks.command("run")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--input", "input_text", metavar="JSON", help="the execution input (JSON or text)")
@click.option("--wait/--no-wait", default=True, show_default=True, help="follow it to the end")
@click.option("--timeout", default=600.0, show_default=True, help="seconds to wait at most")
@click.option("--json", "as_json", is_flag=True, help="print the execution as JSON")
@click.pass_context
@api_errors
def tasks_run(
    ctx: click.Context,
    file: Path,
    input_text: str | None,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Create a task from FILE.json and run it, printing each step's progress.

    Exits 0 when the execution succeeds and 1 when it fails or is cancelled; the output
    (redacted by the server) goes to stdout.
    """
    definition = _read_task(file)
    with open_client(options_of(ctx, None, None)) as client:
        task = client.tasks.create(task=definition)
        execution = client.tasks.execute(task.id, _parse_input(input_text))
        say(f"execution {execution.id} of task {task.id}: {execution.status}")
        if wait:
            with spinner(f"execution {execution.id}: {execution.status}") as waiting:
                execution = _follow(client, execution, timeout, waiting)
    if as_json:
        click.echo(execution.model_dump_json(indent=2))
    elif execution.status == "succeeded":
        output = execution.output
        click.echo(output if isinstance(output, str) else json.dumps(output, indent=2))
    if execution.status in ("failed", "cancelled"):
        detail = f": {execution.error}" if execution.error else ""
        fail(f"execution {execution.id} {execution.status}{detail}", ExitCode.ERROR)
