"""Photometric normalisation: bring an edited photo's colours back onto its original's.

An image editor re-encodes the whole picture: brightness, contrast and white balance drift a
little everywhere, and every pixel of the after image then differs from the before image by a few
levels (a "JPEG and colour shift" that a difference map reads as change). This module fits, per RGB
channel, ``before ≈ gain · after + offset`` and applies it to the after image.

The fit must follow the *unchanged* majority of the picture, not the edit: a repainted bus or a
pink sky can cover a third of the image, and a flexible colour transfer (a 3x3 colour matrix, or
histogram matching) then maps the new colour back onto the old one and erases the change (measured
on the MED benchmark sample: a colour-matrix fit turned a repainted blue bus back to teal). So the
model is low-dimensional (two numbers per channel) and fitted by least trimmed squares, which
ignores up to ``1 - keep`` of the pixels: Rousseeuw & Van Driessen, "Computing LTS Regression for
Large Data Sets", Data Mining and Knowledge Discovery 12 (2006), the concentration ("C-") step:
fit on the pixels with the smallest residuals, recompute residuals, repeat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class PhotometricConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    enabled: bool = Field(
        False, description="fit and apply the per-channel gain/offset (off by default: no gain on the MED sample, see README)"
    )
    keep: float = Field(0.5, ge=0.2, le=1.0, description="share of pixels the trimmed fit uses (LTS h/n; 0.5 = most robust)")
    iterations: int = Field(12, ge=1, le=50, description="most concentration steps of the trimmed fit (stops once stable)")
    sample_step: int = Field(3, ge=1, le=16, description="fit on every n-th valid pixel (speed)")
    max_gain_change: float = Field(0.5, gt=0, le=2.0, description="a fitted |gain - 1| above this is implausible: no correction")


@dataclass(frozen=True)
class PhotometricFit:
    """``before ≈ gain * after + offset`` per RGB channel (0-255 levels)."""

    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    applied: bool = False

    def apply(self, after: np.ndarray) -> np.ndarray:
        """``after`` (H x W x 3 uint8) with the fitted correction, clipped to uint8."""
        if not self.applied:
            return after
        out = after.astype(np.float32) * np.asarray(self.gain, np.float32) + np.asarray(self.offset, np.float32)
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def fit_photometry(before: np.ndarray, after: np.ndarray, valid: np.ndarray, config: PhotometricConfig) -> PhotometricFit:
    """Trimmed least-squares gain/offset per channel mapping ``after`` onto ``before``.

    ``before`` and ``after`` are aligned H x W x 3 uint8 arrays; ``valid`` (H x W bool) marks the
    pixels both images cover. Returns the identity (``applied=False``) when disabled, when fewer
    than 100 pixels are valid, or when a gain moves by more than ``max_gain_change``.
    """
    if before.shape != after.shape or before.shape[:2] != valid.shape:
        raise ValueError(f"photometric: shapes differ: before {before.shape}, after {after.shape}, valid {valid.shape}")
    idx = np.flatnonzero(valid.ravel())[:: config.sample_step]
    if not config.enabled or idx.size < 100:
        return PhotometricFit()
    b = before.reshape(-1, 3)[idx].astype(np.float64)
    a = after.reshape(-1, 3)[idx].astype(np.float64)
    n_keep = max(10, int(round(config.keep * idx.size)))
    chosen = np.arange(idx.size)
    gain, offset = np.ones(3), np.zeros(3)
    for _ in range(config.iterations):
        for ch in range(3):
            gain[ch], offset[ch] = np.polyfit(a[chosen, ch], b[chosen, ch], 1)
        residual = np.abs(a * gain + offset - b).sum(axis=1)
        new = np.argpartition(residual, n_keep - 1)[:n_keep]
        if np.array_equal(np.sort(new), np.sort(chosen)):
            break
        chosen = new
    if np.any(np.abs(gain - 1.0) > config.max_gain_change):
        return PhotometricFit()
    return PhotometricFit(tuple(float(g) for g in gain), tuple(float(o) for o in offset), applied=True)
