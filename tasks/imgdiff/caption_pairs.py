"""Img-Diff step 1: caption pairs, a source caption and the same caption with one object replaced.

The rewriter (an instruction LLM, or the noun lexicon) answers for the whole batch at once; a
caption it could not rewrite drops with the rewriter's own reason (``rewrite_no_known_noun``,
``rewrite_unparseable``, ...), the raw LLM answer kept as the detail.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.caption_rewriter import CaptionRewriter
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, model_step, task_logger

STAGE = "rewrite"


def _model(rewriter: CaptionRewriter) -> str:
    return rewriter.config.model_id if rewriter.config.mode == "llm" else "lexicon"


@task(name="caption-pairs", cache_policy=NO_CACHE)
def caption_pairs(items: list[ImgDiffItem], rewriter: CaptionRewriter) -> StageStats:
    stats, start = StageStats(STAGE), time.perf_counter()
    todo = alive(items)
    rewrites = model_step(stats, todo, lambda: rewriter.rewrite_batch([i.source_caption for i in todo]),
                          task_logger(), _model(rewriter)) if todo else []
    for item, rewrite in zip(todo, rewrites or []):
        item.rewrite = rewrite
        if rewrite.ok:
            item.caption_after = rewrite.caption
            judge(stats, item, KEEP)
        else:
            judge(stats, item, Verdict.drop(rewrite.reason), (rewrite.answer or "")[:300] or None)
    stats.seconds = time.perf_counter() - start
    return stats
