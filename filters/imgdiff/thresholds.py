"""Img-Diff's thresholds, the one module both pipelines' filters read them from.

``ReplaceThresholds`` (object replacement, design.md §4.2) and ``RemoveThresholds`` (object removal,
design.md §4.3) are what the keep rules of ``pairsmith.filters.imgdiff`` read; ``ImgDiffThresholds``
holds both, as ``pairsmith refilter --config`` reads them. The filters and the pipeline
declarations (``pairsmith.filters.imgdiff.pipelines``) import them from here, so no filter imports
the pipelines that import it.

The thresholds' defaults are the paper's chosen setting. Img-Diff's ablation (design.md §4.2)
trained LLaVA-1.5-7B on data filtered with several settings and kept IS 0.90-0.98, BITM 0.35,
CS 0.85, CITM 0.4 (+3.06 % averaged over eight benchmarks). Those numbers are the defaults here,
so a flow run with no config reproduces the paper, and ``pairsmith refilter`` re-applies another
setting to stored scores without running a model.

Every boundary is written down, because a score exactly on a threshold must land on a side that
a test pins:

* pair similarity: kept iff ``pair_sim_min < s < pair_sim_max``. design.md writes the window as
  the open interval (0.90, 0.98), so both ends drop.
* crop similarity (replacement): kept iff ``s < crop_sim_max`` ("crop cosine < 0.85").
* BITM, CITM: kept iff ``s > min`` for *both* images ("> 0.35", "> 0.4"); equal drops.
* caption similarity: kept iff ``s < caption_sim_max`` ("CS < 0.85").
* NMS: a box is suppressed iff its IoU with an already kept box is ``> nms_iou``. IoU exactly 0.5
  survives, as in ``torchvision.ops.nms`` and in Img-Diff's own ``iou_filter`` (keeps
  ``iou <= thresh``).
* box area: kept iff ``area * min_area_denominator >= image area`` ("skip boxes < 1/400 of the
  image": a box of exactly 1/400 is kept). A product, so that 1/400 needs no float rounding.
* box aspect (not in the paper): kept iff ``long side / short side <= box_aspect_max``; the default
  100 drops only degenerate slivers the VLM would refuse (see ``box_aspect``).
* removal: the crop is kept iff ``s < crop_sim_max`` ("cosine < 0.9"); the removal is confirmed
  iff ``ITM(original crop) > 0.35`` and ``ITM(inpainted crop) < 0.2``, strict as Img-Diff prints
  them (supplementary §19.2.4: "greater than 0.35", "less than 0.2"; issue 23 supersedes issue 3's
  non-strict reading), so a score exactly on either threshold drops.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.storage.ids import content_key

BlipScore = Literal["itm", "cosine"]

# Which stored columns hold each BLIP score: the ITM-head probability or the contrastive cosine.
_BLIP_COLUMNS: dict[str, dict[BlipScore, tuple[str, str]]] = {
    "bitm": {"itm": ("itm_before", "itm_after"), "cosine": ("itm_cosine_before", "itm_cosine_after")},
    "citm": {"itm": ("citm_before", "citm_after"), "cosine": ("citm_cosine_before", "citm_cosine_after")},
}


def blip_columns(section: str) -> tuple[str, ...]:
    """Every stored column of one BLIP score (``bitm`` or ``citm``): both kinds, before and after."""
    return tuple(c for kind in _BLIP_COLUMNS[section].values() for c in kind)


class ReplaceThresholds(BaseModel):
    """Object replacement (design.md §4.2, steps 3 and 5-7)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    pair_sim_min: float = Field(0.90, ge=-1.0, le=1.0, description="IS: pair CLIP cosine must be > this")
    pair_sim_max: float = Field(0.98, ge=-1.0, le=1.0, description="IS: pair CLIP cosine must be < this")
    crop_sim_max: float = Field(0.85, ge=-1.0, le=1.0, description="crop CLIP cosine must be < this")
    bitm_min: float = Field(0.35, ge=-1.0, le=1.0, description="BITM: BLIP crop-vs-noun score must be > this, both images")
    nms_iou: float = Field(0.5, ge=0.0, le=1.0, description="suppress a box whose IoU with a kept box is > this")
    max_boxes: int = Field(10, ge=1, le=1000, description="most boxes kept per pair after NMS")
    min_area_denominator: float = Field(
        400.0, ge=1.0, description="skip boxes smaller than 1/N of the image (N = this)"
    )
    box_aspect_max: float = Field(
        100.0, ge=1.0, description="drop boxes whose long side is more than this times their short side "
        "(slivers; Qwen2-VL refuses crops over 200)"
    )
    citm_min: float = Field(0.4, ge=-1.0, le=1.0, description="CITM: BLIP crop-vs-region-caption score must be > this, both images")
    caption_sim_max: float = Field(0.85, ge=-1.0, le=1.0, description="CS: CLIP text cosine of the two region captions must be < this")
    blip_score: BlipScore = Field(
        "itm", description="BITM/CITM read the ITM-head probability ('itm', Img-Diff) or the contrastive cosine"
    )
    natural_min: float | None = Field(
        None, ge=0.0, le=1.0, description="unnatural-image filter (Img-Diff supp. §15): both images' P(natural) "
        "must be > this; None: off (the paper's preset)",
    )

    @model_validator(mode="after")
    def _window(self) -> "ReplaceThresholds":
        if self.pair_sim_min >= self.pair_sim_max:
            raise ValueError(
                f"pair_sim_min {self.pair_sim_min} must be below pair_sim_max {self.pair_sim_max}: "
                "the window would keep nothing"
            )
        return self

    def bitm_columns(self) -> tuple[str, str]:
        """The regions columns (before, after) the crop filter reads for BITM."""
        return _BLIP_COLUMNS["bitm"][self.blip_score]

    def citm_columns(self) -> tuple[str, str]:
        """The regions columns (before, after) the caption filter reads for CITM."""
        return _BLIP_COLUMNS["citm"][self.blip_score]


