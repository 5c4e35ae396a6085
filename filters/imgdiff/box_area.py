"""Skip boxes too small to caption: Img-Diff drops boxes under 1/400 of the image."""

from __future__ import annotations

from collections.abc import Sequence

from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


def box_area(box: Sequence[float]) -> float:
    x1, y1, x2, y2 = box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def keep_box_area(box: Sequence[float], width: int, height: int, thresholds: ReplaceThresholds) -> Verdict:
    """``box`` is ``[x1, y1, x2, y2]`` in pixels of a ``width`` x ``height`` image."""
    if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
        return Verdict.drop("box_invalid")
    if box_area(box) * thresholds.min_area_denominator < width * height:
        return Verdict.drop("box_too_small")
    return KEEP


def box_area_rule(row: Row, thresholds: ReplaceThresholds) -> Verdict:
    """The ``box_area`` stage's keep rule over a region row (its ``box`` and its pair's ``width``, ``height``)."""
    return keep_box_area(row["box"], row["width"], row["height"], thresholds)
