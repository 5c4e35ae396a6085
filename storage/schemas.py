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
from typing import Literal, Optional

from lancedb.pydantic import LanceModel
from pydantic import BaseModel, Field, field_validator

Method = Literal["dig-render", "imgdiff-replace", "imgdiff-remove", "med-edit"]
Status = Literal["kept", "dropped"]
Proposer = Literal["render-gt", "fastsam", "diffmap"]
Task = Literal["diff-caption", "object-presence-mcq", "grounding", "med-mcq", "med-diff-qa"]
Split = Literal["train", "val", "test"]
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
    method: str
    image_before: Optional[bytes] = Field(None, description="PNG/JPEG bytes")
    image_after: Optional[bytes] = Field(None, description="PNG/JPEG bytes")
    width: int
    height: int
    caption_before: Optional[str] = None
    caption_after: Optional[str] = None
    edit_instruction: Optional[str] = None
    edit_category: Optional[str] = Field(None, description="dig-render: change kinds, comma-joined")
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
    status: str
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
    proposer: str
    change_type: Optional[str] = None
    object_description: Optional[str] = None
    visible_px_before: Optional[int] = None
    visible_px_after: Optional[int] = None
    changed_fraction: Optional[float] = Field(None, description="share of region pixels that changed")
    crop_clip_sim: Optional[float] = None
    itm_before: Optional[float] = None
    itm_after: Optional[float] = None
    citm_before: Optional[float] = None
    citm_after: Optional[float] = None
    caption_sim: Optional[float] = None
    region_caption_before: Optional[str] = None
    region_caption_after: Optional[str] = None
    difference_caption: Optional[str] = None
    status: str
    reason: Optional[str] = None
    created_at: datetime


class SampleRow(LanceModel):
    """A training sample over one pair: what export and fine-tuning read."""

    sample_id: str
    pair_id: str
    run_id: str
    method: str
    task: str
    subset: Optional[str] = None
    conversation: list[Message]
    answer: str
    boxes: list[list[float]] = Field(default_factory=list)
    category: Optional[str] = None
    split: str
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


TABLES: dict[str, type[LanceModel]] = {
    "pairs": PairRow,
    "regions": RegionRow,
    "samples": SampleRow,
    "stage_stats": StageStatsRow,
}

KEYS: dict[str, str] = {
    "pairs": "pair_id",
    "regions": "region_id",
    "samples": "sample_id",
    "stage_stats": "stat_id",
}
