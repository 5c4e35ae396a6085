"""Plan one batch of a dig-render run: which scene, how many changes, distractor or not."""

from __future__ import annotations

from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.scenes.pair_plan import PairPlan, PairSampling, plan_pair
from pairsmith.scenes.scene_config import Scene
from pairsmith.storage.ids import stable_id
from pairsmith.tasks.stage import stage


def dig_pair_id(content_key: str, index: int) -> str:
    """Pair ids depend on what shapes the pixels and on the pair's index, not on the run size."""
    return stable_id("dig-render", content_key, index)


@stage("scene_plan")
def plan_scene_pairs(
    stats: StageStats,
    indices: range,
    content_key: str,
    run_seed: int,
    sampling: PairSampling,
    user_scenes: list[Scene] | None = None,
) -> list[PairPlan]:
    plans = []
    for index in indices:
        plan = plan_pair(index, dig_pair_id(content_key, index), run_seed, sampling, user_scenes)
        stats.record(Verdict.drop(plan.drop_reason) if plan.drop_reason else KEEP)
        plans.append(plan)
    return plans
