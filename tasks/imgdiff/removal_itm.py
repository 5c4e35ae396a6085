"""Img-Diff removal, step 4: confirm the removal with BLIP ITM against the object's description.

The original crop must match the description (the object was there) and the inpainted crop must
not (it is gone). One BLIP call scores both crops of every region of the batch; the original's
scores go to ``itm_before`` / ``itm_cosine_before``, the inpainted one's to the ``*_after`` columns,
which is where ``RemoveThresholds.itm_columns`` and ``pairsmith refilter`` read them.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.filters.imgdiff.stages import REMOVAL_ITM
from pairsmith.filters.imgdiff.thresholds import RemoveThresholds
from pairsmith.filters.imgdiff.object_removal import keep_removal_itm
from pairsmith.storage.verdict import StageStats
from pairsmith.models.blip_itm import BlipItmScorer
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge, live_regions, model_step, task_logger


@task(name="check-removals", cache_policy=NO_CACHE)
def check_removals(items: list[ImgDiffItem], blip: BlipItmScorer, thresholds: RemoveThresholds) -> StageStats:
    stats, start = StageStats(REMOVAL_ITM), time.perf_counter()
    todo = live_regions(items)
    pairs = [(crop(item.before, r.box), r.object_description) for item, r in todo]
    pairs += [(crop(r.image_edited, r.box), r.object_description) for _, r in todo]
    itm = model_step(stats, [r for _, r in todo], lambda: blip.score_batch(pairs), task_logger(),
                     blip.config.model_id) if todo else None
    n = len(todo)
    for k, (_, region) in enumerate(todo if itm is not None else []):
        region.itm_before, region.itm_after = float(itm.itm[k]), float(itm.itm[n + k])
        region.itm_cosine_before, region.itm_cosine_after = float(itm.cosine[k]), float(itm.cosine[n + k])
        original, inpainted = (getattr(region, c) for c in thresholds.itm_columns())
        judge(stats, region, keep_removal_itm(original, inpainted, thresholds))
    stats.seconds = time.perf_counter() - start
    return stats
