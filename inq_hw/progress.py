"""Progress reporting for long stages: a rich progress bar, or nothing.

The drivers call a :class:`Progress`; the CLI passes :class:`RichProgress` (to stderr, so
``--json`` output on stdout stays clean) and library users get :class:`Progress`, which
does nothing.
"""

import sys
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as _RichBar

__all__ = ["Progress", "RichProgress"]


class Progress:
    """Silent progress sink; subclass to show something."""

    def phase(self, description: str, total: int) -> None:
        """A new phase of ``total`` units begins."""

    def advance(self, units: int = 1) -> None:
        """``units`` more units of the current phase are done."""

    def message(self, text: str) -> None:
        """A line worth showing between phases."""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class RichProgress(Progress):
    """A rich progress bar on stderr, one task per phase."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._console = Console(file=sys.stderr)
        self._bar = _RichBar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self._console,
            disable=not enabled,
            transient=False,
        )
        self._task: TaskID | None = None
        self._enabled = enabled

    def phase(self, description: str, total: int) -> None:
        if self._task is not None:
            self._bar.stop_task(self._task)
        self._task = self._bar.add_task(description, total=total)

    def advance(self, units: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, units)

    def message(self, text: str) -> None:
        if self._enabled:
            self._bar.console.print(text)

    def __enter__(self) -> "RichProgress":
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()
