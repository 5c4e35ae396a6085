"""MED's edit filter: an edit must keep the photo recognisably the same (CLIP image cosine).

A Gemini edit that repaints the whole scene is not a *micro* edit; MED keeps pairs whose CLIP
ViT-B/32 image cosine is at least 0.7 (MED §3.1: "discard pairs below a 0.7 threshold"), and takes
pairs above 0.95 as benchmark candidates (MED §3.3: "CLIP cosine similarity > 0.95"; changes small
enough to test fine-grained perception).

``SIMILARITY`` declares the med-edit stage that judges it, as stored: its pairs' ``pair_clip_sim``
column, its reason and its threshold, so ``pairsmith refilter`` re-judges med-edit runs with the
rule the flow applied (``similarity_rule``). Only ``min_clip_sim`` decides a verdict;
``bench_clip_sim`` decides which samples go to the bench split, which refilter does not rewrite.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.filters.pipeline import PAIR, Pipeline, Row, Stage
from pairsmith.filters.scores import is_missing
from pairsmith.storage.verdict import KEEP, Verdict


class MedSimilarityThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_clip_sim: float = Field(0.7, ge=-1.0, le=1.0, description="keep an edit if cosine >= this")
    bench_clip_sim: float = Field(0.95, ge=-1.0, le=1.0, description="benchmark candidate if cosine > this (MED §3.3)")

    @model_validator(mode="after")
    def _order(self) -> "MedSimilarityThresholds":
        if self.bench_clip_sim < self.min_clip_sim:
            raise ValueError(f"bench_clip_sim {self.bench_clip_sim} is below min_clip_sim {self.min_clip_sim}")
        return self


def keep_edit_similarity(clip_sim: float, thresholds: MedSimilarityThresholds) -> Verdict:
    """``clip_sim``: CLIP ViT-B/32 image cosine of a source and its edit (-1..1); kept iff ``>= min_clip_sim``
    (MED keeps cosine >= 0.7; design.md §4.4)."""
    if clip_sim < thresholds.min_clip_sim:
        return Verdict.drop("similarity_too_low")
    return KEEP


def is_bench_candidate(clip_sim: float, thresholds: MedSimilarityThresholds) -> bool:
    return clip_sim > thresholds.bench_clip_sim


def similarity_rule(row: Row, thresholds: MedSimilarityThresholds) -> Verdict:
    """The ``similarity`` stage's keep rule over a med-edit pair row: ``keep_edit_similarity`` of its
    ``pair_clip_sim`` (where the flow stores the cosine); a row without one drops as ``similarity_missing``."""
    if is_missing(row["pair_clip_sim"]):
        return Verdict.drop("similarity_missing")
    return keep_edit_similarity(row["pair_clip_sim"], thresholds)


SIMILARITY = Stage(
    "similarity", PAIR, writes=("pair_clip_sim",), reasons=("similarity_too_low", "similarity_missing"),
    rule=similarity_rule, reads=("pair_clip_sim",), thresholds=("min_clip_sim",),
    doc="the edit keeps the photo recognisably the same (CLIP image cosine)",
)
# The med-edit stages whose verdicts thresholds decide, as refilter re-judges them (the flow's full
# stage order is written in flows/med_edit.py).
MED_EDIT_FILTERS = Pipeline("med-edit", (SIMILARITY,), MedSimilarityThresholds)
