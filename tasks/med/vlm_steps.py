"""MED's VLM stages: editability gate, edit planning, caption alignment, wrong MCQ options.

Each stage sends all of its batch's questions to the VLM at once (``VlmChat`` batches them into
``generate``/forward calls) and counts its verdicts. Closed questions are scored options, open
ones are parsed; an answer that cannot be used drops that item with a reason, never the batch.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.vlm_chat import OptionScores, VlmChat, VlmRequest
from pairsmith.models.failures import failure_reason
from pairsmith.tasks.med.item import MedItem, alive, drop_on_error, judge, keep_if
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
from pairsmith.tasks.stage import call_per_item, stage


class MedDecisions(BaseModel):
    """How strict the VLM's closed decisions are (log-likelihood margins, in nats)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    gate_margin: float = Field(0.0, description="keep a source if log p(yes) - log p(no) >= this")
    match_margin: float = Field(0.0, description="keep a pair if the difference matches the request by this margin")
    object_penalty: float = Field(0.5, ge=0.0, description="subtracted from Object's score: MED prefers other categories")


def yes_margin(scores: OptionScores) -> float:
    return scores.scores[0] - scores.scores[1]


def _choices() -> str:
    return ", ".join(CATEGORIES)


def _scores(vlm: VlmChat, stats: StageStats, items: list[MedItem], request, options: list[str]):
    """Option scores for each item (None where the VLM raised for it: that item is dropped as
    ``<stage>_error``, the others go on)."""
    return call_per_item(lambda part: vlm.score_options_batch([request(i) for i in part], [options] * len(part)),
                         items, drop_on_error(stats, vlm.config.model_id))


def _answers(vlm: VlmChat, stats: StageStats, items: list[MedItem], request) -> list[str | None]:
    """Free-text answers for each item, isolated per item as in ``_scores``."""
    return call_per_item(lambda part: vlm.generate_batch([request(i) for i in part]), items,
                         drop_on_error(stats, vlm.config.model_id))


@stage("gate")
def gate_sources(stats: StageStats, items: list[MedItem], vlm: VlmChat, decisions: MedDecisions) -> None:
    todo = alive(items)
    scores = _scores(vlm, stats, todo, lambda i: VlmRequest(
        (i.before_image(),), GATE_PROMPT.format(caption=plain_caption(i.ref.caption))), YES_NO)
    for item, s in zip(todo, scores):
        if s is not None:
            judge(stats, item, keep_if(yes_margin(s) >= decisions.gate_margin, "gate_not_editable"))


@stage("edit_plan")
def plan_edits(stats: StageStats, items: list[MedItem], vlm: VlmChat, decisions: MedDecisions) -> None:
    """Pick a category (scored, Object penalised) and have the VLM write the edit action."""
    scored = _scores(vlm, stats, alive(items), lambda i: VlmRequest(
        (i.before_image(),), CATEGORY_PROMPT.format(caption=plain_caption(i.ref.caption), choices=_choices())),
        list(CATEGORIES))
    todo = []
    for item, s in zip(alive(items), scored):
        if s is None:
            continue
        adjusted = [v - (decisions.object_penalty if c == "Object" else 0.0) for c, v in zip(CATEGORIES, s.scores)]
        item.category = CATEGORIES[max(range(len(adjusted)), key=adjusted.__getitem__)]
        todo.append(item)
    answers = _answers(vlm, stats, todo, lambda i: VlmRequest((i.before_image(),), ACTION_PROMPT.format(
        caption=plain_caption(i.ref.caption), category=i.category, hint=CATEGORY_HINTS[i.category])))
    for item, answer in zip(todo, answers):
        if answer is None:
            continue
        item.action = parse_action(answer)
        if item.action:
            item.edit_instruction = EDIT_REQUEST.format(caption=plain_caption(item.ref.caption), action=item.action)
        judge(stats, item, keep_if(item.action is not None, "plan_unparseable_action"), detail=answer[:200])


@stage("caption_align")
def align_captions(stats: StageStats, items: list[MedItem], vlm: VlmChat, decisions: MedDecisions) -> None:
    """Complete the caption, caption the edit, state the difference and its category, check the match."""
    todo = alive(items)

    def ask(part: list[MedItem]) -> list[tuple[str, str, str]]:
        """Three questions per item (complete the caption, caption the edit, the difference), one batch."""
        n = len(part)
        out = vlm.generate_batch(
            [VlmRequest((i.before_image(),), COMPLETE_CAPTION_PROMPT.format(caption=plain_caption(i.ref.caption)))
             for i in part]
            + [VlmRequest((i.after_image(),), EDITED_CAPTION_PROMPT) for i in part]
            + [VlmRequest((i.before_image(), i.after_image()), DIFFERENCE_PROMPT) for i in part]
        )
        return [(out[k], out[n + k], out[2 * n + k]) for k in range(n)]

    answers = call_per_item(ask, todo, drop_on_error(stats, vlm.config.model_id))
    parsed = []
    for item, answer in zip(todo, answers):
        if answer is None:
            continue
        before, after, difference = answer
        item.caption_before = parse_sentence(before, min_words=3)
        item.caption_after = parse_sentence(after, min_words=3)
        item.difference = parse_difference(difference)
        if item.caption_before and item.caption_after and item.difference:
            parsed.append(item)
        else:
            missing = [name for name, v in (("caption", item.caption_before), ("edited caption", item.caption_after),
                                            ("difference", item.difference)) if not v]
            judge(stats, item, keep_if(False, "align_unparseable"), detail="no usable " + ", ".join(missing))
    if not parsed:
        return
    categories = _scores(vlm, stats, parsed, lambda i: VlmRequest(
        (i.before_image(), i.after_image()), DIFFERENCE_CATEGORY_PROMPT.format(difference=i.difference,
                                                                               choices=_choices())),
        list(CATEGORIES))
    matches = _scores(vlm, stats, parsed, lambda i: VlmRequest(
        (i.before_image(), i.after_image()), MATCH_PROMPT.format(action=i.action, difference=i.difference)), YES_NO)
    for item, cat, match in zip(parsed, categories, matches):
        if cat is None or match is None or not item.alive:
            continue
        item.difference_category = CATEGORIES[cat.best]
        judge(stats, item, keep_if(yes_margin(match) >= decisions.match_margin, "align_mismatch"))


@stage("mcq")
def write_mcq_options(stats: StageStats, items: list[MedItem], vlm: VlmChat) -> None:
    """Three subtly wrong options per pair; a pair whose answer cannot be parsed gets no MCQ."""
    todo = alive(items)
    answers = call_per_item(
        lambda part: vlm.generate_batch([VlmRequest((), DISTRACTOR_PROMPT.format(difference=i.difference))
                                         for i in part]),
        todo, lambda item, err: stats.record(Verdict.drop(failure_reason("mcq", err))))
    for item, answer in zip(todo, answers):
        if answer is None:
            continue  # counted by the error callback; the pair stays kept, without its MCQ
        item.wrong_options = parse_distractors(answer, item.difference)
        # An MCQ failure costs the pair its MCQ only: counted here, the pair stays kept.
        stats.record(KEEP if item.wrong_options else keep_if(False, "mcq_unparseable"))
