"""The LanceDB tables of design.md §3, as code.

One module holds every schema so that flows, exports and later issues agree on column names.
Each table is a LanceModel: the pydantic class validates rows in Python and
``to_arrow_schema()`` gives the pyarrow schema LanceDB stores. Every table has a deterministic
primary key (``KEYS``), and every write is a ``merge_insert`` on it, so re-running a flow never
duplicates a row.

Dropped candidates are stored too, with ``status == "dropped"``, the stage that dropped them and
a reason, so thresholds can be re-applied later as a query instead of a re-run.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from lancedb.pydantic import LanceModel
from pydantic import BaseModel, Field, field_validator

ROLES = ("system", "user", "assistant")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Message(BaseModel):
    """One turn of a training conversation; ``<image>`` marks where an image goes, in order."""

    role: str
    content: str

    @field_validator("role")
    @classmethod
    def _role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"role {value!r} is not one of {', '.join(ROLES)}")
        return value


class ReasonCount(BaseModel):
    reason: str
    count: int


class PairRow(LanceModel):
    """A candidate image pair, kept or dropped, with every score measured on it."""

    pair_id: str
    run_id: str
    method: str = Field(description="dig-render | imgdiff-replace | imgdiff-remove | med-edit | an imported set's name")
    dataset: Optional[str] = Field(
        None, description="where the pair comes from: our pipeline's name (dig-render, med-edit, ...) or an imported "
        "set (med-bench, clevr-change, spot-the-diff, image-edit-request, or a folder import's name)",
    )
    image_before: Optional[bytes] = Field(None, description="PNG/JPEG bytes")
    image_after: Optional[bytes] = Field(None, description="PNG/JPEG bytes")
    image_format: Optional[str] = Field(
        None, description="PNG | JPEG: the format of both stored images (imports store a pair in one format); "
        "BEFORE/AFTER (e.g. JPEG/PNG: a photo and its generated edit) when the two differ",
    )
    source_format: Optional[str] = Field(
        None, description="the imported files' own format as Pillow names it (WEBP, JPEG, ...); 'before/after' "
        "when the two differ",
    )
    width: int
    height: int
    caption_before: Optional[str] = None
    caption_after: Optional[str] = None
    edit_instruction: Optional[str] = None
    edit_category: Optional[str] = Field(None, description="dig-render: change kinds, comma-joined; med-edit: the edit request's type (MED Fig. 8)")
    seed: Optional[int] = None
    model_ids: Optional[str] = Field(None, description="JSON object: role -> model id / renderer")
    # dig-render ground truth: the scene configs and per-pixel object ids of both renders.
    scene_before: Optional[str] = Field(None, description="scene JSON (design.md §4.1)")
    scene_after: Optional[str] = None
    changes: Optional[str] = Field(None, description="JSON list of the applied modifications")
    index_before: Optional[bytes] = Field(None, description="PNG, 8-bit object id per pixel (0 = none)")
    index_after: Optional[bytes] = None
    subset: Optional[str] = Field(None, description="single | double | mixed | distractor")
    n_changes: Optional[int] = None
    attempts: Optional[int] = Field(None, description="renders tried before the pair passed or dropped")
    camera_jitter: Optional[list[float]] = Field(None, description="distractor camera move: dx, dy, dz, yaw")
    pair_clip_sim: Optional[float] = None
    natural_before: Optional[float] = Field(
        None, description="Img-Diff unnatural-image filter: VLM P(yes, looks natural) of the before image, 0-1"
    )
    natural_after: Optional[float] = Field(None, description="the same for the after image")
    origin: Optional[str] = Field(None, description="where the before image came from (file, pair id, dataset)")
    difference: Optional[str] = Field(None, description="one sentence saying how the after image differs")
    bench_candidate: Optional[bool] = Field(None, description="MED: CLIP cosine above 0.95, a benchmark candidate (§3.3); the selected ones have a med-mcq in split bench")
    align_method: Optional[str] = Field(None, description="how the after image was registered: resize | similarity")
    align_transform: Optional[list[float]] = Field(None, description="3x3 row-major, after pixels -> before pixels")
    align_score: Optional[float] = Field(None, description="share of overlap pixels that agree once aligned")
    align_reason: Optional[str] = Field(None, description="why the pair could not be aligned (null when it was)")
    change_extent: Optional[str] = Field(
        None, description="edited photos: local | global (the edit changed the whole picture: no boxes)"
    )
    change_extent_score: Optional[float] = Field(
        None, description="0-1 share of the before image the aligned after image does not show unchanged"
    )
    change_extent_reason: Optional[str] = Field(
        None, description="why global: extent_reframed | extent_unaligned | extent_redrawn (null when local)"
    )
    verdict_run_id: Optional[str] = Field(
        None, description="the propose-regions run whose align / extent verdicts the pair holds (pairsmith inspect)"
    )
    status: str = Field(description="kept | dropped")
    drop_stage: Optional[str] = None
    drop_reason: Optional[str] = None
    drop_detail: Optional[str] = Field(None, description="the error message behind drop_reason, if any")
    created_at: datetime


class RegionRow(LanceModel):
    """A box where a pair differs, from ground truth or a proposer, with its scores and verdict."""

    region_id: str
    pair_id: str
    run_id: str
    box: list[float] = Field(description="[x1, y1, x2, y2], float pixels on the before image")
    proposer: str = Field(description="render-gt | fastsam | diffmap")
    change_type: Optional[str] = None
    place: Optional[str] = Field(None, description="move: 'from' (where the object stood) or 'to' (the empty "
                                 "spot of the before image it moved to); null for other changes")
    object_description: Optional[str] = None
    visible_px_before: Optional[int] = None
    visible_px_after: Optional[int] = None
    changed_fraction: Optional[float] = Field(None, description="share of region pixels that changed")
    crop_clip_sim: Optional[float] = None
    itm_before: Optional[float] = None
    itm_after: Optional[float] = None
    citm_before: Optional[float] = None
    citm_after: Optional[float] = None
    # BLIP's contrastive cosine beside the ITM-head probability above; ImgDiffThresholds.blip_score picks one.
    itm_cosine_before: Optional[float] = None
    itm_cosine_after: Optional[float] = None
    citm_cosine_before: Optional[float] = None
    citm_cosine_after: Optional[float] = None
    caption_sim: Optional[float] = None
    region_caption_before: Optional[str] = None
    region_caption_after: Optional[str] = None
    difference_caption: Optional[str] = None
    # Img-Diff flows: the proposer's own confidence, the error behind a *_error reason, and (removal)
    # the before image with this region inpainted.
    proposal_score: Optional[float] = Field(None, description="proposer confidence (FastSAM), if it gives one")
    confidence: Optional[float] = Field(
        None, description="0-1 evidence that the box marks a real change (propose-regions on edited photos)"
    )
    drop_detail: Optional[str] = Field(None, description="the error message behind reason, if any")
    image_edited: Optional[bytes] = Field(None, description="imgdiff-remove: PNG of the before image, region inpainted")
    status: str = Field(description="kept | dropped")
    reason: Optional[str] = None
    created_at: datetime


class SampleRow(LanceModel):
    """A training sample over one pair: what export and fine-tuning read."""

    sample_id: str
    pair_id: str
    run_id: str
    method: str
    task: str = Field(description="diff-caption | object-presence-mcq | grounding | med-mcq | med-diff-qa")
    subset: Optional[str] = None
    conversation: list[Message]
    answer: str
    boxes: list[list[float]] = Field(default_factory=list)
    options: Optional[list[str]] = Field(None, description="multiple choice: ['A. ...', 'B. ...', ...]")
    image: Optional[bytes] = Field(
        None, description="the sample's own picture (PNG), e.g. a side-by-side with red boxes; exports use it "
        "instead of the pair's images, and the conversation has one <image> for it",
    )
    region_id: Optional[str] = Field(None, description="the region the sample is about, if one")
    object_side: Optional[str] = Field(None, description="object-presence-mcq: 'left' or 'right', the side showing the object")
    category: Optional[str] = None
    split: str = Field(description="train | val | test | bench")
    dataset: Optional[str] = Field(None, description="the pair's dataset (see PairRow.dataset)")
    created_at: datetime


class StageStatsRow(LanceModel):
    """What one stage did to one batch of a run; a run's funnel is the sum over its batches."""

    stat_id: str
    run_id: str
    flow: str
    stage: str
    stage_order: int
    batch: str
    n_in: int
    n_kept: int
    n_dropped: int
    drop_reasons: list[ReasonCount] = Field(default_factory=list)
    seconds: float
    created_at: datetime


