"""DiG's differential-grounding reward, and the box parser that evaluation shares with it.

r = (1 − α)(λ1·F1 + λ2·mean IoU) + α·format. Predicted and true boxes are paired one-to-one by a
Hungarian assignment on IoU; a pair counts as a match at IoU ≥ the threshold. F1 counts matches
against both box lists, mean IoU averages the matched pairs (0 when none match), and format is 1
iff the answer parses to a non-empty list of ``[x1, y1, x2, y2]`` boxes.

The assignment maximises the number of matches first and their summed IoU second, so the score
does not depend on the order the model lists its boxes in, even when two assignments tie on total
IoU. The parser takes the answer the model *ended* with: the last ``<answer>`` block if there is
one, in it (or in the whole text) the last fenced code block that holds a box list, else the last
bare JSON list. Reasoning before the answer may quote lists of its own; those are not the answer.
A box may be ``[x1, y1, x2, y2]`` or an object with a ``bbox_2d`` / ``bbox`` / ``box`` key, and a
lone object (VLM-R1 and Qwen2.5-VL answer one box as ``{"bbox_2d": [...], "label": ...}``) counts as
a list of one. Boxes are read in the frame the model answered in; ``storage/box_format.py`` converts
them to pixels where a caller needs pixels (``evaluate``).

Pure: numpy and scipy are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.tasks.answers.answer_text import final_answer

Box = list[float]

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.S | re.I)
_FENCE = re.compile(r"```[a-zA-Z0-9_-]*\s*\n?(.*?)```", re.S)
_BOX_KEYS = ("bbox_2d", "bbox", "box")


class DigRewardConfig(BaseModel):
    """The reward's weights and match threshold; DiG's values are the defaults."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    alpha: float = Field(0.1, ge=0.0, le=1.0, description="weight of the format term")
    lambda_f1: float = Field(0.5, ge=0.0, le=1.0, description="weight of F1 inside the accuracy term")
    lambda_iou: float = Field(0.5, ge=0.0, le=1.0, description="weight of mean IoU inside the accuracy term")
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0, description="IoU at which a predicted box matches a true one")


@dataclass(frozen=True)
class GroundingScore:
    """What one answer scored against one sample's true boxes."""

    parsed: bool  # a box list (possibly empty) was found
    format_ok: bool  # ... and it is non-empty
    n_pred: int
    n_gt: int
    matched_ious: tuple[float, ...] = field(default_factory=tuple)

    @property
    def n_matched(self) -> int:
        return len(self.matched_ious)

    @property
    def precision(self) -> float:
        if self.n_pred == 0:
            return 1.0 if self.n_gt == 0 and self.parsed else 0.0
        return self.n_matched / self.n_pred

    @property
    def recall(self) -> float:
        if self.n_gt == 0:
            return 1.0 if self.n_pred == 0 and self.parsed else 0.0
        return self.n_matched / self.n_gt

    @property
    def f1(self) -> float:
        if self.n_pred == 0 and self.n_gt == 0:
            return 1.0 if self.parsed else 0.0  # "[]" for a pair with no change is right
        return 2 * self.n_matched / (self.n_pred + self.n_gt)

    @property
    def mean_iou(self) -> float:
        if self.n_pred == 0 and self.n_gt == 0:
            return 1.0 if self.parsed else 0.0
        return sum(self.matched_ious) / self.n_matched if self.matched_ious else 0.0


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def as_box(value) -> Box | None:
    """``[x1, y1, x2, y2]`` with x1 < x2 and y1 < y2, or a ``{"bbox_2d": [...]}`` object; else None."""
    if isinstance(value, dict):
        inner = next((value[k] for k in _BOX_KEYS if k in value), None)
        return as_box(inner) if isinstance(inner, list) else None
    if not isinstance(value, list) or len(value) != 4 or not all(_number(v) for v in value):
        return None
    x1, y1, x2, y2 = (float(v) for v in value)
    return [x1, y1, x2, y2] if x2 > x1 and y2 > y1 else None


