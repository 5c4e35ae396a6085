"""Parameters of the Img-Diff flows, validated before Prefect, LanceDB or any model starts.

The defaults are Img-Diff's: the real hub models (SDXL base 1.0 + Prompt2Prompt refine, Vicuna-1.5
for caption rewriting, CLIP ViT-B/32, BLIP ITM large COCO, FastSAM-x, SDXL-turbo for removal, a
Qwen2-VL VLM for captions) and the paper's chosen thresholds (``pairsmith.filters.imgdiff.pipelines``). The
source captions default to the small file shipped with the package, so a run needs nothing but
the model weights; ``rewriter: {mode: lexicon}`` swaps nouns from the shipped lexicon instead of
asking an LLM.

``runtime`` moves every model at once (device, dtype, cache folder, offline); without it each
model keeps its own. Fields that shape the rows go into the content key, and from there into the
pair ids and the run id: the same config resumes the same run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pairsmith.filters.imgdiff.pipelines import RemoveThresholds, ReplaceThresholds
from pairsmith.models.adapters.blip_itm import BlipItmConfig
from pairsmith.models.adapters.caption_rewriter import CaptionRewriterConfig
from pairsmith.models.adapters.clip_scorer import ClipScorerConfig
from pairsmith.models.proposers.diffmap_proposer import DiffMapConfig
from pairsmith.models.adapters.fastsam_proposer import FastSamConfig
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.adapters.sdxl_inpaint import InpaintConfig
from pairsmith.models.adapters.sdxl_p2p import SdxlP2PConfig
from pairsmith.models.adapters.vlm_chat import VlmConfig
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import NOT_CONTENT, content_key, stable_hash
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.imgdiff.naturalness import NaturalnessSettings
from pairsmith.tasks.sample_builders import SplitFractions

REPLACE_FLOW = "imgdiff-replace"
REMOVE_FLOW = "imgdiff-remove"
ProposerName = Literal["fastsam", "diffmap"]


def _default_vlm() -> VlmConfig:
    return VlmConfig(model_id="Qwen/Qwen2-VL-7B-Instruct", max_new_tokens=96)


class _ImgDiffBase(BaseModel):
    """What both flows share: where rows go, how many candidates, the models they have in common."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI: a folder, or s3:// gs:// az:// as LanceDB allows", json_schema_extra=NOT_CONTENT)
    pairs: int = Field(20, ge=1, le=10_000_000, description="candidate pairs (kept + dropped)", json_schema_extra=NOT_CONTENT)
    seed: int = Field(0, ge=0, description="run seed; pair i's image seed is drawn from (seed, i) and stored")
    batch_size: int = Field(8, ge=1, le=10_000, description="pairs per task run and per LanceDB commit", json_schema_extra=NOT_CONTENT)
    captions_path: str | None = Field(
        None, description="source captions: JSONL with a 'caption' per line, or text, one per line; "
        "default: the captions shipped with pairsmith",
        json_schema_extra=NOT_CONTENT,
    )
    rewriter: CaptionRewriterConfig = Field(default_factory=CaptionRewriterConfig)
    generator: SdxlP2PConfig = Field(default_factory=SdxlP2PConfig)
    clip: ClipScorerConfig = Field(default_factory=ClipScorerConfig)
    blip: BlipItmConfig = Field(default_factory=BlipItmConfig)
    fastsam: FastSamConfig = Field(default_factory=FastSamConfig)
    diffmap: DiffMapConfig = Field(default_factory=DiffMapConfig)
    proposers: tuple[ProposerName, ...] = Field(
        ("fastsam", "diffmap"), min_length=1, description="region proposers whose boxes are pooled"
    )
    vlm: VlmConfig = Field(default_factory=_default_vlm, description="region captions and descriptions")
    runtime: ModelRuntime | None = Field(
        None, description="if set, every model runs with it (device, dtype, cache_dir, offline)"
    )
    naturalness: NaturalnessSettings = Field(
        default_factory=NaturalnessSettings, description="unnatural-image filter scores (Img-Diff supp. §15)"
    )
    splits: SplitFractions = Field(default_factory=SplitFractions)
    show_progress: bool = Field(False, description="draw a progress bar on stderr (CLI runs)", json_schema_extra=NOT_CONTENT)

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    @field_validator("captions_path")
    @classmethod
    def _captions(cls, value: str | None) -> str | None:
        if value is not None:
            load_captions(value)  # one line naming the file and line if it is unusable
        return value

    @model_validator(mode="after")
    def _natural_needs_scores(self) -> "_ImgDiffBase":
        thresholds = getattr(self, "thresholds", None)
        if getattr(thresholds, "natural_min", None) is not None and not self.naturalness.score:
            raise ValueError("thresholds.natural_min needs naturalness.score: true (nothing would measure it)")
        return self

    @field_validator("proposers")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"proposers listed twice: {list(value)}")
        return value

    def with_runtime(self, model_config: BaseModel) -> BaseModel:
        """A model's config with the flow-wide runtime, if one is set."""
        return model_config if self.runtime is None else model_config.model_copy(update={"runtime": self.runtime})

    def _effective(self) -> "_ImgDiffBase":
        """The config as the models see it: the flow-wide runtime applied to each model's config,
        so that only what it changes there (the dtype) counts in the content key."""
        if self.runtime is None:
            return self
        adapters = [name for name, value in self if isinstance(getattr(value, "runtime", None), ModelRuntime)]
        return self.model_copy(update={"runtime": None, **{n: self.with_runtime(getattr(self, n)) for n in adapters}})

    def _captions_key(self) -> str | None:
        """The source captions count by their text, not their path; the shipped ones count as default."""
        return stable_hash(load_captions(self.captions_path)) if self.captions_path else None


