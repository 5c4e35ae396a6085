"""How a pipeline is declared: an ordered list of named stages, each with its scores, reasons and keep rule.

Following datatrove's list of pipeline steps, a pipeline is data. A ``Stage`` says what one step
judges (a pair, a region, or all regions of a pair together), which stored columns it writes, which
reasons it drops with and, for a filter, its pure keep rule, the stored columns that rule reads and
the threshold fields it reads. A ``Pipeline`` is the ordered tuple of its stages. The flow runs the
list, ``pairsmith refilter`` re-judges stored rows by walking the same list, the funnel and the
drop-off table follow its order, and tests read it rather than positions. Nothing here is specific
to Img-Diff (``pairsmith.filters.imgdiff.pipelines`` declares its two pipelines with it).

A keep rule sees a row as a mapping of column name to value: a pair's stored columns, or a region's
with its pair's ``width`` and ``height`` added (the flow builds the same mapping from the items it
carries), so the flow and ``refilter`` call one function on the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel

from pairsmith.storage.verdict import Verdict

Level = Literal["pair", "region", "pair-regions"]
PAIR: Level = "pair"  # one verdict per pair
REGION: Level = "region"  # one verdict per region, each on its own
PAIR_REGIONS: Level = "pair-regions"  # one verdict per region, the regions of a pair judged together (NMS)

NEEDS_RERUN = "refilter_needs_rerun"  # refilter: passes the new thresholds, but later model steps never ran on it

Row = Mapping[str, Any]
RowRule = Callable[[Row, Any], Verdict]  # (row, thresholds) -> verdict
GroupRule = Callable[[Sequence[Row], Any], list[Verdict]]  # (one pair's region rows, thresholds) -> a verdict each


@dataclass(frozen=True)
class Stage:
    """One named step of a pipeline: a model step (``rule`` None) or a filter.

    ``name`` is the step's one name: its Prefect task, its ``stage_stats`` rows, the ``drop_stage`` /
    ``reason`` it stores and its tasks module. ``writes``: the stored columns it measures. ``reasons``:
    the drop reasons it gives (a model step may also drop as ``<name>_error``). ``rule``: the pure
    keep rule of a filter, a ``RowRule``, or a ``GroupRule`` at level ``pair-regions``. ``reads``: the
    stored columns the rule needs (a row missing one cannot be re-judged), or a function of the
    thresholds giving them. ``thresholds``: the threshold fields the rule reads.
    """

    name: str
    level: Level
    writes: tuple[str, ...] = ()
    reasons: tuple[str, ...] = ()
    rule: RowRule | GroupRule | None = None
    reads: tuple[str, ...] | Callable[[Any], tuple[str, ...]] = ()
    thresholds: tuple[str, ...] = ()
    doc: str = ""
    optional: bool = False  # a filter that is off while every one of its thresholds is None (``off``)

    def off(self, thresholds: Any) -> bool:
        """An optional filter whose thresholds are all None under ``thresholds`` (e.g. Img-Diff's
        unnatural-image filter while ``natural_min`` is None): it judges nothing and counts nowhere."""
        return self.optional and all(getattr(thresholds, t, None) is None for t in self.thresholds)

    def __post_init__(self) -> None:
        if self.rule is None and (self.thresholds or self.reads):
            raise ValueError(f"stage {self.name!r}: reads/thresholds without a keep rule")
        for reason in self.reasons:
            if not reason or reason != reason.strip() or " " in reason:
                raise ValueError(f"stage {self.name!r}: reason {reason!r} must be one snake_case word")

    @property
    def is_filter(self) -> bool:
        return self.rule is not None

    def needs(self, thresholds: Any) -> tuple[str, ...]:
        """The stored columns the keep rule reads under ``thresholds``."""
        return self.reads(thresholds) if callable(self.reads) else self.reads

    def judge(self, row: Row, thresholds: Any) -> Verdict:
        """The verdict of a pair or region filter on one row."""
        if self.level == PAIR_REGIONS or self.rule is None:
            raise TypeError(f"stage {self.name!r} judges {'a group' if self.rule else 'nothing'}, not one row")
        return self.rule(row, thresholds)

    def judge_group(self, rows: Sequence[Row], thresholds: Any) -> list[Verdict]:
        """The verdicts of a ``pair-regions`` filter on one pair's regions, in the order given."""
        if self.level != PAIR_REGIONS or self.rule is None:
            raise TypeError(f"stage {self.name!r} is not a pair-regions filter")
        verdicts = self.rule(rows, thresholds)
        if len(verdicts) != len(rows):
            raise ValueError(f"stage {self.name!r}: {len(verdicts)} verdicts for {len(rows)} regions")
        return verdicts


class NoThresholds(BaseModel):
    """The thresholds of a pipeline without keep rules here (its filters live in its steps)."""


@dataclass(frozen=True)
class Pipeline:
    """A pipeline's stages in the order they run; ``thresholds`` is the config its keep rules read."""

    method: str
    stages: tuple[Stage, ...]
    thresholds: type[BaseModel] = NoThresholds

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"pipeline {self.method!r} names a stage twice: {names}")
        fields = set(self.thresholds.model_fields)
        for s in self.stages:
            unknown = set(s.thresholds) - fields
            if unknown:
                raise ValueError(f"stage {s.name!r} reads {sorted(unknown)}, not fields of {self.thresholds.__name__}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"pipeline {self.method!r} has no stage {name!r}")

    @property
    def filters(self) -> tuple[Stage, ...]:
        """The stages with a keep rule, in order: what ``refilter`` re-applies."""
        return tuple(s for s in self.stages if s.is_filter)

    def until(self, name: str) -> tuple[Stage, ...]:
        """The stages before ``name``."""
        return self.stages[: self.names.index(name)]

    def outputs(self) -> tuple[str, ...]:
        """Columns written by the stages after the last filter: what a region passing every filter must
        carry to be kept (it has them only if the run that made it did not drop it earlier)."""
        last = max((i for i, s in enumerate(self.stages) if s.is_filter), default=-1)
        return tuple(c for s in self.stages[last + 1:] for c in s.writes)

    def with_source(self, replaced: Sequence[str], source: Sequence[Stage]) -> "Pipeline":
        """The same pipeline with its leading stages ``replaced`` swapped for ``source`` (where its items
        come from: made here, or read from another run)."""
        if self.names[: len(replaced)] != tuple(replaced):
            raise ValueError(f"pipeline {self.method!r} does not start with {list(replaced)}")
        return replace(self, stages=(*source, *self.stages[len(replaced):]))


# refilter's closing pair-level stage of a pipeline without region filters (MED's): a pair passing
# every filter is kept only if the later model steps made its outputs (its samples); else it needs a re-run.
PAIR_OUTPUTS = Stage("pair_outputs", PAIR, reasons=(NEEDS_RERUN,),
                     doc="refilter: a pair passing every filter has its later model outputs (its samples)")


def merged_order(sequences: Iterable[Sequence[str]]) -> list[str]:
    """One order that keeps the order of every sequence (stage names of several pipelines): a name
    new to the result goes just before the first name already placed that follows it in its own
    sequence, else at the end."""
    order: list[str] = []
    for seq in sequences:
        for i, name in enumerate(seq):
            if name in order:
                continue
            later = [order.index(n) for n in seq[i + 1:] if n in order]
            order.insert(min(later) if later else len(order), name)
    return order
