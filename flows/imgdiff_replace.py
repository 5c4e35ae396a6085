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

import time
from collections.abc import Callable
from dataclasses import dataclass, fields

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from pairsmith.filters.imgdiff.pipelines import REGIONS, REPLACE
from pairsmith.filters.pipeline import Pipeline, Stage
from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.engine.resume import plan_resume, resolve_run_id
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.progress import RunProgress
from pairsmith.flows.engine.run_outcome import batches_with_errors, error_counts
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.flow_runs import claim_run
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
from pairsmith.storage.store import PairStore, open_store, sql_literal
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.naturalness import NaturalnessSettings
from pairsmith.tasks.imgdiff.regions import regions
from pairsmith.tasks.imgdiff.sources import plan_caption_items
from pairsmith.tasks.imgdiff.steps import inputs_of, task_for
from pairsmith.tasks.stage import StageResult
from pairsmith.tasks.write_batch import write_batch

_install_prefect_compat()  # `prefect deploy` imports this module: see flows/engine/prefect_compat.py


class ImgDiffRunSummary(BaseModel):
    run_id: str
    db: str
    flow: str
    pairs_requested: int
    batches: int
    batches_resumed: int
    pairs_kept: int
    pairs_dropped: int
    pairs_failed: int = Field(0, description="items dropped because a step raised (reasons ending in _error)")
    regions: int
    regions_kept: int
    samples: int
    seconds: float


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
    naturalness: NaturalnessSettings | None = None  # the unnatural-image filter's settings (_ImgDiffBase.naturalness)

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
              model_ids: dict[str, str], config: _ImgDiffBase) -> None:
    """Every stage of ``pipeline`` over one batch, in order, then its rows and stage stats in one commit."""
    results = [run_step(stage, items, inputs, batch) for stage in pipeline.until(REGIONS.name)]
    records = batch_step(regions, batch)(items, run_id, pipeline.method, model_ids, config.splits)
    pairs, region_rows, samples = records.value
    batch_step(write_batch, batch)(
        config.db, run_id, pipeline.method, batch, {"pairs": pairs, "regions": region_rows, "samples": samples},
        [stats for result in (*results, records) for stats in result.stats],
    )


def summarize(store: PairStore, config: _ImgDiffBase, flow_name: str, run_id: str, n_batches: int,
              n_pending: int, n_candidates: int, start: float) -> ImgDiffRunSummary:
    funnel = run_funnel(store, run_id)
    publish_dropoff(run_id, funnel)
    run_filter = f"run_id = {sql_literal(run_id)}"
    return ImgDiffRunSummary(
        run_id=run_id, db=config.db, flow=flow_name, pairs_requested=n_candidates, batches=n_batches,
        batches_resumed=n_batches - n_pending,
        pairs_kept=store.count("pairs", f"{run_filter} AND status = 'kept'"),
        pairs_dropped=store.count("pairs", f"{run_filter} AND status = 'dropped'"),
        pairs_failed=sum(error_counts(funnel).values()),
        regions=store.count("regions", run_filter),
        regions_kept=store.count("regions", f"{run_filter} AND status = 'kept'"),
        samples=store.count("samples", run_filter), seconds=round(time.perf_counter() - start, 3),
    )


def run_pipeline(pipeline: Pipeline, config: _ImgDiffBase, store: PairStore, n_items: int,
                 plan: Callable[[range], list[ImgDiffItem]], inputs: StepInputs, model_ids: dict[str, str],
                 description: str, start: float) -> ImgDiffRunSummary:
    """Run ``pipeline`` over the candidates ``0..n_items-1`` the run has not stored yet (``plan``
    makes a batch's items; ``pairsmith.flows.engine.resume``), with progress, and summarize the run
    from what is stored."""
    run_id, legacy = resolve_run_id(store, pipeline.method, config.run_id(), config.legacy_run_id,
                                    (n_items, config.batch_size))
    claim_run(run_id, store, pipeline.method, n_items)  # a flow run of it killed with -9: marked CRASHED in Prefect
    work = plan_resume(store, run_id, n_items, config.batch_size, redo=batches_with_errors(store, run_id),
                       legacy=legacy)
    if work.stored_batches:
        get_run_logger().info("run %s: %d of %d candidates already stored; %d to make", run_id, work.done_items,
                              n_items, work.items_to_do)
    with RunProgress(key=f"{pipeline.method}-progress", total=work.done_items + work.items_to_do,
                     done=work.done_items, description=description, terminal=config.show_progress) as progress:
        for indices in work.todo:
            run_batch(pipeline, plan(indices), inputs, batch_name(indices), run_id, model_ids, config)
            progress.advance(len(indices))
            progress.flush()
    n_batches = work.stored_batches + len(work.todo) - len(work.redone)
    return summarize(store, config, pipeline.method, run_id, n_batches, len(work.todo), n_items, start)


@flow(flow_run_name=pairsmith_run_name, name=REPLACE_FLOW, description="Img-Diff object replacement: P2P pairs, filtered regions, difference captions.")
def imgdiff_replace(config: ImgDiffReplaceConfig = ImgDiffReplaceConfig()) -> ImgDiffRunSummary:
    start = time.perf_counter()
    store = open_store(config.db)
    store.check_reachable()
    captions, content_key = load_captions(config.captions_path), config.content_key()
    models = ImgDiffModels.build(config)
    return run_pipeline(
        REPLACE, config, store, config.pairs,
        lambda indices: plan_caption_items(REPLACE_FLOW, content_key, config.seed, captions, indices,
                                           config.rewriter.rounds),
        StepInputs(models, config.thresholds, config.db, naturalness=config.naturalness), models.model_ids(), "making replacement pairs", start,
    )
