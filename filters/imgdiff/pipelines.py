"""Img-Diff's two pipelines, declared once: their stages in order, and the thresholds their filters read.

Each pipeline is the ordered tuple of its stages (``pairsmith.filters.pipeline``): the
model steps (caption pairs, generate, propose, captions, inpaint, ...) and the filters, each filter
with its pure keep rule, the stored columns it reads, the threshold fields it reads and its reasons.
The flows run these lists (``pairsmith.tasks.imgdiff.steps`` maps each name to its task);
``pairsmith refilter`` re-judges stored rows by walking them (``rejudge``); the funnel, the drop-off
artifact and ``pairsmith refilter --help`` follow them. A stage's name is its Prefect task, its
``stage_stats`` rows and the ``drop_stage`` / ``reason`` stored with what it drops: stored names
are the contract with databases written before, so a stage is never renamed.

Adding a filter: its pure rule in a module of this folder, its threshold field(s) and its entry in
the list below (here), a score column in ``storage/schemas.py`` if it needs a new one, and a test.

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

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.filters.imgdiff.box_area import keep_box_area
from pairsmith.filters.imgdiff.box_aspect import keep_box_aspect
from pairsmith.filters.imgdiff.caption_filter import keep_region_captions
from pairsmith.filters.imgdiff.crop_filter import keep_crop
from pairsmith.filters.imgdiff.naturalness import NATURAL
from pairsmith.filters.imgdiff.nms import nms_most_different_first
from pairsmith.filters.imgdiff.pair_filter import keep_pair
from pairsmith.filters.imgdiff.removal_crop import keep_removal_crop
from pairsmith.filters.imgdiff.removal_itm import keep_removal_itm
from pairsmith.filters.pipeline import PAIR, PAIR_REGIONS, REGION, Pipeline, Row, Stage, merged_order
from pairsmith.storage.ids import content_key
from pairsmith.storage.verdict import KEEP, Verdict

BlipScore = Literal["itm", "cosine"]

# Which stored columns hold each BLIP score: the ITM-head probability or the contrastive cosine.
_BLIP_COLUMNS: dict[str, dict[BlipScore, tuple[str, str]]] = {
    "bitm": {"itm": ("itm_before", "itm_after"), "cosine": ("itm_cosine_before", "itm_cosine_after")},
    "citm": {"itm": ("citm_before", "citm_after"), "cosine": ("citm_cosine_before", "citm_cosine_after")},
}


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


# --------------------------------------------------------------------------- keep rules over rows
# A rule reads one row (``pairsmith.filters.pipeline.Row``): a pair's columns, or a region's plus its pair's width
# and height. The pure filters beside this module take plain values; these pick them from the row.


def _nms(rows: Sequence[Row], t: ReplaceThresholds) -> list[Verdict]:
    """NMS over one pair's regions, taken in region-id order so that ties never depend on the input."""
    order = sorted(range(len(rows)), key=lambda i: rows[i]["region_id"])
    result = nms_most_different_first([rows[i]["box"] for i in order], [rows[i].get("crop_clip_sim") for i in order], t)
    verdicts: list[Verdict] = [KEEP] * len(rows)
    for k, verdict in result.dropped.items():
        verdicts[order[k]] = verdict
    return verdicts


def _blip(section: str) -> tuple[str, ...]:
    return tuple(c for kind in _BLIP_COLUMNS[section].values() for c in kind)


# --------------------------------------------------------------------------- the stages
# Model steps: no keep rule; a model call that raises drops what it was given as ``<name>_error``.
REWRITE = Stage("rewrite", PAIR, doc="caption pairs: the LLM (or the noun lexicon) replaces one object; "
                "reasons rewrite_* from the rewriter")
GENERATE = Stage("generate", PAIR, doc="image pairs: SDXL + Prompt2Prompt, one seed per pair")
LOAD = Stage("load", PAIR, writes=("pair_clip_sim",), reasons=("load_missing_images", "load_error"),
             doc="image pairs read from an earlier imgdiff-replace run")
