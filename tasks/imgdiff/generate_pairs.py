"""Img-Diff step 2: image pairs from caption pairs, SDXL + Prompt2Prompt, one seed per pair.

The whole batch goes to the generator in one call (it denoises ``pairs_per_call`` pairs together);
each pair's seed was fixed when the run was planned and is stored with the pair.
"""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.models.sdxl_p2p import PairRequest, SdxlP2PGenerator
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, model_step, task_logger

STAGE = "generate"


@task(name="generate-pairs", cache_policy=NO_CACHE)
def generate_image_pairs(items: list[ImgDiffItem], generator: SdxlP2PGenerator) -> StageStats:
    stats, start = StageStats(STAGE), time.perf_counter()
    todo = alive(items)
    requests = [PairRequest(i.source_caption, i.caption_after, i.seed) for i in todo]
    pairs = model_step(stats, todo, lambda: generator.generate_batch(requests), task_logger(),
                       generator.config.model_id) if todo else []
    for item, pair in zip(todo, pairs or []):
        item.before, item.after = pair.before, pair.after
        judge(stats, item, KEEP)
    stats.seconds = time.perf_counter() - start
    return stats
