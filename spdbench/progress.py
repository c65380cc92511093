"""Progress bars on standard error for long work: training, sampling, scoring and the feature
classifier, all with one look.

A bar is drawn only in a terminal, on rank 0 under ``torchrun``, and never after ``hide_bars()``
(``--quiet``). Work started
while a bar is shown (an evaluation during training) adds its own line under it, which goes away
when that work ends.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_shown: Progress | None = None  #: the bars on screen now
_hidden = False


def hide_bars() -> None:
    """Draw no more bars in this process."""
    global _hidden
    _hidden = True


class Bar:
    """One line of progress; every method does nothing when the bar is not drawn."""

    def __init__(self, progress: Progress | None, task: TaskID | None) -> None:
        self.progress, self.task = progress, task

    def advance(self, amount: float = 1) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, amount)

    def describe(self, text: str) -> None:
        """Replace the bar's description (e.g. with the latest loss)."""
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, description=text)


@contextlib.contextmanager
def progress_bar(description: str, total: float, completed: float = 0, quiet: bool = False) -> Iterator[Bar]:
    """A bar for ``total`` units of work, ``completed`` of them already done."""
    global _shown
    if _shown is not None:
        task = _shown.add_task(description, total=total, completed=completed)
        try:
            yield Bar(_shown, task)
        finally:
            _shown.remove_task(task)
        return
    console = Console(stderr=True)
    other_rank = int(os.environ.get("RANK", "0")) > 0  # under torchrun, rank 0 alone draws
    if quiet or _hidden or other_rank or not console.is_terminal:
        yield Bar(None, None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        _shown = progress
        try:
            yield Bar(progress, progress.add_task(description, total=total, completed=completed))
        finally:
            _shown = None
