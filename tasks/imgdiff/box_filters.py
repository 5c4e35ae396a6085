"""Img-Diff step 6, the box-only filters: skip boxes under 1/400 of the image, and NMS.

``filter_box_area`` runs before crops are scored, so no model looks at a box too small to caption;
``suppress_boxes`` runs after, ordering each pair's surviving boxes by crop similarity (most
different first) so that of two overlapping boxes the one showing the change best is kept. Both
are the pure filters ``pairsmith refilter`` re-applies, called in the same order on the same rows.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.imgdiff.box_area import keep_box_area
from pairsmith.filters.imgdiff.box_nms import nms_most_different_first
from pairsmith.filters.imgdiff.stages import BOX_AREA, NMS
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, live_regions


@task(name="filter-box-area", cache_policy=NO_CACHE)
def filter_box_area(items: list[ImgDiffItem], thresholds: ReplaceThresholds) -> StageStats:
    stats, start = StageStats(BOX_AREA), time.perf_counter()
    for item, region in live_regions(items):
        width, height = item.size
        judge(stats, region, keep_box_area(region.box, width, height, thresholds))
    stats.seconds = time.perf_counter() - start
    return stats


@task(name="suppress-boxes", cache_policy=NO_CACHE)
def suppress_boxes(items: list[ImgDiffItem], thresholds: ReplaceThresholds) -> StageStats:
    stats, start = StageStats(NMS), time.perf_counter()
    for item in alive(items):
        regions = sorted(item.live_regions(), key=lambda r: r.region_id)  # refilter's order, for equal scores
        result = nms_most_different_first([r.box for r in regions], [r.crop_clip_sim for r in regions], thresholds)
        for k, region in enumerate(regions):
            judge(stats, region, result.dropped.get(k, KEEP))
    stats.seconds = time.perf_counter() - start
    return stats
