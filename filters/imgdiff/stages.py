"""The names Img-Diff's threshold stages share: flows, ``stage_stats``, verdicts and ``refilter``.

A flow writes ``drop_stage`` on pairs and ``reason`` on regions with these names; ``pairsmith
refilter`` reads them back to tell a verdict the thresholds made (it may change) from one another
step made (a failed generation, a model error: it stays). Reasons start with their filter's name.
"""

from __future__ import annotations

# Stages, in pipeline order.
PAIR_FILTER = "pair_filter"  # pair CLIP similarity window (replacement)
BOX_AREA = "box_area"  # regions smaller than 1/400 of the image
CROP_FILTER = "crop_filter"  # crop CLIP similarity + BITM (replacement)
NMS = "nms"  # most-different-first NMS, at most N boxes
CAPTION_FILTER = "caption_filter"  # CITM of both region captions + caption similarity
REMOVAL_CROP = "removal_crop"  # removal: the crop differs from the paired image
REMOVAL_ITM = "removal_itm"  # removal: the object is in the original crop and gone from the inpainted one
REGION_OUTPUTS = "region_outputs"  # refilter only: a region passing every threshold has its later outputs
REGIONS = "regions"  # pair level: a pair with no kept region is dropped here

REPLACE_REGION_STAGES = (BOX_AREA, CROP_FILTER, NMS, CAPTION_FILTER)
REMOVE_REGION_STAGES = (REMOVAL_CROP, REMOVAL_ITM)

# Reasons, by the stage whose filter gives them.
REASONS: dict[str, tuple[str, ...]] = {
    PAIR_FILTER: ("pair_sim_too_low", "pair_sim_too_high", "pair_sim_missing"),
    BOX_AREA: ("box_too_small", "box_invalid"),
    CROP_FILTER: ("crop_sim_too_close", "bitm_too_low", "crop_sim_missing", "bitm_missing"),
    NMS: ("nms_suppressed", "nms_too_many_boxes", "nms_score_missing"),
    CAPTION_FILTER: ("citm_too_low", "caption_sim_too_high", "citm_missing", "caption_sim_missing"),
    REMOVAL_CROP: ("removal_crop_sim_too_close", "removal_crop_sim_missing"),
    REMOVAL_ITM: ("removal_itm_original_too_low", "removal_itm_inpainted_too_high", "removal_itm_missing"),
}
NO_REGION_KEPT = "regions_none_kept"  # pair dropped at REGIONS: every region was dropped
NEEDS_RERUN = "refilter_needs_rerun"  # passes the new thresholds, but later model steps never ran on it

THRESHOLD_REASONS: frozenset[str] = frozenset(r for rs in REASONS.values() for r in rs) | {NEEDS_RERUN}
THRESHOLD_PAIR_STAGES: frozenset[str] = frozenset({PAIR_FILTER, REGIONS, *REASONS})
METHODS = ("imgdiff-replace", "imgdiff-remove")


def stage_of_reason(reason: str) -> str | None:
    """The threshold stage a stored reason came from; None for reasons other steps gave."""
    for stage, reasons in REASONS.items():
        if reason in reasons:
            return stage
    return None
