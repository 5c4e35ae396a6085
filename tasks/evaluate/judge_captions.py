"""Have an LLM judge score one batch of caption answers against their references (``judge-captions``).

Each caption prediction gets the judge's raw answer and, when ``parse_judge_answer`` can read one,
its 0–100 score and justification, stored on the prediction row in the same commit as the answer,
so a resumed evaluation never asks (or pays) the judge twice. Verdicts: kept when a score was read,
``judge_unparseable`` when the answer states no single score in 0–100 (counted, never guessed),
``judge_error`` when the judge could not answer (the model raised, Gemini failed after its retries).
A rejected Gemini key stops the run.
"""

from __future__ import annotations

from typing import Any

from pairsmith.tasks.answers.judge_answer import parse_judge_answer
from pairsmith.models.failures import failure_reason
from pairsmith.models.adapters.caption_judge import CaptionJudge
from pairsmith.models.adapters.gemini_editor import GeminiAuthError
from pairsmith.storage.schemas import EvalPredictionRow
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.evaluate.generate_answers import CAPTION_TASKS, references_of
from pairsmith.tasks.stage import call_per_item, stage

STAGE = "judge-captions"


def reference_text(references: list[str]) -> str:
    """Several reference sentences (one per annotator or per difference) as one list for the judge."""
    refs = [r.strip() for r in references if r.strip()]
    return refs[0] if len(refs) == 1 else "\n".join(f"- {r}" for r in refs)


@stage(STAGE)
def judge_captions(
    stats: StageStats, judge: CaptionJudge, predictions: list[EvalPredictionRow], rows: list[dict[str, Any]],
) -> list[EvalPredictionRow]:
    """``predictions`` with the judge's answer, score and justification on every caption answer."""
    refs = {r["sample_id"]: reference_text(references_of(r)) for r in rows}
    captions = [p for p in predictions if p.task in CAPTION_TASKS and p.reason is None]  # answered ones
    failed: dict[str, str] = {}

    def on_error(prediction: EvalPredictionRow, err: Exception) -> None:
        if isinstance(err, GeminiAuthError):
            raise err
        stats.record(Verdict.drop(failure_reason("judge", err)))  # judge_error (transient) / judge_rejected
        failed[prediction.prediction_id] = f"judge {judge.config.model_id}: {type(err).__name__}: " + \
            " ".join(str(err).split())[:500]

    replies = call_per_item(lambda part: judge.judge_batch([(refs[p.sample_id], p.prediction) for p in part]),
                            captions, on_error)
    judged = {}
    for prediction, reply in zip(captions, replies):
        if reply is None:
            continue
        if reply.answer is None:
            stats.record(Verdict.drop("judge_error" if reply.transient else "judge_rejected"))
            failed[prediction.prediction_id] = f"judge {judge.config.model_id}: {reply.error}"
            continue
        verdict = parse_judge_answer(reply.answer)
        stats.record(KEEP if verdict else Verdict.drop("judge_unparseable"))
        judged[prediction.prediction_id] = prediction.model_copy(update={
            "judge_answer": reply.answer, "judge_score": verdict.score if verdict else None,
            "judge_justification": verdict.justification if verdict else None,
        })
    for key, detail in failed.items():
        judged[key] = next(p for p in captions if p.prediction_id == key).model_copy(update={"drop_detail": detail})
    return [judged.get(p.prediction_id, p) for p in predictions]
