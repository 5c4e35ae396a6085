"""What every Img-Diff step receives besides its batch's items: one typed context.

Following diffusers' pipelines, whose components are passed in explicitly, each step task takes
``(items, ctx)``: ``ctx.models`` holds the model adapters (``ImgDiffModels``), ``ctx.thresholds``
the thresholds its filters read (``pairsmith.filters.imgdiff.thresholds``) and ``ctx.settings`` the
few step settings (``StepSettings``). A step reads what it needs by name (``ctx.clip``,
``ctx.settings.keep_masks``); a model or setting this run does not have is an error naming it
(``MissingComponent``), raised before the step runs when the step's declaration
(``pairsmith.tasks.imgdiff.steps.STEPS``) lists it, else when the step reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from pairsmith.filters.imgdiff.thresholds import RemoveThresholds, ReplaceThresholds
from pairsmith.models.adapters.blip_itm import BlipItmScorer
from pairsmith.models.adapters.caption_rewriter import CaptionRewriter
from pairsmith.models.adapters.clip_scorer import ClipScorer
from pairsmith.models.proposers.diffmap_proposer import DiffMapProposer
from pairsmith.models.adapters.fastsam_proposer import FastSamProposer
from pairsmith.models.adapters.sdxl_inpaint import SdxlInpainter
from pairsmith.models.adapters.sdxl_p2p import SdxlP2PGenerator
from pairsmith.models.adapters.vlm_chat import VlmChat

if TYPE_CHECKING:
    from pairsmith.tasks.imgdiff.naturalness import NaturalnessSettings


class MissingComponent(LookupError):
    """A step needs a model or setting the run's context does not hold; the message names both."""


@dataclass(frozen=True)
class ImgDiffModels:
    """The adapters of the Img-Diff flows (cheap to build: weights load on first use, once per process).

    A model a run does not use is None: FastSAM or the difference map when ``proposers`` leaves it
    out, the inpainter outside removal, the rewriter and generator when pairs are read from another run.
    """

    rewriter: CaptionRewriter | None = None
    generator: SdxlP2PGenerator | None = None
    clip: ClipScorer | None = None
    blip: BlipItmScorer | None = None
    fastsam: FastSamProposer | None = None
    diffmap: DiffMapProposer | None = None
    vlm: VlmChat | None = None
    inpainter: SdxlInpainter | None = None  # removal only

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def model_ids(self) -> dict[str, str]:
        """The stored ``model_ids`` of the run's pairs: each model present, by the id it loads."""
        ids: dict[str, str] = {}
        if self.rewriter is not None:
            ids["rewriter"] = self.rewriter.config.model_id if self.rewriter.config.mode == "llm" else "lexicon"
        if self.generator is not None:
            ids["generator"] = self.generator.config.model_id
        if self.clip is not None:
            ids["clip"] = self.clip.config.model_name
        if self.blip is not None:
            ids["blip"] = self.blip.config.model_id
        if self.vlm is not None:
            ids["vlm"] = self.vlm.config.model_id
        if self.fastsam is not None:
            ids["fastsam"] = self.fastsam.config.weights
        if self.diffmap is not None:
            ids["diffmap"] = "diffmap"
        if self.inpainter is not None:
            ids["inpaint"] = self.inpainter.config.model_id
        return ids

    def gpu(self, adapter) -> bool:
        """Whether this adapter's model runs on a GPU (its task then takes a ``tag:gpu`` slot)."""
        if adapter is None or isinstance(adapter, DiffMapProposer):
            return False
        if isinstance(adapter, CaptionRewriter) and adapter.config.mode == "lexicon":
            return False
        return adapter.config.runtime.on_gpu()


@dataclass(frozen=True)
class StepSettings:
    """The settings single steps read (the flow configs in ``flows/imgdiff_config.py`` set them).

    ``db``: the LanceDB URI ``load`` reads source pairs from. ``fastsam_sides``: the images FastSAM
    segments (replacement: both, as Img-Diff does; removal: the original, whose masks are inpainted).
    ``keep_masks``: keep each region's mask, cut to its box (removal inpaints it).
    ``max_inpaint_per_pair``: removal's inpaintings per pair (``ImgDiffRemoveConfig``); None outside removal.
    ``describe_view``: what the removal describer sees, ``crop`` or ``box`` (Img-Diff supplementary §19.2.4).
    ``naturalness``: the unnatural-image filter's settings (Img-Diff supplementary §15); None: its defaults.
    """

    db: str | None = None
    fastsam_sides: tuple[str, ...] = ("before", "after")
    keep_masks: bool = False
    max_inpaint_per_pair: int | None = None
    describe_view: str = "crop"
    naturalness: NaturalnessSettings | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


COMPONENTS = frozenset({*ImgDiffModels.names(), *StepSettings.names(), "thresholds"})


@dataclass(frozen=True)
class ImgDiffContext:
    """What every Img-Diff step gets besides its items: models, thresholds and settings, by name."""

    thresholds: ReplaceThresholds | RemoveThresholds
    models: ImgDiffModels
    settings: StepSettings = StepSettings()

    def component(self, name: str) -> Any:
        """The model, setting or thresholds called ``name``; ``MissingComponent`` if this run has none."""
        if name == "thresholds":
            value = self.thresholds
        elif name in ImgDiffModels.names():
            value = getattr(self.models, name)
        elif name in StepSettings.names():
            value = getattr(self.settings, name)
        else:
            raise MissingComponent(f"the Img-Diff context has no component {name!r} (it has {sorted(COMPONENTS)})")
        if value is None:
            raise MissingComponent(f"this run's Img-Diff context has no {name!r}: the run's config does not set it up")
        return value

    def require(self, stage: str, names: tuple[str, ...]) -> None:
        """Check the run holds every component ``stage`` needs, naming the first one missing."""
        for name in names:
            try:
                self.component(name)
            except MissingComponent as err:
                raise MissingComponent(f"stage {stage!r} needs {name!r}: {err}") from None

    def on_gpu(self, names: tuple[str, ...]) -> bool:
        """Whether one of the models ``names`` (models absent or not models count for nothing) runs on a GPU."""
        return any(self.models.gpu(getattr(self.models, n)) for n in names if n in ImgDiffModels.names())

    # The models, typed, each an error naming it when the run has none.
    @property
    def rewriter(self) -> CaptionRewriter:
        return self.component("rewriter")

    @property
    def generator(self) -> SdxlP2PGenerator:
        return self.component("generator")

    @property
    def clip(self) -> ClipScorer:
        return self.component("clip")

    @property
    def blip(self) -> BlipItmScorer:
        return self.component("blip")

    @property
    def vlm(self) -> VlmChat:
        return self.component("vlm")

    @property
    def inpainter(self) -> SdxlInpainter:
        return self.component("inpainter")

    @property
    def replace_thresholds(self) -> ReplaceThresholds:
        """The thresholds as a replacement step reads them; an error if this run has removal's."""
        if not isinstance(self.thresholds, ReplaceThresholds):
            raise MissingComponent(f"a replacement step needs ReplaceThresholds, not {type(self.thresholds).__name__}")
        return self.thresholds

    @property
    def remove_thresholds(self) -> RemoveThresholds:
        """The thresholds as a removal step reads them; an error if this run has replacement's."""
        if not isinstance(self.thresholds, RemoveThresholds):
            raise MissingComponent(f"a removal step needs RemoveThresholds, not {type(self.thresholds).__name__}")
        return self.thresholds
