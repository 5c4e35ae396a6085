"""The imgdiff-replace flow: Img-Diff's object replacement pairs, regions and difference captions.

Per batch of candidates (design.md §4.2): caption pairs -> SDXL + Prompt2Prompt image pairs -> pair
filter (CLIP window) -> region proposals (FastSAM on both images + the difference map) -> box area
-> crop scoring (CLIP crop cosine + BLIP ITM vs the changed nouns) -> NMS, most different first ->
region captions (VLM) -> caption filter (CITM + CS) -> difference captions (VLM, side-by-side with a
red box) -> records and ``diff-caption`` samples -> one LanceDB commit. Every pair and region is
stored with its scores and verdict, dropped ones included, and every stage writes its stage stats,
under the stage names ``pairsmith refilter`` re-applies (``pairsmith.filters.imgdiff.stages``).

A batch whose stats are stored is skipped on a re-run (unless an item in it failed with an error),
so the same command resumes a crashed run. Tasks that run a model on a GPU carry the ``gpu`` tag
and take a ``tag:gpu`` concurrency slot while they run (``pairsmith.flows.engine.task_runners.gpu_task``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from pairsmith.flows.engine.batching import batch_name, batch_ranges
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.imgdiff_config import REPLACE_FLOW, ImgDiffReplaceConfig, _ImgDiffBase
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.progress import RunProgress
from pairsmith.flows.engine.run_outcome import batches_with_errors, error_counts
from pairsmith.flows.engine.task_runners import gpu_task
from pairsmith.models.blip_itm import BlipItmScorer
from pairsmith.models.caption_rewriter import CaptionRewriter
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.models.diffmap_proposer import DiffMapProposer
from pairsmith.models.fastsam_proposer import FastSamProposer
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.sdxl_p2p import SdxlP2PGenerator
from pairsmith.models.vlm_chat import VlmChat
from pairsmith.storage.store import PairStore, open_store, sql_literal
from pairsmith.tasks.imgdiff.box_filters import filter_box_area, suppress_boxes
from pairsmith.tasks.imgdiff.caption_filter import filter_region_captions
from pairsmith.tasks.imgdiff.caption_pairs import caption_pairs
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.imgdiff.difference_captions import describe_differences
from pairsmith.tasks.imgdiff.generate_pairs import generate_image_pairs
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.pair_filter import filter_pairs
from pairsmith.tasks.imgdiff.propose_regions import propose_regions
from pairsmith.tasks.imgdiff.records import build_imgdiff_records
from pairsmith.tasks.imgdiff.region_captions import caption_regions
from pairsmith.tasks.imgdiff.score_crops import score_crops
from pairsmith.tasks.imgdiff.sources import plan_caption_items
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


def on_gpu(runtime: ModelRuntime) -> bool:
    return runtime.torch_device().type == "cuda"


@dataclass
class CommonModels:
    """The adapters both Img-Diff flows use (cheap to build: weights load on first use, once per process)."""

    rewriter: CaptionRewriter
    generator: SdxlP2PGenerator
    clip: ClipScorer
    blip: BlipItmScorer
    fastsam: FastSamProposer | None
    diffmap: DiffMapProposer | None
    vlm: VlmChat

    @classmethod
    def build(cls, config: _ImgDiffBase, diffmap_masks: bool = False) -> "CommonModels":
        rt = config.with_runtime
        return cls(
            rewriter=CaptionRewriter(rt(config.rewriter)), generator=SdxlP2PGenerator(rt(config.generator)),
            clip=ClipScorer(rt(config.clip)), blip=BlipItmScorer(rt(config.blip)),
            fastsam=FastSamProposer(rt(config.fastsam)) if "fastsam" in config.proposers else None,
            diffmap=DiffMapProposer(config.diffmap.model_copy(update={"return_masks": diffmap_masks}))
            if "diffmap" in config.proposers else None,
            vlm=VlmChat(rt(config.vlm)),
        )

    def model_ids(self) -> dict[str, str]:
        ids = {"rewriter": self.rewriter.config.model_id if self.rewriter.config.mode == "llm" else "lexicon",
               "generator": self.generator.config.model_id, "clip": self.clip.config.model_name,
               "blip": self.blip.config.model_id, "vlm": self.vlm.config.model_id}
        if self.fastsam is not None:
            ids["fastsam"] = self.fastsam.config.weights
        if self.diffmap is not None:
            ids["diffmap"] = "diffmap"
        return ids

    def gpu(self, adapter) -> bool:
        """Whether this adapter's model runs on a GPU (its task then takes a ``tag:gpu`` slot)."""
        if adapter is None or isinstance(adapter, DiffMapProposer):
            return False
        if isinstance(adapter, CaptionRewriter) and adapter.config.mode == "lexicon":
            return False
        return on_gpu(adapter.config.runtime)


