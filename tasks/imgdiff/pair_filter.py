"""Img-Diff step 3: keep a pair whose two images are alike but not the same (CLIP cosine window).

One CLIP pass embeds both images of every pair of the batch; ``pairsmith.filters.imgdiff.pair_similarity`` judges.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.imgdiff.stages import PAIR_FILTER
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.imgdiff.pair_similarity import keep_pair
from pairsmith.storage.verdict import StageStats
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, model_step, task_logger


@task(name="filter-pairs", cache_policy=NO_CACHE)
def filter_pairs(items: list[ImgDiffItem], clip: ClipScorer, thresholds: ReplaceThresholds) -> StageStats:
    stats, start = StageStats(PAIR_FILTER), time.perf_counter()
    todo = alive(items)
    sims = model_step(stats, todo, lambda: clip.image_similarity_batch([(i.before, i.after) for i in todo]),
                      task_logger(), clip.config.model_name) if todo else []
    for item, sim in zip(todo, sims if sims is not None else []):
        item.pair_clip_sim = float(sim)
        judge(stats, item, keep_pair(item.pair_clip_sim, thresholds), f"pair clip cosine {item.pair_clip_sim:.4f}")
    stats.seconds = time.perf_counter() - start
    return stats
