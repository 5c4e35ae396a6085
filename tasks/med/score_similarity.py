"""MED's similarity stage: CLIP ViT-B/32 image cosine between each source and its edit."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.med_similarity import MedSimilarityThresholds, is_bench_candidate, keep_edit_similarity
from pairsmith.storage.verdict import StageStats
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.tasks.med.item import MedItem, alive, judge


@task(name="score-similarity", cache_policy=NO_CACHE)
def score_similarity(items: list[MedItem], clip: ClipScorer, thresholds: MedSimilarityThresholds) -> StageStats:
    stats, start = StageStats("similarity"), time.perf_counter()
    todo = alive(items)
    sims = clip.image_similarity_batch([(i.before_image(), i.after_image()) for i in todo]) if todo else []
    for item, sim in zip(todo, sims):
        item.clip_sim = float(sim)
        item.bench_candidate = is_bench_candidate(item.clip_sim, thresholds)
        judge(stats, item, keep_edit_similarity(item.clip_sim, thresholds), detail=f"clip cosine {item.clip_sim:.3f}")
    stats.seconds = time.perf_counter() - start
    return stats
