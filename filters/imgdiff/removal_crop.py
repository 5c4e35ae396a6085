"""Img-Diff's removal crop filter: pick the FastSAM boxes whose crop differs from the paired image.

A region that changed between the two images is an object worth removing; one that looks the same
in both is background.
"""

from __future__ import annotations

from pairsmith.filters.scores import is_missing
from pairsmith.filters.imgdiff.thresholds import RemoveThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


def keep_removal_crop(crop_clip_sim: float | None, thresholds: RemoveThresholds) -> Verdict:
    """``crop_clip_sim``: CLIP cosine of the box's crop from the original vs from the paired image."""
    if is_missing(crop_clip_sim):
        return Verdict.drop("removal_crop_sim_missing")
    if crop_clip_sim >= thresholds.crop_sim_max:
        return Verdict.drop("removal_crop_sim_too_close")
    return KEEP


def removal_crop_rule(row: Row, thresholds: RemoveThresholds) -> Verdict:
    """The ``removal_crop`` stage's keep rule over a region row: ``keep_removal_crop`` of its ``crop_clip_sim``."""
    return keep_removal_crop(row["crop_clip_sim"], thresholds)
