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

from collections import deque
from datetime import date, datetime, timezone

from prefect import flow
from pydantic import Field

from pairsmith.flows.dig_render_config import FLOW_NAME, PIPELINE, DigRenderConfig
from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.run import Batch, ItemRetry, Output, Run, RunSpec, RunSummary
from pairsmith.flows.engine.run_outcome import is_error_reason
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.task_runners import open_task_runner, submit_batch
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.tasks.dig.records import build_dig_records
from pairsmith.tasks.dig.plan_scenes import dig_pair_id, plan_scene_pairs
from pairsmith.tasks.dig.render_pairs import render_scene_pairs
from pairsmith.tasks.stage import StageResult

_install_prefect_compat()  # `prefect deploy` imports this module: see flows/engine/prefect_compat.py


class RenderRunSummary(RunSummary):
    pairs_requested: int
    pairs_rendered: int = Field(0, description="pairs this invocation planned and rendered (new ones and retried ones)")
    pairs_kept: int
    pairs_dropped: int
    pairs_failed: int = Field(0, description="dropped because a step raised (reasons ending in _error)")
    samples: int
    blender_seconds: float


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Render before/after scene pairs with Blender and store them with exact boxes.")
def dig_render(config: DigRenderConfig = DigRenderConfig()) -> RenderRunSummary:
    if config.seed_from_schedule:
        config = config.with_schedule_seed(_scheduled_date())
    content_key = config.content_key()
    # The run is its content: --pairs and --batch-size only say how far it goes and how it is cut.
    # Pairs that failed with an error are rendered again alone, in their stored batch (resume.ItemRedo).
    run = Run.start(RunSpec(
        FLOW_NAME, config.db, PIPELINE, config.run_id(), config.pairs, config.batch_size, config.legacy_run_id,
        item_retry=ItemRetry(lambda span: [dig_pair_id(content_key, i) for i in span],
                             lambda row: is_error_reason(row["drop_reason"])),
        description="rendering pairs", terminal=config.show_progress,
    ))
    steps = _BatchSteps(config, run.run_id, content_key, config.user_scenes())

    def render(batch: Batch) -> Output:
        planned = steps.plan(batch)
        rendered = batch.step(render_scene_pairs, config.render.device == "gpu")(
            planned.value, config.render, config.sampling, config.visibility, on_pair_done=batch.advance)
        return steps.records(batch, planned, rendered)

    batches = run.batches()
    with run.progress():
        if config.runner.parallel:  # batches redone item by item stay inline: a few pairs each
            _render_in_parallel(steps, run, [b for b in batches if b.redo is None])
            batches = [b for b in batches if b.redo is not None]
        run.execute(render, batches)
    return run.finish(RenderRunSummary, pairs_requested=config.pairs, pairs_rendered=run.items_run,
                      blender_seconds=round(steps.blender_seconds, 3))


class _BatchSteps:
    """The flow-side steps of one batch: planning before the render, records after."""

    def __init__(self, config: DigRenderConfig, run_id: str, content_key: str, scenes):
        self.config, self.run_id, self.content_key, self.scenes = config, run_id, content_key, scenes
        self.blender_seconds = 0.0

    def plan(self, batch: Batch) -> StageResult:
        planned = batch.step(plan_scene_pairs)(
            batch.indices, self.content_key, self.config.seed, self.config.sampling, self.scenes
        )
        batch.advance(planned.stats[0].n_dropped)
        return planned

    def records(self, batch: Batch, planned: StageResult, rendered: StageResult) -> Output:
        """The batch's rows and stats for the single writer (always from the flow)."""
        config = self.config
        pairs, seconds = rendered.value
        self.blender_seconds += seconds
        built = batch.step(build_dig_records)(
            planned.value, pairs, self.run_id, config.render, config.visibility, config.splits, config.caption_style,
            config.grounding_prompt,
        )
        records = built.value
        return Output({"pairs": records.pairs, "regions": records.regions, "samples": records.samples},
                      [*planned.stats, *rendered.stats, *built.stats])


def _render_in_parallel(steps: _BatchSteps, run: Run, pending: list[Batch]) -> None:
    """Render batches on the task runner's workers, a bounded window ahead of the one writer.

    Plans are made in the flow (milliseconds) and only plans travel to the workers. Results are
    committed in batch order as they arrive. If a batch task fails, the batches already rendered are
    still written before the flow fails, so a re-run redoes only what is missing.
    """
    config = steps.config
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
                batch = next(todo, None)
                if batch is None:
                    break
                planned = steps.plan(batch)
                task = batch_step(render_scene_pairs, batch.name)  # submit_batch adds the GPU tag
                # a stage task is ``run(*args, **kwargs)`` (tasks/stage.py): Prefect binds these to it as given
                parameters = {"args": (planned.value, render, config.sampling, config.visibility), "kwargs": {}}
                window.append((batch, planned, submit_batch(runner, task, parameters, config.runner, on_gpu)))
            if not window:
                break
            batch, planned, future = window.popleft()
            try:
                result = future.result()
            except Exception as err:  # the batch's task failed: keep the others, fail at the end
                failures.append(f"batch {batch.name}: {type(err).__name__}: {err}")
                continue
            run.commit(batch, steps.records(batch, planned, result))
    if failures:
        raise RuntimeError(f"{len(failures)} render batch(es) failed; first: {failures[0]}")


def _scheduled_date() -> date:
    """The date the run was scheduled for (a deployment's cron slot), or today for ad-hoc runs."""
    from prefect.runtime import flow_run

    scheduled = flow_run.scheduled_start_time
    return scheduled.date() if scheduled is not None else datetime.now(timezone.utc).date()