class EditRow(LanceModel):
    """A paid image edit, stored the moment it returns so that no re-run pays for it twice."""

    edit_id: str = Field(description="hash of editor model, source image and instruction")
    model_id: str
    source_sha: str
    instruction: str
    image: Optional[bytes] = None
    mime_type: Optional[str] = None
    text: Optional[str] = None
    reason: Optional[str] = Field(None, description="why there is no image (blocked, text only)")
    detail: Optional[str] = None
    created_at: datetime


class EvalPredictionRow(LanceModel):
    """One model answer to one sample in an evaluation, with what was read from it."""

    prediction_id: str = Field(description="hash of eval_id and sample_id")
    eval_id: str
    sample_id: str
    pair_id: str
    task: str
    subset: Optional[str] = None
    category: Optional[str] = None
    split: str
    prediction: str
    parsed: Optional[str] = Field(None, description="JSON of what the answer parser read; null if unparseable")
    context: Optional[str] = Field(None, description="CoCoT prompting: the model's answer to the similarities-and-"
                                   "differences instruction, asked first (null with direct prompting)")
    judge_answer: Optional[str] = Field(None, description="captions: the LLM judge's raw answer, if a judge ran")
    judge_score: Optional[float] = Field(None, description="captions: the judge's 0-100 coverage of the "
                                         "reference; null if unparseable or not judged")
    judge_justification: Optional[str] = Field(None, description="captions: the judge's reason for its score")
    reason: Optional[str] = Field(None, description="why there is no answer: generate_error (transient, asked "
                                  "again by the next run) or generate_rejected (the model refuses this sample)")
    drop_detail: Optional[str] = Field(None, description="the error message behind reason (or a judge's failure)")
    created_at: datetime


