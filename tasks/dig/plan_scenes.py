"""Plan one batch of a dig-render run: which scene, how many changes, distractor or not."""

from __future__ import annotations

import time

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.scenes.pair_plan import PairPlan, PairSampling, plan_pair
from pairsmith.scenes.scene_config import Scene
from pairsmith.storage.ids import stable_id


def dig_pair_id(content_key: str, index: int) -> str:
    """Pair ids depend on what shapes the pixels and on the pair's index, not on the run size."""
    return stable_id("dig-render", content_key, index)


@task(name="plan-scenes", cache_policy=NO_CACHE)
def plan_scene_pairs(
    indices: range,
    content_key: str,
    run_seed: int,
    sampling: PairSampling,
    user_scenes: list[Scene] | None = None,
) -> tuple[list[PairPlan], StageStats]:
    stats = StageStats("plan")
    start = time.perf_counter()
    plans = []
    for index in indices:
        plan = plan_pair(index, dig_pair_id(content_key, index), run_seed, sampling, user_scenes)
        stats.record(Verdict.drop(plan.drop_reason) if plan.drop_reason else KEEP)
        plans.append(plan)
    stats.seconds = time.perf_counter() - start
    return plans, stats
