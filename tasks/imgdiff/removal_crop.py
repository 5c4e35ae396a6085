"""Img-Diff removal, step 1, ``removal_crop``: keep a FastSAM segment whose crop differs from the paired image's crop.

A segment that looks the same in the other image of the pair is background; one that differs is
an object the pair is about, worth removing. One CLIP call scores every crop pair of the batch.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import REMOVAL_CROP
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, live_regions, score_and_judge
from pairsmith.tasks.stage import stage


@stage(REMOVAL_CROP.name)
def removal_crop(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.clip`` and ``ctx.thresholds`` (``RemoveThresholds``: ``crop_sim_max``)."""
    clip, thresholds = ctx.clip, ctx.remove_thresholds
    todo = live_regions(items)
    if not todo:
        return

    def measure(part: list) -> list[dict]:
        sims = clip.image_similarity_batch([(crop(item.before, r.box), crop(item.after, r.box)) for item, r in part])
        return [{"crop_clip_sim": float(sim)} for sim in sims]

    score_and_judge(stats, REMOVAL_CROP, todo, measure, clip.config.model_name, thresholds)
