"""The task of a filter stage that needs no model: apply its declared keep rule to the items it is given.

Box-only filters (``box_area``, ``nms``, ...) judge what earlier stages stored, so their task is the
same for all: walk the pairs (or regions) still alive and record the stage's verdict on each, with
the rule ``pairsmith refilter`` applies to the stored rows. ``rule_task(stage)`` is that task,
named after the stage; the flows use it for every filter stage without a task of its own
(``pairsmith.tasks.imgdiff.steps``).
"""

from __future__ import annotations

from functools import cache

from pairsmith.filters.pipeline import PAIR, PAIR_REGIONS, Stage
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge
from pairsmith.tasks.stage import stage as stage_task


@cache
def rule_task(stage: Stage):
    """The Prefect task (named ``stage.name``) applying ``stage``'s keep rule: ``task(items, ctx)``, the
    rule reading ``ctx.thresholds``."""
    if not stage.is_filter:
        raise ValueError(f"stage {stage.name!r} has no keep rule to apply")

    @stage_task(stage.name)
    def apply(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
        thresholds = ctx.thresholds
        for item in alive(items):
            if stage.level == PAIR:
                judge(stats, item, stage.judge(item.row(), thresholds))
                continue
            regions = item.live_regions()
            rows = [r.row(*item.size) for r in regions]
            if stage.level == PAIR_REGIONS:
                verdicts = stage.judge_group(rows, thresholds)
            else:
                verdicts = [stage.judge(row, thresholds) for row in rows]
            for region, verdict in zip(regions, verdicts):
                judge(stats, region, verdict)

    return apply
