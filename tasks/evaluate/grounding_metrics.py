"""Grounding metrics over a set of answers: box precision / recall / F1, mean IoU and AP@0.5.

Boxes are paired per sample exactly as the DiG reward pairs them (one-to-one Hungarian matching on
IoU, a match at IoU ≥ the threshold), so training reward and evaluation agree.

* precision / recall / F1 are micro-averaged over boxes of all samples;
* mean IoU is the reward's IoU term (mean over a sample's matched pairs, 0 when none) averaged
  over samples;
* AP@0.5 needs a confidence per box, which a chat model does not give. The order of the boxes in
  an answer stands in for it (first box = most confident); boxes of equal rank across samples tie,
  and a tie group enters the precision-recall curve as one point, so the result does not depend
  on sample order. AP is the area under the all-point interpolated curve (VOC 2010+ / COCO style).
  With one box per answer it reduces to precision × recall.
"""

from __future__ import annotations

from dataclasses import dataclass

from pairsmith.tasks.answers.grounding_reward import Box, match_boxes, score_grounding

AP_IOU = 0.5


@dataclass(frozen=True)
class GroundingMetrics:
    n: int
    precision: float
    recall: float
    f1: float
    mean_iou: float
    ap50: float | None  # None when there is no true box at all
    parse_rate: float  # answers that held a box list (possibly empty)
    format_rate: float  # answers that held a non-empty box list

    def as_dict(self) -> dict[str, float]:
        out = {"precision": self.precision, "recall": self.recall, "f1": self.f1, "mean_iou": self.mean_iou,
               "parse_rate": self.parse_rate, "format_rate": self.format_rate}
        if self.ap50 is not None:
            out["ap50"] = self.ap50
        return out


def average_precision(ranked: list[tuple[int, bool]], n_gt: int) -> float | None:
    """All-point interpolated AP of (rank, is_true_positive) detections; equal ranks form one point."""
    if n_gt == 0:
        return None
    ranked = sorted(ranked, key=lambda d: d[0])
    points: list[tuple[float, float]] = []
    tp = fp = 0
    for i, (rank, hit) in enumerate(ranked):
        tp += hit
        fp += not hit
        if i + 1 == len(ranked) or ranked[i + 1][0] != rank:
            points.append((tp / n_gt, tp / (tp + fp)))
    ap, previous_recall = 0.0, 0.0
    for k, (recall, _) in enumerate(points):
        best_precision = max(p for _, p in points[k:])
        ap += (recall - previous_recall) * best_precision
        previous_recall = recall
    return ap


def grounding_metrics(
    predictions: list[list[Box] | None], truths: list[list[list[float]]], iou_threshold: float = 0.5,
) -> GroundingMetrics:
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} samples")
    n = len(predictions)
    if n == 0:
        raise ValueError("no grounding answers to score")
    scores = [score_grounding(p, t, iou_threshold) for p, t in zip(predictions, truths)]
    tp = sum(s.n_matched for s in scores)
    n_pred = sum(s.n_pred for s in scores)
    n_gt = sum(s.n_gt for s in scores)
    ranked: list[tuple[int, bool]] = []
    for pred, truth in zip(predictions, truths):
        boxes = pred or []
        hits = {p for p, _, _ in match_boxes(boxes, [list(map(float, b)) for b in truth], AP_IOU)}
        ranked += [(rank, rank in hits) for rank in range(len(boxes))]
    return GroundingMetrics(
        n=n,
        precision=tp / n_pred if n_pred else float(n_gt == 0),
        recall=tp / n_gt if n_gt else float(n_pred == 0),
        f1=2 * tp / (n_pred + n_gt) if n_pred + n_gt else 1.0,
        mean_iou=sum(s.mean_iou for s in scores) / n,
        ap50=average_precision(ranked, n_gt),
        parse_rate=sum(s.parsed for s in scores) / n,
        format_rate=sum(s.format_ok for s in scores) / n,
    )
