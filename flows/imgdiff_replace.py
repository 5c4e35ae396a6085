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
from pairsmith.tasks.imgdiff.context import ImgDiffContext, ImgDiffModels, StepSettings
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.regions import regions
from pairsmith.tasks.imgdiff.sources import plan_caption_items
from pairsmith.tasks.imgdiff.steps import step_for
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
              model_ids: dict[str, str], config: _ImgDiffBase) -> None:
    """Every stage of ``pipeline`` over one batch, in order, then its rows and stage stats in one commit."""
    results = [run_step(stage, items, ctx, batch) for stage in pipeline.until(REGIONS.name)]
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
                 plan: Callable[[range], list[ImgDiffItem]], ctx: ImgDiffContext, model_ids: dict[str, str],
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
            run_batch(pipeline, plan(indices), ctx, batch_name(indices), run_id, model_ids, config)
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
    models = build_models(config)
    return run_pipeline(
        REPLACE, config, store, config.pairs,
        lambda indices: plan_caption_items(REPLACE_FLOW, content_key, config.seed, captions, indices,
                                           config.rewriter.rounds),
        ImgDiffContext(config.thresholds, models, StepSettings(db=config.db, naturalness=config.naturalness)), models.model_ids(), "making replacement pairs", start,
    )
