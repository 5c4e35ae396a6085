"""How much each pixel of an aligned photo pair changed: a perceptual and a structural difference.

Raw RGB differences of a re-encoded photo mark everything a little and nothing clearly. Two
measures that follow what a person sees replace them, both at a coarse scale (a Gaussian whose
sigma is a share of the image side), since re-generated textures (grass, foliage, crowds) differ
pixel by pixel but not in their local averages:

* colour: the CIE 1976 colour difference ΔE*ab between the blurred images in CIELAB
  (``skimage.color.rgb2lab`` / ``deltaE_cie76``); about 2.3 is a just-noticeable difference, 20 a
  plainly different colour;
* structure: 1 − SSIM (Wang, Bovik, Sheikh and Simoncelli, "Image Quality Assessment: From Error
  Visibility to Structural Similarity", IEEE TIP 13(4), 2004; ``skimage.metrics.structural_similarity``
  with Gaussian weights), which catches a changed shape or pose of an object of unchanged colour.

``evidence = ΔE / delta_e_unit + ssim_weight · (1 − SSIM)``, so 1.0 is "one plainly different
colour's worth" of change. Pixels the aligned after image does not cover, and a margin around them
as wide as the blur, carry no evidence: the warp's fill is not a change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ChangeMapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    blur_fraction: float = Field(0.02, ge=0.0, le=0.1, description="Gaussian sigma before ΔE, share of the longer side")
    ssim_sigma_fraction: float = Field(0.02, gt=0.0, le=0.1, description="SSIM's Gaussian window sigma, share of the longer side")
    delta_e_unit: float = Field(20.0, gt=0.0, description="ΔE*ab worth one unit of evidence")
    ssim_weight: float = Field(1.0, ge=0.0, description="weight of 1 − SSIM in the evidence")


@dataclass
class ChangeMap:
    """Per-pixel maps of one aligned pair, all H x W float32 (``valid`` bool)."""

    evidence: np.ndarray
    delta_e: np.ndarray
    structure: np.ndarray  # 1 - SSIM, 0..2
    valid: np.ndarray
    lab_before: np.ndarray | None = None  # H x W x 3 CIELAB of the blurred before image (L 0-100)
    lab_after: np.ndarray | None = None  # the same for the aligned after image

    def changed_share(self, level: float) -> float:
        """Share of the valid pixels whose evidence is at least ``level`` (0 when none are valid)."""
        return float((self.evidence[self.valid] >= level).mean()) if self.valid.any() else 0.0


def change_map(before: np.ndarray, after: np.ndarray, valid: np.ndarray, config: ChangeMapConfig) -> ChangeMap:
    """Evidence of change between aligned ``before`` and ``after`` (H x W x 3 uint8) where ``valid``."""
    import cv2
    from skimage.color import deltaE_cie76, rgb2lab
    from skimage.metrics import structural_similarity

    if before.shape != after.shape or before.shape[:2] != valid.shape:
        raise ValueError(f"change map: shapes differ: before {before.shape}, after {after.shape}, valid {valid.shape}")
    side = max(before.shape[:2])
    sigma = config.blur_fraction * side

    def lab(image: np.ndarray) -> np.ndarray:
        rgb = image.astype(np.float32) / 255.0
        if sigma > 0:
            rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
        return rgb2lab(rgb)

    lab_before, lab_after = lab(before).astype(np.float32), lab(after).astype(np.float32)
    delta_e = deltaE_cie76(lab_before, lab_after).astype(np.float32)
    gray_b = cv2.cvtColor(before, cv2.COLOR_RGB2GRAY)
    gray_a = cv2.cvtColor(after, cv2.COLOR_RGB2GRAY)
    _, ssim = structural_similarity(
        gray_b, gray_a, data_range=255, gaussian_weights=True, sigma=config.ssim_sigma_fraction * side,
        use_sample_covariance=False, full=True,
    )
    structure = np.clip(1.0 - ssim, 0.0, 2.0).astype(np.float32)
    margin = int(np.ceil(3 * max(sigma, config.ssim_sigma_fraction * side)))
    inside = valid
    if margin > 0 and not valid.all():
        inside = cv2.erode(valid.astype(np.uint8), np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)).astype(bool)
    evidence = delta_e / config.delta_e_unit + config.ssim_weight * structure
    evidence[~inside] = 0.0
    return ChangeMap(evidence.astype(np.float32), delta_e, structure, inside, lab_before, lab_after)
