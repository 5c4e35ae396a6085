"""Img-Diff's crop filter (replacement): the two crops of a box differ, and show the changed nouns.

A box whose crops look alike (CLIP cosine not below the threshold) holds no difference; a box
whose crops BLIP does not match with the replaced nouns (BITM) holds some other difference than
the edit, e.g. a Prompt2Prompt artefact. Both crops must match their own image's noun.
"""

from __future__ import annotations

from pairsmith.filters.scores import is_missing
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


def keep_crop(
    crop_clip_sim: float | None, bitm_before: float | None, bitm_after: float | None, thresholds: ReplaceThresholds,
) -> Verdict:
    """``bitm_*``: BLIP score of each image's crop against that image's changed noun."""
    if is_missing(crop_clip_sim):
        return Verdict.drop("crop_sim_missing")
    if crop_clip_sim >= thresholds.crop_sim_max:
        return Verdict.drop("crop_sim_too_close")
    if is_missing(bitm_before) or is_missing(bitm_after):
        return Verdict.drop("bitm_missing")
    if bitm_before <= thresholds.bitm_min or bitm_after <= thresholds.bitm_min:
        return Verdict.drop("bitm_too_low")
    return KEEP


def crop_filter_reads(thresholds: ReplaceThresholds) -> tuple[str, ...]:
    """The regions columns ``crop_filter_rule`` reads: the crop cosine and the BITM pair ``blip_score`` picks."""
    return ("crop_clip_sim", *thresholds.bitm_columns())


def crop_filter_rule(row: Row, thresholds: ReplaceThresholds) -> Verdict:
    """The ``crop_filter`` stage's keep rule over a region row (``crop_filter_reads`` names its columns)."""
    before, after = (row[c] for c in thresholds.bitm_columns())
    return keep_crop(row["crop_clip_sim"], before, after, thresholds)
