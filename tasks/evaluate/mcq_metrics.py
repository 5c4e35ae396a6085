"""MED multiple-choice accuracy, overall and per edit category, with unparseable answers reported.

The choice is read by ``pairsmith.tasks.answers.mcq_answer.parse_choice``, which never guesses: an answer naming
no option, or several, is unparseable and scored wrong. How many there were is a metric of its
own, so a low accuracy from a model that does not follow the answer format is told apart from one
that picks wrong options.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pairsmith.tasks.answers.mcq_answer import parse_choice

OVERALL = "all"


@dataclass(frozen=True)
class McqItem:
    prediction: str
    answer: str  # the right letter, as stored in samples.answer
    options: list[str] | None
    category: str | None


@dataclass
class McqTally:
    n: int = 0
    correct: int = 0
    unparseable: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


@dataclass
class McqMetrics:
    groups: dict[str, McqTally] = field(default_factory=dict)  # "all" and one per category

    def rows(self) -> list[tuple[str, str, float, int]]:
        """(group, metric, value, n) for storage: accuracy, and unparseable as a count and a rate."""
        out = []
        for group, t in self.groups.items():
            out += [(group, "accuracy", t.accuracy, t.n), (group, "unparseable", float(t.unparseable), t.n),
                    (group, "unparseable_rate", t.unparseable / t.n if t.n else 0.0, t.n)]
        return out


def mcq_metrics(items: list[McqItem]) -> McqMetrics:
    if not items:
        raise ValueError("no multiple-choice answers to score")
    groups: dict[str, McqTally] = defaultdict(McqTally)
    for item in items:
        truth = parse_choice(item.answer)
        if truth is None:
            raise ValueError(f"stored MCQ answer {item.answer!r} names no option letter")
        chosen = parse_choice(item.prediction, item.options)
        for group in (OVERALL, item.category or "uncategorised"):
            tally = groups[group]
            tally.n += 1
            tally.correct += chosen == truth
            tally.unparseable += chosen is None
    ordered = {OVERALL: groups.pop(OVERALL), **dict(sorted(groups.items()))}
    return McqMetrics(ordered)
