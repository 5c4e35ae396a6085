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

from prefect import flow
from pydantic import Field

from pairsmith.filters.imgdiff.pipelines import REGIONS, REPLACE
from pairsmith.filters.pipeline import Pipeline, Stage
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.run import Batch, Output, Run, RunSpec, RunSummary
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.flows.imgdiff_config import REPLACE_FLOW, ImgDiffReplaceConfig, _ImgDiffBase
from pairsmith.models.adapters.blip_itm import BlipItmScorer
from pairsmith.models.adapters.caption_rewriter import CaptionRewriter
from pairsmith.models.adapters.clip_scorer import ClipScorer
from pairsmith.models.proposers.diffmap_proposer import DiffMapProposer
from pairsmith.models.adapters.fastsam_proposer import FastSamProposer
from pairsmith.models.adapters.sdxl_inpaint import SdxlInpainter
from pairsmith.models.adapters.sdxl_p2p import SdxlP2PGenerator
from pairsmith.models.adapters.vlm_chat import VlmChat
from pairsmith.storage.store import PairStore, open_store
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.imgdiff.context import ImgDiffContext, ImgDiffModels, StepSettings
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.regions import regions
from pairsmith.tasks.imgdiff.sources import plan_caption_items
from pairsmith.tasks.imgdiff.steps import step_for
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


def build_models(config: _ImgDiffBase, diffmap_masks: bool = False, inpaint=None) -> ImgDiffModels:
    """The adapters a run's config names (cheap: weights load on first use, once per process)."""
    rt = config.with_runtime
    return ImgDiffModels(
        rewriter=CaptionRewriter(rt(config.rewriter)), generator=SdxlP2PGenerator(rt(config.generator)),
        clip=ClipScorer(rt(config.clip)), blip=BlipItmScorer(rt(config.blip)),
        fastsam=FastSamProposer(rt(config.fastsam)) if "fastsam" in config.proposers else None,
        diffmap=DiffMapProposer(config.diffmap.model_copy(update={"return_masks": diffmap_masks}))
        if "diffmap" in config.proposers else None,
        vlm=VlmChat(rt(config.vlm)), inpainter=SdxlInpainter(rt(inpaint)) if inpaint is not None else None,
    )


def run_step(stage: Stage, items: list[ImgDiffItem], ctx: ImgDiffContext, batch: str) -> StageResult:
    """Run one stage over a batch's items: its task (``step_for``) given the typed context, run named
    ``<stage>-<batch>``, GPU-tagged if a model it uses runs on a GPU."""
    step = step_for(stage)
    return batch_step(step.task, batch, step.ready(ctx))(items, ctx)


def run_batch(pipeline: Pipeline, items: list[ImgDiffItem], ctx: ImgDiffContext, batch: str, run_id: str,
              model_ids: dict[str, str], config: _ImgDiffBase) -> Output:
    """Every stage of ``pipeline`` over one batch, in order, then its rows and stage stats for its one commit."""
    results = [run_step(stage, items, ctx, batch) for stage in pipeline.until(REGIONS.name)
               if not step_for(stage).skipped(ctx)]
    records = batch_step(regions, batch)(items, run_id, pipeline.method, model_ids, config.splits)
    pairs, region_rows, samples = records.value
    return Output({"pairs": pairs, "regions": region_rows, "samples": samples},
                  [stats for result in (*results, records) for stats in result.stats])


def run_pipeline(pipeline: Pipeline, config: _ImgDiffBase, store: PairStore | None, n_items: int,
                 plan: Callable[[range], list[ImgDiffItem]], ctx: ImgDiffContext, model_ids: dict[str, str],
                 description: str) -> ImgDiffRunSummary:
    """Run ``pipeline`` over the candidates ``0..n_items-1`` the run has not stored yet (``plan``
    makes a batch's items) on the run engine (``pairsmith.flows.engine.run``), and summarize the run
    from what is stored."""
    run = Run.start(RunSpec(pipeline.method, config.db, pipeline, config.run_id(), n_items, config.batch_size,
                            config.legacy_run_id, description=description, terminal=config.show_progress), store)

    def step(batch: Batch) -> Output:
        return run_batch(pipeline, plan(batch.indices), ctx, batch.name, run.run_id, model_ids, config)

    return run.execute(step).finish(ImgDiffRunSummary, flow=pipeline.method, pairs_requested=n_items)


@flow(flow_run_name=pairsmith_run_name, name=REPLACE_FLOW, description="Img-Diff object replacement: P2P pairs, filtered regions, difference captions.")
def imgdiff_replace(config: ImgDiffReplaceConfig = ImgDiffReplaceConfig()) -> ImgDiffRunSummary:
    store = open_store(config.db)
    store.check_reachable()
    captions, content_key = load_captions(config.captions_path), config.content_key()
    models = build_models(config)
    return run_pipeline(
        REPLACE, config, store, config.pairs,
        lambda indices: plan_caption_items(REPLACE_FLOW, content_key, config.seed, captions, indices,
                                           config.rewriter.rounds),
        ImgDiffContext(config.thresholds, models, StepSettings(db=config.db, naturalness=config.naturalness)), models.model_ids(), "making replacement pairs",
    )