PROPOSE = Stage("propose", PAIR, writes=("proposal_score", "changed_fraction"),
                doc="regions from FastSAM and the difference map")
REGION_CAPTIONS = Stage("region_captions", REGION, writes=("region_caption_before", "region_caption_after"),
                        reasons=("region_captions_empty",), doc="the VLM captions each box in each image")
DIFFERENCE_CAPTIONS = Stage("difference_captions", REGION, writes=("difference_caption",),
                            reasons=("difference_captions_empty",), doc="the VLM describes the boxed difference")
INPAINT = Stage("inpaint", REGION, reasons=("inpaint_over_limit",),
                doc="SDXL-turbo inpaints the most different few segments of a pair")
DESCRIBE = Stage("describe", REGION, writes=("object_description",), reasons=("describe_empty",),
                 doc="the VLM names the removed object")

# Filters.
PAIR_FILTER = Stage(
    "pair_filter", PAIR, writes=("pair_clip_sim",),
    reasons=("pair_sim_too_low", "pair_sim_too_high", "pair_sim_missing"),
    rule=lambda row, t: keep_pair(row["pair_clip_sim"], t), reads=("pair_clip_sim",),
    thresholds=("pair_sim_min", "pair_sim_max"), doc="pair CLIP cosine inside the window",
)
BOX_AREA = Stage(
    "box_area", REGION, reasons=("box_too_small", "box_invalid"),
    rule=lambda row, t: keep_box_area(row["box"], row["width"], row["height"], t), reads=("box",),
    thresholds=("min_area_denominator",), doc="box at least 1/N of the image",
)
BOX_ASPECT = Stage(
    "box_aspect", REGION, reasons=("box_aspect_too_extreme",),
    rule=lambda row, t: keep_box_aspect(row["box"], t), reads=("box",),
    thresholds=("box_aspect_max",), doc="box no more than N times longer than wide",
)
CROP_FILTER = Stage(
    "crop_filter", REGION, writes=("crop_clip_sim", *_blip("bitm")),
    reasons=("crop_sim_too_close", "bitm_too_low", "crop_sim_missing", "bitm_missing"),
    rule=lambda row, t: keep_crop(row["crop_clip_sim"], *(row[c] for c in t.bitm_columns()), t),
    reads=lambda t: ("crop_clip_sim", *t.bitm_columns()), thresholds=("crop_sim_max", "bitm_min", "blip_score"),
    doc="crops differ (CLIP) and show the changed nouns (BLIP, BITM)",
)
NMS = Stage(
    "nms", PAIR_REGIONS, reasons=("nms_suppressed", "nms_too_many_boxes", "nms_score_missing"),
    rule=_nms, reads=("box", "crop_clip_sim"), thresholds=("nms_iou", "max_boxes"),
    doc="NMS most different first, at most N boxes",
)
CAPTION_FILTER = Stage(
    "caption_filter", REGION, writes=(*_blip("citm"), "caption_sim"),
    reasons=("citm_too_low", "caption_sim_too_high", "citm_missing", "caption_sim_missing"),
    rule=lambda row, t: keep_region_captions(*(row[c] for c in t.citm_columns()), row["caption_sim"], t),
    reads=lambda t: (*t.citm_columns(), "caption_sim"), thresholds=("citm_min", "caption_sim_max", "blip_score"),
    doc="region captions fit their crops (CITM) and differ (CS)",
)
REMOVAL_CROP = Stage(
    "removal_crop", REGION, writes=("crop_clip_sim",),
    reasons=("removal_crop_sim_too_close", "removal_crop_sim_missing"),
    rule=lambda row, t: keep_removal_crop(row["crop_clip_sim"], t), reads=("crop_clip_sim",),
    thresholds=("crop_sim_max",), doc="the crop differs from the paired image",
)
REMOVAL_ITM = Stage(
    "removal_itm", REGION, writes=_blip("bitm"),
    reasons=("removal_itm_original_too_low", "removal_itm_inpainted_too_high", "removal_itm_missing"),
    rule=lambda row, t: keep_removal_itm(*(row[c] for c in t.itm_columns()), t), reads=lambda t: t.itm_columns(),
    thresholds=("itm_original_min", "itm_inpainted_max", "blip_score"),
    doc="the object matches the original crop, not the inpainted one (BLIP)",
)

