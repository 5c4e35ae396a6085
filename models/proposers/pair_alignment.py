"""Bring an edited photo back onto its original's frame, so pixel differences mean content changes.

Real edits come back resized, slightly cropped or re-framed (MED's Gemini edits are 1024 px on
the long side whatever the source was). Two candidate transforms map the after image onto the
before image: a plain resize, and a similarity transform (scale, rotation, shift) fitted by
OpenCV to SIFT matches with RANSAC. Each is scored by how much of the overlap agrees after the
warp (a local edit leaves most pixels alike; a misalignment does not), and the better one is
kept. The transform maps after-image pixels to before-image pixels, so boxes found on the aligned
pair are in before-image pixels as stored everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field


class AlignConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    work_side: int = Field(640, ge=64, le=4096, description="longer side of the images features are matched at")
    method: Literal["auto", "resize", "features"] = Field("auto", description="auto: the better-scoring of both")
    max_features: int = Field(4000, ge=100, le=100_000)
    ratio_test: float = Field(0.75, gt=0.0, lt=1.0, description="Lowe's ratio for SIFT matches")
    ransac_px: float = Field(3.0, gt=0.0, le=50.0, description="RANSAC reprojection threshold at work size")
    min_inliers: int = Field(15, ge=3, description="fewer RANSAC inliers: the feature transform is not tried")
    pixel_tolerance: int = Field(30, ge=1, le=255, description="grey-level difference still counted as agreeing")
    min_score: float = Field(0.6, ge=0.0, le=1.0, description="least share of agreeing overlap pixels")
    min_overlap: float = Field(0.6, ge=0.0, le=1.0, description="least share of the before image the after covers")


@dataclass(frozen=True)
class Alignment:
    method: str  # "resize" | "similarity"
    transform: tuple[float, ...]  # 3x3 row-major, after pixels -> before pixels
    score: float  # share of overlap pixels that agree after the warp
    overlap: float  # share of the before image covered by the warped after image
    inliers: int
    reason: str | None = None  # set when the pair cannot be aligned

    @property
    def ok(self) -> bool:
        return self.reason is None

    def matrix(self) -> np.ndarray:
        return np.asarray(self.transform, dtype=np.float64).reshape(3, 3)


def _gray(img: Image.Image, scale: float) -> np.ndarray:
    import cv2

    arr = np.asarray(img.convert("L"))
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return cv2.resize(arr, size, interpolation=cv2.INTER_AREA)


def _score(before: np.ndarray, after: np.ndarray, m: np.ndarray, tolerance: int) -> tuple[float, float]:
    """(agreeing share of the overlap, overlap share) of after warped by ``m`` onto before (work size)."""
    import cv2

    h, w = before.shape
    warped = cv2.warpPerspective(after, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full(after.shape, 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    overlap = float(mask.mean())
    if overlap == 0:
        return 0.0, 0.0
    b = cv2.GaussianBlur(before, (5, 5), 0).astype(np.int16)
    a = cv2.GaussianBlur(warped, (5, 5), 0).astype(np.int16)
    agree = np.abs(b - a)[mask] <= tolerance
    return float(agree.mean()), overlap


def _similarity(before: np.ndarray, after: np.ndarray, cfg: AlignConfig) -> tuple[np.ndarray | None, int]:
    """Work-size 3x3 after->before from SIFT + RANSAC, and its inlier count."""
    import cv2

    sift = cv2.SIFT_create(nfeatures=cfg.max_features)
    kb, db = sift.detectAndCompute(before, None)
    ka, da = sift.detectAndCompute(after, None)
    if db is None or da is None or len(kb) < cfg.min_inliers or len(ka) < cfg.min_inliers:
        return None, 0
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m for m, n in (p for p in matches if len(p) == 2) if m.distance < cfg.ratio_test * n.distance]
    if len(good) < cfg.min_inliers:
        return None, len(good)
    src = np.float32([ka[m.queryIdx].pt for m in good])
    dst = np.float32([kb[m.trainIdx].pt for m in good])
    m, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_px)
    n_inliers = int(inliers.sum()) if inliers is not None else 0
    if m is None or n_inliers < cfg.min_inliers:
        return None, n_inliers
    return np.vstack([m, [0.0, 0.0, 1.0]]), n_inliers


def _rank(candidate: Alignment, cfg: AlignConfig) -> tuple[bool, bool, float]:
    """Agreeing transforms first (a re-framed view that agrees beats a resize that does not: the
    verdict is then "re-framed", not "unaligned"), then those covering enough, then agreement."""
    return candidate.score >= cfg.min_score, candidate.overlap >= cfg.min_overlap, candidate.score


def align_pair(before: Image.Image, after: Image.Image, cfg: AlignConfig = AlignConfig()) -> Alignment:
    """The best transform of ``after`` onto ``before``'s frame, or why there is none."""
    scale_b = min(1.0, cfg.work_side / max(before.size))
    scale_a = min(1.0, cfg.work_side / max(after.size))
    gb, ga = _gray(before, scale_b), _gray(after, scale_a)
    to_work = np.diag([scale_a, scale_a, 1.0])  # full after -> work after
    from_work = np.diag([1 / scale_b, 1 / scale_b, 1.0])  # work before -> full before
    candidates: list[tuple[str, np.ndarray, int]] = []
    if cfg.method in ("auto", "resize"):
        resize = np.diag([gb.shape[1] / ga.shape[1], gb.shape[0] / ga.shape[0], 1.0])
        candidates.append(("resize", resize, 0))
    if cfg.method in ("auto", "features"):
        m, inliers = _similarity(gb, ga, cfg)
        if m is not None:
            candidates.append(("similarity", m, inliers))
    best: Alignment | None = None
    for method, work_m, inliers in candidates:
        score, overlap = _score(gb, ga, work_m, cfg.pixel_tolerance)
        full = from_work @ work_m @ to_work
        cand = Alignment(method, tuple(float(v) for v in full.ravel()), round(score, 4), round(overlap, 4), inliers)
        if best is None or _rank(cand, cfg) > _rank(best, cfg):
            best = cand
    if best is None:
        return Alignment("none", tuple(np.eye(3).ravel()), 0.0, 0.0, 0, "align_no_transform")
    if best.overlap < cfg.min_overlap:
        return Alignment(best.method, best.transform, best.score, best.overlap, best.inliers, "align_no_overlap")
    if best.score < cfg.min_score:
        return Alignment(best.method, best.transform, best.score, best.overlap, best.inliers, "align_low_score")
    return best


def warp_with_coverage(before_size: tuple[int, int], after: np.ndarray, alignment: Alignment) -> tuple[np.ndarray, np.ndarray]:
    """``after`` (H' x W' x C uint8) warped into a ``before_size`` (width, height) frame, and where it reaches.

    Returns the warped image (zeros outside) and an H x W bool mask of the pixels the after image covers.
    """
    import cv2

    w, h = before_size
    m = alignment.matrix()
    warped = cv2.warpPerspective(after, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full(after.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0
    return warped, mask


def warp_onto_before(before: Image.Image, after: Image.Image, alignment: Alignment) -> Image.Image:
    """``after`` in ``before``'s frame; where it does not reach, ``before``'s own pixels (no false change)."""
    b = np.asarray(before.convert("RGB"))
    warped, mask = warp_with_coverage(before.size, np.asarray(after.convert("RGB")), alignment)
    out = np.where(mask[..., None], warped, b)
    return Image.fromarray(out.astype(np.uint8))
