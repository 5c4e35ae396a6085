"""The imgdiff-remove flow: Img-Diff's object removal and its two-choice questions (design.md §4.3).

Per batch of image pairs (an ``imgdiff-replace`` run's, or made here by the same caption and
Prompt2Prompt steps): FastSAM masks of the original (plus the difference map's) -> keep segments
whose crop differs from the paired image -> SDXL-turbo inpaints the most different few ->
the VLM names each removed object -> BLIP ITM confirms it was there and is gone -> records and
``object-presence-mcq`` samples -> one LanceDB commit.

A pair row here is the pair the objects were found in (before = the original, after = its
paired image); each region carries its own inpainting (``regions.image_edited``) and each kept
region's question carries its own picture. Resume, error rows and GPU slots work as in
``imgdiff-replace``.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger

from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.imgdiff_config import REMOVE_FLOW, ImgDiffRemoveConfig
from pairsmith.flows.imgdiff_replace import CommonModels, ImgDiffRunSummary, make_pairs, pending_batches, step, summarize
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.progress import RunProgress
from pairsmith.models.sdxl_inpaint import SdxlInpainter
from pairsmith.storage.store import open_store
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.imgdiff.describe_removed import describe_removed
from pairsmith.tasks.imgdiff.inpaint import inpaint_regions
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.propose_regions import propose_regions
from pairsmith.tasks.imgdiff.records import build_imgdiff_records
from pairsmith.tasks.imgdiff.removal_crops import filter_removal_crops
from pairsmith.tasks.imgdiff.removal_itm import check_removals
from pairsmith.tasks.imgdiff.sources import list_source_pairs, load_source_pairs, plan_caption_items, plan_source_items
from pairsmith.tasks.write_batch import write_batch

_install_prefect_compat()


@flow(name=REMOVE_FLOW, description="Img-Diff object removal: inpainted objects and which-image-has-it questions.")
def imgdiff_remove(config: ImgDiffRemoveConfig = ImgDiffRemoveConfig()) -> ImgDiffRunSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    run_id, content_key = config.run_id(), config.content_key()
    store = open_store(config.db)
    store.check_reachable()
    if config.source_run:
        source_ids = list_source_pairs(store, config.source_run, config.pairs)
        n_items = len(source_ids)

        def plan(indices: range) -> list[ImgDiffItem]:
            return plan_source_items(REMOVE_FLOW, content_key, source_ids, indices)
    else:
        captions = load_captions(config.captions_path)
        n_items = config.pairs

        def plan(indices: range) -> list[ImgDiffItem]:
            return plan_caption_items(REMOVE_FLOW, content_key, config.seed, captions, indices)

    batches, pending = pending_batches(store, run_id, n_items, config.batch_size)
    if len(pending) < len(batches):
        logger.info("run %s: %d of %d batches already stored, resuming", run_id, len(batches) - len(pending), len(batches))
    models = CommonModels.build(config, diffmap_masks=True)
    inpainter = SdxlInpainter(config.with_runtime(config.inpaint))
    model_ids = {**models.model_ids(), "inpaint": config.inpaint.model_id}
    if config.source_run:
        model_ids = {k: v for k, v in model_ids.items() if k not in ("rewriter", "generator")}
        model_ids["source_run"] = config.source_run
    t = config.thresholds
    with RunProgress(key=f"{REMOVE_FLOW}-progress", total=n_items, done=n_items - sum(len(b) for b in pending),
                     description="removing objects", terminal=config.show_progress) as progress:
        for indices in pending:
            name = batch_name(indices)
            items = plan(indices)
            if config.source_run:
                stages = [step(load_source_pairs, name)(items, config.db)]
            else:
                stages = make_pairs(items, models, name)
            stages.append(step(propose_regions, name, models.gpu(models.fastsam))(
                items, models.fastsam, models.diffmap, ("before",), True))
            stages.append(step(filter_removal_crops, name, models.gpu(models.clip))(items, models.clip, t))
            stages.append(step(inpaint_regions, name, models.gpu(inpainter))(
                items, inpainter, config.max_inpaint_per_pair))
            stages.append(step(describe_removed, name, models.gpu(models.vlm))(items, models.vlm))
            stages.append(step(check_removals, name, models.gpu(models.blip))(items, models.blip, t))
            pairs, regions, samples, regions_stats, sample_stats = step(build_imgdiff_records, name)(
                items, run_id, REMOVE_FLOW, model_ids, config.splits)
            step(write_batch, name)(
                config.db, run_id, REMOVE_FLOW, name, {"pairs": pairs, "regions": regions, "samples": samples},
                [*stages, regions_stats, sample_stats],
            )
            progress.advance(len(indices))
            progress.flush()
    return summarize(store, config, REMOVE_FLOW, run_id, len(batches), len(pending), n_items, start)
