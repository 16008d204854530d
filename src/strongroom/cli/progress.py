"""Progress on stderr for commands over many secrets or long waits: a bar (or a spinner)
when stderr is a terminal, nothing at all elsewhere.

A pipe, a log file or a test's captured output gets no bar: its redraws would be noise
there, and the one-line messages of :func:`.common.say` already tell a log what
happened. Callers report progress the same way in both cases (:class:`Bar`), and may
check :attr:`Bar.live` to print a line instead where a log needs one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from .common import err


def stderr_is_terminal() -> bool:
    """Whether stderr is a real terminal a bar can redraw on.

    Asked of the stream itself, not of rich, which takes ``FORCE_COLOR`` (set by many CI
    systems) to mean a terminal: a bar would then land in a captured log.
    """
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without one, or closed
        return False


class Bar:
    """One progress display, or a stand-in that does nothing (``live`` is False)."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def live(self) -> bool:
        return self._progress is not None

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def update(
        self,
        *,
        completed: int | None = None,
        total: int | None = None,
        description: str | None = None,
    ) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task, completed=completed, total=total, description=description
            )


@contextmanager
def _shown(progress: Progress, description: str, total: int | None) -> Iterator[Bar]:
    with progress:
        yield Bar(progress, progress.add_task(description, total=total))


def _progress(*columns: ProgressColumn) -> Progress:
    # transient: the bar goes when done, leaving the command's own closing line;
    # no redirection: stdout stays the command's (values, JSON), never the console's.
    return Progress(
        *columns, console=err, transient=True, redirect_stdout=False, redirect_stderr=False
    )


@contextmanager
def progress_bar(description: str, total: int | None = None, *, show: bool = True) -> Iterator[Bar]:
    """A bar of ``done/total`` with the time taken, on a terminal (and if ``show``);
    else a no-op."""
    if not (show and stderr_is_terminal()):
        yield Bar()
        return
    progress = _progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    )
    with _shown(progress, description, total) as bar:
        yield bar


@contextmanager
def spinner(description: str) -> Iterator[Bar]:
    """A spinner with the time waited so far, on a terminal; else a no-op."""
    if not stderr_is_terminal():
        yield Bar()
        return
    progress = _progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with _shown(progress, description, None) as bar:
        yield bar
