"""Img-Diff's NMS: among overlapping boxes keep the one whose crops differ most, then at most N.

Proposals from both images of a pair overlap heavily (the same object found twice, or a part
and its whole). Ordering by crop CLIP similarity, lowest first, keeps the box that shows the
change best; plain NMS would order by detector confidence, which says nothing about change.
numpy only: it runs on stored boxes in ``pairsmith refilter`` without torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pairsmith.filters.scores import is_missing
from pairsmith.filters.imgdiff.thresholds import ReplaceThresholds
from pairsmith.filters.pipeline import Row
from pairsmith.storage.verdict import KEEP, Verdict


def box_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b`` (``[x1, y1, x2, y2]``, continuous pixels)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[..., 2] - a[..., 0], 0, None) * np.clip(a[..., 3] - a[..., 1], 0, None)
    area_b = np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class NmsResult:
    kept: list[int]  # input indices, most different first
    dropped: dict[int, Verdict] = field(default_factory=dict)  # input index -> why


def nms_most_different_first(
    boxes: Sequence[Sequence[float]],
    crop_sims: Sequence[float | None],
    thresholds: ReplaceThresholds,
) -> NmsResult:
    """Greedy NMS over one pair's boxes, lowest crop similarity first.

    A box is suppressed when its IoU with a kept box is above ``nms_iou``; once ``max_boxes`` are
    kept, the remaining unsuppressed boxes drop as ``nms_too_many_boxes``. Equal similarities
    are ordered by box coordinates, so the result does not depend on the order of the input.
    """
    if len(boxes) != len(crop_sims):
        raise ValueError(f"nms: {len(boxes)} boxes but {len(crop_sims)} crop similarities")
    dropped: dict[int, Verdict] = {}
    ranked = []
    for i, (box, sim) in enumerate(zip(boxes, crop_sims)):
        if is_missing(sim):
            dropped[i] = Verdict.drop("nms_score_missing")
        else:
            ranked.append((float(sim), tuple(float(v) for v in box), i))
    ranked.sort()
    kept: list[int] = []
    if ranked:
        order = [i for _, _, i in ranked]
        iou = box_iou([boxes[i] for i in order], [boxes[i] for i in order])
        kept_pos: list[int] = []
        for pos, i in enumerate(order):
            if kept_pos and float(iou[pos, kept_pos].max()) > thresholds.nms_iou:
                dropped[i] = Verdict.drop("nms_suppressed")
            elif len(kept_pos) >= thresholds.max_boxes:
                dropped[i] = Verdict.drop("nms_too_many_boxes")
            else:
                kept_pos.append(pos)
        kept = [order[p] for p in kept_pos]
    return NmsResult(kept=kept, dropped=dict(sorted(dropped.items())))


def nms_rule(rows: Sequence[Row], thresholds: ReplaceThresholds) -> list[Verdict]:
    """The ``nms`` stage's keep rule over one pair's region rows (``box``, ``crop_clip_sim``), a verdict
    each in the order given; the rows are taken in region-id order, so ties never depend on the input."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]["region_id"])
    result = nms_most_different_first([rows[i]["box"] for i in order], [rows[i].get("crop_clip_sim") for i in order],
                                      thresholds)
    verdicts: list[Verdict] = [KEEP] * len(rows)
    for k, verdict in result.dropped.items():
        verdicts[order[k]] = verdict
    return verdicts
