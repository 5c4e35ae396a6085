"""Img-Diff's caption filter: both region captions fit their crops, and they say different things.

CITM (BLIP crop vs its own region caption) must pass for both images, or the VLM described
something that is not there; the captions' CLIP text cosine (CS) must stay below the threshold,
or the two captions name the same thing and the difference caption would have nothing to say.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pairsmith.filters.scores import is_missing
from pairsmith.storage.verdict import KEEP, Verdict

if TYPE_CHECKING:
    from pairsmith.filters.imgdiff.pipelines import ReplaceThresholds


def keep_region_captions(
    citm_before: float | None, citm_after: float | None, caption_sim: float | None, thresholds: ReplaceThresholds,
) -> Verdict:
    if is_missing(citm_before) or is_missing(citm_after):
        return Verdict.drop("citm_missing")
    if citm_before <= thresholds.citm_min or citm_after <= thresholds.citm_min:
        return Verdict.drop("citm_too_low")
    if is_missing(caption_sim):
        return Verdict.drop("caption_sim_missing")
    if caption_sim >= thresholds.caption_sim_max:
        return Verdict.drop("caption_sim_too_high")
    return KEEP
