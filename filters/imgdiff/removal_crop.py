"""Img-Diff's removal crop filter: pick the FastSAM boxes whose crop differs from the paired image.

A region that changed between the two images is an object worth removing; one that looks the same
in both is background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pairsmith.filters.scores import is_missing
from pairsmith.storage.verdict import KEEP, Verdict

if TYPE_CHECKING:
    from pairsmith.filters.imgdiff.pipelines import RemoveThresholds


def keep_removal_crop(crop_clip_sim: float | None, thresholds: RemoveThresholds) -> Verdict:
    """``crop_clip_sim``: CLIP cosine of the box's crop from the original vs from the paired image."""
    if is_missing(crop_clip_sim):
        return Verdict.drop("removal_crop_sim_missing")
    if crop_clip_sim >= thresholds.crop_sim_max:
        return Verdict.drop("removal_crop_sim_too_close")
    return KEEP
