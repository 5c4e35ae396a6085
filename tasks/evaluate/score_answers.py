"""Turn an evaluation's stored answers into metric rows (the ``score-answers`` task).

Metrics are always computed from the ``eval_predictions`` table, never from what one invocation
generated, so an evaluation resumed after a crash scores every answer, including those written
before the crash. Each task contributes its metrics over all its samples (group ``all``) and per
group: grounding per subset (single / double / mixed), MCQ per edit category. When samples carry a
``dataset`` (imported public sets), each task's metrics are also given per data source, as groups
``dataset:<name>`` (``pairsmith.tasks.training.training_mix.data_source``: the dataset, else the
pipeline that made the sample), each benchmark scored on its own (CIDEr's document frequencies
included).

Captions get BLEU-4, METEOR, ROUGE-L, CIDEr-D and SPICE (``caption_metrics``; metrics that cannot run are
returned as unavailable with the reason) and, where an LLM judge scored them (``judge-captions``),
``llm_judge``: the mean 0–100 score over the answers whose verdict could be read (n = those), and
``llm_judge_unparseable``: how many judged answers stated no readable score (n = all judged).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.tasks.answers.answer_text import final_answer
from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import EvalResultRow, utc_now
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.evaluate.caption_metrics import caption_metrics
from pairsmith.tasks.evaluate.generate_answers import CAPTION_TASKS, references_of
from pairsmith.tasks.evaluate.grounding_metrics import grounding_metrics
from pairsmith.tasks.evaluate.mcq_metrics import McqItem, mcq_metrics
from pairsmith.tasks.training.training_mix import data_source

ALL = "all"
THRESHOLDED = {"precision", "recall", "f1", "mean_iou"}
Metric = tuple[str, str, float, int]  # group, metric, value, n


def _grounding(samples: list[dict], answers: dict[str, dict], iou_threshold: float) -> list[Metric]:
    by_group: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        by_group[ALL].append(s)
        if s["subset"]:
            by_group[s["subset"]].append(s)
    # Metrics that depend on the match threshold say so when it is not the usual 0.5 ("f1@0.3").
    suffix = "" if iou_threshold == 0.5 else f"@{iou_threshold:g}"
    out = []
    for group, members in by_group.items():
        preds = [json.loads(answers[s["sample_id"]]["parsed"] or "null") for s in members]
        metrics = grounding_metrics(preds, [s["boxes"] or [] for s in members], iou_threshold)
        out += [(group, name + (suffix if name in THRESHOLDED else ""), value, metrics.n)
                for name, value in metrics.as_dict().items()]
    return out


def _mcq(samples: list[dict], answers: dict[str, dict]) -> list[Metric]:
    items = [McqItem(answers[s["sample_id"]]["prediction"], s["answer"], s.get("options"), s["category"])
             for s in samples]
    return mcq_metrics(items).rows()


def _captions(samples: list[dict], answers: dict[str, dict], unavailable: dict[str, str]) -> list[Metric]:
    preds = {s["sample_id"]: (final_answer(answers[s["sample_id"]]["prediction"]) or "").strip() for s in samples}
    refs = {s["sample_id"]: references_of(s) for s in samples}
    scores = caption_metrics(preds, refs)
    unavailable.update(scores.unavailable)
    out = [(ALL, name, value, len(samples)) for name, value in scores.values.items()]
    judged = [answers[s["sample_id"]] for s in samples if answers[s["sample_id"]].get("judge_answer") is not None]
    read = [a["judge_score"] for a in judged if a["judge_score"] is not None]
    if read:
        out.append((ALL, "llm_judge", sum(read) / len(read), len(read)))
    if judged:
        out.append((ALL, "llm_judge_unparseable", float(len(judged) - len(read)), len(judged)))
    return out


def _task_metrics(task_name: str, members: list[dict], answers: dict[str, dict], iou_threshold: float,
                  unavailable: dict[str, str]) -> list[Metric]:
    if task_name == "grounding":
        return _grounding(members, answers, iou_threshold)
    if task_name == "med-mcq":
        return _mcq(members, answers)
    if task_name in CAPTION_TASKS:
        return _captions(members, answers, unavailable)
    return []


def _per_dataset(task_name: str, members: list[dict], answers: dict[str, dict], iou_threshold: float,
                 unavailable: dict[str, str]) -> list[Metric]:
    """The task's overall metrics per data source, as ``dataset:<name>`` groups, when any sample has a dataset."""
    if not any(s.get("dataset") for s in members):
        return []
    by_source: dict[str, list[dict]] = defaultdict(list)
    for s in members:
        by_source[data_source(s)].append(s)
    return [(f"dataset:{source}", metric, value, n)
            for source in sorted(by_source)
            for group, metric, value, n in _task_metrics(task_name, by_source[source], answers, iou_threshold,
                                                         unavailable)
            if group == ALL]


@dataclass
class ScoredAnswers:
    rows: list[EvalResultRow]
    unavailable: dict[str, str] = field(default_factory=dict)  # metric -> why it was not computed


@task(name="score-answers", cache_policy=NO_CACHE)
def score_answers(
    db: str, eval_id: str, samples: list[dict[str, Any]], *, model_id: str, adapter: str | None,
    samples_version: int, iou_threshold: float = 0.5,
) -> ScoredAnswers:
    """Metric rows for every task among ``samples`` that has stored answers under ``eval_id``, and
    the metrics that could not be computed (METEOR without Java, SPICE) with the reason."""
    store = open_store(db)
    # a sample the model failed on (reason set, message in drop_detail) has no answer to score
    stored = store.read("eval_predictions", where=f"eval_id = {sql_literal(eval_id)} AND reason IS NULL",
                        columns=["sample_id", "prediction", "parsed", "judge_answer", "judge_score"]).to_pylist()
    answers = {a["sample_id"]: a for a in stored}
    by_task: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        if s["sample_id"] in answers:
            by_task[s["task"]].append(s)
    rows: list[EvalResultRow] = []
    unavailable: dict[str, str] = {}
    for task_name in sorted(by_task):
        members = by_task[task_name]
        values = _task_metrics(task_name, members, answers, iou_threshold, unavailable)
        values += _per_dataset(task_name, members, answers, iou_threshold, unavailable)
        rows += [EvalResultRow(
            result_id=stable_id(eval_id, task_name, group, metric), eval_id=eval_id, model_id=model_id,
            adapter=adapter, samples_version=samples_version, task=task_name, group=group, metric=metric,
            value=float(value), n=n, created_at=utc_now(),
        ) for group, metric, value, n in values]
    return ScoredAnswers(rows, unavailable)
