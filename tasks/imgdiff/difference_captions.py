"""Img-Diff step 8, ``difference_captions``: the difference caption of each kept box, from the side-by-side picture.

Both images with the box drawn in red, side by side with a 20 px black bar (the layout Img-Diff
trains on, ``pairsmith.storage.pair_images``); the VLM is told the two region captions and asked what differs
inside the box. The picture is kept on the region: the ``diff-caption`` sample shows the same one.
"""

from __future__ import annotations

from PIL import Image

from pairsmith.filters.imgdiff.pipelines import DIFFERENCE_CAPTIONS
from pairsmith.models.adapters.vlm_chat import VlmRequest
from pairsmith.storage.pair_images import draw_boxes, side_by_side
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, box_line_width, judge_answer, live_regions, model_step
from pairsmith.tasks.imgdiff.prompts import DIFFERENCE_PROMPT, clean_answer
from pairsmith.tasks.stage import stage


def boxed_side_by_side(left: Image.Image, right: Image.Image, box: list[float]) -> Image.Image:
    """``left | black bar | right``, the box drawn in red on both."""
    width = box_line_width(*left.size)
    return side_by_side(draw_boxes(left, [box], width=width), draw_boxes(right, [box], width=width))


@stage(DIFFERENCE_CAPTIONS.name)
def difference_captions(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.vlm``."""
    vlm = ctx.vlm
    todo = live_regions(items)
    if not todo:
        return
    regions = [r for _, r in todo]
    for item, region in todo:
        region.picture = boxed_side_by_side(item.before, item.after, region.box)
    answers = model_step(stats, regions, lambda part: vlm.generate_batch([VlmRequest((r.picture,), DIFFERENCE_PROMPT.format(
        before=r.scores["region_caption_before"], after=r.scores["region_caption_after"])) for r in part]),
        vlm.config.model_id)
    for region, answer in zip(regions, answers):
        if answer is None:
            continue
        region.scores["difference_caption"] = clean_answer(answer, max_chars=600)
        judge_answer(stats, region, region.scores["difference_caption"], repr(answer))