class ImgDiffReplaceConfig(_ImgDiffBase):
    """``imgdiff-replace`` (design.md §4.2)."""

    thresholds: ReplaceThresholds = Field(default_factory=ReplaceThresholds)

    def content_key(self) -> str:
        """What shapes the rows (``pairsmith.storage.ids.content_key``): the same key, the same pair ids."""
        return content_key(self._effective(), captions=self._captions_key())

    def run_id(self) -> str:
        """From the content only: a larger ``pairs`` extends the run, ``batch_size`` never counts."""
        return f"{REPLACE_FLOW}-{self.content_key()[:12]}"

    def legacy_run_id(self, pairs: int, batch_size: int) -> str:
        """The id pairsmith before per-item resume gave this content's run (it hashed the sizes too)."""
        return f"{REPLACE_FLOW}-{stable_hash([self.content_key(), pairs, batch_size], 12)}"


class ImgDiffRemoveConfig(_ImgDiffBase):
    """``imgdiff-remove`` (design.md §4.3): objects removed from replacement pairs by inpainting.

    The pairs come from ``source_run`` (an ``imgdiff-replace`` run in the same database: its pairs
    with both images, first ``pairs`` by id) or, without it, are made here by the same caption and
    Prompt2Prompt steps as in replacement.
    """

    source_run: str | None = Field(
        None, description="imgdiff-replace run whose image pairs to use; default: make pairs here"
    )
    inpaint: InpaintConfig = Field(default_factory=InpaintConfig)
    max_inpaint_per_pair: int = Field(
        3, ge=1, le=100, description="inpaint at most this many segments per pair, most different first"
    )
    thresholds: RemoveThresholds = Field(default_factory=RemoveThresholds)
    describe_view: Literal["crop", "box"] = Field(
        "crop", description="what the VLM describing a removed object sees: 'crop' (the region cut out) or 'box' "
        "(the whole original image and the region's coordinates, Img-Diff supp. §19.2.4)",
    )

    def content_key(self) -> str:
        """As for replacement; with ``source_run`` the pairs come from there, so what would make
        them here (seed, captions, rewriter, generator) counts for nothing."""
        if self.source_run is None:
            return content_key(self._effective(), captions=self._captions_key())
        made_elsewhere = {"seed": 0, "captions_path": None, "rewriter": CaptionRewriterConfig(), "generator": SdxlP2PConfig()}
        return content_key(self._effective().model_copy(update=made_elsewhere))

    def run_id(self) -> str:
        """From the content only: a larger ``pairs`` extends the run, ``batch_size`` never counts."""
        return f"{REMOVE_FLOW}-{self.content_key()[:12]}"

    def legacy_run_id(self, pairs: int, batch_size: int) -> str:
        """The id pairsmith before per-item resume gave this content's run (it hashed the sizes too)."""
        return f"{REMOVE_FLOW}-{stable_hash([self.content_key(), pairs, batch_size], 12)}"
