"""Parameters of the Img-Diff flows, validated before Prefect, LanceDB or any model starts.

The defaults are Img-Diff's: the real hub models (SDXL base 1.0 + Prompt2Prompt refine, Vicuna-1.5
for caption rewriting, CLIP ViT-B/32, BLIP ITM large COCO, FastSAM-x, SDXL-turbo for removal, a
Qwen2-VL VLM for captions) and the paper's chosen thresholds (``pairsmith.filters.imgdiff.thresholds``). The
source captions default to the small file shipped with the package, so a run needs nothing but
the model weights; ``rewriter: {mode: lexicon}`` swaps nouns from the shipped lexicon instead of
asking an LLM.

``runtime`` moves every model at once (device, dtype, cache folder, offline); without it each
model keeps its own. Fields that shape the rows go into the content key, and from there into the
pair ids and the run id: the same config resumes the same run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.filters.imgdiff.thresholds import RemoveThresholds, ReplaceThresholds
from pairsmith.models.blip_itm import BlipItmConfig
from pairsmith.models.caption_rewriter import CaptionRewriterConfig
from pairsmith.models.clip_scorer import ClipScorerConfig
from pairsmith.models.diffmap_proposer import DiffMapConfig
from pairsmith.models.fastsam_proposer import FastSamConfig
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.sdxl_inpaint import InpaintConfig
from pairsmith.models.sdxl_p2p import SdxlP2PConfig
from pairsmith.models.vlm_chat import VlmConfig
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri
from pairsmith.storage.ids import stable_hash
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.sample_builders import SplitFractions

REPLACE_FLOW = "imgdiff-replace"
REMOVE_FLOW = "imgdiff-remove"
ProposerName = Literal["fastsam", "diffmap"]

# Adapter fields that change speed or placement, never a score: kept out of the content key.
_NOT_CONTENT = {"runtime", "batch_size", "pairs_per_call"}


def _default_vlm() -> VlmConfig:
    return VlmConfig(model_id="Qwen/Qwen2-VL-7B-Instruct", max_new_tokens=96)


class _ImgDiffBase(BaseModel):
    """What both flows share: where rows go, how many candidates, the models they have in common."""

    model_config = ConfigDict(extra="forbid")

    db: str = Field(DEFAULT_DB, description="LanceDB URI: a folder, or s3:// gs:// az:// as LanceDB allows")
    pairs: int = Field(20, ge=1, le=10_000_000, description="candidate pairs (kept + dropped)")
    seed: int = Field(0, ge=0, description="run seed; pair i's image seed is drawn from (seed, i) and stored")
    batch_size: int = Field(8, ge=1, le=10_000, description="pairs per task run and per LanceDB commit")
    captions_path: str | None = Field(
        None, description="source captions: JSONL with a 'caption' per line, or text, one per line; "
        "default: the captions shipped with pairsmith",
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
    splits: SplitFractions = Field(default_factory=SplitFractions)
    show_progress: bool = Field(False, description="draw a progress bar on stderr (CLI runs)")

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

    @field_validator("proposers")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"proposers listed twice: {list(value)}")
        return value

    def with_runtime(self, model_config: BaseModel) -> BaseModel:
        """A model's config with the flow-wide runtime, if one is set."""
        return model_config if self.runtime is None else model_config.model_copy(update={"runtime": self.runtime})

    def _content(self, fields: set[str]) -> dict:
        content = self.model_dump(mode="json", include=fields)
        for name, value in content.items():
            if isinstance(value, dict):
                for key in _NOT_CONTENT:
                    value.pop(key, None)
        content.get("blip", {}).pop("score", None)  # both BLIP scores are stored; thresholds pick one
        if "captions_path" in content:
            content["captions_path"] = stable_hash(load_captions(self.captions_path))
        return content


class ImgDiffReplaceConfig(_ImgDiffBase):
    """``imgdiff-replace`` (design.md §4.2)."""

    thresholds: ReplaceThresholds = Field(default_factory=ReplaceThresholds)

    def content_key(self) -> str:
        return stable_hash(self._content({
            "seed", "captions_path", "rewriter", "generator", "clip", "blip", "fastsam", "diffmap", "proposers",
            "vlm", "thresholds", "splits",
        }))

    def run_id(self) -> str:
        return f"{REPLACE_FLOW}-{stable_hash([self.content_key(), self.pairs, self.batch_size], 12)}"


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

    def content_key(self) -> str:
        fields = {"clip", "blip", "fastsam", "diffmap", "proposers", "vlm", "inpaint", "max_inpaint_per_pair",
                  "thresholds", "splits", "source_run"}
        if self.source_run is None:
            fields |= {"seed", "captions_path", "rewriter", "generator"}
        return stable_hash(self._content(fields))

    def run_id(self) -> str:
        return f"{REMOVE_FLOW}-{stable_hash([self.content_key(), self.pairs, self.batch_size], 12)}"
