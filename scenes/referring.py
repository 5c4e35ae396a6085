"""Referring expressions: name one object of a scene by its attributes and where it is.

OmniDiff (Liu et al., ICCV 2025, arXiv:2503.11093) writes each difference caption as a *referring
part* that locates the object ("the small red cube to the left of the large cylinder", "on the far
left of the road") and a *change part*. This module builds the referring part from the scene graph
and the camera (``pairsmith.scenes.camera``), and only returns a phrase that picks out exactly one
object of the scene it is read against.

What a phrase claims (a test reads phrases back with these meanings, independently):

* attribute words (size, colour, material, shape): the object has each of them;
* ``to the left of B`` / ``to the right of B``: its centre is left / right of B's centre in the
  image; ``behind B`` / ``in front of B``: its centre is farther from / nearer to the camera;
  ``B`` is itself a phrase that names exactly one object;
* ``on the left`` / ``in the middle`` / ``on the right``: its centre lies in that third of the
  image's width; ``at the back`` / ``in the front``: in the upper / lower half of the image;
  ``in the back left corner`` etc.: both;
* ``leftmost`` / ``rightmost`` / ``frontmost`` / ``rearmost``: of the objects with the named
  attributes, the one farthest left / right in the image, nearest to / farthest from the camera;
  ``second from the left`` (``third``, ... ``from the right``): counted among those objects in
  the image, from that side.

A phrase is used only when its claim holds with a margin (``X_MARGIN`` of the image width,
``DEPTH_MARGIN`` scene units, ``REGION_MARGIN`` from a region's border), so a person looking at
the image agrees with it; uniqueness is judged without margins, so no other object could be meant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pairsmith.scenes.camera import ImagePoint, see
from pairsmith.scenes.scene_config import SceneObject
from pairsmith.scenes.scene_sampler import ObjectMap

X_MARGIN = 0.04  # of the image width, for left/right relations and superlatives
DEPTH_MARGIN = 0.6  # scene units, for front/behind relations and superlatives
REGION_MARGIN = 0.03  # of the image size, distance from a region's border
NEARBY_ANCHORS = 3  # relations are made to this many of the nearest nameable objects

ATTRIBUTES = ("size", "color", "material", "shape")  # adjective order; the shape is the noun
TARGET_ATTRIBUTES = (  # ways to name the object itself
    ("size", "color", "material", "shape"), ("size", "color", "shape"), ("color", "material", "shape"),
    ("size", "material", "shape"), ("color", "shape"), ("size", "shape"),
)
ANCHOR_ATTRIBUTES = (  # ways to name a neighbour, shortest first: the first that is unique is used
    ("shape",), ("color", "shape"), ("size", "shape"), ("material", "shape"), ("size", "color", "shape"),
    ("color", "material", "shape"), ("size", "color", "material", "shape"),
)
RELATIONS: dict[str, Callable[[ImagePoint, ImagePoint], float]] = {  # > 0 when "a <relation> b" holds
    "to the left of": lambda a, b: b.x - a.x,
    "to the right of": lambda a, b: a.x - b.x,
    "behind": lambda a, b: a.depth - b.depth,
    "in front of": lambda a, b: b.depth - a.depth,
}
REGIONS: dict[tuple[str, ...], str] = {  # region keys -> locator phrase
    ("left",): "on the left", ("middle",): "in the middle", ("right",): "on the right",
    ("back",): "at the back", ("front",): "in the front",
    ("back", "left"): "in the back left corner", ("back", "right"): "in the back right corner",
    ("front", "left"): "in the front left corner", ("front", "right"): "in the front right corner",
}
DESTINATIONS: dict[tuple[str, ...], str] = {  # region keys -> where a moved object went
    ("left",): "to the left side", ("middle",): "to the middle", ("right",): "to the right side",
    ("back",): "to the back", ("front",): "to the front",
    ("back", "left"): "to the back left corner", ("back", "right"): "to the back right corner",
    ("front", "left"): "to the front left corner", ("front", "right"): "to the front right corner",
}
ORDINALS = ("first", "second", "third", "fourth", "fifth")
SUPERLATIVES: dict[str, Callable[[ImagePoint], float]] = {  # the object with the largest value
    "leftmost": lambda p: -p.x, "rightmost": lambda p: p.x,
    "frontmost": lambda p: -p.depth, "rearmost": lambda p: p.depth,
}


def _margin(relation_or_superlative: str) -> float:
    depthwise = relation_or_superlative in ("behind", "in front of", "frontmost", "rearmost")
    return DEPTH_MARGIN if depthwise else X_MARGIN


@dataclass(frozen=True)
class SceneView:
    """A scene's objects with where the camera sees each of them; ``stable`` are the ids of objects
    no change touches (preferred as neighbours, since they look the same in both images)."""

    objects: ObjectMap
    points: dict[int, ImagePoint]
    stable: frozenset[int]

    @classmethod
    def of(cls, objects: ObjectMap, width: int, height: int, stable: set[int] | frozenset[int]) -> "SceneView":
        return cls(objects, {i: see(o, width, height) for i, o in objects.items()}, frozenset(stable))

    def with_words(self, words: tuple[str, ...]) -> list[int]:
        return [i for i, o in self.objects.items() if set(words) <= _values(o)]


@dataclass(frozen=True)
class Referring:
    """A referring phrase: ``[superlative] attribute words [locator | ordinal]``, e.g. "red cube to the
    left of the large cylinder", "leftmost small cube", "large metal sphere in the back left corner",
    "small gray cube second from the left"."""

    words: tuple[str, ...]
    locator: str | None = None
    superlative: str | None = None
    ordinal: str | None = None

    @property
    def attributes(self) -> str:
        return " ".join(self.words)

    @property
    def ranked(self) -> bool:
        """Named by its rank among look-alikes (a superlative or an ordinal), not by a place."""
        return bool(self.superlative or self.ordinal)

    @property
    def phrase(self) -> str:
        head = " ".join([*([self.superlative] if self.superlative else []), *self.words])
        tail = self.locator or self.ordinal
        return f"{head} {tail}" if tail else head


def _values(obj: SceneObject) -> set[str]:
    return {obj.size, obj.color, obj.material, obj.shape}


def words_for(obj: SceneObject, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(getattr(obj, a) for a in ATTRIBUTES if a in names)


def region_keys(point: ImagePoint, margin: float) -> set[str]:
    """The regions ``point`` lies in, at least ``margin`` inside their borders."""
    keys = set()
    if point.x < 1 / 3 - margin:
        keys.add("left")
    elif point.x > 2 / 3 + margin:
        keys.add("right")
    elif 1 / 3 + margin <= point.x <= 2 / 3 - margin:
        keys.add("middle")
    if point.y < 0.5 - margin:
        keys.add("back")
    elif point.y > 0.5 + margin:
        keys.add("front")
    return keys


def anchor_phrase(anchor: int, view: SceneView) -> str | None:
    """The shortest attribute phrase that names ``anchor`` and no other object, if any does."""
    obj = view.objects[anchor]
    for names in ANCHOR_ATTRIBUTES:
        words = words_for(obj, names)
        if view.with_words(words) == [anchor]:
            return " ".join(words)
    return None


def _anchors(target: int, view: SceneView) -> list[tuple[int, str]]:
    """The nearest neighbours (on the ground) that a short phrase names, unchanged ones first."""
    x, y = view.objects[target].position
    named = [(i, anchor_phrase(i, view)) for i in view.objects if i != target]
    named = [(i, p) for i, p in named if p is not None]
    named.sort(key=lambda item: (item[0] not in view.stable,
                                 float(np.hypot(view.objects[item[0]].position[0] - x,
                                                view.objects[item[0]].position[1] - y))))
    return named[:NEARBY_ANCHORS]


def _relation_locators(target: int, view: SceneView, scale: float) -> list[tuple[str, Callable[[int], bool]]]:
    """(phrase, test) for every relation to a nearby neighbour that holds for ``target`` with the
    margins times ``scale``."""
    point, out = view.points[target], []
    for anchor, name in _anchors(target, view):
        b = view.points[anchor]
        for relation, signed in RELATIONS.items():
            if signed(point, b) > _margin(relation) * scale:
                out.append((f"{relation} the {name}",
                            lambda i, s=signed, b=b: s(view.points[i], b) > 0))
    return out


def _region_locators(point: ImagePoint, view: SceneView, scale: float) -> list[tuple[str, Callable[[int], bool]]]:
    clear = region_keys(point, REGION_MARGIN * scale)
    return [(phrase, lambda i, k=keys: set(k) <= region_keys(view.points[i], 0.0))
            for keys, phrase in REGIONS.items() if set(keys) <= clear]


def _superlatives(target: int, words: tuple[str, ...], view: SceneView, margin_scale: float) -> list[str]:
    """Superlatives that single ``target`` out among the objects with ``words`` (two or more)."""
    group = view.with_words(words)
    if len(group) < 2:
        return []
    out = []
    for name, key in SUPERLATIVES.items():
        mine = key(view.points[target])
        runner_up = max(key(view.points[i]) for i in group if i != target)
        if mine - runner_up > _margin(name) * margin_scale:
            out.append(name)
    return out


def refer(
    target: int,
    view: SceneView,
    rng: np.random.Generator,
    *,
    must_name: str | None = None,
) -> Referring:
    """A phrase that names ``target`` and no other object of ``view``, drawn with ``rng`` among all
    such phrases: first a kind of locator (a relation to a neighbour, an image region or, when
    the attributes fit several objects, a superlative), then one phrase of that kind. Where no claim
    is both clear and unique, the full description alone if that is unique, else claims that merely
    hold; where none is unique either (the middle one of three look-alikes), the object is counted
    among its look-alikes: "small gray metal cube second from the left".

    ``must_name`` is an attribute the phrase must mention (the one a change alters, so the caption
    says what it was before)."""
    obj, point = view.objects[target], view.points[target]
    name_sets = [n for n in TARGET_ATTRIBUTES if must_name is None or must_name in n]
    full = words_for(obj, ATTRIBUTES)
    for scale in (1.0, 0.0):  # clear claims; failing those, the full description or claims that merely hold
        if scale == 0.0 and view.with_words(full) == [target]:
            return Referring(full)
        relations, regions = _relation_locators(target, view, scale), _region_locators(point, view, scale)
        found: dict[str, list[Referring]] = {"relation": [], "region": [], "superlative": []}
        for names in name_sets:
            words = words_for(obj, names)
            group = view.with_words(words)
            for kind, locators in (("relation", relations), ("region", regions)):
                for phrase, holds in locators:
                    if [i for i in group if holds(i)] == [target]:
                        found[kind].append(Referring(words, phrase))
            found["superlative"] += [Referring(words, superlative=s) for s in _superlatives(target, words, view, scale)]
        kinds = [k for k, refs in found.items() if refs]
        if kinds:
            refs = found[kinds[int(rng.integers(len(kinds)))]]
            return refs[int(rng.integers(len(refs)))]
    return Referring(full, ordinal=_ordinal(target, full, view))  # the middle one of three or more look-alikes


def _ordinal(target: int, words: tuple[str, ...], view: SceneView) -> str:
    """"second from the left" (or right, whichever is nearer) among the objects with ``words``."""
    order = sorted(view.with_words(words), key=lambda i: view.points[i].x)
    k = order.index(target)
    side, n = ("left", k) if k < len(order) - 1 - k else ("right", len(order) - 1 - k)
    return f"{ORDINALS[n]} from the {side}"


def destination(target: int, before: SceneView, after: SceneView, rng: np.random.Generator) -> str:
    """Where a moved object went, read against the after-scene: a relation to a nearby neighbour or
    an image region that clearly holds after the move and did not hold before it (if one does;
    otherwise any that clearly holds), e.g. "to the right of the large cylinder", "to the back"."""
    was, now = before.points[target], after.points[target]
    candidates: list[tuple[str, bool]] = []
    for anchor, name in _anchors(target, after):
        b_now, b_was = after.points[anchor], before.points.get(anchor, after.points[anchor])
        for relation, signed in RELATIONS.items():
            if signed(now, b_now) > _margin(relation):
                candidates.append((f"{relation} the {name}", signed(was, b_was) <= 0))
    clear_now, held_before = region_keys(now, REGION_MARGIN), region_keys(was, 0.0)
    for keys, phrase in DESTINATIONS.items():
        if set(keys) <= clear_now:
            candidates.append((phrase, not set(keys) <= held_before))
    new = [c for c, is_new in candidates if is_new] or [c for c, _ in candidates]
    if not new:  # on a region border with no clear relation: the third of the image it is in
        return third_of_image(now, DESTINATIONS)
    return new[int(rng.integers(len(new)))]


def third_of_image(point: ImagePoint, phrases: dict[tuple[str, ...], str] = REGIONS) -> str:
    """The phrase of the third of the image width ``point`` lies in, judged without a margin."""
    return phrases[("left",) if point.x < 1 / 3 else ("right",) if point.x > 2 / 3 else ("middle",)]
