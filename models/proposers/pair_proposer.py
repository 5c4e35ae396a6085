"""Where an edited pair changed: register, normalise, compare, judge the extent, box the changes.

The whole weight-free path from two stored images to boxes, used by the ``propose-regions`` flow
and by ``benchmarks/proposer_recall.py`` alike. For one pair, at ``work_side`` pixels:

1. global alignment of the after image onto the before image (``pair_alignment``: a resize or a
   SIFT + RANSAC similarity, whichever agrees better), warped with a mask of the pixels it covers;
2. optionally, photometric normalisation of the after image (``photometric``: per-channel gain and
   offset by least trimmed squares; off in both presets, see README);
3. dense residual registration (``dense_registration``: smooth, capped DIS optical flow);
4. the change map (``change_map``: CIELAB ΔE and 1 − SSIM at a coarse scale, uncovered pixels masked);
5. the pair's extent verdict (``change_extent``): a ``global`` pair gets no boxes;
6. boxes: ``regions`` mode (edited photos) thresholds the evidence map by hysteresis, merges
   fragments, ranks regions by evidence and adds a group box over regions that changed alike
   (kind ``group``: one surface seen in pieces; ``region_merging``); ``objects`` mode (rendered or
   otherwise pixel-exact pairs) asks ``diffmap_proposer`` for object-tight boxes of the registered
   pair and scores each box on the same evidence map.

Boxes come back as ``[x1, y1, x2, y2]`` floats in pixels of the full-size before image, strongest
first, each with a confidence in 0–1 (the caller decides which confidence is enough).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.proposers.change_extent import Extent, ExtentConfig, change_extent
from pairsmith.models.proposers.change_map import ChangeMapConfig, change_map
from pairsmith.models.proposers.dense_registration import ResidualFlowConfig, residual_flow, warp_by_flow
from pairsmith.models.proposers.diffmap_proposer import RENDER_DIFFMAP, DiffMapConfig, DiffMapProposer
from pairsmith.models.proposers.pair_alignment import AlignConfig, Alignment, align_pair, warp_with_coverage
from pairsmith.models.proposers.photometric import PhotometricConfig, fit_photometry
from pairsmith.models.proposers.region_merging import RegionConfig, box_confidence, evidence_regions, levels


class PairProposerConfig(BaseModel):
    """Every setting of the path above; the defaults are the edited-photo preset (``PHOTO``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    work_side: int = Field(512, ge=64, le=4096, description="longer side the pair is aligned and compared at")
    align: AlignConfig = Field(default_factory=AlignConfig)
    photometric: PhotometricConfig = Field(default_factory=PhotometricConfig)
    residual_flow: ResidualFlowConfig = Field(default_factory=ResidualFlowConfig)
    change_map: ChangeMapConfig = Field(default_factory=ChangeMapConfig)
    extent: ExtentConfig = Field(default_factory=ExtentConfig)
    boxes: Literal["regions", "objects"] = Field("regions", description="regions: evidence regions (photos); objects: diffmap objects (renders)")
    regions: RegionConfig = Field(default_factory=RegionConfig)
    diffmap: DiffMapConfig = Field(default_factory=DiffMapConfig, description="objects mode: the object proposer")
    max_boxes: int = Field(10, ge=1, le=100, description="most boxes per pair, strongest first")


# Rendered pairs come pixel-aligned and noise-matched (one render seed): no colour drift to undo,
# no residual motion, and object-tight boxes matter (IoU >= 0.5 against exact ground truth).
RENDER = PairProposerConfig(
    work_side=4096, photometric=PhotometricConfig(enabled=False), residual_flow=ResidualFlowConfig(enabled=False),
    boxes="objects", diffmap=RENDER_DIFFMAP,
)
PHOTO = PairProposerConfig()


@dataclass
class PairProposal:
    """What the proposer found for one pair; boxes in full-size before-image pixels."""

    alignment: Alignment  # transform between the full-size images (after -> before pixels)
    extent: Extent | None = None  # None when the pair could not be aligned at all
    boxes: list[list[float]] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)  # "region", "group" (regions that changed alike), or the diffmap kind
    changed_fraction: list[float] = field(default_factory=list)  # share of the box's pixels that changed
    seconds: float = 0.0


