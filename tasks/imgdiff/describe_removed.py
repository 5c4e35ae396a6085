"""Img-Diff removal, step 3: the VLM names the object each inpainting removed (from the original crop).

The description is what the ITM check and the two-choice question are about; one
``generate_batch`` call for the batch. A description with no words drops as ``describe_empty``.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.vlm_chat import VlmChat, VlmRequest
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge, live_regions, model_step, task_logger
from pairsmith.tasks.imgdiff.prompts import DESCRIBE_PROMPT, clean_answer

STAGE = "describe"


@task(name="describe-removed", cache_policy=NO_CACHE)
def describe_removed(items: list[ImgDiffItem], vlm: VlmChat) -> StageStats:
    stats, start = StageStats(STAGE), time.perf_counter()
    todo = live_regions(items)
    requests = [VlmRequest((crop(item.before, r.box),), DESCRIBE_PROMPT) for item, r in todo]
    answers = model_step(stats, [r for _, r in todo], lambda: vlm.generate_batch(requests), task_logger(),
                         vlm.config.model_id) if todo else []
    for (_, region), answer in zip(todo, answers or []):
        region.object_description = clean_answer(answer, max_chars=120)
        if region.object_description:
            judge(stats, region, KEEP)
        else:
            judge(stats, region, Verdict.drop(f"{STAGE}_empty"), repr(answer)[:300])
    stats.seconds = time.perf_counter() - start
    return stats
