"""Ask the evaluated model one batch of samples and read its answers (the ``parse-answers`` stage).

Each answer is stored with what its task's parser read from it: the box list for grounding, the
chosen letter for multiple choice, the text itself for captions. An answer the parser cannot read
is stored too, with ``parsed`` null, and counted under a ``parse_`` reason: it scores as wrong,
never as a crash and never as a guess.

Grounding prompts are asked in the selection's box format (``storage/box_format.py``: pixels,
0-1000, or pixels after the processor's resize), and the boxes read from an answer are converted
back to pixels of the original before image before they are stored, so scores compare like with like.
"""

from __future__ import annotations

import json
from typing import Any

from pairsmith.tasks.answers.answer_text import final_answer
from pairsmith.tasks.answers.grounding_reward import parse_boxes
from pairsmith.tasks.answers.mcq_answer import parse_choice
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.failures import failure_reason
from pairsmith.models.adapters.vlm_chat import VlmChat, VlmRequest
from pairsmith.storage.box_format import BOX_TASKS, BoxFormat
from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import EvalPredictionRow, utc_now
from pairsmith.tasks.evaluate.cocot import Prompting, cocot_context, cocot_first, cocot_second
from pairsmith.tasks.stage import call_per_item, stage
from pairsmith.tasks.training.training_data import Layout, PairImages, PinnedTables, in_box_format, prompt_text
from pairsmith.tasks.training.training_mix import data_source

CAPTION_TASKS = ("diff-caption", "med-diff-qa")
SCORED_TASKS = ("grounding", "med-mcq", *CAPTION_TASKS)
STAGE = "parse-answers"


def ask_once_per_pair(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Caption samples of one pair, task and data source merged into the first (by sample id), which
    carries every sample's answer as its ``references``: an imported set stores one sample per
    reference sentence (Spot-the-Diff, CLEVR-Change), and its pair is asked once and scored against
    all of them, as those benchmarks are. Other samples pass unchanged."""
    first: dict[tuple[str, str, str], dict[str, Any]] = {}
    out = []
    for row in rows:
        if row["task"] not in CAPTION_TASKS:
            out.append(row)
            continue
        key = (row["task"], row["pair_id"], data_source(row))
        if key in first:
            first[key]["references"].append(row["answer"])
            continue
        first[key] = {**row, "references": [row["answer"]]}
        out.append(first[key])
    return out


def references_of(row: dict[str, Any]) -> list[str]:
    """The reference captions of a caption sample: all of its pair's, once merged."""
    return row.get("references") or [row["answer"]]


def _one_line(err: BaseException, limit: int = 500) -> str:
    return " ".join(str(err).split())[:limit]


def read_answer(task: str, prediction: str, options: list[str] | None) -> tuple[Any, Verdict]:
    """What the task's parser reads from an answer (None if nothing), and the verdict on it."""
    if task == "grounding":
        boxes = parse_boxes(prediction)
        return boxes, KEEP if boxes is not None else Verdict.drop("parse_no_box_list")
    if task == "med-mcq":
        letter = parse_choice(prediction, options)
        return letter, KEEP if letter is not None else Verdict.drop("parse_no_single_choice")
    if task in CAPTION_TASKS:
        final = final_answer(prediction)
        if final is None:
            return None, Verdict.drop("parse_unfinished_think")
        text = final.strip()
        return text, KEEP if text else Verdict.drop("parse_empty_caption")
    raise ValueError(f"task {task!r} has no answer parser; scored tasks are {', '.join(SCORED_TASKS)}")


@stage(STAGE)
def generate_answers(
    stats: StageStats, chat: VlmChat, db: str, pinned: PinnedTables, rows: list[dict[str, Any]], layout: Layout,
    eval_id: str, box: BoxFormat | None = None, prompting: Prompting = "direct",
) -> list[EvalPredictionRow]:
    """One stored prediction per sample: the answer and what was read from it, or, for a sample the
    model raised for, an empty prediction with its ``reason`` and the message in ``drop_detail``:
    ``generate_error`` when the error is transient (a timeout, memory: its batch is asked again by the
    next run) or ``generate_rejected`` when it will repeat (the processor refuses the sample: final,
    ``pairsmith.models.failures``). A model that cannot load raises ``ModelUnavailable`` instead.
    ``prompting: cocot`` asks CoCoT's instruction first and the question with its answer as context
    (``pairsmith.tasks.evaluate.cocot``, Img-Diff supp. §12); the first answer is stored as ``context``."""
    box = box or BoxFormat()
    images = PairImages(db, pinned.pairs_version)
    shown: dict[str, tuple[int, int]] = {}  # sample id -> (width, height) of the first picture shown

    def request(row: dict[str, Any]) -> VlmRequest:
        pictures = images.for_layout(row["pair_id"], layout)
        conversation, boxes_asked = row["conversation"], row["task"] in BOX_TASKS
        if boxes_asked:
            conversation, _ = in_box_format(conversation, row.get("boxes") or [], box, pictures,
                                            images.get(row["pair_id"])[0].size)
        shown[row["sample_id"]] = pictures[0].size
        return VlmRequest(tuple(pictures), prompt_text(conversation, layout, boxes_asked))

    failures: dict[str, tuple[str, str]] = {}

    def failed(row: dict[str, Any], err: Exception) -> None:
        reason = failure_reason("generate", err)
        failures[row["sample_id"]] = (reason, f"{chat.config.model_id}: {type(err).__name__}: {_one_line(err)}")
        stats.record(Verdict.drop(reason))

    contexts: dict[str, str] = {}  # sample id -> the model's CoCoT answer

    def ask(part: list[dict[str, Any]]) -> list[str]:
        requests = [request(r) for r in part]
        if prompting == "cocot":
            differences = [cocot_context(a) for a in chat.generate_batch([cocot_first(q) for q in requests])]
            contexts.update((r["sample_id"], d) for r, d in zip(part, differences))
            requests = [cocot_second(q, d) for q, d in zip(requests, differences)]
        return chat.generate_batch(requests)

    answers = call_per_item(ask, rows, failed)
    out = []
    for row, answer in zip(rows, answers):
        if answer is None:
            if row["sample_id"] in failures:
                reason, detail = failures[row["sample_id"]]
                out.append(EvalPredictionRow(
                    prediction_id=stable_id(eval_id, row["sample_id"]), eval_id=eval_id, sample_id=row["sample_id"],
                    pair_id=row["pair_id"], task=row["task"], subset=row["subset"], category=row["category"],
                    split=row["split"], prediction="", reason=reason, drop_detail=detail, created_at=utc_now()))
            continue
        parsed, verdict = read_answer(row["task"], answer, row.get("options"))
        if row["task"] in BOX_TASKS and parsed is not None:
            parsed = box.to_pixels(parsed, *shown[row["sample_id"]])
        stats.record(verdict)
        out.append(EvalPredictionRow(
            prediction_id=stable_id(eval_id, row["sample_id"]), eval_id=eval_id, sample_id=row["sample_id"],
            pair_id=row["pair_id"], task=row["task"], subset=row["subset"], category=row["category"],
            split=row["split"], prediction=answer, parsed=json.dumps(parsed) if parsed is not None else None,
            context=contexts.get(row["sample_id"]), created_at=utc_now(),
        ))
    return out
