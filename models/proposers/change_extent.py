"""The pair-level verdict: did the edit change a region, or the whole picture?

Some edits re-draw or re-frame the whole image (a flag painted anew, a building re-rendered in
another style, the same view at another aspect ratio). No box can single out "the" change there,
and ten boxes on such a pair teach a grounding model nothing. So before any box is proposed, the
pair gets ``change_extent`` = ``local`` or ``global`` with the evidence behind it:

* ``extent_reframed``: the aligned after image covers less than ``min_coverage`` of the before
  image (the editor cropped or turned the view);
* ``extent_unaligned``: no global transform makes most of the overlap agree (alignment agreement
  below ``min_agreement``: the picture was re-drawn, or the two images are not of one scene);
* ``extent_redrawn``: after alignment, more than ``max_changed_share`` of the covered pixels changed
  in structure (1 − SSIM at least ``structure_level``; a local edit leaves most of the picture as it was).

The stored score is the share of the before image that is *not* shown unchanged by the after image:
``1 − coverage · (1 − changed_share)``, 0–1 (for ``extent_unaligned``: ``1 − agreement`` when larger).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class ExtentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    enabled: bool = Field(True, description="give whole-image edits the global verdict (no boxes)")
    min_coverage: float = Field(0.8, ge=0.0, le=1.0, description="least share of the before image the aligned after covers")
    min_agreement: float = Field(0.6, ge=0.0, le=1.0, description="least alignment agreement (share of overlap pixels alike)")
    structure_level: float = Field(0.5, gt=0.0, le=2.0, description="1 − SSIM at which a pixel's structure counts as changed")
    max_changed_share: float = Field(0.65, gt=0.0, le=1.0, description="most share of covered pixels changed in a local edit")


@dataclass(frozen=True)
class Extent:
    extent: Literal["local", "global"]
    score: float  # 0-1, share of the before image not shown unchanged
    reason: str | None = None  # extent_reframed | extent_unaligned | extent_redrawn when global
    coverage: float = 1.0
    changed_share: float = 0.0


def change_extent(coverage: float, agreement: float, structure: np.ndarray, valid: np.ndarray,
                  config: ExtentConfig) -> Extent:
    """The verdict from the alignment's ``coverage`` and ``agreement`` (0–1) and the 1 − SSIM map."""
    changed = float((structure[valid] >= config.structure_level).mean()) if valid.any() else 1.0
    score = 1.0 - coverage * (1.0 - changed)
    reason = None
    if config.enabled:
        if coverage < config.min_coverage:
            reason = "extent_reframed"
        elif agreement < config.min_agreement:
            reason, score = "extent_unaligned", max(score, 1.0 - agreement)
        elif changed > config.max_changed_share:
            reason = "extent_redrawn"
    return Extent("global" if reason else "local", round(float(score), 4), reason, round(coverage, 4), round(changed, 4))
