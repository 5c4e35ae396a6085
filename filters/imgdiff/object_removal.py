"""Img-Diff's removal filters: the masked object differs from the paired image, and inpainting removed it.

``keep_removal_crop`` picks FastSAM boxes whose crop differs from the other image (a region
that changed is an object worth removing). ``keep_removal_itm`` confirms the removal: the VLM's
description of the object matches the original crop and no longer matches the inpainted one.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.thresholds import PAPER_REMOVE, RemoveThresholds
from pairsmith.filters.scores import is_missing
from pairsmith.storage.verdict import KEEP, Verdict


def keep_removal_crop(crop_clip_sim: float | None, thresholds: RemoveThresholds = PAPER_REMOVE) -> Verdict:
    if is_missing(crop_clip_sim):
        return Verdict.drop("removal_crop_sim_missing")
    if crop_clip_sim >= thresholds.crop_sim_max:
        return Verdict.drop("removal_crop_sim_too_close")
    return KEEP


def keep_removal_itm(
    itm_original: float | None, itm_inpainted: float | None, thresholds: RemoveThresholds = PAPER_REMOVE
) -> Verdict:
    """Both thresholds are inclusive (issue 3: ITM >= 0.35 / <= 0.2)."""
    if is_missing(itm_original) or is_missing(itm_inpainted):
        return Verdict.drop("removal_itm_missing")
    if itm_original < thresholds.itm_original_min:
        return Verdict.drop("removal_itm_original_too_low")
    if itm_inpainted > thresholds.itm_inpainted_max:
        return Verdict.drop("removal_itm_inpainted_too_high")
    return KEEP
