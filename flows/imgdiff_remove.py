"""The imgdiff-remove flow: Img-Diff's object removal and its two-choice questions (design.md §4.3).

Per batch of image pairs (an ``imgdiff-replace`` run's, read by the ``load`` stage, or made here by
the same caption and Prompt2Prompt steps), the stages of ``pairsmith.filters.imgdiff.pipelines.REMOVE``
in order: FastSAM masks of the original (plus the difference map's) -> keep segments
whose crop differs from the paired image -> SDXL-turbo inpaints the most different few ->
the VLM names each removed object -> BLIP ITM confirms it was there and is gone -> records and
``object-presence-mcq`` samples -> one LanceDB commit.

A pair row here is the pair the objects were found in (before = the original, after = its
paired image); each region carries its own inpainting (``regions.image_edited``) and each kept
region's question carries its own picture. Resume, error rows and GPU slots work as in
``imgdiff-replace``.
"""

from __future__ import annotations

from prefect import flow

from pairsmith.filters.imgdiff.pipelines import LOAD, MAKE_PAIRS, REMOVE
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.flows.imgdiff_config import REMOVE_FLOW, ImgDiffRemoveConfig
from pairsmith.flows.imgdiff_replace import ImgDiffRunSummary, build_models, run_pipeline
from pairsmith.storage.store import open_store
from pairsmith.tasks.imgdiff.caption_source import load_captions
from pairsmith.tasks.imgdiff.context import ImgDiffContext, StepSettings
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.sources import list_source_pairs, plan_caption_items, plan_source_items

_install_prefect_compat()


@flow(flow_run_name=pairsmith_run_name, name=REMOVE_FLOW, description="Img-Diff object removal: inpainted objects and which-image-has-it questions.")
def imgdiff_remove(config: ImgDiffRemoveConfig = ImgDiffRemoveConfig()) -> ImgDiffRunSummary:
    content_key = config.content_key()
    store = open_store(config.db)
    store.check_reachable()
    pipeline = REMOVE
    if config.source_run:
        source_ids = list_source_pairs(store, config.source_run, config.pairs)
        n_items = len(source_ids)
        pipeline = REMOVE.with_source(MAKE_PAIRS, (LOAD,))

        def plan(indices: range) -> list[ImgDiffItem]:
            return plan_source_items(REMOVE_FLOW, content_key, source_ids, indices)
    else:
        captions = load_captions(config.captions_path)
        n_items = config.pairs

        def plan(indices: range) -> list[ImgDiffItem]:
            return plan_caption_items(REMOVE_FLOW, content_key, config.seed, captions, indices, config.rewriter.rounds)

    models = build_models(config, diffmap_masks=True, inpaint=config.inpaint)
    model_ids = models.model_ids()
    if config.source_run:
        model_ids = {k: v for k, v in model_ids.items() if k not in ("rewriter", "generator")}
        model_ids["source_run"] = config.source_run
    ctx = ImgDiffContext(config.thresholds, models, StepSettings(
        db=config.db, fastsam_sides=("before",), keep_masks=True, max_inpaint_per_pair=config.max_inpaint_per_pair,
        describe_view=config.describe_view,
        naturalness=config.naturalness))
    return run_pipeline(pipeline, config, store, n_items, plan, ctx, model_ids, "removing objects")
