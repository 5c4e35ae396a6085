"""Img-Diff step 7a, ``region_captions``: the VLM captions each surviving box in each image (two requests per box).

Every request of the batch goes to ``VlmChat.generate_batch`` at once. A box whose caption on
either side has no words drops as ``region_captions_empty`` (the VLM's answer kept as detail).
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import REGION_CAPTIONS
from pairsmith.models.adapters.vlm_chat import VlmRequest
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge_answer, live_regions, model_step
from pairsmith.tasks.imgdiff.prompts import REGION_CAPTION_PROMPT, clean_answer
from pairsmith.tasks.stage import stage


@stage(REGION_CAPTIONS.name)
def region_captions(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.vlm``."""
    vlm = ctx.vlm
    todo = live_regions(items)
    if not todo:
        return
    def ask(part: list) -> list[tuple[str, str]]:
        """Each region's crop of each image, captioned: (before, after) per region, one batched call."""
        out = vlm.generate_batch([VlmRequest((crop(getattr(item, side), r.box),), REGION_CAPTION_PROMPT)
                                  for side in ("before", "after") for item, r in part])
        return [(out[k], out[len(part) + k]) for k in range(len(part))]

    for (_, region), answer in zip(todo, model_step(stats, todo, ask, vlm.config.model_id)):
        if answer is None:
            continue
        before, after = clean_answer(answer[0]), clean_answer(answer[1])
        region.scores.update(region_caption_before=before, region_caption_after=after)
        judge_answer(stats, region, before and after, f"before: {answer[0]!r}; after: {answer[1]!r}")
