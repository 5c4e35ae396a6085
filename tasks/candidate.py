"""The one candidate base every flow's items share: alive until a stage drops it with a reason.

A candidate (an Img-Diff pair or region, a MED edit, ...) moves through a pipeline's stages; the
first stage that rejects it sets ``drop_stage`` (the stage's one name, ``pairsmith.tasks.stage``),
``drop_reason`` (a snake_case reason declared with the stage) and optionally ``drop_detail`` (free
text: a score, a model's error). Dropped candidates stay in their batch, so the writer stores them
with everything measured before they fell out; ``alive`` is what later stages work on.
``judge`` is how a stage records one verdict: counted in its ``StageStats`` and, if it drops,
marked on the candidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from pairsmith.storage.verdict import StageStats, Verdict


@dataclass(kw_only=True)
class Candidate:
    """Alive while ``drop_reason`` is None; ``drop(stage, reason, detail)`` takes it out of later stages.

    The fields are keyword-only, so a subclass's own fields keep their order in its constructor."""

    drop_stage: str | None = None
    drop_reason: str | None = None
    drop_detail: str | None = None

    @property
    def alive(self) -> bool:
        return self.drop_reason is None

    def drop(self, stage: str, reason: str, detail: str | None = None) -> None:
        """Drop at ``stage`` (the stage's name) for ``reason`` (one snake_case word), with an optional detail."""
        if not reason:
            raise ValueError(f"stage {stage!r}: a drop needs a reason")
        self.drop_stage, self.drop_reason, self.drop_detail = stage, reason, detail


C = TypeVar("C", bound=Candidate)


def judge(stats: StageStats, target: Candidate, verdict: Verdict, detail: str | None = None) -> None:
    """Count ``verdict`` in ``stats`` and, if it drops ``target``, mark it with this stage and reason."""
    stats.record(verdict)
    if not verdict.keep:
        target.drop(stats.stage, verdict.reason, detail)


def alive(items: Iterable[C]) -> list[C]:
    """The candidates no stage has dropped, in order."""
    return [i for i in items if i.alive]
