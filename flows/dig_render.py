"""The dig-render flow: procedural Blender scene pairs with exact difference boxes (design.md §4.1).

The offline default of pairsmith: no weights, no server. Batches of pairs go through
plan -> render (with visibility checks) -> records and samples -> one LanceDB commit. A batch whose
stage stats are already stored is skipped, so re-running the same command resumes a crashed run
and adds nothing to a finished one.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from pydantic import BaseModel

from flows.dig_render_config import FLOW_NAME, DigRenderConfig, batch_name
from flows.funnel import publish_dropoff, run_funnel
from flows.progress import RunProgress
from storage.store import open_store, sql_literal
from tasks.build_dig_records import build_dig_records
from tasks.plan_scene_pairs import plan_scene_pairs
from tasks.render_scene_pairs import render_scene_pairs
from tasks.write_batch import write_batch


class RenderRunSummary(BaseModel):
    run_id: str
    db: str
    pairs_requested: int
    batches: int
    batches_resumed: int
    pairs_kept: int
    pairs_dropped: int
    samples: int
    seconds: float
    blender_seconds: float


@flow(name=FLOW_NAME, description="Render before/after scene pairs with Blender and store them with exact boxes.")
def dig_render(config: DigRenderConfig = DigRenderConfig()) -> RenderRunSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    run_id, content_key = config.run_id(), config.content_key()
    store = open_store(config.db)
    store.check_reachable()
    scenes = config.user_scenes()
    batches = config.batches()
    done = store.completed_batches(run_id)
    pending = [b for b in batches if batch_name(b) not in done]
    if done:
        logger.info("run %s: %d of %d batches already stored, resuming", run_id, len(batches) - len(pending), len(batches))
    blender_seconds = 0.0
    with RunProgress(
        key=f"{FLOW_NAME}-progress", total=config.pairs, done=sum(len(b) for b in batches) - sum(len(b) for b in pending),
        description="rendering pairs", terminal=config.show_progress,
    ) as progress:
        for indices in pending:
            name = batch_name(indices)
            plans, plan_stats = plan_scene_pairs.with_options(task_run_name=f"plan-scenes-{name}")(
                indices, content_key, config.seed, config.sampling, scenes
            )
            progress.advance(plan_stats.n_dropped)
            rendered, render_stats, vis_stats, seconds = render_scene_pairs.with_options(
                task_run_name=f"render-pairs-{name}"
            )(plans, config.render, config.sampling, config.visibility, on_pair_done=progress.advance)
            blender_seconds += seconds
            records, sample_stats = build_dig_records.with_options(task_run_name=f"build-records-{name}")(
                plans, rendered, run_id, config.render, config.visibility, config.splits
            )
            write_batch.with_options(task_run_name=f"write-batch-{name}")(
                config.db, run_id, FLOW_NAME, name,
                {"pairs": records.pairs, "regions": records.regions, "samples": records.samples},
                [plan_stats, render_stats, vis_stats, sample_stats],
            )
            progress.flush()
    funnel = run_funnel(store, run_id)
    publish_dropoff(run_id, funnel)
    run_filter = f"run_id = {sql_literal(run_id)}"
    return RenderRunSummary(
        run_id=run_id, db=config.db, pairs_requested=config.pairs, batches=len(batches),
        batches_resumed=len(batches) - len(pending),
        pairs_kept=store.count("pairs", f"{run_filter} AND status = 'kept'"),
        pairs_dropped=store.count("pairs", f"{run_filter} AND status = 'dropped'"),
        samples=store.count("samples", run_filter),
        seconds=round(time.perf_counter() - start, 3), blender_seconds=round(blender_seconds, 3),
    )
