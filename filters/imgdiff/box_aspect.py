"""Drop degenerate sliver boxes: a box whose long side is more than N times its short side.

A proposer sometimes boxes a one-pixel edge or seam along an image side (a 1000 x 4 box passes the
1/400 area rule on a 1024 x 1024 image). Such a sliver shows no object, and its crop breaks the
model steps after it: Qwen2-VL's image processor refuses an image whose aspect ratio is over 200
(transformers ``Qwen2VLImageProcessor`` / ``smart_resize``: "absolute aspect ratio must be smaller
than 200"), which would drop every region of the batch as ``region_captions_error``.

The default limit, 100 (``ReplaceThresholds.box_aspect_max``), is half the VLM's: a crop is the box
(inside the image) rounded out to whole pixels, which adds at most two pixels to its long side, so
a box kept here stays near 100 as a crop, far from 200. It removes only slivers: on the 44 edited
photo pairs of the MED-bench sample (``/work/shared/data/med_bench_sample``), the difference-map
proposer's 491 boxes that pass the area rule have aspect ratios up to 46.7 (4 of them 20 or more),
none near 100.
"""

from __future__ import annotations

from collections.abc import Sequence

from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


def box_aspect(box: Sequence[float]) -> float:
    """Long side over short side of ``[x1, y1, x2, y2]`` (pixels); infinite for a box with no width or height."""
    width, height = box[2] - box[0], box[3] - box[1]
    short = min(width, height)
    return max(width, height) / short if short > 0 else float("inf")


def keep_box_aspect(box: Sequence[float], thresholds: ReplaceThresholds) -> Verdict:
    """Kept iff the box's aspect ratio is at most ``box_aspect_max`` (a box exactly at the limit is kept)."""
    if box_aspect(box) > thresholds.box_aspect_max:
        return Verdict.drop("box_aspect_too_extreme")
    return KEEP


def box_aspect_rule(row: Row, thresholds: ReplaceThresholds) -> Verdict:
    """The ``box_aspect`` stage's keep rule over a region row: ``keep_box_aspect`` of its ``box``."""
    return keep_box_aspect(row["box"], thresholds)
