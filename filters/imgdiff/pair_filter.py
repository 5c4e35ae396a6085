"""Img-Diff's pair filter: a replacement pair must be alike, but not the same picture.

Below the window the edit changed too much (another scene, not one object); above it the
edit did nothing visible. The window is open at both ends (see ``pipelines.ReplaceThresholds``).
"""

from __future__ import annotations

from pairsmith.filters.scores import is_missing
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


def keep_pair(pair_clip_sim: float | None, thresholds: ReplaceThresholds) -> Verdict:
    """``pair_clip_sim``: CLIP image-image cosine of the pair (-1..1)."""
    if is_missing(pair_clip_sim):
        return Verdict.drop("pair_sim_missing")
    if pair_clip_sim <= thresholds.pair_sim_min:
        return Verdict.drop("pair_sim_too_low")
    if pair_clip_sim >= thresholds.pair_sim_max:
        return Verdict.drop("pair_sim_too_high")
    return KEEP


def pair_filter_rule(row: Row, thresholds: ReplaceThresholds) -> Verdict:
    """The ``pair_filter`` stage's keep rule over a pair row: ``keep_pair`` of its ``pair_clip_sim``."""
    return keep_pair(row["pair_clip_sim"], thresholds)
