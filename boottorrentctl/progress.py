"""A one-line progress bar for long daemon work (copying, hashing, building), drawn by rich."""

from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TaskProgressColumn, TextColumn


class ProgressBar:
    def __init__(self, out: TextIO) -> None:
        console = Console(file=out)
        # Redrawing in place only makes sense on a terminal; logs get nothing.
        self.enabled = console.is_terminal
        # Drawn when a signal arrives, not by rich's refresh thread: nothing runs between.
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(bar_width=30),
                                  TaskProgressColumn(), console=console, auto_refresh=False)
        self._task: TaskID | None = None

    def update(self, name: str, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task("", total=None)
        # total 0 (an empty OS) is done at once: a full bar, as before.
        self._progress.update(self._task, description=f"{phase:>8} {name}",
                              completed=done if total else 1, total=total or 1, refresh=True)

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
