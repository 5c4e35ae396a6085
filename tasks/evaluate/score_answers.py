"""Turn an evaluation's stored answers into metric rows (the ``score-answers`` task).

Metrics are always computed from the ``eval_predictions`` table, never from what one invocation
generated, so an evaluation resumed after a crash scores every answer, including those written
before the crash. Each task contributes its metrics over all its samples (group ``all``) and per
group: grounding per subset (single / double / mixed), MCQ per edit category.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import EvalResultRow, utc_now
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.evaluate.caption_metrics import caption_metrics
from pairsmith.tasks.evaluate.generate_answers import CAPTION_TASKS
from pairsmith.tasks.evaluate.grounding_metrics import grounding_metrics
from pairsmith.tasks.evaluate.mcq_metrics import McqItem, mcq_metrics

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


def _captions(samples: list[dict], answers: dict[str, dict]) -> list[Metric]:
    preds = {s["sample_id"]: answers[s["sample_id"]]["prediction"] for s in samples}
    refs = {s["sample_id"]: [s["answer"]] for s in samples}
    return [(ALL, name, value, len(samples)) for name, value in caption_metrics(preds, refs).items()]


@task(name="score-answers", cache_policy=NO_CACHE)
def score_answers(
    db: str, eval_id: str, samples: list[dict[str, Any]], *, model_id: str, adapter: str | None,
    samples_version: int, iou_threshold: float = 0.5,
) -> list[EvalResultRow]:
    """Metric rows for every task among ``samples`` that has stored answers under ``eval_id``."""
    store = open_store(db)
    stored = store.read("eval_predictions", where=f"eval_id = {sql_literal(eval_id)}",
                        columns=["sample_id", "prediction", "parsed"]).to_pylist()
    answers = {a["sample_id"]: a for a in stored}
    by_task: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        if s["sample_id"] in answers:
            by_task[s["task"]].append(s)
    rows: list[EvalResultRow] = []
    for task_name in sorted(by_task):
        members = by_task[task_name]
        if task_name == "grounding":
            values = _grounding(members, answers, iou_threshold)
        elif task_name == "med-mcq":
            values = _mcq(members, answers)
        elif task_name in CAPTION_TASKS:
            values = _captions(members, answers)
        else:
            continue
        rows += [EvalResultRow(
            result_id=stable_id(eval_id, task_name, group, metric), eval_id=eval_id, model_id=model_id,
            adapter=adapter, samples_version=samples_version, task=task_name, group=group, metric=metric,
            value=float(value), n=n, created_at=utc_now(),
        ) for group, metric, value, n in values]
    return rows
