"""Progress of a long flow, shown in the terminal and in the Prefect UI.

The terminal bar (rich, on stderr) is for ad-hoc CLI runs; the Prefect progress artifact is for a
deployment someone watches in the UI. Both advance per finished item.

Flows whose config has no ``show_progress`` (imports, propose-regions, maintenance) and the export,
which is no flow, draw their bar when the CLI asked for bars (``show_in_terminal``, which ``pairsmith``
calls when stderr is a terminal): flows with ``terminal=None``, the export by ``terminal_bars()``.
"""

from __future__ import annotations

import sys
from uuid import UUID

from pairsmith.storage.interrupts import check


_TERMINAL = False


def show_in_terminal(on: bool = True) -> bool:
    """Draw bars of ``RunProgress(terminal=None)`` on stderr from now on (or not); returns the old setting."""
    global _TERMINAL
    was, _TERMINAL = _TERMINAL, on
    return was


def terminal_bars() -> bool:
    """Whether the CLI asked for bars (``show_in_terminal``): what work outside a flow, such as export, draws."""
    return _TERMINAL


class RunProgress:
    def __init__(self, key: str, total: int, done: int = 0, description: str = "", terminal: bool | None = False):
        self.key, self.total, self.done = key, max(total, 1), done
        self.description = description
        self._terminal = _TERMINAL if terminal is None else terminal
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
        if self._artifact is not None and self.percent != self._reported:
            from prefect.artifacts import update_progress_artifact

            update_progress_artifact(self._artifact, self.percent)
            self._reported = self.percent

    def __exit__(self, *exc) -> None:
        self.flush()
        if self._bar is not None:
            self._bar.stop()


def tracked(batches: list, total: int, key: str, description: str, terminal: bool | None = None, size=len):
    """Iterate a run's pending ``batches`` (index ranges, or anything ``size`` counts the items of) under
    a progress bar over ``total`` items: the items of batches not pending count as done; each batch
    advances the bar once its loop body ends."""
    done = max(0, total - sum(size(b) for b in batches))
    with RunProgress(key=key, total=total, done=done, description=description, terminal=terminal) as progress:
        for batch in batches:
            yield batch
            progress.advance(size(batch))
            progress.flush()
