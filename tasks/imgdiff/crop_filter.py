"""Img-Diff step 5, ``crop_filter``: crop each box from both images; keep it if the crops differ and show the nouns.

All crops of the batch go through CLIP in one call (crop-vs-crop cosine) and through BLIP in one
call (each image's crop against that image's noun: the replaced noun before, the new noun after),
so a GPU sees a few large batches instead of two calls per box. Both BLIP scores (ITM-head
probability and contrastive cosine) are stored; the thresholds say which one the filter reads.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import CROP_FILTER
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, blip_scores, crop, live_regions, score_and_judge
from pairsmith.tasks.stage import stage


def _nouns(item: ImgDiffItem) -> tuple[str, str]:
    rewrite = item.rewrite
    if rewrite is None or not rewrite.replaced or not rewrite.new:
        raise ValueError(f"pair {item.pair_id}: no replaced/new nouns to match crops against")
    return rewrite.replaced, rewrite.new


@stage(CROP_FILTER.name)
def crop_filter(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.clip``, ``ctx.blip`` and ``ctx.thresholds`` (``ReplaceThresholds``: ``crop_sim_max``, ``bitm_min``)."""
    clip, blip = ctx.clip, ctx.blip
    todo = live_regions(items)
    if not todo:
        return

    def measure(part: list) -> list[dict]:
        nouns = [_nouns(item) for item, _ in part]
        before = [crop(item.before, region.box) for item, region in part]
        after = [crop(item.after, region.box) for item, region in part]
        sims = clip.image_similarity_batch(list(zip(before, after)))
        itm = blip.score_batch([(c, n[0]) for c, n in zip(before, nouns)] + [(c, n[1]) for c, n in zip(after, nouns)])
        return [{"crop_clip_sim": float(sims[k]), **blip_scores(itm, k, len(part), "itm")} for k in range(len(part))]

    score_and_judge(stats, CROP_FILTER, todo, measure, f"{clip.config.model_name} + {blip.config.model_id}", ctx.replace_thresholds)