def step(task, batch: str, gpu: bool = False):
    """The task, its run named ``<task>-<batch>``, tagged ``gpu`` when its model runs on one."""
    return gpu_task(task.with_options(task_run_name=f"{task.name}-{batch}"), gpu)


def make_pairs(items: list[ImgDiffItem], models: CommonModels, batch: str) -> list:
    """Caption pairs, then image pairs: the two generation steps both flows share."""
    return [
        step(caption_pairs, batch, models.gpu(models.rewriter))(items, models.rewriter),
        step(generate_image_pairs, batch, models.gpu(models.generator))(items, models.generator),
    ]


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


def pending_batches(store: PairStore, run_id: str, n_items: int, batch_size: int) -> tuple[list[range], list[range]]:
    """All batches of the run, and those still to do (not stored, or stored with item errors)."""
    batches = batch_ranges(n_items, batch_size)
    done = store.completed_batches(run_id) - batches_with_errors(store, run_id)
    return batches, [b for b in batches if batch_name(b) not in done]


@flow(name=REPLACE_FLOW, description="Img-Diff object replacement: P2P pairs, filtered regions, difference captions.")
def imgdiff_replace(config: ImgDiffReplaceConfig = ImgDiffReplaceConfig()) -> ImgDiffRunSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    run_id, content_key = config.run_id(), config.content_key()
    store = open_store(config.db)
    store.check_reachable()
    captions = load_captions(config.captions_path)
    batches, pending = pending_batches(store, run_id, config.pairs, config.batch_size)
    if len(pending) < len(batches):
        logger.info("run %s: %d of %d batches already stored, resuming", run_id, len(batches) - len(pending), len(batches))
    models = CommonModels.build(config)
    t = config.thresholds
    with RunProgress(key=f"{REPLACE_FLOW}-progress", total=config.pairs,
                     done=config.pairs - sum(len(b) for b in pending), description="making replacement pairs",
                     terminal=config.show_progress) as progress:
        for indices in pending:
            name = batch_name(indices)
            items = plan_caption_items(REPLACE_FLOW, content_key, config.seed, captions, indices)
            clip_gpu, blip_gpu = models.gpu(models.clip), models.gpu(models.blip)
            stages = make_pairs(items, models, name)
            stages.append(step(filter_pairs, name, clip_gpu)(items, models.clip, t))
            stages.append(step(propose_regions, name, models.gpu(models.fastsam))(
                items, models.fastsam, models.diffmap, ("before", "after"), False))
            stages.append(step(filter_box_area, name)(items, t))
            stages.append(step(score_crops, name, clip_gpu or blip_gpu)(items, models.clip, models.blip, t))
            stages.append(step(suppress_boxes, name)(items, t))
            stages.append(step(caption_regions, name, models.gpu(models.vlm))(items, models.vlm))
            stages.append(step(filter_region_captions, name, clip_gpu or blip_gpu)(items, models.blip, models.clip, t))
            stages.append(step(describe_differences, name, models.gpu(models.vlm))(items, models.vlm))
            pairs, regions, samples, regions_stats, sample_stats = step(build_imgdiff_records, name)(
                items, run_id, REPLACE_FLOW, models.model_ids(), config.splits)
            step(write_batch, name)(
                config.db, run_id, REPLACE_FLOW, name, {"pairs": pairs, "regions": regions, "samples": samples},
                [*stages, regions_stats, sample_stats],
            )
            progress.advance(len(indices))
            progress.flush()
    return summarize(store, config, REPLACE_FLOW, run_id, len(batches), len(pending), config.pairs, start)
