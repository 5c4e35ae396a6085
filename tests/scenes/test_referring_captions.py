"""OmniDiff-style captions: every referring part names exactly the changed object.

The captions are read back by a resolver written here, independently of ``pairsmith.scenes.referring``:
it parses the phrase with its own grammar and locates objects with Blender's own camera projection
(``world_to_camera_view``, through the renderer's camera; nothing is rendered), while the captions
were written from the scene graph and pairsmith's pure-Python projection.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np
import pytest

from pairsmith.scenes.blender_render import RenderSettings, get_renderer
from pairsmith.scenes.camera import object_centre
from pairsmith.scenes.change_text import TEMPLATES, referring_captions
from pairsmith.scenes.pair_plan import PairSampling, plan_pair
from pairsmith.scenes.scene_config import COLOR_RGB, MATERIAL_PBR, SHAPES, SIZE_RADIUS
from pairsmith.scenes.scene_sampler import CHANGE_KINDS, ObjectMap, as_object_map, sample_changes

W, H = 320, 240
ATTR = rf"(?:(?:{'|'.join(SIZE_RADIUS)}|{'|'.join(COLOR_RGB)}|{'|'.join(MATERIAL_PBR)}) )*(?:{'|'.join(SHAPES)})"
PHRASE = re.compile(rf"^(?:(?P<sup>leftmost|rightmost|frontmost|rearmost) )?(?P<attrs>{ATTR})(?: (?P<loc>.+))?$")
RELATION = re.compile(rf"^(?P<rel>to the left of|to the right of|behind|in front of) the (?P<anchor>{ATTR})$")
ORDINAL = re.compile(r"^(?P<n>second|third|fourth|fifth) from the (?P<side>left|right)$")
REGION_WORDS = {"left": ("x", 0, 1 / 3), "middle": ("x", 1 / 3, 2 / 3), "right": ("x", 2 / 3, 1),
                "back": ("y", 0, 0.5), "front": ("y", 0.5, 1)}


class Resolver:
    """Which objects of a scene a phrase can mean, by the phrase's plain reading."""

    def __init__(self, objects: ObjectMap):
        renderer = get_renderer(RenderSettings(width=W, height=H))
        ids = list(objects)
        seen = renderer.image_positions([object_centre(objects[i]) for i in ids])
        self.objects = objects
        self.at = {i: {"x": p[0], "y": p[1], "depth": p[2]} for i, p in zip(ids, seen)}

    def with_attributes(self, attrs: str) -> list[int]:
        words = set(attrs.split())
        return [i for i, o in self.objects.items() if words <= {o.size, o.color, o.material, o.shape}]

    def region(self, words: list[str], i: int) -> bool:
        return all(lo <= self.at[i][axis] <= hi for axis, lo, hi in (REGION_WORDS[w] for w in words))

    def where(self, locator: str, i: int) -> bool:
        """Does ``locator`` ("to the left of the large cylinder", "in the back left corner") hold for i?"""
        relation = RELATION.match(locator)
        if relation:
            anchors = self.with_attributes(relation["anchor"])
            assert len(anchors) == 1, f"anchor {relation['anchor']!r} is ambiguous or absent: {anchors}"
            a, b = self.at[i], self.at[anchors[0]]
            return {"to the left of": a["x"] < b["x"], "to the right of": a["x"] > b["x"],
                    "behind": a["depth"] > b["depth"], "in front of": a["depth"] < b["depth"]}[relation["rel"]]
        words = re.sub(r"^(on|in|at|to) the |( side| corner)$", "", locator).split()
        assert words and set(words) <= set(REGION_WORDS), f"unknown locator {locator!r}"
        return self.region(words, i)

    def resolve(self, phrase: str) -> list[int]:
        m = PHRASE.match(phrase)
        assert m, f"unparseable referring phrase {phrase!r}"
        found = self.with_attributes(m["attrs"])
        if m["sup"]:
            axis, sign = {"leftmost": ("x", -1), "rightmost": ("x", 1),
                          "frontmost": ("depth", -1), "rearmost": ("depth", 1)}[m["sup"]]
            found = [max(found, key=lambda i: sign * self.at[i][axis])]
        ordinal = ORDINAL.match(m["loc"] or "")
        if ordinal:  # counted among the look-alikes, from one side of the image
            order = sorted(found, key=lambda i: self.at[i]["x"], reverse=ordinal["side"] == "right")
            n = ["second", "third", "fourth", "fifth"].index(ordinal["n"]) + 1
            return order[n:n + 1]
        if m["loc"]:
            found = [i for i in found if self.where(m["loc"], i)]
        return found