def as_box_list(value) -> list[Box] | None:
    """A JSON value as a list of boxes, or None when it is not one (any bad element spoils it)."""
    if not isinstance(value, list):
        return None
    boxes = [as_box(v) for v in value]
    return None if any(b is None for b in boxes) else boxes


_OPENERS = re.compile(r"[\[{]")


def _json_values(text: str) -> list:
    """Every top-level JSON list or object in ``text``, left to right (nested ones come inside their parent)."""
    decoder = json.JSONDecoder()
    found, match = [], _OPENERS.search(text)
    while match:
        try:
            value, end = decoder.raw_decode(text, match.start())
        except ValueError:
            match = _OPENERS.search(text, match.start() + 1)
            continue
        found.append(value)
        match = _OPENERS.search(text, end)
    return found


def _as_answer(value) -> list[Box] | None:
    """A box list, or a lone box object as a list of one."""
    if isinstance(value, dict):
        box = as_box(value)
        return [box] if box is not None else None
    return as_box_list(value)


def _last_box_list(text: str) -> list[Box] | None:
    for block in reversed(_FENCE.findall(text)):
        for value in reversed(_json_values(block)):
            boxes = _as_answer(value)
            if boxes is not None:
                return boxes
    for value in reversed(_json_values(text)):
        boxes = _as_answer(value)
        if boxes is not None:
            return boxes
    return None


def parse_boxes(completion: str) -> list[Box] | None:
    """The box list a model answered with; ``[]`` for an explicit empty answer, None if none is found.
    Reads the answer after ``</think>`` (``pairsmith.tasks.answers.answer_text``): reasoning is never parsed."""
    completion = final_answer(completion)
    if completion is None:
        return None
    answers = _ANSWER.findall(completion)
    return _last_box_list(answers[-1] if answers else completion)


def box_iou(a: Box, b: Box) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(pred: list[Box], gt: list[Box], iou_threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one (pred index, gt index, IoU) matches at IoU ≥ threshold: most matches, then most IoU."""
    if not pred or not gt:
        return []
    import numpy as np
    from scipy.optimize import linear_sum_assignment

    iou = np.array([[box_iou(p, g) for g in gt] for p in pred], dtype=np.float64)
    ok = iou >= iou_threshold
    # A match is worth more than any sum of IoUs (each ≤ 1), so the count is maximised first.
    gain = np.where(ok, iou + (min(len(pred), len(gt)) + 1), 0.0)
    rows, cols = linear_sum_assignment(gain, maximize=True)
    return [(int(r), int(c), float(iou[r, c])) for r, c in zip(rows, cols) if ok[r, c]]


def score_grounding(pred: list[Box] | None, gt: list[list[float]], iou_threshold: float = 0.5) -> GroundingScore:
    gt_boxes = [[float(v) for v in box] for box in gt]
    boxes = pred or []
    matches = match_boxes(boxes, gt_boxes, iou_threshold)
    return GroundingScore(
        parsed=pred is not None, format_ok=bool(pred), n_pred=len(boxes), n_gt=len(gt_boxes),
        matched_ious=tuple(m[2] for m in matches),
    )


def reward_from_score(score: GroundingScore, alpha: float, lambda_f1: float, lambda_iou: float) -> float:
    accuracy = lambda_f1 * score.f1 + lambda_iou * score.mean_iou
    return (1.0 - alpha) * accuracy + alpha * float(score.format_ok)


def grounding_reward(
    completion: str,
    gt_boxes: list[list[float]],
    *,
    alpha: float = 0.1,
    lambda_f1: float = 0.5,
    lambda_iou: float = 0.5,
    iou_threshold: float = 0.5,
) -> float:
    """DiG's reward for one completion against one sample's true boxes, in [0, 1] with the defaults."""
    score = score_grounding(parse_boxes(completion), gt_boxes, iou_threshold)
    return reward_from_score(score, alpha, lambda_f1, lambda_iou)
