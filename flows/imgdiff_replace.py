"""The imgdiff-replace flow: Img-Diff's object replacement pairs, regions and difference captions.

Per batch of candidates the flow runs the stages of ``pairsmith.filters.imgdiff.pipelines.REPLACE``
in their declared order (design.md §4.2): caption pairs and SDXL + Prompt2Prompt image pairs, the
pair filter, region proposals, the box, crop and caption filters around NMS and the VLM's region
captions, the difference captions, then ``regions`` (records and ``diff-caption`` samples) and one
LanceDB commit. Each stage is one Prefect task named after it (``pairsmith.tasks.imgdiff.steps``),
its run named ``<stage>-<batch>``. Every pair and region is stored with its scores and verdict,
dropped ones included, and every stage writes its stage stats under the name ``pairsmith
refilter`` re-applies.

A batch whose stats are stored is skipped on a re-run (unless an item in it failed with an error),
so the same command resumes a crashed run. Tasks that run a model on a GPU carry the ``gpu`` tag
and take a ``tag:gpu`` concurrency slot while they run (``pairsmith.flows.engine.task_runners.gpu_task``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from prefect import flow
from pydantic import BaseModel, Field

from pairsmith.filters.imgdiff.pipelines import REGIONS, REPLACE
from pairsmith.filters.pipeline import Pipeline, Stage
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.run import Batch, Output, Run, RunSpec, RunSummary
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.flows.imgdiff_config import REPLACE_FLOW, ImgDiffReplaceConfig, _ImgDiffBase
from pairsmith.models.blip_itm import BlipItmScorer
from pairsmith.models.caption_rewriter import CaptionRewriter
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.models.diffmap_proposer import DiffMapProposer
from pairsmith.models.fastsam_proposer import FastSamProposer
from pairsmith.models.sdxl_inpaint import SdxlInpainter
from pairsmith.models.sdxl_p2p import SdxlP2PGenerator
from pairsmith.models.vlm_chat import VlmChat
from pairsmith.storage.store import PairStore, open_store
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.regions import regions
from pairsmith.tasks.imgdiff.sources import plan_caption_items
from pairsmith.tasks.imgdiff.steps import inputs_of, task_for
from pairsmith.tasks.stage import StageResult

_install_prefect_compat()  # `prefect deploy` imports this module: see flows/engine/prefect_compat.py


class ImgDiffRunSummary(RunSummary):
    flow: str
    pairs_requested: int
    pairs_kept: int
    pairs_dropped: int
    pairs_failed: int = Field(0, description="items dropped because a step raised (reasons ending in _error)")
    regions: int
    regions_kept: int
    samples: int


@dataclass
class ImgDiffModels:
    """The adapters of the Img-Diff flows (cheap to build: weights load on first use, once per process)."""

    rewriter: CaptionRewriter
    generator: SdxlP2PGenerator
    clip: ClipScorer
    blip: BlipItmScorer
    fastsam: FastSamProposer | None
    diffmap: DiffMapProposer | None
    vlm: VlmChat
    inpainter: SdxlInpainter | None = None  # removal only

    @classmethod
    def build(cls, config: _ImgDiffBase, diffmap_masks: bool = False, inpaint=None) -> "ImgDiffModels":
        rt = config.with_runtime
        return cls(
            rewriter=CaptionRewriter(rt(config.rewriter)), generator=SdxlP2PGenerator(rt(config.generator)),
            clip=ClipScorer(rt(config.clip)), blip=BlipItmScorer(rt(config.blip)),
            fastsam=FastSamProposer(rt(config.fastsam)) if "fastsam" in config.proposers else None,
            diffmap=DiffMapProposer(config.diffmap.model_copy(update={"return_masks": diffmap_masks}))
            if "diffmap" in config.proposers else None,
            vlm=VlmChat(rt(config.vlm)), inpainter=SdxlInpainter(rt(inpaint)) if inpaint is not None else None,
        )

    def model_ids(self) -> dict[str, str]:
        ids = {"rewriter": self.rewriter.config.model_id if self.rewriter.config.mode == "llm" else "lexicon",
               "generator": self.generator.config.model_id, "clip": self.clip.config.model_name,
               "blip": self.blip.config.model_id, "vlm": self.vlm.config.model_id}
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


MODEL_INPUTS = frozenset(f.name for f in fields(ImgDiffModels))


@dataclass
class StepInputs:
    """What the steps of a run take besides the items, under the names of the tasks' parameters
    (``pairsmith.tasks.imgdiff.steps``): the models, the thresholds, and the settings of the steps
    that need one."""

    models: ImgDiffModels
    thresholds: BaseModel
    db: str
    fastsam_sides: tuple[str, ...] = ("before", "after")  # the images FastSAM segments
    keep_masks: bool = False  # removal: keep each region's mask for inpainting
    max_inpaint_per_pair: int | None = None
    describe_view: str = "crop"  # removal: what the describer sees (ImgDiffRemoveConfig.describe_view)

    def args(self, names: tuple[str, ...]) -> list:
        return [getattr(self.models, n) if n in MODEL_INPUTS else getattr(self, n) for n in names]

    def gpu(self, names: tuple[str, ...]) -> bool:
        return any(self.models.gpu(getattr(self.models, n)) for n in names if n in MODEL_INPUTS)


def run_step(stage: Stage, items: list[ImgDiffItem], inputs: StepInputs, batch: str) -> StageResult:
    """Run one stage over a batch's items: its task, run named ``<stage>-<batch>``, GPU-tagged if a model
    it takes runs on a GPU."""
    task = task_for(stage)
    names = inputs_of(task)
    return batch_step(task, batch, inputs.gpu(names))(items, *inputs.args(names))


def run_batch(pipeline: Pipeline, items: list[ImgDiffItem], inputs: StepInputs, batch: str, run_id: str,
              model_ids: dict[str, str], config: _ImgDiffBase) -> Output:
    """Every stage of ``pipeline`` over one batch, in order, then its rows and stage stats for its one commit."""
    results = [run_step(stage, items, inputs, batch) for stage in pipeline.until(REGIONS.name)]
    records = batch_step(regions, batch)(items, run_id, pipeline.method, model_ids, config.splits)
    pairs, region_rows, samples = records.value
    return Output({"pairs": pairs, "regions": region_rows, "samples": samples},
                  [stats for result in (*results, records) for stats in result.stats])


def run_pipeline(pipeline: Pipeline, config: _ImgDiffBase, store: PairStore | None, n_items: int,
                 plan: Callable[[range], list[ImgDiffItem]], inputs: StepInputs, model_ids: dict[str, str],
                 description: str) -> ImgDiffRunSummary:
    """Run ``pipeline`` over the candidates ``0..n_items-1`` the run has not stored yet (``plan``
    makes a batch's items) on the run engine (``pairsmith.flows.engine.run``), and summarize the run
    from what is stored."""
    run = Run.start(RunSpec(pipeline.method, config.db, pipeline, config.run_id(), n_items, config.batch_size,
                            config.legacy_run_id, description=description, terminal=config.show_progress), store)

    def step(batch: Batch) -> Output:
        return run_batch(pipeline, plan(batch.indices), inputs, batch.name, run.run_id, model_ids, config)

    return run.execute(step).finish(ImgDiffRunSummary, flow=pipeline.method, pairs_requested=n_items)


@flow(flow_run_name=pairsmith_run_name, name=REPLACE_FLOW, description="Img-Diff object replacement: P2P pairs, filtered regions, difference captions.")
def imgdiff_replace(config: ImgDiffReplaceConfig = ImgDiffReplaceConfig()) -> ImgDiffRunSummary:
    store = open_store(config.db)
    store.check_reachable()
    captions, content_key = load_captions(config.captions_path), config.content_key()
    models = ImgDiffModels.build(config)
    return run_pipeline(
        REPLACE, config, store, config.pairs,
        lambda indices: plan_caption_items(REPLACE_FLOW, content_key, config.seed, captions, indices,
                                           config.rewriter.rounds),
        StepInputs(models, config.thresholds, config.db), models.model_ids(), "making replacement pairs",
    )
