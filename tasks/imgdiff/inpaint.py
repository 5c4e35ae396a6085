"""Img-Diff removal, step 2, ``inpaint``: SDXL-turbo inpaints each chosen segment's mask out of the original.

Per pair, the surviving segments are ranked most different first (lowest crop similarity) and the
first ``max_inpaint_per_pair`` are inpainted; the rest drop as ``inpaint_over_limit`` (an inpainting is the
expensive step, and neighbouring segments of one object would be removed several times). All
inpaintings of the batch go to the inpainter in one call. Each region's seed is derived from its
id, so a re-run repaints it the same way.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import INPAINT
from pairsmith.models.adapters.sdxl_inpaint import InpaintRequest
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate, alive, derived_seed, judge, model_step
from pairsmith.tasks.stage import stage


@stage(INPAINT.name)
def inpaint(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.inpainter`` and ``ctx.settings.max_inpaint_per_pair``."""
    inpainter, max_inpaint_per_pair = ctx.inpainter, ctx.component("max_inpaint_per_pair")
    chosen: list[tuple[ImgDiffItem, RegionCandidate]] = []
    for item in alive(items):
        ranked = sorted(item.live_regions(), key=lambda r: (r.scores["crop_clip_sim"], r.region_id))
        chosen += [(item, r) for r in ranked[:max_inpaint_per_pair]]
        for region in ranked[max_inpaint_per_pair:]:
            judge(stats, region, Verdict.drop(f"{stats.stage}_over_limit"),
                  f"only the {max_inpaint_per_pair} most different per pair")
    if not chosen:
        return
    images = model_step(stats, chosen, lambda part: inpainter.inpaint_batch([InpaintRequest(
        item.before, r.full_mask(*item.size), derived_seed("inpaint", r.region_id)) for item, r in part]),
        inpainter.config.model_id)
    for (_, region), image in zip(chosen, images):
        if image is None:
            continue
        region.image_edited = image
        judge(stats, region, KEEP)
