"""The evaluate flow: grounding F1 / mean IoU / AP@0.5, MED MCQ accuracy, caption BLEU-4 / METEOR /
ROUGE-L / CIDEr and, with a judge, an LLM judge's 0–100 score.

1. Pin the table versions and select the held-out samples (the evaluation id hashes the model
   weights, the versions, the selection and the judge, so the same command resumes the same
   evaluation). Caption samples of one pair are asked once, with all their references.
2. In batches: ask the model (``VlmChat``, with the adapter merged in if one is given), parse each
   answer, have the judge score caption answers if one is configured, and commit the answers to
   ``eval_predictions``; stage stats go last and mark the batch done, as in every pairsmith flow.
3. Score every stored answer of the evaluation into ``eval_results`` (one row per task, group and
   metric; per data source too when samples carry a ``dataset``) and publish them as the
   ``eval-results`` table artifact. Metrics that cannot be computed here (METEOR without Java,
   SPICE) are reported as unavailable, with the reason.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from pydantic import Field

from pairsmith.flows.evaluate_config import FLOW_NAME, PIPELINE, EvaluateConfig
from pairsmith.flows.engine.run import Batch, Output, Run, RunSpec, RunSummary
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.models.adapters.adapted_vlm_chat import AdaptedVlmChat
from pairsmith.models.adapters.caption_judge import CaptionJudge
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.evaluate.generate_answers import ask_once_per_pair, generate_answers
from pairsmith.tasks.evaluate.judge_captions import judge_captions
from pairsmith.tasks.evaluate.score_answers import score_answers
from pairsmith.tasks.training.training_data import ProcessorCheck, pin_tables, release_pinned, select_samples_task

RESULTS_ARTIFACT_KEY = "eval-results"
SELECT_BATCH = "select"
RESULTS_BATCH = "results"  # the scores of every stored answer, committed after the last batch (no stage stats)


class EvaluateSummary(RunSummary):
    eval_id: str
    model_id: str
    adapter: str | None
    samples_version: int
    n_samples: int
    n_generated: int
    metrics: list[dict]
    unavailable: dict[str, str] = Field(default_factory=dict, description="metric -> why it was not computed")


def results_table(rows) -> list[dict]:
    return [{"task": r.task, "group": r.group, "metric": r.metric, "value": round(r.value, 4), "n": r.n} for r in rows]


def unavailable_text(unavailable: dict[str, str]) -> str:
    return "; ".join(f"{metric}: {why}" for metric, why in unavailable.items())


def _publish(eval_id: str, config: EvaluateConfig, rows, unavailable: dict[str, str]) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        table=results_table(rows), key=RESULTS_ARTIFACT_KEY,
        description=f"Evaluation `{eval_id}` of `{config.base_model()}`"
                    + (f" + adapter `{config.adapter_path()}`" if config.adapter_path() else "")
                    + f" on {', '.join(config.data.splits)} samples of `{config.db}`."
                    + (f" Not computed: {unavailable_text(unavailable)}." if unavailable else ""),
    )


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Score a VLM (optionally with a LoRA adapter) on held-out samples.")
def evaluate(config: EvaluateConfig) -> EvaluateSummary:
    """Score; an evaluation that fails (or is interrupted), or answers nothing (every item failed: a
    model that cannot load), deletes the ``evaluate-*`` tag it made."""
    made: dict = {}
    try:
        summary = _evaluate(config, made)
    except BaseException:
        if "pinned" in made:
            release_pinned(made["store"], made["pinned"])
        raise
    if summary.n_generated == 0 and summary.batches_resumed == 0:
        release_pinned(made["store"], made["pinned"])
    return summary


def _evaluate(config: EvaluateConfig, made: dict) -> EvaluateSummary:
    logger = get_run_logger()
    config.runtime.check_model_source(config.base_model())  # in seconds, naming the model: before any tag or answer
    store = open_store(config.db)
    store.check_reachable()
    pinned = made["pinned"] = pin_tables(store, config.data, tag_as=FLOW_NAME if config.tag_data else None)
    made["store"] = store
    selected = batch_step(select_samples_task, SELECT_BATCH)(
        config.db, pinned, config.data, check=ProcessorCheck(config.base_model(), config.runtime))
    rows, [select_stats] = ask_once_per_pair(selected.value.rows), selected.stats
    if not rows:
        raise ValueError(f"no samples to evaluate for {config.data.where()} in {config.db!r} at samples version "
                         f"{pinned.samples_version} ({select_stats.n_dropped} dropped: "
                         f"{dict(select_stats.reasons) or 'none'})")
    # Per sample (pairsmith.flows.engine.resume): a larger --limit or batch size asks nothing twice;
    # batches with answers that raised are asked again.
    run = Run.start(RunSpec(
        FLOW_NAME, config.db, PIPELINE, config.eval_id(pinned), len(rows), config.batch_size,
        lambda n, size: config.eval_id(pinned, limit=n), requested=(config.data.limit or 0, config.batch_size),
        description="answering samples", terminal=config.show_progress,
    ), store)
    eval_id = run.run_id
    stored_select = store.read("stage_stats", where=f"run_id = {sql_literal(eval_id)} AND batch = '{SELECT_BATCH}'",
                               columns=["n_in"]).column("n_in").to_pylist()
    if stored_select != [select_stats.n_in]:  # new, or another --limit: the selection counts as now
        run.write(SELECT_BATCH, {}, selected.stats)
    chat = AdaptedVlmChat(config.vlm())
    gpu = config.runtime.on_gpu()  # answering takes a `tag:gpu` slot on a GPU worker
    judge = CaptionJudge(config.judge) if config.judge is not None else None
    generated = 0

    def answer(batch: Batch) -> Output:
        nonlocal generated
        asked = rows[batch.indices.start:min(batch.indices.stop, len(rows))]
        answered = batch.step(generate_answers, gpu)(chat, config.db, pinned, asked, config.data.layout, eval_id,
                                                     config.data.boxes(), config.prompting)
        predictions, stats = answered.value, list(answered.stats)
        if judge is not None:
            judged = batch.step(judge_captions)(judge, predictions, asked)
            predictions, stats = judged.value, stats + judged.stats
        generated += len(predictions)
        return Output({"eval_predictions": predictions}, stats)

    run.execute(answer)
    scored = score_answers(config.db, eval_id, rows, model_id=config.base_model(), adapter=config.adapter_path(),
                           samples_version=pinned.samples_version, iou_threshold=config.iou_threshold)
    results = scored.rows
    run.write(RESULTS_BATCH, {"eval_results": results})
    _publish(eval_id, config, results, scored.unavailable)
    for r in results:
        if r.group == "all":
            logger.info("%s %s = %.4f (n=%d)", r.task, r.metric, r.value, r.n)
    if scored.unavailable:
        logger.warning("not computed: %s", unavailable_text(scored.unavailable))
    return run.finish(
        EvaluateSummary, eval_id=eval_id, model_id=config.base_model(), adapter=config.adapter_path(),
        samples_version=pinned.samples_version, n_samples=len(rows), n_generated=generated,
        metrics=results_table(results), unavailable=scored.unavailable,
    )
