"""MED's VLM stages: editability gate, edit planning, caption alignment, wrong MCQ options.

Each stage sends all of its batch's questions to the VLM at once (``VlmChat`` batches them into
``generate``/forward calls) and counts its verdicts. Closed questions are scored options, open
ones are parsed; an answer that cannot be used drops that item with a reason, never the batch.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.models.vlm_chat import OptionScores, VlmChat, VlmRequest
from pairsmith.tasks.med.item import MedItem, alive, judge, keep_if
from pairsmith.tasks.med.prompts import (
    ACTION_PROMPT,
    CATEGORIES,
    CATEGORY_HINTS,
    CATEGORY_PROMPT,
    COMPLETE_CAPTION_PROMPT,
    DIFFERENCE_CATEGORY_PROMPT,
    DIFFERENCE_PROMPT,
    DISTRACTOR_PROMPT,
    EDIT_REQUEST,
    EDITED_CAPTION_PROMPT,
    GATE_PROMPT,
    MATCH_PROMPT,
    YES_NO,
    parse_action,
    parse_difference,
    parse_distractors,
    parse_sentence,
    plain_caption,
)


class MedDecisions(BaseModel):
    """How strict the VLM's closed decisions are (log-likelihood margins, in nats)."""

    model_config = ConfigDict(extra="forbid")

    gate_margin: float = Field(0.0, description="keep a source if log p(yes) - log p(no) >= this")
    match_margin: float = Field(0.0, description="keep a pair if the difference matches the request by this margin")
    object_penalty: float = Field(0.5, ge=0.0, description="subtracted from Object's score: MED prefers other categories")


def yes_margin(scores: OptionScores) -> float:
    return scores.scores[0] - scores.scores[1]


def _choices() -> str:
    return ", ".join(CATEGORIES)


@task(name="gate-sources", cache_policy=NO_CACHE)
def gate_sources(items: list[MedItem], vlm: VlmChat, decisions: MedDecisions) -> StageStats:
    stats, start = StageStats("gate"), time.perf_counter()
    todo = alive(items)
    scores = vlm.score_options_batch(
        [VlmRequest((i.before_image(),), GATE_PROMPT.format(caption=plain_caption(i.ref.caption))) for i in todo],
        [YES_NO] * len(todo),
    ) if todo else []
    for item, s in zip(todo, scores):
        judge(stats, item, keep_if(yes_margin(s) >= decisions.gate_margin, "gate_not_editable"))
    stats.seconds = time.perf_counter() - start
    return stats


@task(name="plan-edits", cache_policy=NO_CACHE)
def plan_edits(items: list[MedItem], vlm: VlmChat, decisions: MedDecisions) -> StageStats:
    """Pick a category (scored, Object penalised) and have the VLM write the edit action."""
    stats, start = StageStats("plan"), time.perf_counter()
    todo = alive(items)
    if todo:
        scored = vlm.score_options_batch(
            [VlmRequest((i.before_image(),), CATEGORY_PROMPT.format(caption=plain_caption(i.ref.caption),
                                                                     choices=_choices())) for i in todo],
            [list(CATEGORIES)] * len(todo),
        )
        for item, s in zip(todo, scored):
            adjusted = [v - (decisions.object_penalty if c == "Object" else 0.0) for c, v in zip(CATEGORIES, s.scores)]
            item.category = CATEGORIES[max(range(len(adjusted)), key=adjusted.__getitem__)]
        answers = vlm.generate_batch([
            VlmRequest((i.before_image(),), ACTION_PROMPT.format(
                caption=plain_caption(i.ref.caption), category=i.category, hint=CATEGORY_HINTS[i.category]))
            for i in todo
        ])
        for item, answer in zip(todo, answers):
            item.action = parse_action(answer)
            if item.action:
                item.edit_instruction = EDIT_REQUEST.format(caption=plain_caption(item.ref.caption), action=item.action)
            judge(stats, item, keep_if(item.action is not None, "plan_unparseable_action"), detail=answer[:200])
    stats.seconds = time.perf_counter() - start
    return stats


@task(name="align-captions", cache_policy=NO_CACHE)
def align_captions(items: list[MedItem], vlm: VlmChat, decisions: MedDecisions) -> StageStats:
    """Complete the caption, caption the edit, state the difference and its category, check the match."""
    stats, start = StageStats("align"), time.perf_counter()
    todo = alive(items)
    if not todo:
        return stats
    n = len(todo)
    answers = vlm.generate_batch(
        [VlmRequest((i.before_image(),), COMPLETE_CAPTION_PROMPT.format(caption=plain_caption(i.ref.caption)))
         for i in todo]
        + [VlmRequest((i.after_image(),), EDITED_CAPTION_PROMPT) for i in todo]
        + [VlmRequest((i.before_image(), i.after_image()), DIFFERENCE_PROMPT) for i in todo]
    )
    parsed = []
    for k, item in enumerate(todo):
        item.caption_before = parse_sentence(answers[k], min_words=3)
        item.caption_after = parse_sentence(answers[n + k], min_words=3)
        item.difference = parse_difference(answers[2 * n + k])
        if item.caption_before and item.caption_after and item.difference:
            parsed.append(item)
        else:
            missing = [name for name, v in (("caption", item.caption_before), ("edited caption", item.caption_after),
                                            ("difference", item.difference)) if not v]
            judge(stats, item, keep_if(False, "align_unparseable"), detail="no usable " + ", ".join(missing))
    if parsed:
        pair_images = [(i.before_image(), i.after_image()) for i in parsed]
        categories = vlm.score_options_batch(
            [VlmRequest(imgs, DIFFERENCE_CATEGORY_PROMPT.format(difference=i.difference, choices=_choices()))
             for imgs, i in zip(pair_images, parsed)],
            [list(CATEGORIES)] * len(parsed),
        )
        matches = vlm.score_options_batch(
            [VlmRequest(imgs, MATCH_PROMPT.format(action=i.action, difference=i.difference))
             for imgs, i in zip(pair_images, parsed)],
            [YES_NO] * len(parsed),
        )
        for item, cat, match in zip(parsed, categories, matches):
            item.difference_category = CATEGORIES[cat.best]
            judge(stats, item, keep_if(yes_margin(match) >= decisions.match_margin, "align_mismatch"))
    stats.seconds = time.perf_counter() - start
    return stats


@task(name="write-mcq-options", cache_policy=NO_CACHE)
def write_mcq_options(items: list[MedItem], vlm: VlmChat) -> StageStats:
    """Three subtly wrong options per pair; a pair whose answer cannot be parsed gets no MCQ."""
    stats, start = StageStats("mcq"), time.perf_counter()
    todo = alive(items)
    answers = vlm.generate_batch(
        [VlmRequest((), DISTRACTOR_PROMPT.format(difference=i.difference)) for i in todo]
    ) if todo else []
    for item, answer in zip(todo, answers):
        item.wrong_options = parse_distractors(answer, item.difference)
        # An MCQ failure costs the pair its MCQ only: counted here, the pair stays kept.
        stats.record(KEEP if item.wrong_options else keep_if(False, "mcq_unparseable"))
    stats.seconds = time.perf_counter() - start
    return stats
