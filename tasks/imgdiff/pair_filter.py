"""Img-Diff step 3, ``pair_filter``: keep a pair whose two images are alike but not the same (CLIP window).

One CLIP pass embeds both images of every pair of the batch; the stage's keep rule
(``pairsmith.filters.imgdiff.pair_filter``) judges.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import PAIR_FILTER
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, model_step
from pairsmith.tasks.stage import stage


@stage(PAIR_FILTER.name)
def pair_filter(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.clip`` and ``ctx.thresholds`` (``ReplaceThresholds``: ``pair_sim_min``, ``pair_sim_max``)."""
    clip, thresholds = ctx.clip, ctx.replace_thresholds
    todo = alive(items)
    if not todo:
        return
    sims = model_step(stats, todo, lambda part: clip.image_similarity_batch([(i.before, i.after) for i in part]),
                      clip.config.model_name)
    for item, sim in zip(todo, sims):
        if sim is None:
            continue
        item.scores["pair_clip_sim"] = float(sim)
        judge(stats, item, PAIR_FILTER.judge(item.row(), thresholds), f"pair clip cosine {sim:.4f}")
