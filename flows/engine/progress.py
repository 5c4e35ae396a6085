"""Progress of a long flow, shown in the terminal and in the Prefect UI.

The terminal bar (rich, on stderr) is for ad-hoc CLI runs; the Prefect progress artifact is for a
deployment someone watches in the UI. Both advance per finished item.
"""

from __future__ import annotations

import sys
from uuid import UUID

from pairsmith.flows.engine.interrupts import check


class RunProgress:
    def __init__(self, key: str, total: int, done: int = 0, description: str = "", terminal: bool = False):
        self.key, self.total, self.done = key, max(total, 1), done
        self.description = description
        self._terminal = terminal
        self._bar = None
        self._task_id = None
        self._artifact: UUID | None = None
        self._reported = -1.0

    def __enter__(self) -> "RunProgress":
        from prefect.artifacts import create_progress_artifact

        self._artifact = create_progress_artifact(
            progress=self.percent, key=self.key, description=self.description or None
        )
        if self._terminal:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                console=Console(file=sys.stderr), transient=False,
            )
            self._bar.start()
            self._task_id = self._bar.add_task(self.description, total=self.total, completed=self.done)
        return self

    @property
    def percent(self) -> float:
        return round(100.0 * min(self.done, self.total) / self.total, 1)

    def advance(self, n: int = 1) -> None:
        """Count ``n`` finished items; also a safe point where a Ctrl-C asked for stops the run."""
        check()
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task_id, completed=self.done)

    def flush(self) -> None:
        """Send the percentage to the Prefect API (once per batch, not per item: it is a request)."""
        from prefect.artifacts import update_progress_artifact

        if self._artifact is not None and self.percent != self._reported:
            update_progress_artifact(self._artifact, self.percent)
            self._reported = self.percent

    def __exit__(self, *exc) -> None:
        self.flush()
        if self._bar is not None:
            self._bar.stop()
