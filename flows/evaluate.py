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

import time

from prefect import flow, get_run_logger
from pydantic import BaseModel, Field

from pairsmith.flows.evaluate_config import FLOW_NAME, EvaluateConfig
from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.progress import RunProgress
from pairsmith.flows.engine.run_outcome import batches_with_errors
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.models.adapted_vlm_chat import AdaptedVlmChat
from pairsmith.models.caption_judge import CaptionJudge
from pairsmith.storage.store import open_store
from pairsmith.tasks.evaluate.generate_answers import ask_once_per_pair, generate_answers
from pairsmith.tasks.evaluate.judge_captions import judge_captions
from pairsmith.tasks.evaluate.score_answers import score_answers
from pairsmith.tasks.training.training_data import pin_tables, select_samples_task
from pairsmith.tasks.write_batch import write_batch

RESULTS_ARTIFACT_KEY = "eval-results"
SELECT_BATCH = "select"


class EvaluateSummary(BaseModel):
    eval_id: str
    model_id: str
    adapter: str | None
    samples_version: int
    n_samples: int
    n_generated: int
    batches: int
    batches_resumed: int
    metrics: list[dict]
    unavailable: dict[str, str] = Field(default_factory=dict, description="metric -> why it was not computed")
    seconds: float


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
    start = time.perf_counter()
    logger = get_run_logger()
    store = open_store(config.db)
    store.check_reachable()
    pinned = pin_tables(store, config.data, tag_as=FLOW_NAME if config.tag_data else None)
    eval_id = config.eval_id(pinned)
    selected = batch_step(select_samples_task, SELECT_BATCH)(config.db, pinned, config.data)
    rows, [select_stats] = ask_once_per_pair(selected.value.rows), selected.stats
    if not rows:
        raise ValueError(f"no samples to evaluate for {config.data.where()} in {config.db!r} at samples version "
                         f"{pinned.samples_version} ({select_stats.n_dropped} dropped: "
                         f"{dict(select_stats.reasons) or 'none'})")
    done = store.completed_batches(eval_id) - batches_with_errors(store, eval_id)  # answers that raised: asked again
    if SELECT_BATCH not in done:
        batch_step(write_batch, SELECT_BATCH)(config.db, eval_id, FLOW_NAME, SELECT_BATCH, {}, selected.stats)
    spans = [(s, min(s + config.batch_size, len(rows))) for s in range(0, len(rows), config.batch_size)]
    pending = [span for span in spans if batch_name(range(*span)) not in done]
    if len(pending) < len(spans):
        logger.info("evaluation %s: %d of %d batches already stored, resuming", eval_id, len(spans) - len(pending),
                    len(spans))
    chat = AdaptedVlmChat(config.vlm())
    gpu = config.runtime.on_gpu()  # answering takes a `tag:gpu` slot on a GPU worker
    judge = CaptionJudge(config.judge) if config.judge is not None else None
    generated = 0
    with RunProgress(key=f"{FLOW_NAME}-progress", total=len(rows),
                     done=sum(b - a for a, b in spans) - sum(b - a for a, b in pending),
                     description="answering samples", terminal=config.show_progress) as progress:
        for a, b in pending:
            name = batch_name(range(a, b))
            answered = batch_step(generate_answers, name, gpu)(chat, config.db, pinned, rows[a:b], config.data.layout,
                                                          eval_id, config.data.boxes())
            predictions, stats = answered.value, list(answered.stats)
            if judge is not None:
                judged = batch_step(judge_captions, name)(judge, predictions, rows[a:b])
                predictions, stats = judged.value, stats + judged.stats
            batch_step(write_batch, name)(
                config.db, eval_id, FLOW_NAME, name, {"eval_predictions": predictions}, stats)
            generated += len(predictions)
            progress.advance(len(predictions))
            progress.flush()
    scored = score_answers(config.db, eval_id, rows, model_id=config.base_model(), adapter=config.adapter_path(),
                           samples_version=pinned.samples_version, iou_threshold=config.iou_threshold)
    results = scored.rows
    store.upsert("eval_results", results)
    _publish(eval_id, config, results, scored.unavailable)
    publish_dropoff(eval_id, run_funnel(store, eval_id))
    for r in results:
        if r.group == "all":
            logger.info("%s %s = %.4f (n=%d)", r.task, r.metric, r.value, r.n)
    if scored.unavailable:
        logger.warning("not computed: %s", unavailable_text(scored.unavailable))
    return EvaluateSummary(
        eval_id=eval_id, model_id=config.base_model(), adapter=config.adapter_path(),
        samples_version=pinned.samples_version,
        n_samples=len(rows), n_generated=generated, batches=len(spans), batches_resumed=len(spans) - len(pending),
        metrics=results_table(results), unavailable=scored.unavailable, seconds=round(time.perf_counter() - start, 3),
    )