def _scaled(image: Image.Image, side: int) -> Image.Image:
    scale = min(1.0, side / max(image.size))
    if scale == 1.0:
        return image
    return image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR,
                        reducing_gap=2.0)


class PairProposer:
    """Propose change regions of before/after photo pairs; pickles as its config, no model weights."""

    def __init__(self, config: PairProposerConfig | None = None):
        self.config = config or PHOTO

    def propose_batch(self, pairs: list[tuple[Image.Image, Image.Image]]) -> list[PairProposal]:
        return [self.propose(before, after) for before, after in pairs]

    def propose(self, before_full: Image.Image, after_full: Image.Image) -> PairProposal:
        start = time.perf_counter()
        c = self.config
        before_full, after_full = before_full.convert("RGB"), after_full.convert("RGB")
        before, after = _scaled(before_full, c.work_side), _scaled(after_full, c.work_side)
        alignment = align_pair(before, after, c.align)
        to_full = np.diag([before_full.width / before.width, before_full.height / before.height, 1.0])
        from_full = np.diag([after.width / after_full.width, after.height / after_full.height, 1.0])
        full = to_full @ alignment.matrix() @ from_full
        result = PairProposal(Alignment(alignment.method, tuple(float(v) for v in full.ravel()), alignment.score,
                                        alignment.overlap, alignment.inliers, alignment.reason))
        if alignment.reason in (None, "align_low_score", "align_no_overlap"):
            self._compare(np.asarray(before), np.asarray(after), alignment, to_full, result)
        result.seconds = round(time.perf_counter() - start, 4)
        return result

    def _compare(self, b: np.ndarray, a: np.ndarray, alignment: Alignment, to_full: np.ndarray,
                 result: PairProposal) -> None:
        c = self.config
        h, w = b.shape[:2]
        warped, valid = warp_with_coverage((w, h), a, alignment)
        warped = fit_photometry(b, warped, valid, c.photometric).apply(warped)
        if c.residual_flow.enabled:
            warped, valid = warp_by_flow(warped, valid, residual_flow(b, warped, c.residual_flow))
        cmap = change_map(b, warped, valid, c.change_map)
        result.extent = change_extent(alignment.overlap, alignment.score, cmap.structure, cmap.valid, c.extent)
        if result.extent.extent == "global":
            return
        sx, sy = to_full[0, 0], to_full[1, 1]
        found: list[tuple[float, list[float], str, float]] = []
        if c.boxes == "regions":
            regions, _ = evidence_regions(cmap.evidence, cmap.valid, c.regions, (cmap.lab_before, cmap.lab_after))
            for r in regions:
                x1, y1, x2, y2 = r.box
                kind = "group" if r.parts > 1 else "region"
                found.append((r.confidence, [float(x1), float(y1), float(x2), float(y2)], kind, round(r.fill, 4)))
        else:
            lv = levels(cmap.evidence, cmap.valid, c.regions)
            proposals = DiffMapProposer(c.diffmap).propose(b, np.where(valid[..., None], warped, b))
            for box, kind, changed in zip(proposals.boxes, proposals.kinds, proposals.changed_fraction):
                found.append((box_confidence(cmap.evidence, box, lv, c.regions), list(box), kind, changed))
        for confidence, (x1, y1, x2, y2), kind, changed in found:
            if len(result.boxes) >= c.max_boxes:
                break
            result.boxes.append([round(x1 * sx, 2), round(y1 * sy, 2), round(x2 * sx, 2), round(y2 * sy, 2)])
            result.confidences.append(confidence)
            result.kinds.append(kind)
            result.changed_fraction.append(changed)


PRESETS: dict[str, PairProposerConfig] = {"photo": PHOTO, "render": RENDER}
