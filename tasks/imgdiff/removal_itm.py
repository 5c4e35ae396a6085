"""Img-Diff removal, step 4, ``removal_itm``: confirm the removal with BLIP ITM against the object's description.

The original crop must match the description (the object was there) and the inpainted crop must
not (it is gone). One BLIP call scores both crops of every region of the batch; the original's
scores go to ``itm_before`` / ``itm_cosine_before``, the inpainted one's to the ``*_after`` columns,
which is where ``RemoveThresholds.itm_columns`` and ``pairsmith refilter`` read them.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import REMOVAL_ITM
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, blip_scores, crop, live_regions, score_and_judge
from pairsmith.tasks.stage import stage


@stage(REMOVAL_ITM.name)
def removal_itm(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.blip`` and ``ctx.thresholds`` (``RemoveThresholds``: ``itm_original_min``, ``itm_inpainted_max``)."""
    blip, thresholds = ctx.blip, ctx.remove_thresholds
    todo = live_regions(items)
    if not todo:
        return

    def measure(part: list) -> list[dict]:
        pairs = [(crop(item.before, r.box), r.scores["object_description"]) for item, r in part]
        pairs += [(crop(r.image_edited, r.box), r.scores["object_description"]) for _, r in part]
        itm = blip.score_batch(pairs)
        return [blip_scores(itm, k, len(part), "itm") for k in range(len(part))]

    score_and_judge(stats, REMOVAL_ITM, todo, measure, blip.config.model_id, thresholds)