class RemoveThresholds(BaseModel):
    """Object removal (design.md §4.3)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    crop_sim_max: float = Field(0.9, ge=-1.0, le=1.0, description="crop CLIP cosine vs the paired image must be < this")
    itm_original_min: float = Field(
        0.35, ge=-1.0, le=1.0, description="ITM(original crop, description) must be > this: the object was there"
    )
    itm_inpainted_max: float = Field(
        0.2, ge=-1.0, le=1.0, description="ITM(inpainted crop, description) must be < this: the object is gone"
    )
    blip_score: BlipScore = Field("itm", description="read the ITM-head probability ('itm') or the contrastive cosine")
    natural_min: float | None = Field(
        None, ge=0.0, le=1.0, description="unnatural-image filter (Img-Diff supp. §15): both images' P(natural) "
        "must be > this; None: off (the paper's preset)",
    )

    def itm_columns(self) -> tuple[str, str]:
        """The regions columns (original, inpainted) the removal ITM filter reads."""
        return _BLIP_COLUMNS["bitm"][self.blip_score]


class ImgDiffThresholds(BaseModel):
    """Both pipelines' thresholds: the file ``pairsmith refilter --config`` reads."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    replace: ReplaceThresholds = Field(default_factory=ReplaceThresholds)
    remove: RemoveThresholds = Field(default_factory=RemoveThresholds)

    def content_hash(self, length: int = 10) -> str:
        """Same thresholds, same hash: names the refilter run, so re-running it overwrites its stats
        (``pairsmith.storage.ids.content_key``: thresholds at the paper's values count for nothing)."""
        return content_key(self)[:length]


PAPER_REPLACE = ReplaceThresholds()
PAPER_REMOVE = RemoveThresholds()
