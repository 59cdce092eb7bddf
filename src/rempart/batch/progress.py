"""Progress of a batch run on the terminal: a Rich bar with the rate and the time left."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second, over Rich's recent window."""

    def render(self, task: Task) -> Text:
        """The rate, or nothing before there is one."""
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f} items/s", style="progress.data.speed")


class RichProgress:
    """Shows a batch run's progress on ``console`` (nothing when it is not a terminal)."""

    def __init__(self, console: Console, description: str = "scanning") -> None:
        self._progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal,
        )
        self._description = description
        self._task: TaskID | None = None

    def start(self, total: int, done: int) -> None:
        """``total`` items, ``done`` already finished by an earlier run."""
        self._task = self._progress.add_task(self._description, total=total, completed=done)

    def advance(self) -> None:
        """One more item finished."""
        if self._task is not None:
            self._progress.advance(self._task)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()