def _template_of(kind: str, text: str) -> str:
    """The phrasing ``text`` was written in: of the templates it fits, the one with the most fixed words."""
    fits = [t for t in TEMPLATES[kind]
            if re.fullmatch(re.sub(r"\\\{[a-zA-Z_]+\\\}", "(.+)", re.escape(t)), text)]
    assert fits, f"{text!r} matches no {kind} template"
    return max(fits, key=lambda t: len(re.sub(r"\{[a-zA-Z_]+\}", "", t)))


def _planned_changes(n_wanted: int):
    """Scenes from the planner and modifications as the render task draws them, no Blender."""
    sampling = PairSampling(change_kinds=CHANGE_KINDS, max_changes=3)
    index = 0
    while n_wanted > 0:
        plan = plan_pair(index, f"pair-{index}", 11, sampling, None)
        index += 1
        if plan.scene is None:
            continue
        after, changes = sample_changes(plan.scene, plan.n_changes, np.random.default_rng([plan.seed, 1]),
                                        CHANGE_KINDS)
        n_wanted -= len(changes)
        yield plan, as_object_map(plan.scene), after, changes


def test_200_referring_captions_each_name_exactly_the_changed_object():
    checked: Counter = Counter()
    phrasings: dict[str, set[str]] = defaultdict(set)
    for plan, before, after, changes in _planned_changes(200):
        captions = referring_captions(changes, before, after, W, H, plan.seed)
        assert captions == referring_captions(changes, before, after, W, H, plan.seed)  # the pair's seed decides
        read_before, read_after = Resolver(before), Resolver(after)
        for change, caption in zip(changes, captions):
            ref, text = caption.referring, caption.text
            if not (change.kind == "add" and ref.ranked):
                phrasings[change.kind].add(_template_of(change.kind, text))
            if change.kind == "add" and ref.ranked:  # "The leftmost red cube is new."
                assert text == f"The {ref.phrase} is new."
                assert read_after.resolve(ref.phrase) == [change.object_id], text
            elif change.kind == "add":  # the new object, named in the after image
                assert f" {ref.attributes} " in text and text.endswith(f" {ref.locator}.")
                assert read_after.resolve(ref.phrase) == [change.object_id], text
            else:
                assert ref.phrase in text
                assert read_before.resolve(ref.phrase) == [change.object_id], (text, before)
            if change.kind == "move":
                assert text.endswith(f" {caption.destination}.")
                assert read_after.where(caption.destination, change.object_id), text
            if change.kind in ("shape", "color", "size", "material"):
                new = getattr(change.after, change.kind)
                assert re.search(rf"\b{new}\b", text.split(ref.phrase, 1)[1]), text
                assert getattr(change.before, change.kind) in ref.words, text  # says what it was
            checked[change.kind] += 1
    assert sum(checked.values()) >= 200
    assert set(checked) == set(CHANGE_KINDS) and min(checked.values()) >= 10, checked
    assert all(len(TEMPLATES[kind]) >= 3 for kind in CHANGE_KINDS)
    assert all(len(phrasings[kind]) >= 3 for kind in CHANGE_KINDS), str({k: len(v) for k, v in phrasings.items()})


