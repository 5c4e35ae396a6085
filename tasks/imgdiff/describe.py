"""Img-Diff removal, step 3, ``describe``: the VLM names the object each inpainting removed (from the original crop).

The description is what the ITM check and the two-choice question are about; one
``generate_batch`` call for the batch. A description with no words drops as ``describe_empty``.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import DESCRIBE
from pairsmith.models.vlm_chat import VlmChat, VlmRequest
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge_answer, live_regions, model_step
from pairsmith.tasks.imgdiff.prompts import DESCRIBE_PROMPT, clean_answer
from pairsmith.tasks.stage import stage


@stage(DESCRIBE.name)
def describe(stats: StageStats, items: list[ImgDiffItem], vlm: VlmChat) -> None:
    todo = live_regions(items)
    if not todo:
        return
    answers = model_step(stats, todo, lambda part: vlm.generate_batch(
        [VlmRequest((crop(item.before, r.box),), DESCRIBE_PROMPT) for item, r in part]), vlm.config.model_id)
    for (_, region), answer in zip(todo, answers):
        if answer is None:
            continue
        region.scores["object_description"] = clean_answer(answer, max_chars=120)
        judge_answer(stats, region, region.scores["object_description"], repr(answer))
