"""Img-Diff's caption filter: both region captions fit their crops, and they say different things.

CITM (BLIP crop vs its own region caption) must pass for both images, or the VLM described
something that is not there; the captions' CLIP text cosine (CS) must stay below the threshold,
or the two captions name the same thing and the difference caption would have nothing to say.
"""

from __future__ import annotations

from pairsmith.filters.scores import is_missing
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


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


def caption_filter_reads(thresholds: ReplaceThresholds) -> tuple[str, ...]:
    """The regions columns ``caption_filter_rule`` reads: the CITM pair ``blip_score`` picks and ``caption_sim``."""
    return (*thresholds.citm_columns(), "caption_sim")


def caption_filter_rule(row: Row, thresholds: ReplaceThresholds) -> Verdict:
    """The ``caption_filter`` stage's keep rule over a region row (``caption_filter_reads`` names its columns)."""
    before, after = (row[c] for c in thresholds.citm_columns())
    return keep_region_captions(before, after, row["caption_sim"], thresholds)
