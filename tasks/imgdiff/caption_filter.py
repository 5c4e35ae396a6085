"""Img-Diff step 7b: keep a box whose region captions fit their crops (CITM) and differ (CS).

BLIP scores every crop against its own image's region caption in one call; CLIP embeds every
caption pair in one call for the text cosine. ``pairsmith.filters.imgdiff.region_captions`` judges.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.imgdiff.stages import CAPTION_FILTER
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.imgdiff.region_captions import keep_region_captions
from pairsmith.storage.verdict import StageStats
from pairsmith.models.blip_itm import BlipItmScorer
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge, live_regions, model_step, task_logger


@task(name="filter-captions", cache_policy=NO_CACHE)
def filter_region_captions(items: list[ImgDiffItem], blip: BlipItmScorer, clip: ClipScorer,
                           thresholds: ReplaceThresholds) -> StageStats:
    stats, start = StageStats(CAPTION_FILTER), time.perf_counter()
    todo = live_regions(items)
    if not todo:
        return stats

    def score():
        pairs = [(crop(item.before, r.box), r.region_caption_before) for item, r in todo]
        pairs += [(crop(item.after, r.box), r.region_caption_after) for item, r in todo]
        itm = blip.score_batch(pairs)
        sims = clip.text_similarity_batch([(r.region_caption_before, r.region_caption_after) for _, r in todo])
        return itm, sims

    scored = model_step(stats, [r for _, r in todo], score, task_logger(),
                        f"{blip.config.model_id} + {clip.config.model_name}")
    if scored is not None:
        itm, sims = scored
        n = len(todo)
        for k, (_, region) in enumerate(todo):
            region.citm_before, region.citm_after = float(itm.itm[k]), float(itm.itm[n + k])
            region.citm_cosine_before, region.citm_cosine_after = float(itm.cosine[k]), float(itm.cosine[n + k])
            region.caption_sim = float(sims[k])
            citm_before, citm_after = (getattr(region, c) for c in thresholds.citm_columns())
            judge(stats, region, keep_region_captions(citm_before, citm_after, region.caption_sim, thresholds))
    stats.seconds = time.perf_counter() - start
    return stats
