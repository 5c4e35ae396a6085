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

The thresholds (their defaults the paper's chosen setting, every boundary written down) live in
``pairsmith.filters.imgdiff.thresholds``; the keep rules, each a named function, in the filter
modules beside this one.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.box_area import box_area_rule
from pairsmith.filters.imgdiff.box_aspect import box_aspect_rule
from pairsmith.filters.imgdiff.caption_filter import caption_filter_reads, caption_filter_rule
from pairsmith.filters.imgdiff.crop_filter import crop_filter_reads, crop_filter_rule
from pairsmith.filters.imgdiff.naturalness import NATURAL
from pairsmith.filters.imgdiff.nms import nms_rule
from pairsmith.filters.imgdiff.pair_filter import pair_filter_rule
from pairsmith.filters.imgdiff.removal_crop import removal_crop_rule
from pairsmith.filters.imgdiff.removal_itm import removal_itm_reads, removal_itm_rule
from pairsmith.filters.imgdiff.thresholds import (  # noqa: F401 - re-exported: where the flows' configs import them
    PAPER_REMOVE, PAPER_REPLACE, BlipScore, ImgDiffThresholds, RemoveThresholds, ReplaceThresholds, blip_columns,
)
from pairsmith.filters.pipeline import NEEDS_RERUN, PAIR, PAIR_REGIONS, REGION, Pipeline, Stage

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
    rule=pair_filter_rule, reads=("pair_clip_sim",),
    thresholds=("pair_sim_min", "pair_sim_max"), doc="pair CLIP cosine inside the window",
)
BOX_AREA = Stage(
    "box_area", REGION, reasons=("box_too_small", "box_invalid"),
    rule=box_area_rule, reads=("box",),
    thresholds=("min_area_denominator",), doc="box at least 1/N of the image",
)
BOX_ASPECT = Stage(
    "box_aspect", REGION, reasons=("box_aspect_too_extreme",),
    rule=box_aspect_rule, reads=("box",),
    thresholds=("box_aspect_max",), doc="box no more than N times longer than wide",
)
CROP_FILTER = Stage(
    "crop_filter", REGION, writes=("crop_clip_sim", *blip_columns("bitm")),
    reasons=("crop_sim_too_close", "bitm_too_low", "crop_sim_missing", "bitm_missing"),
    rule=crop_filter_rule, reads=crop_filter_reads, thresholds=("crop_sim_max", "bitm_min", "blip_score"),
    doc="crops differ (CLIP) and show the changed nouns (BLIP, BITM)",
)
NMS = Stage(
    "nms", PAIR_REGIONS, reasons=("nms_suppressed", "nms_too_many_boxes", "nms_score_missing"),
    rule=nms_rule, reads=("box", "crop_clip_sim"), thresholds=("nms_iou", "max_boxes"),
    doc="NMS most different first, at most N boxes",
)
CAPTION_FILTER = Stage(
    "caption_filter", REGION, writes=(*blip_columns("citm"), "caption_sim"),
    reasons=("citm_too_low", "caption_sim_too_high", "citm_missing", "caption_sim_missing"),
    rule=caption_filter_rule, reads=caption_filter_reads, thresholds=("citm_min", "caption_sim_max", "blip_score"),
    doc="region captions fit their crops (CITM) and differ (CS)",
)
REMOVAL_CROP = Stage(
    "removal_crop", REGION, writes=("crop_clip_sim",),
    reasons=("removal_crop_sim_too_close", "removal_crop_sim_missing"),
    rule=removal_crop_rule, reads=("crop_clip_sim",),
    thresholds=("crop_sim_max",), doc="the crop differs from the paired image",
)
REMOVAL_ITM = Stage(
    "removal_itm", REGION, writes=blip_columns("bitm"),
    reasons=("removal_itm_original_too_low", "removal_itm_inpainted_too_high", "removal_itm_missing"),
    rule=removal_itm_rule, reads=removal_itm_reads,
    thresholds=("itm_original_min", "itm_inpainted_max", "blip_score"),
    doc="the object matches the original crop, not the inpainted one (BLIP)",
)

NO_REGION_KEPT = "regions_none_kept"  # pair dropped at REGIONS: every region was dropped
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

# Reasons, by the filter stage that gives them; what refilter may change.
REASONS: dict[str, tuple[str, ...]] = {s.name: s.reasons for p in PIPELINES.values() for s in p.filters}


def stage_of_reason(reason: str) -> str | None:
    """The filter stage a stored reason came from; None for reasons other steps gave."""
    for stage, reasons in REASONS.items():
        if reason in reasons:
            return stage
    return None