def test_pure_python_projection_matches_blenders_camera():
    from pairsmith.scenes.camera import project

    points = [(0.0, 0.0, 0.2), (3.0, 3.0, 0.4), (-3.0, -3.0, 0.8), (1.0, -2.0, 0.5), (-2.5, 2.9, 0.3)]
    for width, height, jitter in ((320, 240, None), (96, 160, None), (320, 240, (0.2, -0.1, 0.1, 3.0))):
        renderer = get_renderer(RenderSettings(width=width, height=height))
        for point, (x, y, depth) in zip(points, renderer.image_positions(points, jitter)):
            ours = project(point, width, height, jitter)
            assert (ours.x, ours.y, ours.depth) == pytest.approx((x, y, depth), abs=1e-5)


def test_records_carry_the_configured_caption_style_and_a_move_gives_two_regions():
    """build_dig_records on hand-made id maps: both caption styles, a move's 'from' and 'to' boxes."""
    from pairsmith.filters.change_visibility import VisibilityThresholds
    from pairsmith.scenes.ground_truth import measure_regions
    from pairsmith.scenes.pair_plan import PairPlan
    from pairsmith.scenes.scene_config import Scene, SceneObject
    from pairsmith.scenes.scene_sampler import Change
    from pairsmith.storage.ids import stable_id
    from pairsmith.tasks.dig.records import build_dig_records
    from pairsmith.tasks.dig.render_pairs import RenderedPair
    from pairsmith.tasks.sample_builders import SplitFractions

    cube = SceneObject(shape="cube", color="red", size="large", material="metal", position=(-2.0, 2.0))
    sphere = SceneObject(shape="sphere", color="blue", size="small", material="matte", position=(1.5, -1.5))
    moved = cube.model_copy(update={"position": (2.0, 1.0)})
    before, after = {0: cube, 1: sphere}, {0: moved, 1: sphere}
    ids_before, ids_after = np.zeros((H, W), np.uint8), np.zeros((H, W), np.uint8)
    ids_before[60:100, 40:90] = 1
    ids_after[80:120, 200:250] = 1
    ids_before[150:180, 150:180] = ids_after[150:180, 150:180] = 2
    change = Change("move", 0, cube, moved)
    changed = ids_before != ids_after
    plan = PairPlan(0, "pair-x", 5, 1, False, Scene(objects=[cube, sphere]), False)
    pair = RenderedPair(plan=plan, before=before, after=after, changes=[change],
                        measures=[measure_regions(change, ids_before, ids_after, changed)],
                        png_before=b"png", png_after=b"png", index_before=ids_before, index_after=ids_after)
    settings = RenderSettings(width=W, height=H)
    built = {style: build_dig_records.fn(
        [plan], [pair], "run-x", settings, VisibilityThresholds(), SplitFractions(), style).value
        for style in ("referring", "plain")}
    regions = built["referring"].regions
    assert [(r.place, r.box, r.change_type, r.status) for r in regions] == [
        ("from", [40.0, 60.0, 90.0, 100.0], "move", "kept"), ("to", [200.0, 80.0, 250.0, 120.0], "move", "kept")]
    assert [r.region_id for r in regions] == [stable_id("pair-x", "render-gt", 0, p) for p in ("from", "to")]
    caption = referring_captions([change], before, after, W, H, plan.seed)[0]
    assert regions[0].difference_caption == regions[1].difference_caption == caption.text
    assert Resolver(before).resolve(caption.referring.phrase) == [0]
    grounding = [s for s in built["referring"].samples if s.task == "grounding" and s.subset == "single"][0]
    assert grounding.boxes == [r.box for r in regions] and "exactly 2 differences" in grounding.conversation[0].content
    plain = [s.answer for s in built["plain"].samples if s.task == "diff-caption"]
    assert plain == ["The large red metal cube moved to the right, at the back."]
