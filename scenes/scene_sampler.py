"""Random before-scenes and the modifications that turn them into after-scenes (design.md §4.1).

Everything here is pure Python over a seeded ``numpy.random.Generator``: the same seed gives the
same scenes and changes, which is what makes pair ids deterministic and re-runs resumable.
Objects keep a stable integer id across before and after (their index in the before scene; new
objects get the next free ids), so the renderer's object-id maps can be compared pixel by pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from pairsmith.scenes.scene_config import (
    AREA_HALF_EXTENT,
    COLOR_RGB,
    MATERIAL_PBR,
    MAX_OBJECTS,
    SHAPES,
    SIZE_RADIUS,
    Scene,
    SceneObject,
    overlaps,
)

ChangeKind = Literal["shape", "color", "size", "material", "add", "remove", "move"]
CHANGE_KINDS: tuple[ChangeKind, ...] = ("shape", "color", "size", "material", "add", "remove", "move")
# What a run draws unless told otherwise. ``move`` is asked for by name (``--kind move``): in the
# default it would change the pairs that existing run ids stand for (pairsmith.storage.ids).
DEFAULT_CHANGE_KINDS: tuple[ChangeKind, ...] = ("shape", "color", "size", "material", "add", "remove")
ATTRIBUTE_KINDS: tuple[ChangeKind, ...] = ("shape", "color", "size", "material")
PLACEMENT_TRIES = 200


class PlacementError(RuntimeError):
    """No free spot was found for an object; the caller records the pair as dropped."""


@dataclass(frozen=True)
class Change:
    """One modification of one object; ``before`` is None for ``add``, ``after`` for ``remove``; a
    ``move`` keeps every attribute and changes the position to a free spot."""

    kind: ChangeKind
    object_id: int
    before: SceneObject | None
    after: SceneObject | None

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "object_id": self.object_id,
            "before": self.before.model_dump(mode="json") if self.before else None,
            "after": self.after.model_dump(mode="json") if self.after else None,
        }


ObjectMap = dict[int, SceneObject]


def as_object_map(scene: Scene) -> ObjectMap:
    return dict(enumerate(scene.objects))


def _random_object(rng: np.random.Generator, position: tuple[float, float]) -> SceneObject:
    return SceneObject(
        shape=SHAPES[rng.integers(len(SHAPES))],
        color=list(COLOR_RGB)[rng.integers(len(COLOR_RGB))],
        size=list(SIZE_RADIUS)[rng.integers(len(SIZE_RADIUS))],
        material=list(MATERIAL_PBR)[rng.integers(len(MATERIAL_PBR))],
        position=position,
        rotation=float(rng.uniform(0, 360)),
    )


def _random_position(rng: np.random.Generator, radius: float) -> tuple[float, float]:
    limit = AREA_HALF_EXTENT - radius
    return (round(float(rng.uniform(-limit, limit)), 3), round(float(rng.uniform(-limit, limit)), 3))


def _place(rng: np.random.Generator, others: list[SceneObject], template: SceneObject | None = None) -> SceneObject:
    """A new object (or ``template`` moved) at a random spot that overlaps none of ``others``."""
    for _ in range(PLACEMENT_TRIES):
        obj = template or _random_object(rng, (0.0, 0.0))
        obj = obj.model_copy(update={"position": _random_position(rng, obj.radius)})
        if not any(overlaps(obj, o) for o in others):
            return obj
    raise PlacementError(f"no free spot for a {obj.describe()} among {len(others)} objects")


def sample_scene(rng: np.random.Generator, min_objects: int, max_objects: int) -> Scene:
    if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects}..{max_objects}")
    n = int(rng.integers(min_objects, max_objects + 1))
    objects: list[SceneObject] = []
    for _ in range(n):
        objects.append(_place(rng, objects))
    return Scene(objects=objects)


def _other(values: list, current, rng: np.random.Generator):
    choices = [v for v in values if v != current]
    return choices[rng.integers(len(choices))]


def _modify(obj: SceneObject, kind: ChangeKind, rng: np.random.Generator) -> SceneObject:
    if kind == "shape":
        return obj.model_copy(update={"shape": _other(list(SHAPES), obj.shape, rng)})
    if kind == "color":
        return obj.model_copy(update={"color": _other(list(COLOR_RGB), obj.color, rng)})
    if kind == "size":
        return obj.model_copy(update={"size": _other(list(SIZE_RADIUS), obj.size, rng)})
    if kind == "material":
        return obj.model_copy(update={"material": _other(list(MATERIAL_PBR), obj.material, rng)})
    raise ValueError(f"{kind!r} is not an attribute change")


def sample_changes(
    scene: Scene,
    n_changes: int,
    rng: np.random.Generator,
    kinds: tuple[ChangeKind, ...] = DEFAULT_CHANGE_KINDS,
) -> tuple[ObjectMap, list[Change]]:
    """Apply ``n_changes`` modifications to distinct objects; returns the after-scene and the changes.

    A size change that would make the object touch a neighbour, an ``add`` or a ``move`` with no
    free spot, an ``add`` beyond 10 objects, and a ``remove`` of the last object are re-drawn as
    another kind; if no kind fits, ``PlacementError`` is raised. A moved object lands where it
    overlaps neither the other objects nor its own old footprint, so its old place is left empty.
    """
    before = as_object_map(scene)
    after: ObjectMap = dict(before)
    changes: list[Change] = []
    untouched = list(before)
    next_id = max(before) + 1
    for _ in range(n_changes):
        for kind in rng.permutation(np.array(kinds)).tolist():
            change = _try_change(kind, after, untouched, next_id, rng)
            if change is not None:
                break
        else:
            raise PlacementError(f"no modification fits after {len(changes)} of {n_changes}")
        changes.append(change)
        if change.kind == "add":
            next_id += 1
        else:
            untouched.remove(change.object_id)
        if change.after is None:
            del after[change.object_id]
        else:
            after[change.object_id] = change.after
    return after, changes


def _try_change(
    kind: ChangeKind, after: ObjectMap, untouched: list[int], next_id: int, rng: np.random.Generator
) -> Change | None:
    if kind == "add":
        if len(after) >= MAX_OBJECTS:
            return None
        try:
            new = _place(rng, list(after.values()))
        except PlacementError:
            return None
        return Change("add", next_id, None, new)
    if not untouched:
        return None
    object_id = untouched[rng.integers(len(untouched))]
    obj = after[object_id]
    if kind == "remove":
        if len(after) <= 1:
            return None
        return Change("remove", object_id, obj, None)
    if kind == "move":
        try:
            moved = _place(rng, list(after.values()), template=obj)  # clear of its own old place too
        except PlacementError:
            return None
        return Change("move", object_id, obj, moved)
    new = _modify(obj, kind, rng)
    others = [o for i, o in after.items() if i != object_id]
    if any(overlaps(new, o) for o in others):
        return None
    return Change(kind, object_id, obj, new)


def jitter_camera(rng: np.random.Generator, max_shift: float, max_degrees: float) -> tuple[float, float, float, float]:
    """A small random camera move (dx, dy, dz, yaw degrees): CLEVR-Change's distractor."""
    shift = rng.uniform(-max_shift, max_shift, size=3)
    yaw = float(rng.uniform(-max_degrees, max_degrees))
    return (float(shift[0]), float(shift[1]), float(shift[2]), yaw)


def subset_for(n_changes: int) -> str:
    """DiG curriculum subset: one difference, two, or more."""
    return {0: "distractor", 1: "single", 2: "double"}.get(n_changes, "mixed")
