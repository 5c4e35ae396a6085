"""Img-Diff step 7b, ``caption_filter``: keep a box whose region captions fit their crops (CITM) and differ (CS).

BLIP scores every crop against its own image's region caption in one call; CLIP embeds every
caption pair in one call for the text cosine. The stage's keep rule
(``pairsmith.filters.imgdiff.caption_filter``) judges.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import CAPTION_FILTER
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, blip_scores, crop, live_regions, score_and_judge
from pairsmith.tasks.stage import stage


@stage(CAPTION_FILTER.name)
def caption_filter(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.blip``, ``ctx.clip`` and ``ctx.thresholds`` (``ReplaceThresholds``: ``citm_min``, ``caption_sim_max``)."""
    blip, clip = ctx.blip, ctx.clip
    todo = live_regions(items)
    if not todo:
        return

    def measure(part: list) -> list[dict]:
        captions = [(r.scores["region_caption_before"], r.scores["region_caption_after"]) for _, r in part]
        pairs = [(crop(item.before, r.box), c[0]) for (item, r), c in zip(part, captions)]
        pairs += [(crop(item.after, r.box), c[1]) for (item, r), c in zip(part, captions)]
        itm, sims = blip.score_batch(pairs), clip.text_similarity_batch(captions)
        return [{**blip_scores(itm, k, len(part), "citm"), "caption_sim": float(sims[k])} for k in range(len(part))]

    score_and_judge(stats, CAPTION_FILTER, todo, measure, f"{blip.config.model_id} + {clip.config.model_name}", ctx.replace_thresholds)