NO_REGION_KEPT = "regions_none_kept"  # pair dropped at REGIONS: every region was dropped
NEEDS_RERUN = "refilter_needs_rerun"  # passes the new thresholds, but later model steps never ran on it
# The last stages of both pipelines: a pair with no kept region drops; a sample per kept region.
REGIONS = Stage("regions", PAIR, reasons=(NO_REGION_KEPT, NEEDS_RERUN), doc="a pair keeps at least one region")
SAMPLES = Stage("samples", REGION, doc="one training sample per kept region")
# refilter only: a region passing every filter has the outputs of the model steps after them.
REGION_OUTPUTS = Stage("region_outputs", REGION, reasons=(NEEDS_RERUN,),
                       doc="refilter: a region passing every filter has its later model outputs")

# --------------------------------------------------------------------------- the pipelines
REPLACE = Pipeline("imgdiff-replace", (
    REWRITE, GENERATE, PAIR_FILTER, NATURAL, PROPOSE, BOX_AREA, BOX_ASPECT, CROP_FILTER, NMS, REGION_CAPTIONS, CAPTION_FILTER,
    DIFFERENCE_CAPTIONS, REGIONS, SAMPLES,
), ReplaceThresholds)
REMOVE = Pipeline("imgdiff-remove", (
    REWRITE, GENERATE, NATURAL, PROPOSE, REMOVAL_CROP, INPAINT, DESCRIBE, REMOVAL_ITM, REGIONS, SAMPLES,
), RemoveThresholds)
MAKE_PAIRS = (REWRITE.name, GENERATE.name)  # where pairs come from unless read from another run (LOAD)

PIPELINES: dict[str, Pipeline] = {p.method: p for p in (REPLACE, REMOVE)}
METHODS = tuple(PIPELINES)
SECTIONS = {REPLACE.method: "replace", REMOVE.method: "remove"}  # ImgDiffThresholds' field per pipeline

# Reasons, by the filter stage that gives them; what refilter may change.
REASONS: dict[str, tuple[str, ...]] = {s.name: s.reasons for p in PIPELINES.values() for s in p.filters}
THRESHOLD_REASONS: frozenset[str] = frozenset(r for rs in REASONS.values() for r in rs) | {NEEDS_RERUN}
THRESHOLD_PAIR_STAGES: frozenset[str] = frozenset({*REASONS, REGIONS.name})


def thresholds_of(thresholds: ImgDiffThresholds, pipeline: Pipeline) -> BaseModel:
    """The section of a refilter thresholds file that ``pipeline``'s rules read."""
    return getattr(thresholds, SECTIONS[pipeline.method])


def rejudged_stages(pipeline: Pipeline) -> tuple[Stage, ...]:
    """What ``refilter`` counts for a pipeline, in order: its filters, then (if the pipeline makes
    outputs after its last filter) ``region_outputs``, then ``regions``."""
    outputs = (REGION_OUTPUTS,) if pipeline.outputs() else ()
    return (*pipeline.filters, *outputs, REGIONS)


def rejudge_order(methods=None) -> list[str]:
    """Stage names ``refilter`` reports, in pipeline order, for ``methods`` (default: all)."""
    pipelines = [PIPELINES[m] for m in (methods or METHODS) if m in PIPELINES]
    return merged_order([s.name for s in rejudged_stages(p)] for p in pipelines)


def stage_of_reason(reason: str) -> str | None:
    """The filter stage a stored reason came from; None for reasons other steps gave."""
    for stage, reasons in REASONS.items():
        if reason in reasons:
            return stage
    return None
