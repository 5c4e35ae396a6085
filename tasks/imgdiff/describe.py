"""Img-Diff removal, step 3, ``describe``: the VLM names the object each inpainting removed.

``describe_view`` says what it sees: ``crop``, the region cut from the original image, or ``box``, the
whole original image with the region's coordinates in the prompt, as Img-Diff describes it
(supplementary §19.2.4: "we provide the MLLM with the bounding box coordinates and ask it to describe
the corresponding area in the original image").

The description is what the ITM check and the two-choice question are about; one
``generate_batch`` call for the batch. A description with no words drops as ``describe_empty``.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import DESCRIBE
from pairsmith.models.adapters.vlm_chat import VlmRequest
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge_answer, live_regions, model_step
from pairsmith.tasks.imgdiff.prompts import DESCRIBE_PROMPT, clean_answer, describe_box_prompt
from pairsmith.tasks.stage import stage


@stage(DESCRIBE.name)
def describe(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.vlm`` and ``ctx.settings.describe_view``."""
    vlm, describe_view = ctx.vlm, ctx.settings.describe_view
    todo = live_regions(items)
    if not todo:
        return
    answers = model_step(stats, todo, lambda part: vlm.generate_batch(
        [describe_request(item, r.box, describe_view) for item, r in part]), vlm.config.model_id)
    for (_, region), answer in zip(todo, answers):
        if answer is None:
            continue
        region.scores["object_description"] = clean_answer(answer, max_chars=120)
        judge_answer(stats, region, region.scores["object_description"], repr(answer))


def describe_request(item: ImgDiffItem, box: list[float], view: str) -> VlmRequest:
    """What the describer is sent for one region: the crop, or the whole original and the box."""
    if view == "box":
        return VlmRequest((item.before,), describe_box_prompt(box, *item.before.size))
    return VlmRequest((crop(item.before, box),), DESCRIBE_PROMPT)
