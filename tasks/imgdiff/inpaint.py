"""Img-Diff removal, step 2: SDXL-turbo inpaints each chosen segment's mask out of the original.

Per pair, the surviving segments are ranked most different first (lowest crop similarity) and the
first ``max_per_pair`` are inpainted; the rest drop as ``inpaint_over_limit`` (an inpainting is the
expensive step, and neighbouring segments of one object would be removed several times). All
inpaintings of the batch go to the inpainter in one call. Each region's seed is derived from its
id, so a re-run repaints it the same way.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.sdxl_inpaint import InpaintRequest, SdxlInpainter
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate, alive, derived_seed, judge, model_step, task_logger

STAGE = "inpaint"


@task(name="inpaint-regions", cache_policy=NO_CACHE)
def inpaint_regions(items: list[ImgDiffItem], inpainter: SdxlInpainter, max_per_pair: int) -> StageStats:
    stats, start = StageStats(STAGE), time.perf_counter()
    chosen: list[tuple[ImgDiffItem, RegionCandidate]] = []
    for item in alive(items):
        ranked = sorted(item.live_regions(), key=lambda r: (r.crop_clip_sim, r.region_id))
        chosen += [(item, r) for r in ranked[:max_per_pair]]
        for region in ranked[max_per_pair:]:
            judge(stats, region, Verdict.drop(f"{STAGE}_over_limit"), f"only the {max_per_pair} most different per pair")
    requests = [InpaintRequest(item.before, r.full_mask(*item.size), derived_seed("inpaint", r.region_id))
                for item, r in chosen]
    images = model_step(stats, [r for _, r in chosen], lambda: inpainter.inpaint_batch(requests),
                        task_logger(), inpainter.config.model_id) if chosen else []
    for (_, region), image in zip(chosen, images or []):
        region.image_edited = image
        judge(stats, region, KEEP)
    stats.seconds = time.perf_counter() - start
    return stats
