"""Which task runs each stage of the Img-Diff pipelines, and what it takes besides the batch's items.

The pipelines (``pairsmith.filters.imgdiff.pipelines``) say which stages run in which order; this
maps a stage's name to its task, the stage task of the same name in the module of the same name.
A task's parameters after ``items`` name what it takes (a model such as ``clip``, ``thresholds``, or
a setting such as ``keep_masks``): the flow passes its values of those names (``StepInputs`` in
``pairsmith.flows.imgdiff_replace``) and tags the task run ``gpu`` when one of them is a model
that runs on a GPU. A filter stage that needs no model has no task of its own: it runs the generic
rule task (``pairsmith.tasks.imgdiff.rule``), which takes ``thresholds``.
"""

from __future__ import annotations

import inspect
from typing import Any

from pairsmith.filters.pipeline import Stage
from pairsmith.tasks.imgdiff.caption_filter import caption_filter
from pairsmith.tasks.imgdiff.crop_filter import crop_filter
from pairsmith.tasks.imgdiff.describe import describe
from pairsmith.tasks.imgdiff.difference_captions import difference_captions
from pairsmith.tasks.imgdiff.generate import generate
from pairsmith.tasks.imgdiff.inpaint import inpaint
from pairsmith.tasks.imgdiff.load import load
from pairsmith.tasks.imgdiff.naturalness import natural
from pairsmith.tasks.imgdiff.pair_filter import pair_filter
from pairsmith.tasks.imgdiff.propose import propose
from pairsmith.tasks.imgdiff.region_captions import region_captions
from pairsmith.tasks.imgdiff.removal_crop import removal_crop
from pairsmith.tasks.imgdiff.removal_itm import removal_itm
from pairsmith.tasks.imgdiff.rewrite import rewrite
from pairsmith.tasks.imgdiff.rule import rule_task

STEPS: dict[str, Any] = {
    task.name: task
    for task in (rewrite, generate, load, pair_filter, propose, crop_filter, region_captions, caption_filter,
                 difference_captions, removal_crop, inpaint, describe, removal_itm, natural)
}


def task_for(stage: Stage):
    """The task running ``stage``: its own, or the generic rule task of a filter that needs no model."""
    if stage.name in STEPS:
        return STEPS[stage.name]
    if stage.is_filter:
        return rule_task(stage)
    raise KeyError(f"stage {stage.name!r} has no task: add it to STEPS")


def inputs_of(task) -> tuple[str, ...]:
    """The names of what ``task`` takes after the batch's items, in order."""
    params = list(inspect.signature(task.fn).parameters)
    if params[:1] != ["items"]:
        raise TypeError(f"task {task.name!r} must take the batch's items first, not {params[:1]}")
    return tuple(params[1:])
