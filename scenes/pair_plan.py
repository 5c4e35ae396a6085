"""What each pair of a dig-render run will be, decided before anything is rendered.

Pair ``i`` of a run gets its own random stream, seeded by (run seed, i), so pair 7 is the same
pair whether it is rendered in the first invocation, after a crash, or in a run of 40 pairs
instead of 20. That stream decides the before-scene, the number of changes K in [min, max], and
whether the pair is a camera-jitter distractor; the render task draws re-samples from it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.scenes.ground_truth import BoxFrame
from pairsmith.scenes.scene_config import MAX_OBJECTS, Scene
from pairsmith.scenes.scene_sampler import DEFAULT_CHANGE_KINDS, ChangeKind, PlacementError, sample_scene


class PairSampling(BaseModel):
    """How scenes and their modifications are drawn (design.md §4.1)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    min_objects: int = Field(3, ge=1, le=MAX_OBJECTS, description="fewest objects in a random scene")
    max_objects: int = Field(MAX_OBJECTS, ge=1, le=MAX_OBJECTS, description="most objects in a random scene")
    min_changes: int = Field(1, ge=1, le=6, description="fewest changes per pair")
    max_changes: int = Field(4, ge=1, le=6, description="N: each pair gets K in [min_changes, N] changes")
    change_kinds: tuple[ChangeKind, ...] = Field(
        DEFAULT_CHANGE_KINDS, min_length=1,
        description="modifications to draw from: shape, color, size, material, add, remove, move (move only when named)",
    )
    distractor_fraction: float = Field(
        0.0, ge=0.0, le=1.0, description="share of pairs with only a small camera move and no change"
    )
    camera_shift: float = Field(0.3, ge=0.0, le=2.0, description="distractor camera move, scene units")
    camera_degrees: float = Field(3.0, ge=0.0, le=30.0, description="distractor camera yaw, degrees")
    max_attempts: int = Field(6, ge=1, le=50, description="renders tried per pair before it is dropped")
    boxes: BoxFrame = Field(
        "union", description="a changed object's box: 'union' of its pixels in both images, or 'before': where "
        "it is on the before image, a new object at the empty spot it fills (DiG's prompt's rule)",
    )
    subsets: Literal["by-k", "dig"] = Field(
        "by-k", description="'by-k': K drawn from [min_changes, max_changes] for every pair, a pair files under "
        "single/double/mixed by its K and every pair also gives a mixed grounding sample; 'dig': DiG's three "
        "disjoint subsets of equal size (DiG supp. §6): pair i is single (K = 1), double (K = 2) or mixed "
        "(K in [min_changes, max_changes]) by i mod 3, and gives that subset's grounding sample only",
    )

    @model_validator(mode="after")
    def _ranges(self) -> "PairSampling":
        if self.min_objects > self.max_objects:
            raise ValueError(f"min_objects {self.min_objects} > max_objects {self.max_objects}")
        if self.min_changes > self.max_changes:
            raise ValueError(f"min_changes {self.min_changes} > max_changes {self.max_changes}")
        if self.subsets == "dig" and self.distractor_fraction > 0:
            raise ValueError("subsets 'dig' has no pairs without a change: set distractor_fraction to 0")
        return self


@dataclass(frozen=True)
class PairPlan:
    index: int
    pair_id: str
    seed: int
    n_changes: int
    distractor: bool
    scene: Scene | None
    user_scene: bool
    drop_reason: str | None = None
    drop_detail: str | None = None
    subset: str | None = None  # DiG's subset the pair was planned for (sampling.subsets 'dig'), else None


DIG_SUBSETS = ("single", "double", "mixed")


SCENE_TRIES = 20


def pair_rng(run_seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([run_seed, index])


def plan_pair(
    index: int,
    pair_id: str,
    run_seed: int,
    sampling: PairSampling,
    user_scenes: list[Scene] | None,
) -> PairPlan:
    rng = pair_rng(run_seed, index)
    seed = int(rng.integers(2**31 - 1))
    distractor = bool(rng.random() < sampling.distractor_fraction)
    n_changes = 0 if distractor else int(rng.integers(sampling.min_changes, sampling.max_changes + 1))
    subset = None
    if sampling.subsets == "dig":  # same draws as 'by-k', so the scene of pair i is the same either way
        subset = DIG_SUBSETS[index % 3]
        n_changes = {"single": 1, "double": 2}.get(subset, n_changes)
    common = dict(index=index, pair_id=pair_id, seed=seed, n_changes=n_changes, distractor=distractor, subset=subset)
    if user_scenes:
        return PairPlan(**common, scene=user_scenes[index % len(user_scenes)], user_scene=True)
    for _ in range(SCENE_TRIES):
        try:
            scene = sample_scene(rng, sampling.min_objects, sampling.max_objects)
        except PlacementError:
            continue
        return PairPlan(**common, scene=scene, user_scene=False)
    return PairPlan(
        **common, scene=None, user_scene=False,
        drop_reason="plan_no_free_spot", drop_detail=f"no layout without overlaps in {SCENE_TRIES} tries",
    )
