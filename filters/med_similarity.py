"""MED's edit filter: an edit must keep the photo recognisably the same (CLIP image cosine).

A Gemini edit that repaints the whole scene is not a *micro* edit; MED keeps pairs whose CLIP
ViT-B/32 image cosine is at least 0.7 (MED §3.1: "discard pairs below a 0.7 threshold"), and takes
pairs above 0.95 as benchmark candidates (MED §3.3: "CLIP cosine similarity > 0.95"; changes small
enough to test fine-grained perception).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

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
    if clip_sim < thresholds.min_clip_sim:
        return Verdict.drop("similarity_too_low")
    return KEEP


def is_bench_candidate(clip_sim: float, thresholds: MedSimilarityThresholds) -> bool:
    return clip_sim > thresholds.bench_clip_sim
