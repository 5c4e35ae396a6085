"""The pipelines whose verdicts are stored with the scores that decided them: what ``pairsmith refilter`` re-judges.

A pipeline is refilterable when each of its filter stages declares a pure keep rule over stored
columns (``pairsmith.filters.pipeline.Stage``): Img-Diff's replacement and removal
(``pairsmith.filters.imgdiff.pipelines``) and med-edit's similarity filter
(``pairsmith.filters.med_similarity``). ``StoredPipeline`` adds what refilter needs beside the
stages: the section of the thresholds file its rules read, and the pair-level stage that closes a
re-judged pair (Img-Diff's ``regions``; ``pair_outputs`` for a pipeline without region filters).
Adding a pipeline here is all ``refilter`` needs (its stages, its thresholds section, a test).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.filters.imgdiff import pipelines as imgdiff
from pairsmith.filters.imgdiff.thresholds import RemoveThresholds, ReplaceThresholds
from pairsmith.filters.med_similarity import MED_EDIT_FILTERS, MedSimilarityThresholds
from pairsmith.filters.pipeline import NEEDS_RERUN, PAIR, PAIR_OUTPUTS, Pipeline, Stage, merged_order
from pairsmith.storage.ids import content_key


class RefilterThresholds(BaseModel):
    """The file ``pairsmith refilter --config`` reads: one section per refilterable pipeline.

    ``replace`` / ``remove``: Img-Diff's (``pairsmith.filters.imgdiff.thresholds``, defaults Img-Diff's
    chosen setting, design.md §4.2-4.3); ``similarity``: med-edit's (MED's CLIP cosine >= 0.7,
    design.md §4.4), the section med-edit's own config calls ``similarity``. A section left out is
    the paper's setting and counts for nothing in the hash, so the Img-Diff files of before keep
    their refilter run ids.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    replace: ReplaceThresholds = Field(default_factory=ReplaceThresholds)
    remove: RemoveThresholds = Field(default_factory=RemoveThresholds)
    similarity: MedSimilarityThresholds = Field(default_factory=MedSimilarityThresholds)

    @model_validator(mode="after")
    def _bench_is_not_a_verdict(self) -> "RefilterThresholds":
        if self.similarity.bench_clip_sim != MedSimilarityThresholds().bench_clip_sim:
            raise ValueError("similarity.bench_clip_sim decides which med-edit samples go to the bench split, "
                             "which refilter does not rewrite: re-run med-edit to change it")
        return self

    def content_hash(self, length: int = 10) -> str:
        """Same thresholds, same hash: names the refilter run, so re-running it overwrites its stats
        (``pairsmith.storage.ids.content_key``: thresholds at the papers' values count for nothing)."""
        return content_key(self)[:length]


@dataclass(frozen=True)
class StoredPipeline:
    """A pipeline refilter re-judges: its stages, its section of ``RefilterThresholds``, the pair-level
    stage closing each pair (``final``) and, for a pipeline with region filters, the stage checking
    that a region passing them has the outputs of the later model steps (``region_outputs``)."""

    pipeline: Pipeline
    section: str
    final: Stage
    region_outputs: Stage | None = None

    def __post_init__(self) -> None:
        if self.section not in RefilterThresholds.model_fields:
            raise ValueError(f"pipeline {self.method!r}: {self.section!r} is no section of RefilterThresholds")
        if self.final.level != PAIR or NEEDS_RERUN not in self.final.reasons:
            raise ValueError(f"pipeline {self.method!r}: its final stage must judge pairs and may drop as {NEEDS_RERUN}")

    @property
    def method(self) -> str:
        return self.pipeline.method

    def thresholds(self, thresholds: RefilterThresholds) -> BaseModel:
        """The section of a refilter thresholds file this pipeline's rules read."""
        return getattr(thresholds, self.section)

    @property
    def has_regions(self) -> bool:
        return any(s.level != PAIR for s in self.pipeline.filters)

    def rejudged_stages(self) -> tuple[Stage, ...]:
        """What refilter counts, in order: the filters, then (if the pipeline makes region outputs after
        its last filter) ``region_outputs``, then the final pair stage."""
        outputs = (self.region_outputs,) if self.region_outputs is not None and self.pipeline.outputs() else ()
        return (*self.pipeline.filters, *outputs, self.final)

    @property
    def threshold_pair_stages(self) -> frozenset[str]:
        """The ``drop_stage`` of a pair whose verdict thresholds decided."""
        return frozenset({*(s.name for s in self.pipeline.filters), self.final.name})

    @property
    def threshold_reasons(self) -> frozenset[str]:
        """The region reasons thresholds decided (and refilter may change)."""
        return frozenset(r for s in self.pipeline.filters for r in s.reasons) | {NEEDS_RERUN}


STORED: dict[str, StoredPipeline] = {p.method: p for p in (
    StoredPipeline(imgdiff.REPLACE, "replace", imgdiff.REGIONS, imgdiff.REGION_OUTPUTS),
    StoredPipeline(imgdiff.REMOVE, "remove", imgdiff.REGIONS, imgdiff.REGION_OUTPUTS),
    StoredPipeline(MED_EDIT_FILTERS, "similarity", PAIR_OUTPUTS),
)}
METHODS = tuple(STORED)


def rejudge_order(methods=None) -> list[str]:
    """Stage names ``refilter`` reports, in pipeline order, for ``methods`` (default: all)."""
    specs = [STORED[m] for m in (methods or METHODS) if m in STORED]
    return merged_order([s.name for s in spec.rejudged_stages()] for spec in specs)
