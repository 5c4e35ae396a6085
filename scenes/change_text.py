"""Truthful sentences about a scene pair, generated from the scene diff rather than a model.

Each change becomes one sentence, in one of two styles (``DigRenderConfig.caption_style``):

* ``referring`` (the default), OmniDiff's form (Liu et al., ICCV 2025): a referring part that
  locates the object by its attributes and a neighbour or an image region
  (``pairsmith.scenes.referring``), then a change part, in one of several phrasings per change
  kind drawn with the pair's seed: "The red cube to the left of the large cylinder turned blue.";
* ``plain``, the sentences of pairsmith 0.1: the full description, plus where the object is in the
  image ("on the left", "at the back", from its visible pixels) only when two objects look alike:
  "The large red metal cube became a cylinder."
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from pairsmith.scenes.referring import Referring, SceneView, destination, refer, third_of_image
from pairsmith.scenes.scene_config import SceneObject
from pairsmith.scenes.scene_sampler import ATTRIBUTE_KINDS, Change, ChangeKind, ObjectMap

CaptionStyle = Literal["referring", "plain"]

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


def _moved_to(box: list[float] | None, width: int, height: int) -> str:
    if box is None:
        return "elsewhere"
    return f"to the {_horizontal(box, width).split()[-1]}, {_depth(box, height)}"


def describe_change(change: Change, phrase: str, moved_to: str = "elsewhere") -> str:
    """The plain sentence; ``moved_to`` says where a moved object went ("to the left, at the back")."""
    after: SceneObject | None = change.after
    if change.kind == "add":
        return f"{_article(phrase).capitalize()} {phrase} was added."
    if change.kind == "remove":
        return f"The {phrase} was removed."
    if change.kind == "move":
        return f"The {phrase} moved {moved_to}."
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
    """One plain sentence per change; added objects are described as they look in the after image."""
    sentences = []
    for change in changes:
        if change.kind == "add":
            phrase = object_phrase(change.object_id, after, locate_after, width, height)
        else:
            phrase = object_phrase(change.object_id, before, locate_before, width, height)
        moved_to = _moved_to(locate_after(change.object_id), width, height) if change.kind == "move" else ""
        sentences.append(describe_change(change, phrase, moved_to))
    return sentences


# Change parts, at least three phrasings per kind. {ref}: the referring phrase; {a}: its article;
# {attrs} / {loc}: an added object's attributes and locator; {dest}: where a moved object went;
# {new} / {old}: the changed attribute after / before; {a_new}: the new shape with its article;
# {grew}: "got bigger" or "got smaller".
TEMPLATES: dict[ChangeKind, tuple[str, ...]] = {
    "shape": ("The {ref} became {a_new}.", "The {ref} turned into {a_new}.",
              "The {ref} changed shape and is now {a_new}.", "The {ref} was reshaped into {a_new}."),
    "color": ("The {ref} turned {new}.", "The {ref} changed color to {new}.", "The {ref} is now {new}.",
              "The {ref} was repainted {new}."),
    "size": ("The {ref} {grew} and is now {new}.", "The {ref} is now {new}.",
             "The {ref} changed from {old} to {new}.", "The size of the {ref} changed to {new}."),
    "material": ("The {ref} became {new}.", "The {ref} is now {new}.", "The {ref} changed from {old} to {new}.",
                 "The material of the {ref} changed to {new}."),
    "add": ("{A} {attrs} was added {loc}.", "A new {attrs} appeared {loc}.", "Someone placed {a} {attrs} {loc}.",
            "There is now {a} {attrs} {loc}."),
    "remove": ("The {ref} was removed.", "The {ref} disappeared.", "The {ref} is gone.",
               "The {ref} is no longer there."),
    "move": ("The {ref} moved {dest}.", "The {ref} was moved {dest}.", "Someone moved the {ref} {dest}.",
             "The {ref} has been moved {dest}."),
}

ADDED_BY_RANK = "The {ref} is new."  # an added object named by its rank among look-alikes


@dataclass(frozen=True)
class ChangeCaption:
    """One change's sentence and its parts: ``referring`` names the object (in the before scene; an
    added object in the after scene), ``destination`` says where a moved object went."""

    text: str
    referring: Referring
    destination: str | None = None


def referring_captions(
    changes: list[Change], before: ObjectMap, after: ObjectMap, width: int, height: int, seed: int,
) -> list[ChangeCaption]:
    """One OmniDiff-style sentence per change, phrasing and locators drawn from ``seed`` (the pair's
    seed), so a pair's caption is the same every time it is built."""
    rng = np.random.default_rng([seed, 2])  # stream 2: [seed, 1] draws the render's modifications
    touched = {c.object_id for c in changes}
    before_view = SceneView.of(before, width, height, set(before) - touched)
    after_view = SceneView.of(after, width, height, set(after) - touched)
    out = []
    for change in changes:
        template = TEMPLATES[change.kind][int(rng.integers(len(TEMPLATES[change.kind])))]
        if change.kind == "add":
            ref = refer(change.object_id, after_view, rng)
            if ref.ranked:  # "The leftmost red cube is new."
                out.append(ChangeCaption(ADDED_BY_RANK.format(ref=ref.phrase), ref))
                continue
            if ref.locator is None:  # its look alone is unique: still say where it appeared
                ref = Referring(ref.words, third_of_image(after_view.points[change.object_id]))
            text = template.format(A=_article(ref.attributes).capitalize(), a=_article(ref.attributes),
                                   attrs=ref.attributes, loc=ref.locator)
            out.append(ChangeCaption(text, ref))
            continue
        must_name = change.kind if change.kind in ATTRIBUTE_KINDS else None
        ref = refer(change.object_id, before_view, rng, must_name=must_name)
        fields = {"ref": ref.phrase}
        dest = None
        if change.kind == "move":
            dest = fields["dest"] = destination(change.object_id, before_view, after_view, rng)
        elif change.kind in ATTRIBUTE_KINDS:
            old, new = getattr(change.before, change.kind), getattr(change.after, change.kind)
            grew = change.after.radius > change.before.radius
            fields.update(old=old, new=new, a_new=f"{_article(new)} {new}",
                          grew="got bigger" if grew else "got smaller")
        out.append(ChangeCaption(template.format(**fields), ref, dest))
    return out


def describe_scene(objects: ObjectMap) -> str:
    """A plain caption listing the objects, used as caption_before / caption_after."""
    items = [f"{_article(o.describe())} {o.describe()}" for o in objects.values()]
    if len(items) == 1:
        return f"A scene with {items[0]}."
    return f"A scene with {len(items)} objects: {', '.join(items[:-1])} and {items[-1]}."
