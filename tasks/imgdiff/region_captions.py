"""Img-Diff step 7a: the VLM captions each surviving box in each image (two requests per box).

Every request of the batch goes to ``VlmChat.generate_batch`` at once. A box whose caption on
either side has no words drops as ``region_captions_empty`` (the VLM's answer kept as detail).
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.models.vlm_chat import VlmChat, VlmRequest
from pairsmith.tasks.imgdiff.items import ImgDiffItem, crop, judge, live_regions, model_step, task_logger
from pairsmith.tasks.imgdiff.prompts import REGION_CAPTION_PROMPT, clean_answer

STAGE = "region_captions"


@task(name="caption-regions", cache_policy=NO_CACHE)
def caption_regions(items: list[ImgDiffItem], vlm: VlmChat) -> StageStats:
    stats, start = StageStats(STAGE), time.perf_counter()
    todo = live_regions(items)
    requests = [VlmRequest((crop(item.before, r.box),), REGION_CAPTION_PROMPT) for item, r in todo]
    requests += [VlmRequest((crop(item.after, r.box),), REGION_CAPTION_PROMPT) for item, r in todo]
    answers = model_step(stats, [r for _, r in todo], lambda: vlm.generate_batch(requests), task_logger(),
                         vlm.config.model_id) if todo else []
    n = len(todo)
    for k, (_, region) in enumerate(todo if answers is not None else []):
        region.region_caption_before = clean_answer(answers[k])
        region.region_caption_after = clean_answer(answers[n + k])
        if region.region_caption_before and region.region_caption_after:
            judge(stats, region, KEEP)
        else:
            raw = f"before: {answers[k]!r}; after: {answers[n + k]!r}"
            judge(stats, region, Verdict.drop(f"{STAGE}_empty"), raw[:300])
    stats.seconds = time.perf_counter() - start
    return stats
