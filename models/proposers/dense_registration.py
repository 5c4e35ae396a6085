"""Dense residual registration: the small, smooth warps left after the global transform.

An editor that re-generates the picture does not return it pixel-aligned even after the best
global similarity transform: objects drift by a pixel or three, a little differently across the
frame, and every edge then reads as a change (the "alignment residue" at object edges). This
module estimates that residual motion with OpenCV's DIS optical flow (Kroeger, Timofte, Dai and
Van Gool, "Fast Optical Flow using Dense Inverse Search", ECCV 2016; ``cv2.DISOpticalFlow``),
keeps only its smooth, small part (a Gaussian blur of the flow field, then a cap on its length),
and warps the after image with it.

Smoothing and capping are what keep a real change from being explained away: an added or
re-drawn object needs a large, local motion to be "matched", and that is exactly what the blur
and the cap remove, while the gentle drift of a re-rendered picture survives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

_PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}


class ResidualFlowConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    enabled: bool = Field(True, description="estimate and apply the residual flow")
    preset: Literal["ultrafast", "fast", "medium"] = Field("medium", description="cv2.DISOpticalFlow preset")
    smooth_fraction: float = Field(
        0.03, ge=0.0, le=0.5, description="Gaussian sigma of the flow smoothing, as a share of the longer image side"
    )
    max_shift_fraction: float = Field(
        0.02, gt=0.0, le=0.2, description="longest residual shift kept, as a share of the longer image side"
    )


@dataclass
class ResidualFlow:
    """Per before-pixel displacement (H x W x 2, x then y, pixels) into the after image."""

    flow: np.ndarray

    @property
    def max_shift(self) -> float:
        return float(np.linalg.norm(self.flow, axis=2).max()) if self.flow.size else 0.0

    @property
    def mean_shift(self) -> float:
        return float(np.linalg.norm(self.flow, axis=2).mean()) if self.flow.size else 0.0


def residual_flow(before: np.ndarray, after: np.ndarray, config: ResidualFlowConfig) -> ResidualFlow:
    """Smooth, capped DIS flow from ``before`` to ``after`` (aligned H x W x 3 or H x W uint8)."""
    import cv2

    if before.shape[:2] != after.shape[:2]:
        raise ValueError(f"residual flow: image sizes differ: {before.shape[:2]} vs {after.shape[:2]}")
    h, w = before.shape[:2]
    if not config.enabled:
        return ResidualFlow(np.zeros((h, w, 2), np.float32))
    gray_b = before if before.ndim == 2 else cv2.cvtColor(before, cv2.COLOR_RGB2GRAY)
    gray_a = after if after.ndim == 2 else cv2.cvtColor(after, cv2.COLOR_RGB2GRAY)
    dis = cv2.DISOpticalFlow_create(_PRESETS[config.preset])
    flow = dis.calc(np.ascontiguousarray(gray_b), np.ascontiguousarray(gray_a), None)
    side = max(h, w)
    if config.smooth_fraction > 0:
        flow = cv2.GaussianBlur(flow, (0, 0), config.smooth_fraction * side, borderType=cv2.BORDER_REFLECT)
    length = np.linalg.norm(flow, axis=2, keepdims=True)
    cap = config.max_shift_fraction * side
    flow = flow * np.minimum(1.0, cap / np.maximum(length, 1e-6))
    return ResidualFlow(flow.astype(np.float32))


def warp_by_flow(after: np.ndarray, valid: np.ndarray, flow: ResidualFlow) -> tuple[np.ndarray, np.ndarray]:
    """``after`` resampled at ``x + flow`` (bilinear), and where the result still has real pixels.

    ``valid`` marks the pixels of ``after`` that carry the after image (not the warp's fill); the
    returned mask is ``valid`` sampled the same way, so pixels pulled from outside stay masked.
    """
    import cv2

    h, w = after.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = gx + flow.flow[..., 0], gy + flow.flow[..., 1]
    warped = cv2.remap(after, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.remap(valid.astype(np.uint8), map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)
    return warped, inside.astype(bool)