class EvalResultRow(LanceModel):
    """One metric of one evaluation over one group of samples (a task, or a category / subset of it)."""

    result_id: str = Field(description="hash of eval_id, task, group and metric")
    eval_id: str
    model_id: str
    adapter: Optional[str] = Field(None, description="LoRA adapter folder, if any")
    samples_version: int
    task: str
    group: str = Field(description="'all', or the category / subset the metric is restricted to")
    metric: str
    value: float
    n: int = Field(description="samples behind the value")
    created_at: datetime


class RunStartRow(LanceModel):
    """The latest start of a run: how many items it was asked to cover, so ``stats`` can tell a run
    that stopped early (Ctrl-C, kill, a crash) after its last stored batch from a finished one."""

    run_id: str
    flow: str
    items: int = Field(description="items the latest start asked for: pairs, entries, candidates or samples")
    host: str
    pid: int
    created_at: datetime


TABLES: dict[str, type[LanceModel]] = {
    "pairs": PairRow,
    "regions": RegionRow,
    "samples": SampleRow,
    "stage_stats": StageStatsRow,
    "edits": EditRow,
    "eval_predictions": EvalPredictionRow,
    "eval_results": EvalResultRow,
    "run_starts": RunStartRow,
}

KEYS: dict[str, str] = {
    "pairs": "pair_id",
    "regions": "region_id",
    "samples": "sample_id",
    "stage_stats": "stat_id",
    "edits": "edit_id",
    "eval_predictions": "prediction_id",
    "eval_results": "result_id",
    "run_starts": "run_id",
}

IMAGE_COLUMNS: dict[str, tuple[str, ...]] = {
    "pairs": ("image_before", "image_after", "index_before", "index_after"),
    "regions": ("image_edited",),
    "samples": ("image",),
    "edits": ("image",),
}
"""Columns holding encoded image bytes: never filtered on, read only by the readers that need them."""
