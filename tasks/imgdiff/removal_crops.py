"""Img-Diff removal, step 1: keep a FastSAM segment whose crop differs from the paired image's crop.

A segment that looks the same in the other image of the pair is background; one that differs is
an object the pair is about, worth removing. One CLIP call scores every crop pair of the batch.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.imgdiff.stages import REMOVAL_CROP
from pairsmith.filters.imgdiff.thresholds import RemoveThresholds
from pairsmith.filters.imgdiff.object_removal import keep_removal_crop
from pairsmith.storage.verdict import StageStats
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge, live_regions, model_step, task_logger


@task(name="filter-removal-crops", cache_policy=NO_CACHE)
def filter_removal_crops(items: list[ImgDiffItem], clip: ClipScorer, thresholds: RemoveThresholds) -> StageStats:
    stats, start = StageStats(REMOVAL_CROP), time.perf_counter()
    todo = live_regions(items)
    pairs = [(crop(item.before, r.box), crop(item.after, r.box)) for item, r in todo]
    sims = model_step(stats, [r for _, r in todo], lambda: clip.image_similarity_batch(pairs),
                      task_logger(), clip.config.model_name) if todo else []
    for (_, region), sim in zip(todo, sims if sims is not None else []):
        region.crop_clip_sim = float(sim)
        judge(stats, region, keep_removal_crop(region.crop_clip_sim, thresholds))
    stats.seconds = time.perf_counter() - start
    return stats
