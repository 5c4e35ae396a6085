"""Which task runs each stage of the Img-Diff pipelines, and which components of the context it needs.

The pipelines (``pairsmith.filters.imgdiff.pipelines``) say which stages run in which order; this
maps a stage's name to its ``Step``: the stage task of the same name in the module of the same
name, and the components of the typed context (``pairsmith.tasks.imgdiff.context``) it reads,
declared here rather than found in the task's signature. Every task takes ``(items, ctx)``.
Before a flow runs a step, ``Step.ready`` checks the context holds what it ``needs`` (a missing
model or setting is an error naming it and the stage) and says whether to tag the task run ``gpu``
(a model it uses runs on a GPU). A filter stage that needs no model has no task of its own: it runs the generic rule
task (``pairsmith.tasks.imgdiff.rule``), which reads ``ctx.thresholds``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pairsmith.filters.pipeline import Stage
from pairsmith.tasks.imgdiff.caption_filter import caption_filter
from pairsmith.tasks.imgdiff.context import COMPONENTS, ImgDiffContext
from pairsmith.tasks.imgdiff.crop_filter import crop_filter
from pairsmith.tasks.imgdiff.describe import describe
from pairsmith.tasks.imgdiff.difference_captions import difference_captions
from pairsmith.tasks.imgdiff.generate import generate
from pairsmith.tasks.imgdiff.inpaint import inpaint
from pairsmith.tasks.imgdiff.load import load
from pairsmith.tasks.imgdiff.naturalness import natural, natural_off
from pairsmith.tasks.imgdiff.pair_filter import pair_filter
from pairsmith.tasks.imgdiff.propose import propose
from pairsmith.tasks.imgdiff.region_captions import region_captions
from pairsmith.tasks.imgdiff.removal_crop import removal_crop
from pairsmith.tasks.imgdiff.removal_itm import removal_itm
from pairsmith.tasks.imgdiff.rewrite import rewrite
from pairsmith.tasks.imgdiff.rule import rule_task


@dataclass(frozen=True)
class Step:
    """A stage's task and the context components it reads: ``needs`` (it cannot run without them)
    and ``may_use`` (models it uses when the run has them, e.g. the proposers ``proposers`` picks)."""

    task: Any
    needs: tuple[str, ...] = ()
    may_use: tuple[str, ...] = ()
    skip: Callable[[ImgDiffContext], bool] | None = None  # the step is off for this run (it then runs nowhere)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.needs + self.may_use) - COMPONENTS)
        if unknown:
            raise ValueError(f"step {self.task.name!r} names {unknown}, not components of ImgDiffContext")

    @property
    def name(self) -> str:
        return self.task.name

    def skipped(self, ctx: ImgDiffContext) -> bool:
        """Whether this run leaves the step out (an optional filter that is off and stores nothing)."""
        return self.skip is not None and self.skip(ctx)

    def ready(self, ctx: ImgDiffContext) -> bool:
        """Check ``ctx`` holds every component this step needs (``MissingComponent`` naming the first
        one missing and the stage); whether a model it uses runs on a GPU (its run then takes a slot)."""
        ctx.require(self.name, self.needs)
        return ctx.on_gpu(self.needs + self.may_use)


STEPS: dict[str, Step] = {step.name: step for step in (
    Step(rewrite, needs=("rewriter",)),
    Step(generate, needs=("generator",)),
    Step(load, needs=("db",)),
    Step(pair_filter, needs=("clip", "thresholds")),
    Step(propose, needs=("fastsam_sides", "keep_masks"), may_use=("fastsam", "diffmap")),
    Step(crop_filter, needs=("clip", "blip", "thresholds")),
    Step(region_captions, needs=("vlm",)),
    Step(caption_filter, needs=("blip", "clip", "thresholds")),
    Step(difference_captions, needs=("vlm",)),
    Step(removal_crop, needs=("clip", "thresholds")),
    Step(inpaint, needs=("inpainter", "max_inpaint_per_pair")),
    Step(describe, needs=("vlm", "describe_view")),
    Step(removal_itm, needs=("blip", "thresholds")),
    Step(natural, needs=("vlm", "thresholds"), may_use=("naturalness",), skip=natural_off),
)}


def step_for(stage: Stage) -> Step:
    """The step running ``stage``: its own, or the generic rule task of a filter that needs no model."""
    if stage.name in STEPS:
        return STEPS[stage.name]
    if stage.is_filter:
        return Step(rule_task(stage), needs=("thresholds",))
    raise KeyError(f"stage {stage.name!r} has no task: add it to STEPS")
