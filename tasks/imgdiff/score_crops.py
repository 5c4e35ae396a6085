"""Img-Diff step 5: crop each box from both images; keep it if the crops differ and show the nouns.

All crops of the batch go through CLIP in one call (crop-vs-crop cosine) and through BLIP in one
call (each image's crop against that image's noun: the replaced noun before, the new noun after),
so a GPU sees a few large batches instead of two calls per box. Both BLIP scores (ITM-head
probability and contrastive cosine) are stored; the thresholds say which one the filter reads.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.imgdiff.crop_difference import keep_crop
from pairsmith.filters.imgdiff.stages import CROP_FILTER
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.storage.verdict import StageStats
from pairsmith.models.blip_itm import BlipItmScorer
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge, live_regions, model_step, task_logger


def _nouns(item: ImgDiffItem) -> tuple[str, str]:
    rewrite = item.rewrite
    if rewrite is None or not rewrite.replaced or not rewrite.new:
        raise ValueError(f"pair {item.pair_id}: no replaced/new nouns to match crops against")
    return rewrite.replaced, rewrite.new


@task(name="score-crops", cache_policy=NO_CACHE)
def score_crops(items: list[ImgDiffItem], clip: ClipScorer, blip: BlipItmScorer,
                thresholds: ReplaceThresholds) -> StageStats:
    stats, start = StageStats(CROP_FILTER), time.perf_counter()
    todo = live_regions(items)
    if not todo:
        return stats
    before = [crop(item.before, region.box) for item, region in todo]
    after = [crop(item.after, region.box) for item, region in todo]

    def score():
        nouns = [_nouns(item) for item, _ in todo]
        sims = clip.image_similarity_batch(list(zip(before, after)))
        itm = blip.score_batch([(c, n[0]) for c, n in zip(before, nouns)] + [(c, n[1]) for c, n in zip(after, nouns)])
        return sims, itm

    scored = model_step(stats, [region for _, region in todo], score, task_logger(),
                        f"{clip.config.model_name} + {blip.config.model_id}")
    if scored is not None:
        sims, itm = scored
        n = len(todo)
        for k, (_, region) in enumerate(todo):
            region.crop_clip_sim = float(sims[k])
            region.itm_before, region.itm_after = float(itm.itm[k]), float(itm.itm[n + k])
            region.itm_cosine_before, region.itm_cosine_after = float(itm.cosine[k]), float(itm.cosine[n + k])
            bitm_before, bitm_after = (getattr(region, c) for c in thresholds.bitm_columns())
            judge(stats, region, keep_crop(region.crop_clip_sim, bitm_before, bitm_after, thresholds))
    stats.seconds = time.perf_counter() - start
    return stats
