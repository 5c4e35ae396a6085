"""MED's similarity stage: CLIP ViT-B/32 image cosine between each source and its edit, judged by the
stage's keep rule (``pairsmith.filters.med_similarity.SIMILARITY``), the one ``pairsmith refilter`` re-applies."""

from __future__ import annotations

from pairsmith.filters.med_similarity import SIMILARITY, MedSimilarityThresholds, is_bench_candidate
from pairsmith.storage.verdict import StageStats
from pairsmith.models.adapters.clip_scorer import ClipScorer
from pairsmith.tasks.med.item import MedItem, alive, drop_on_error, judge
from pairsmith.tasks.stage import call_per_item, stage


@stage(SIMILARITY.name)
def score_similarity(stats: StageStats, items: list[MedItem], clip: ClipScorer,
                     thresholds: MedSimilarityThresholds) -> None:
    todo = alive(items)
    sims = call_per_item(lambda part: list(clip.image_similarity_batch([(i.before_image(), i.after_image())
                                                                        for i in part])),
                         todo, drop_on_error(stats, clip.config.model_name))
    for item, sim in zip(todo, sims):
        if sim is None:
            continue
        item.clip_sim = float(sim)
        item.bench_candidate = is_bench_candidate(item.clip_sim, thresholds)
        judge(stats, item, SIMILARITY.judge({"pair_clip_sim": item.clip_sim}, thresholds), detail=f"clip cosine {item.clip_sim:.3f}")
