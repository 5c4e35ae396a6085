"""Truthful sentences about a scene pair, generated from the scene diff rather than a model.

Each change becomes one sentence ("The large red metal cube became a cylinder."). When two
objects share a description, the sentence adds where the object is in the image ("on the left",
"at the back"), taken from its visible pixels, so the caption names one object only.
"""

from __future__ import annotations

from collections.abc import Callable

from pairsmith.scenes.scene_config import SceneObject
from pairsmith.scenes.scene_sampler import Change, ObjectMap

Locate = Callable[[int], "list[float] | None"]  # object id -> its box in the image it appears in


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _horizontal(box: list[float], width: int) -> str:
    cx = (box[0] + box[2]) / 2 / width
    return "on the left" if cx < 1 / 3 else "on the right" if cx > 2 / 3 else "in the middle"


def _depth(box: list[float], height: int) -> str:
    return "at the back" if (box[1] + box[3]) / 2 / height < 0.5 else "in the front"


def object_phrase(
    object_id: int, objects: ObjectMap, locate: Locate, width: int, height: int
) -> str:
    """The object's description, plus a location when another object looks the same."""
    obj = objects[object_id]
    twins = [i for i, o in objects.items() if o.describe() == obj.describe()]
    box = locate(object_id)
    if len(twins) == 1 or box is None:
        return obj.describe()
    boxes = {i: locate(i) for i in twins}
    where = {i: _horizontal(b, width) for i, b in boxes.items() if b is not None}
    if list(where.values()).count(where[object_id]) == 1:
        return f"{obj.describe()} {where[object_id]}"
    return f"{obj.describe()} {where[object_id]} {_depth(box, height)}"


def describe_change(change: Change, phrase: str) -> str:
    after: SceneObject | None = change.after
    if change.kind == "add":
        return f"{_article(phrase).capitalize()} {phrase} was added."
    if change.kind == "remove":
        return f"The {phrase} was removed."
    assert after is not None
    if change.kind == "shape":
        return f"The {phrase} became {_article(after.shape)} {after.shape}."
    if change.kind == "color":
        return f"The {phrase} turned {after.color}."
    if change.kind == "size":
        grew = after.radius > change.before.radius
        return f"The {phrase} {'grew' if grew else 'shrank'} to {after.size}."
    return f"The {phrase} became {after.material}."


def describe_changes(
    changes: list[Change],
    before: ObjectMap,
    after: ObjectMap,
    locate_before: Locate,
    locate_after: Locate,
    width: int,
    height: int,
) -> list[str]:
    """One sentence per change; added objects are described as they look in the after image."""
    sentences = []
    for change in changes:
        if change.kind == "add":
            phrase = object_phrase(change.object_id, after, locate_after, width, height)
        else:
            phrase = object_phrase(change.object_id, before, locate_before, width, height)
        sentences.append(describe_change(change, phrase))
    return sentences


def describe_scene(objects: ObjectMap) -> str:
    """A plain caption listing the objects, used as caption_before / caption_after."""
    items = [f"{_article(o.describe())} {o.describe()}" for o in objects.values()]
    if len(items) == 1:
        return f"A scene with {items[0]}."
    return f"A scene with {len(items)} objects: {', '.join(items[:-1])} and {items[-1]}."
