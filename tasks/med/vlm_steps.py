"""MED's model steps as the paper runs them (§3.1-3.2, Appendix Figs. 7-14), one stage each.

In pipeline order, each asking its figure's prompt (``pairsmith.tasks.med.prompts``) of its role's model:

========================  ========  ==========================================================
stage                     role      what it keeps
========================  ========  ==========================================================
``med-filter``            MLLM      Fig. 7: a strict "Yes" only (§3.1); "No" is ``med_filter_no``
``med-request``           MLLM      Fig. 8: a category of the 11 and an edit prompt in the
                                    figure's structure ("Hi, This is a photo of ...")
(``edit``, ``similarity``)          Gemini edit, CLIP cosine (``edit_images``, ``score_similarity``)
``med-complete``          MLLM      Fig. 9: the complete original caption (step 1; "NO UPDATE"
                                    keeps the source caption), given image, caption, edit prompt
``med-caption``           MLLM      Fig. 10: the edited image's caption ("CAPTION:"), given the
                                    complete caption and the key aspect (the request's category)
``med-difference``        LLM       Fig. 11: "TYPE:...\\nDIFFERENCE:..." from the two captions
``med-judge-1``           MLLM      Fig. 12: the difference matches the edit prompt ("Yes")
``med-judge-2``           MLLM      Fig. 13: the difference matches the second description
                                    (the edited image's caption) ("Yes")
``med-rewrite``           LLM       Fig. 14: "IMPROVED_DESCRIPTION:", the SFT answer
========================  ========  ==========================================================

Captions are kept whole (every sentence). A reply that does not fit its figure's format drops that
item with the parser's reason (``pairsmith.tasks.med.prompts.Unparsed``), a model error with
``<stage>_error`` / ``<stage>_rejected``; never the batch. The judges are given the texts their
figures name and no image (the figures' prompts compare texts only).
"""

from __future__ import annotations

from collections.abc import Callable

from pairsmith.models.adapters.role_chat import RoleChat
from pairsmith.models.adapters.vlm_chat import VlmRequest
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.med import prompts as P
from pairsmith.tasks.med.item import MedItem, alive, drop_on_error, judge
from pairsmith.tasks.stage import call_per_item, stage


def ask(role: RoleChat, stats: StageStats, items: list[MedItem],
        request: Callable[[MedItem], VlmRequest]) -> list[str | None]:
    """One answer per item (None where the model failed for it: that item is dropped with
    ``<stage>_error`` or ``<stage>_rejected``, the others go on)."""
    on_error = drop_on_error(stats, role.model_id)
    answers = call_per_item(lambda part: role.ask_batch([request(i) for i in part]), items, on_error)
    out: list[str | None] = []
    for item, answer in zip(items, answers):
        if isinstance(answer, Exception):
            on_error(item, answer)
            answer = None
        out.append(answer)
    return out


def run_step(stats: StageStats, role: RoleChat, items: list[MedItem], request: Callable[[MedItem], VlmRequest],
             read: Callable[[MedItem, str], str | None]) -> None:
    """Ask every live item's question, then ``read(item, answer)``: it stores what it parsed and returns
    None to keep the item or a reason to drop it; an ``Unparsed`` it raises drops it with its reason."""
    todo = alive(items)
    for item, answer in zip(todo, ask(role, stats, todo, request)):
        if answer is None:
            continue
        try:
            reason = read(item, answer)
        except P.Unparsed as err:
            judge(stats, item, Verdict.drop(err.reason), detail=err.detail or answer[:300])
            continue
        judge(stats, item, KEEP if reason is None else Verdict.drop(reason),
              detail=None if reason is None else answer[:300])


def source_caption(item: MedItem) -> str:
    """The source's caption, whole, on one line."""
    return " ".join(item.ref.caption.split())


@stage("med-filter")
def med_filter(stats: StageStats, items: list[MedItem], mllm: RoleChat) -> None:
    """MED Fig. 7 / §3.1: keep a source only on a strict "Yes"."""
    run_step(stats, mllm, items, lambda i: VlmRequest((i.before_image(),), P.filter_prompt(source_caption(i))),
             lambda i, a: None if P.parse_filter(a) else "med_filter_no")


@stage("med-request")
def med_request(stats: StageStats, items: list[MedItem], mllm: RoleChat) -> None:
    """MED Fig. 8 / §3.1: the category (the prompt asks for one other than Object where one fits) and the
    edit prompt, sent to the editor verbatim."""

    def read(item: MedItem, answer: str) -> None:
        item.category, item.edit_instruction = P.parse_request(answer)
        item.action = item.edit_instruction

    run_step(stats, mllm, items, lambda i: VlmRequest((i.before_image(),), P.request_prompt(source_caption(i))), read)


@stage("med-complete")
def med_complete(stats: StageStats, items: list[MedItem], mllm: RoleChat) -> None:
    """MED Fig. 9 / §3.2 step 1: the original image, its caption and the edit prompt -> complete caption."""

    def read(item: MedItem, answer: str) -> None:
        item.caption_before = P.parse_completion(answer, source_caption(item))

    run_step(stats, mllm, items, lambda i: VlmRequest(
        (i.before_image(),), P.complete_prompt(source_caption(i), i.edit_instruction)), read)


@stage("med-caption")
def med_caption(stats: StageStats, items: list[MedItem], mllm: RoleChat) -> None:
    """MED Fig. 10 / §3.2 step 2: the edited image, the complete caption as reference and the request's
    category as the key aspect -> the edited image's caption."""

    def read(item: MedItem, answer: str) -> None:
        item.caption_after = P.parse_caption(answer)

    run_step(stats, mllm, items, lambda i: VlmRequest(
        (i.after_image(),), P.caption_prompt(i.caption_before, i.category)), read)


@stage("med-difference")
def med_difference(stats: StageStats, items: list[MedItem], llm: RoleChat) -> None:
    """MED Fig. 11 / §3.2 step 3 (a text-only LLM): the two captions -> the difference and its type."""

    def read(item: MedItem, answer: str) -> None:
        item.difference_category, item.difference = P.parse_difference(answer)

    run_step(stats, llm, items, lambda i: VlmRequest((), P.difference_prompt(i.caption_before, i.caption_after)),
             read)


@stage("med-judge-1")
def med_judge_1(stats: StageStats, items: list[MedItem], mllm: RoleChat) -> None:
    """MED Fig. 12: does the difference match the edit prompt? Only "Yes" keeps the pair."""
    run_step(stats, mllm, items, lambda i: VlmRequest((), P.judge_1_prompt(i.edit_instruction, i.difference)),
             lambda i, a: None if P.parse_yes_no(a, "med_judge_1") else "med_judge_1_no")


@stage("med-judge-2")
def med_judge_2(stats: StageStats, items: list[MedItem], mllm: RoleChat) -> None:
    """MED Fig. 13: does the difference match the second description (the edited image's caption)?"""
    run_step(stats, mllm, items, lambda i: VlmRequest((), P.judge_2_prompt(i.caption_after, i.difference)),
             lambda i, a: None if P.parse_yes_no(a, "med_judge_2") else "med_judge_2_no")


@stage("med-rewrite")
def med_rewrite(stats: StageStats, items: list[MedItem], llm: RoleChat) -> None:
    """MED Fig. 14 / §3.2 step 4: the difference rewritten as the SFT answer (kept as the sample's answer)."""

    def read(item: MedItem, answer: str) -> None:
        item.rewritten = P.parse_rewrite(answer)

    run_step(stats, llm, items, lambda i: VlmRequest((), P.rewrite_prompt(i.difference)), read)
