"""Img-Diff's unnatural-image filter (supplementary §15) as a pair stage, ``natural``: optional, off by default.

With ``NaturalnessSettings.score`` on, the VLM is asked ``NATURALNESS_PROMPT`` about each image of each
pair still alive (two requests per pair, one ``score_options_batch`` call for the batch), each image's
P("Yes") is stored as ``natural_before`` / ``natural_after``, and the stage's keep rule
(``pairsmith.filters.imgdiff.naturalness``, threshold ``thresholds.natural_min``) judges: None keeps
every pair, so a run can store the scores and ``pairsmith refilter`` apply a threshold later. With
``score`` off (Img-Diff's preset: training without the unnatural images was worse, Tables 15-16) the
stage measures nothing and keeps every pair.

The paper's judge is InternVL2.5-8B; ``NaturalnessSettings.vlm`` names the model (None: the flow's
``vlm``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.filters.imgdiff.naturalness import NATURAL, NATURAL_OPTIONS, yes_probability
from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig, VlmRequest
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, model_step
from pairsmith.tasks.imgdiff.prompts import NATURALNESS_PROMPT
from pairsmith.tasks.stage import stage

class NaturalnessSettings(BaseModel):
    """Whether a run measures naturalness (Img-Diff supp. §15), and with which VLM."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    score: bool = Field(False, description="ask the VLM whether each image looks natural and store the score "
                        "(Img-Diff supp. §15; off in the paper preset: Tables 15-16)")
    vlm: VlmConfig | None = Field(None, description="the judge (Img-Diff: InternVL2.5-8B); None: the flow's vlm")


def naturalness_requests(item: ImgDiffItem) -> list[VlmRequest]:
    """What the judge is sent for one pair: each image alone with ``NATURALNESS_PROMPT`` (before, after)."""
    return [VlmRequest((item.before,), NATURALNESS_PROMPT), VlmRequest((item.after,), NATURALNESS_PROMPT)]


def natural_off(ctx: ImgDiffContext) -> bool:
    """The filter is off for this run: no ``natural_min`` to judge by and no scores to store
    (``NaturalnessSettings.score``), so the flow leaves the stage out (no pass-through stage)."""
    settings = ctx.settings.naturalness or NaturalnessSettings()
    return NATURAL.off(ctx.thresholds) and not settings.score


@stage(NATURAL.name)
def natural(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.vlm`` (or ``ctx.settings.naturalness.vlm``), ``ctx.thresholds`` (``natural_min``) and
    ``ctx.settings.naturalness`` (None: ``NaturalnessSettings()``)."""
    todo = alive(items)
    if not todo:
        return
    settings = ctx.settings.naturalness or NaturalnessSettings()
    thresholds = ctx.thresholds
    if settings.score:
        judge_vlm = VlmChat(settings.vlm) if settings.vlm is not None else ctx.vlm

        def ask(part: list[ImgDiffItem]) -> list[tuple[float, float]]:
            requests = [r for item in part for r in naturalness_requests(item)]
            scored = judge_vlm.score_options_batch(requests, [list(NATURAL_OPTIONS)] * len(requests))
            p = [yes_probability(*s.scores) for s in scored]
            return [(p[2 * k], p[2 * k + 1]) for k in range(len(part))]

        for item, probs in zip(todo, model_step(stats, todo, ask, judge_vlm.config.model_id)):
            if probs is not None:
                item.scores.update(natural_before=probs[0], natural_after=probs[1])
    for item in alive(todo):
        before, after = item.scores.get("natural_before"), item.scores.get("natural_after")
        detail = None if before is None else f"P(natural) before {before:.3f}, after {after:.3f}"
        judge(stats, item, NATURAL.judge(item.row(), thresholds), detail)
