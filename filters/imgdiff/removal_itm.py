"""Img-Diff's removal check: inpainting removed the object the VLM described.

The VLM's description of the object must match the original crop (the object was there) and no
longer match the inpainted crop (it is gone).
"""

from __future__ import annotations

from pairsmith.filters.scores import is_missing
from pairsmith.filters.imgdiff.thresholds import RemoveThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


def keep_removal_itm(itm_original: float | None, itm_inpainted: float | None, thresholds: RemoveThresholds) -> Verdict:
    """BLIP scores of the description vs the original and the inpainted crop. Both comparisons are
    strict, as Img-Diff prints them (supplementary §19.2.4: "greater than 0.35", "less than 0.2"):
    a score equal to a threshold drops."""
    if is_missing(itm_original) or is_missing(itm_inpainted):
        return Verdict.drop("removal_itm_missing")
    if itm_original <= thresholds.itm_original_min:
        return Verdict.drop("removal_itm_original_too_low")
    if itm_inpainted >= thresholds.itm_inpainted_max:
        return Verdict.drop("removal_itm_inpainted_too_high")
    return KEEP


def removal_itm_reads(thresholds: RemoveThresholds) -> tuple[str, ...]:
    """The regions columns ``removal_itm_rule`` reads: (original, inpainted), as ``blip_score`` picks them."""
    return thresholds.itm_columns()


def removal_itm_rule(row: Row, thresholds: RemoveThresholds) -> Verdict:
    """The ``removal_itm`` stage's keep rule over a region row (``removal_itm_reads`` names its columns)."""
    original, inpainted = (row[c] for c in thresholds.itm_columns())
    return keep_removal_itm(original, inpainted, thresholds)
