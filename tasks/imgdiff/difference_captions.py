"""Img-Diff step 8: the difference caption of each kept box, from the side-by-side picture.

Both images with the box drawn in red, side by side with a 20 px black bar (the layout Img-Diff
trains on, ``pairsmith.storage.pair_images``); the VLM is told the two region captions and asked what differs
inside the box. The picture is kept on the region: the ``diff-caption`` sample shows the same one.
"""

from __future__ import annotations

import time

from PIL import Image
from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.vlm_chat import VlmChat, VlmRequest
from pairsmith.storage.pair_images import draw_boxes, side_by_side
from pairsmith.tasks.imgdiff.items import (
    ImgDiffItem,
    RegionCandidate,
    box_line_width,
    judge,
    live_regions,
    model_step,
    task_logger,
)
from pairsmith.tasks.imgdiff.prompts import DIFFERENCE_PROMPT, clean_answer

STAGE = "difference_captions"


def boxed_side_by_side(left: Image.Image, right: Image.Image, box: list[float]) -> Image.Image:
    """``left | black bar | right``, the box drawn in red on both."""
    width = box_line_width(*left.size)
    return side_by_side(draw_boxes(left, [box], width=width), draw_boxes(right, [box], width=width))


@task(name="describe-differences", cache_policy=NO_CACHE)
def describe_differences(items: list[ImgDiffItem], vlm: VlmChat) -> StageStats:
    stats, start = StageStats(STAGE), time.perf_counter()
    todo = live_regions(items)
    regions: list[RegionCandidate] = [r for _, r in todo]
    for item, region in todo:
        region.picture = boxed_side_by_side(item.before, item.after, region.box)
    requests = [VlmRequest((r.picture,), DIFFERENCE_PROMPT.format(before=r.region_caption_before,
                                                                   after=r.region_caption_after)) for r in regions]
    answers = model_step(stats, regions, lambda: vlm.generate_batch(requests), task_logger(),
                         vlm.config.model_id) if todo else []
    for region, answer in zip(regions, answers or []):
        region.difference_caption = clean_answer(answer, max_chars=600)
        if region.difference_caption:
            judge(stats, region, KEEP)
        else:
            judge(stats, region, Verdict.drop(f"{STAGE}_empty"), repr(answer)[:300])
    stats.seconds = time.perf_counter() - start
    return stats
