"""Img-Diff step 1, ``rewrite``: caption pairs, a source caption and the same caption with one object replaced.

The rewriter (an instruction LLM, or the noun lexicon) answers for the whole batch at once; a
caption it could not rewrite drops with the rewriter's own reason (``rewrite_no_known_noun``,
``rewrite_unparseable``, ...), the raw LLM answer kept as the detail.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import REWRITE
from pairsmith.models.adapters.caption_rewriter import CaptionRewriter
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, model_step
from pairsmith.tasks.stage import stage


def _model(rewriter: CaptionRewriter) -> str:
    return rewriter.config.model_id if rewriter.config.mode == "llm" else "lexicon"


@stage(REWRITE.name)
def rewrite(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.rewriter``."""
    rewriter = ctx.rewriter
    todo = alive(items)
    if not todo:
        return
    rewrites = model_step(stats, todo, lambda part: rewriter.rewrite_batch(
        [i.source_caption for i in part], [i.rewrite_round for i in part]), _model(rewriter))
    for item, result in zip(todo, rewrites):
        if result is None:
            continue
        item.rewrite = result
        if result.ok:
            item.caption_after = result.caption
            judge(stats, item, KEEP)
        else:
            judge(stats, item, Verdict.drop(result.reason), (result.answer or "")[:300] or None)
