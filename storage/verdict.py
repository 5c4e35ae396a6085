"""Verdicts and the per-stage counts that every step reports.

A filter returns a ``Verdict``; a task folds its verdicts into a ``StageStats`` and returns it with
its kept items. Flows only add StageStats together, so each number is counted exactly once, by
the step that did the work.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str | None = None

    @classmethod
    def kept(cls) -> "Verdict":
        return cls(True, None)

    @classmethod
    def drop(cls, reason: str) -> "Verdict":
        return cls(False, reason)


KEEP = Verdict.kept()


@dataclass
class StageStats:
    """What one named stage did: in = kept + dropped, and why items were dropped."""

    stage: str
    n_in: int = 0
    n_kept: int = 0
    n_dropped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def record(self, verdict: Verdict) -> None:
        self.n_in += 1
        if verdict.keep:
            self.n_kept += 1
        else:
            self.n_dropped += 1
            self.reasons[verdict.reason or "unspecified"] += 1

    def __add__(self, other: "StageStats") -> "StageStats":
        if other.stage != self.stage:
            raise ValueError(f"cannot add stats of stage {other.stage!r} to stage {self.stage!r}")
        return StageStats(
            stage=self.stage,
            n_in=self.n_in + other.n_in,
            n_kept=self.n_kept + other.n_kept,
            n_dropped=self.n_dropped + other.n_dropped,
            reasons=self.reasons + other.reasons,
            seconds=self.seconds + other.seconds,
        )

    def top_reasons(self, n: int = 3) -> list[tuple[str, int]]:
        return self.reasons.most_common(n)
