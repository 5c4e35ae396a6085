"""The dig-render flow: procedural Blender scene pairs with exact difference boxes (design.md §4.1).

The offline default of pairsmith: no weights, no server. Batches of pairs go through
plan -> render (with visibility checks) -> records and samples -> one LanceDB commit. A batch whose
stage stats are already stored is skipped, so re-running the same command resumes a crashed run
and adds nothing to a finished one (batches with items that failed with an error are redone).

By default each batch runs in the flow's process, one after another. With ``runner.kind == "ray"``
(``pairsmith render --runner ray``) the render tasks run in parallel on Ray workers while planning,
record building and the single writer stay in the flow, so every batch is still one LanceDB commit.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import date, datetime, timezone

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.dig_render_config import FLOW_NAME, DigRenderConfig
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.progress import RunProgress
from pairsmith.flows.engine.run_outcome import batches_with_errors, error_counts
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.task_runners import open_task_runner, submit_batch
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.dig.records import build_dig_records
from pairsmith.tasks.dig.plan_scenes import plan_scene_pairs
from pairsmith.tasks.dig.render_pairs import render_scene_pairs
from pairsmith.tasks.stage import StageResult
from pairsmith.tasks.write_batch import write_batch

_install_prefect_compat()  # `prefect deploy` imports this module: see flows/engine/prefect_compat.py


class RenderRunSummary(BaseModel):
    run_id: str
    db: str
    pairs_requested: int
    batches: int
    batches_resumed: int
    pairs_kept: int
    pairs_dropped: int
    pairs_failed: int = Field(0, description="dropped because a step raised (reasons ending in _error)")
    samples: int
    seconds: float
    blender_seconds: float


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Render before/after scene pairs with Blender and store them with exact boxes.")
def dig_render(config: DigRenderConfig = DigRenderConfig()) -> RenderRunSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    if config.seed_from_schedule:
        config = config.with_schedule_seed(_scheduled_date())
    run_id, content_key = config.run_id(), config.content_key()
    store = open_store(config.db)
    store.check_reachable()
    batches = config.batches()
    done = store.completed_batches(run_id) - batches_with_errors(store, run_id)
    pending = [b for b in batches if batch_name(b) not in done]
    if done:
        logger.info("run %s: %d of %d batches already stored, resuming", run_id, len(batches) - len(pending), len(batches))
    batch = _BatchSteps(config, run_id, content_key, config.user_scenes())
    with RunProgress(
        key=f"{FLOW_NAME}-progress", total=config.pairs, done=sum(len(b) for b in batches) - sum(len(b) for b in pending),
        description="rendering pairs", terminal=config.show_progress,
    ) as progress:
        if config.runner.parallel:
            _render_in_parallel(batch, pending, progress)
        else:
            for indices in pending:
                planned = batch.plan(indices, progress)
                render = batch_step(render_scene_pairs, batch_name(indices), config.render.device == "gpu")
                rendered = render(planned.value, config.render, config.sampling, config.visibility,
                                  on_pair_done=progress.advance)
                batch.commit(indices, planned, rendered)
                progress.flush()
    funnel = run_funnel(store, run_id)
    publish_dropoff(run_id, funnel)
    run_filter = f"run_id = {sql_literal(run_id)}"
    return RenderRunSummary(
        run_id=run_id, db=config.db, pairs_requested=config.pairs, batches=len(batches),
        batches_resumed=len(batches) - len(pending),
        pairs_kept=store.count("pairs", f"{run_filter} AND status = 'kept'"),
        pairs_dropped=store.count("pairs", f"{run_filter} AND status = 'dropped'"),
        pairs_failed=sum(error_counts(funnel).values()),
        samples=store.count("samples", run_filter),
        seconds=round(time.perf_counter() - start, 3), blender_seconds=round(batch.blender_seconds, 3),
    )


class _BatchSteps:
    """The flow-side steps of one batch: planning before the render, records and the write after."""

    def __init__(self, config: DigRenderConfig, run_id: str, content_key: str, scenes):
        self.config, self.run_id, self.content_key, self.scenes = config, run_id, content_key, scenes
        self.blender_seconds = 0.0

    def plan(self, indices: range, progress: RunProgress) -> StageResult:
        planned = batch_step(plan_scene_pairs, batch_name(indices))(
            indices, self.content_key, self.config.seed, self.config.sampling, self.scenes
        )
        progress.advance(planned.stats[0].n_dropped)
        return planned

    def commit(self, indices: range, planned: StageResult, rendered: StageResult) -> None:
        """Build the batch's rows and hand them to the single writer (always from the flow)."""
        name, config = batch_name(indices), self.config
        pairs, seconds = rendered.value
        self.blender_seconds += seconds
        built = batch_step(build_dig_records, name)(
            planned.value, pairs, self.run_id, config.render, config.visibility, config.splits, config.caption_style
        )
        records = built.value
        batch_step(write_batch, name)(
            config.db, self.run_id, FLOW_NAME, name,
            {"pairs": records.pairs, "regions": records.regions, "samples": records.samples},
            [*planned.stats, *rendered.stats, *built.stats],
        )


def _render_in_parallel(batch: _BatchSteps, pending: list[range], progress: RunProgress) -> None:
    """Render batches on the task runner's workers, a bounded window ahead of the one writer.

    Plans are made in the flow (milliseconds) and only plans travel to the workers. Results are
    committed in batch order as they arrive. If a batch task fails, the batches already rendered are
    still written before the flow fails, so a re-run redoes only what is missing.
    """
    config = batch.config
    on_gpu = config.render.device == "gpu"
    # A worker gets cpus_per_task cores; Cycles would otherwise start a thread per core of the node.
    render = config.render
    if render.threads == 0 and not on_gpu:
        render = render.model_copy(update={"threads": max(1, int(config.runner.cpus_per_task))})
    window: deque = deque()
    failures: list[str] = []
    with open_task_runner(config.runner) as runner:
        todo = iter(pending)
        while True:
            while not failures and len(window) < config.runner.max_pending_batches:
                indices = next(todo, None)
                if indices is None:
                    break
                planned = batch.plan(indices, progress)
                task = batch_step(render_scene_pairs, batch_name(indices))  # submit_batch adds the GPU tag
                parameters = {"plans": planned.value, "render": render, "sampling": config.sampling,
                              "visibility": config.visibility}
                window.append((indices, planned, submit_batch(runner, task, parameters, config.runner, on_gpu)))
            if not window:
                break
            indices, planned, future = window.popleft()
            try:
                result = future.result()
            except Exception as err:  # the batch's task failed: keep the others, fail at the end
                failures.append(f"batch {batch_name(indices)}: {type(err).__name__}: {err}")
                continue
            batch.commit(indices, planned, result)
            progress.advance(sum(1 for p in planned.value if not p.drop_reason))
            progress.flush()
    if failures:
        raise RuntimeError(f"{len(failures)} render batch(es) failed; first: {failures[0]}")


def _scheduled_date() -> date:
    """The date the run was scheduled for (a deployment's cron slot), or today for ad-hoc runs."""
    from prefect.runtime import flow_run

    scheduled = flow_run.scheduled_start_time
    return scheduled.date() if scheduled is not None else datetime.now(timezone.utc).date()
