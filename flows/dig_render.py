"""The dig-render flow: procedural Blender scene pairs with exact difference boxes (design.md §4.1).

The offline default of pairsmith: no weights, no server. Batches of pairs go through
plan -> render (with visibility checks) -> records and samples -> one LanceDB commit. A batch whose
stage stats are already stored is skipped, so re-running the same command resumes a crashed run
and adds nothing to a finished one (batches with items that failed with an error are redone); a
larger ``--pairs`` renders only the pairs the run lacks, and ``--batch-size`` never decides what
is rendered again (``pairsmith.flows.engine.resume``).

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
from pairsmith.flows.engine.resume import ItemRedo, plan_item_redos, plan_resume, resolve_run_id
from pairsmith.flows.engine.run_outcome import batches_with_errors, error_counts, is_error_reason
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.task_runners import open_task_runner, submit_batch
from pairsmith.flows.engine.flow_runs import claim_run
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.dig.records import build_dig_records
from pairsmith.tasks.dig.plan_scenes import dig_pair_id, plan_scene_pairs
from pairsmith.tasks.dig.render_pairs import render_scene_pairs
from pairsmith.tasks.stage import StageResult
from pairsmith.tasks.write_batch import write_batch

_install_prefect_compat()  # `prefect deploy` imports this module: see flows/engine/prefect_compat.py


class RenderRunSummary(BaseModel):
    run_id: str
    db: str
    pairs_requested: int
    pairs_rendered: int = Field(0, description="pairs this invocation planned and rendered (new ones and retried ones)")
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
    store = open_store(config.db)
    store.check_reachable()
    # The run is its content: --pairs and --batch-size only say how far it goes and how it is cut.
    run_id, legacy = resolve_run_id(store, FLOW_NAME, config.run_id(), config.legacy_run_id,
                                    (config.pairs, config.batch_size))
    content_key = config.content_key()
    claim_run(run_id, store, FLOW_NAME, config.pairs)  # a flow run of it killed with -9: marked CRASHED in Prefect
    # Pairs that failed with an error are rendered again alone, in their stored batch (resume.ItemRedo).
    redos, whole = plan_item_redos(store, run_id, batches_with_errors(store, run_id),
                                   lambda span: [dig_pair_id(content_key, i) for i in span],
                                   lambda row: is_error_reason(row["drop_reason"]))
    plan = plan_resume(store, run_id, config.pairs, config.batch_size, redo=whole, legacy=legacy)
    pending = plan.todo
    retried = sum(len(r.indices) for r in redos)
    if plan.stored_batches:
        logger.info("run %s%s: %d of %d pairs already stored; %d to render, %d to render again",
                    run_id, " (stored under a sized id)" if legacy else "", plan.done_items, config.pairs,
                    plan.new_items, retried + plan.items_to_do - plan.new_items)
    batch = _BatchSteps(config, run_id, content_key, config.user_scenes())
    with RunProgress(
        key=f"{FLOW_NAME}-progress", total=plan.done_items + plan.items_to_do + retried, done=plan.done_items,
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
        for redo in redos:  # inline with either runner: a few pairs each
            planned = batch.plan(redo.indices, progress, redo.batch)
            render = batch_step(render_scene_pairs, redo.batch, config.render.device == "gpu")
            rendered = render(planned.value, config.render, config.sampling, config.visibility,
                              on_pair_done=progress.advance)
            batch.commit(redo.indices, planned, rendered, redo)
            progress.flush()
    funnel = run_funnel(store, run_id)
    publish_dropoff(run_id, funnel)
    run_filter = f"run_id = {sql_literal(run_id)}"
    return RenderRunSummary(
        run_id=run_id, db=config.db, pairs_requested=config.pairs, pairs_rendered=plan.items_to_do + retried,
        batches=plan.stored_batches + len(pending) - len(plan.redone),
        batches_resumed=plan.stored_batches - len(plan.redone) - len(redos),
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

    def plan(self, indices: range | list[int], progress: RunProgress, name: str | None = None) -> StageResult:
        planned = batch_step(plan_scene_pairs, name or batch_name(indices))(
            indices, self.content_key, self.config.seed, self.config.sampling, self.scenes
        )
        progress.advance(planned.stats[0].n_dropped)
        return planned

    def commit(self, indices: range | list[int], planned: StageResult, rendered: StageResult,
               redo: ItemRedo | None = None) -> None:
        """Build the batch's rows and hand them to the single writer (always from the flow); items
        redone alone (``redo``) are written with their stored batch's stats restated."""
        name, config = (redo.batch if redo else batch_name(indices)), self.config
        pairs, seconds = rendered.value
        self.blender_seconds += seconds
        built = batch_step(build_dig_records, name)(
            planned.value, pairs, self.run_id, config.render, config.visibility, config.splits, config.caption_style,
            config.grounding_prompt,
        )
        records = built.value
        stats = [*planned.stats, *rendered.stats, *built.stats]
        batch_step(write_batch, name)(
            config.db, self.run_id, FLOW_NAME, name,
            {"pairs": records.pairs, "regions": records.regions, "samples": records.samples},
            redo.restated(stats) if redo else stats,
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
