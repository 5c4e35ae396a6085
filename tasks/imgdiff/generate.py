"""Img-Diff step 2, ``generate``: image pairs from caption pairs, SDXL + Prompt2Prompt, one seed per pair.

The whole batch goes to the generator in one call (it denoises ``pairs_per_call`` pairs together);
each pair's seed was fixed when the run was planned and is stored with the pair.
"""

from __future__ import annotations

from pairsmith.filters.imgdiff.pipelines import GENERATE
from pairsmith.models.adapters.sdxl_p2p import PairRequest
from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.tasks.imgdiff.context import ImgDiffContext
from pairsmith.tasks.imgdiff.items import ImgDiffItem, alive, judge, model_step
from pairsmith.tasks.stage import stage


@stage(GENERATE.name)
def generate(stats: StageStats, items: list[ImgDiffItem], ctx: ImgDiffContext) -> None:
    """Uses ``ctx.generator``."""
    generator = ctx.generator
    todo = alive(items)
    if not todo:
        return
    pairs = model_step(stats, todo, lambda part: generator.generate_batch(
        [PairRequest(i.source_caption, i.caption_after, i.seed) for i in part]), generator.config.model_id)
    for item, pair in zip(todo, pairs):
        if pair is None:
            continue
        item.before, item.after = pair.before, pair.after
        judge(stats, item, KEEP)
