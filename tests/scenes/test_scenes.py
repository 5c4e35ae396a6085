"""Scene configs, sampling of scenes and changes, and the sentences that describe changes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pairsmith.scenes.change_text import describe_change, describe_scene, object_phrase
from pairsmith.scenes.pair_plan import PairSampling, plan_pair
from pairsmith.scenes.scene_config import MAX_OBJECTS, Scene, SceneObject, load_scenes, overlaps
from pairsmith.scenes.scene_sampler import (
    CHANGE_KINDS,
    DEFAULT_CHANGE_KINDS,
    Change,
    as_object_map,
    sample_changes,
    sample_scene,
    subset_for,
)


def obj(**kw) -> dict:
    base = dict(shape="cube", color="red", size="large", material="metal", position=[0.0, 0.0])
    return {**base, **kw}


def test_unknown_colour_names_file_scene_field_and_value(tmp_path):
    path = tmp_path / "scenes.json"
    path.write_text(json.dumps([{"objects": [obj()]}, {"objects": [obj(), obj(color="pink", position=[2.0, 2.0])]}]))
    with pytest.raises(ValueError) as err:
        load_scenes(path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and "scene 1" in message and "objects[1].color" in message and "'pink'" in message


@pytest.mark.parametrize(
    "scene, expected",
    [
        ({"objects": [obj(), obj(position=[0.5, 0.5])]}, "objects 0 and 1 overlap"),
        ({"objects": [obj(position=[3.5, 0.0])]}, "outside the ground area"),
        ({"objects": [obj(glow=True)]}, "glow"),
        ({"objects": []}, "at least 1"),
        ({"objects": [obj(size="huge")]}, "size"),
    ],
)
def test_bad_scenes_are_rejected_with_the_reason(tmp_path, scene, expected):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(scene))
    with pytest.raises(ValueError, match=expected):
        load_scenes(path)


def test_more_than_ten_objects_is_an_error():
    objects = [obj(size="small", position=[-2.7 + 1.2 * (i % 5), -2.0 + 2.0 * (i // 5)]) for i in range(MAX_OBJECTS + 1)]
    with pytest.raises(ValueError, match="at most 10"):
        Scene.model_validate({"objects": objects})


def test_scene_files_jsonl_folder_and_bad_json(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"objects": [obj()]}))
    (tmp_path / "b.json").write_text(json.dumps([{"objects": [obj(color="blue")]}, {"objects": [obj(color="gray")]}]))
    assert [s.objects[0].color for s in load_scenes(tmp_path)] == ["red", "blue", "gray"]
    lines = tmp_path / "c.jsonl"
    lines.write_text(json.dumps({"objects": [obj()]}) + "\n\n" + json.dumps({"objects": [obj(shape="sphere")]}) + "\n")
    assert [s.objects[0].shape for s in load_scenes(lines)] == ["cube", "sphere"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"objects": [\n')
    with pytest.raises(ValueError, match=r"broken.jsonl line 1: not valid JSON"):
        load_scenes(broken)
    with pytest.raises(ValueError, match="no such file"):
        load_scenes(tmp_path / "missing.json")


def test_sampled_scenes_are_deterministic_and_never_overlap():
    for seed in range(30):
        scene = sample_scene(np.random.default_rng(seed), 3, 10)
        assert scene == sample_scene(np.random.default_rng(seed), 3, 10)
        assert 3 <= len(scene.objects) <= 10
        for i, a in enumerate(scene.objects):
            assert all(not overlaps(a, b) for b in scene.objects[i + 1:])


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_changes_touch_k_distinct_objects_and_keep_the_scene_valid(k):
    for seed in range(25):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, 3, 8)
        after, changes = sample_changes(scene, k, rng)
        assert len(changes) == k
        assert len({c.object_id for c in changes}) == k
        before = as_object_map(scene)
        for c in changes:
            assert c.kind in DEFAULT_CHANGE_KINDS
            if c.kind == "add":
                assert c.object_id not in before and after[c.object_id] == c.after
            elif c.kind == "remove":
                assert c.object_id not in after and before[c.object_id] == c.before
            else:
                changed = {f for f in ("shape", "color", "size", "material") if getattr(c.before, f) != getattr(c.after, f)}
                assert changed == {c.kind}
        Scene(objects=list(after.values()))  # after-scene is valid: no overlaps, at most 10 objects
        untouched = set(before) - {c.object_id for c in changes}
        assert all(after[i] == before[i] for i in untouched)


def test_a_move_takes_the_object_to_a_free_spot_clear_of_its_old_place():
    moves = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, 3, 8)
        after, changes = sample_changes(scene, 2, rng, kinds=("move",))
        before = as_object_map(scene)
        for c in changes:
            assert c.kind == "move" and c.before == before[c.object_id] and after[c.object_id] == c.after
            assert c.after == c.before.model_copy(update={"position": c.after.position})  # only the place
            assert not overlaps(c.after, c.before)  # the old place is left empty
            moves += 1
        Scene(objects=list(after.values()))  # no overlaps in the after-scene
    assert moves == 60


def test_move_is_a_kind_to_ask_for_and_the_cli_offers_every_kind():
    from pairsmith.flows.cli.main import KINDS

    assert KINDS == CHANGE_KINDS and "move" in CHANGE_KINDS
    assert PairSampling().change_kinds == DEFAULT_CHANGE_KINDS and "move" not in DEFAULT_CHANGE_KINDS
    assert "move" in PairSampling(change_kinds=["move"]).change_kinds


def test_changes_limited_to_allowed_kinds():
    rng = np.random.default_rng(0)
    scene = sample_scene(rng, 4, 6)
    _, changes = sample_changes(scene, 3, rng, kinds=("color",))
    assert {c.kind for c in changes} == {"color"}


def test_no_add_beyond_ten_objects_and_no_removing_the_last():
    full = Scene.model_validate({"objects": [
        obj(size="small", position=[-2.4 + 1.2 * (i % 5), -1.5 + 3.0 * (i // 5)]) for i in range(MAX_OBJECTS)
    ]})
    _, changes = sample_changes(full, 3, np.random.default_rng(1), kinds=("add", "color"))
    assert all(c.kind == "color" for c in changes)
    single = Scene.model_validate({"objects": [obj()]})
    _, changes = sample_changes(single, 1, np.random.default_rng(1), kinds=("remove", "shape"))
    assert changes[0].kind == "shape"


def test_pair_plans_depend_only_on_seed_and_index():
    sampling = PairSampling(max_changes=3)
    a = plan_pair(7, "id", 42, sampling, None)
    assert a == plan_pair(7, "id", 42, sampling, None)
    assert a.scene != plan_pair(8, "id", 42, sampling, None).scene
    assert 1 <= a.n_changes <= 3
    distractor = plan_pair(7, "id", 42, PairSampling(distractor_fraction=1.0), None)
    assert distractor.distractor and distractor.n_changes == 0


def test_sampling_ranges_are_checked():
    with pytest.raises(ValueError, match="min_changes 3 > max_changes 2"):
        PairSampling(min_changes=3, max_changes=2)


def test_subsets_follow_the_number_of_changes():
    assert [subset_for(k) for k in range(5)] == ["distractor", "single", "double", "mixed", "mixed"]


def test_sentences_say_what_changed():
    red = SceneObject(**obj(size="large", color="red", material="metal", shape="cube"))
    cases = {
        Change("shape", 0, red, red.model_copy(update={"shape": "cylinder"})): "The large red metal cube became a cylinder.",
        Change("color", 0, red, red.model_copy(update={"color": "yellow"})): "The large red metal cube turned yellow.",
        Change("size", 0, red, red.model_copy(update={"size": "small"})): "The large red metal cube shrank to small.",
        Change("material", 0, red, red.model_copy(update={"material": "matte"})): "The large red metal cube became matte.",
        Change("remove", 0, red, None): "The large red metal cube was removed.",
        Change("add", 0, None, red): "A large red metal cube was added.",
    }
    for change, sentence in cases.items():
        assert describe_change(change, change.before.describe() if change.before else change.after.describe()) == sentence
    moved = Change("move", 0, red, red.model_copy(update={"position": (2.0, 2.0)}))
    assert describe_change(moved, red.describe(), "to the left, at the back") == (
        "The large red metal cube moved to the left, at the back.")


def test_lookalike_objects_get_a_location():
    a = SceneObject(**obj(position=[-2.0, 2.0]))
    b = SceneObject(**obj(position=[2.0, -2.0]))
    c = SceneObject(**obj(color="blue", position=[0.0, 0.0]))
    objects = {0: a, 1: b, 2: c}
    boxes = {0: [10.0, 50.0, 40.0, 80.0], 1: [250.0, 150.0, 300.0, 200.0], 2: [150.0, 100.0, 170.0, 120.0]}
    assert object_phrase(0, objects, boxes.get, 320, 240) == "large red metal cube on the left"
    assert object_phrase(1, objects, boxes.get, 320, 240) == "large red metal cube on the right"
    assert object_phrase(2, objects, boxes.get, 320, 240) == "large blue metal cube"
    assert describe_scene({0: c}) == "A scene with a large blue metal cube."
