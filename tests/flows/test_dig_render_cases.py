"""dig-render beyond the defaults: user scenes, distractors, bad items, a crash and its resume."""

from __future__ import annotations

import json

import pytest

from pairsmith.flows.dig_render_config import DigRenderConfig
from pairsmith.flows.engine.funnel import run_funnel
from pairsmith.scenes.scene_config import Scene
from pairsmith.storage.store import PairStore
from pairsmith.tasks.dig import render_pairs as render_module
from tests.conftest import render_run

pytestmark = pytest.mark.slow

VISIBLE = {"objects": [
    {"shape": "cube", "color": "green", "size": "large", "material": "metal", "position": [-1.5, 1.0], "rotation": 20},
    {"shape": "sphere", "color": "yellow", "size": "medium", "material": "matte", "position": [1.2, -0.8]},
    {"shape": "cylinder", "color": "purple", "size": "small", "material": "metal", "position": [0.5, 1.8]},
]}
# A small sphere right behind a large cylinder, as the camera sees it: valid, but never visible.
HIDDEN = {"objects": [
    {"shape": "cylinder", "color": "red", "size": "large", "material": "matte", "position": [1.0, -1.0]},
    {"shape": "sphere", "color": "blue", "size": "small", "material": "matte", "position": [0.045, -0.045]},
]}


def test_user_scenes_are_rendered_as_written_and_hidden_objects_drop_the_pair(tmp_path):
    scenes = tmp_path / "scenes.json"
    scenes.write_text(json.dumps([VISIBLE, HIDDEN]))
    run = render_run(tmp_path / "db", pairs=2, scenes_path=str(scenes))
    pairs = {p["scene_before"] and len(json.loads(p["scene_before"])["objects"]): p for p in run.store.read("pairs").to_pylist()}
    kept, dropped = pairs[3], pairs[2]
    stored = [{k: v for k, v in o.items() if k != "id"} for o in json.loads(kept["scene_before"])["objects"]]
    assert Scene.model_validate({"objects": stored}) == Scene.model_validate(VISIBLE)
    assert kept["status"] == "kept"
    assert dropped["status"] == "dropped" and dropped["drop_stage"] == "visibility"
    assert dropped["drop_reason"] == "visibility_object_hidden"
    assert dropped["attempts"] == 1  # a user's layout is not moved, so one try is all it gets
    assert dropped["image_before"] is None and dropped["index_before"] is not None
    funnel = {s.stage: s for s in run_funnel(run.store, run.summary.run_id)}
    assert funnel["visibility"].reasons == {"visibility_object_hidden": 1}
    assert funnel["dig_samples"].n_in == 1


def test_distractor_pairs_move_the_camera_and_have_no_boxes(tmp_path):
    run = render_run(tmp_path / "db", pairs=2, sampling={"distractor_fraction": 1.0})
    pairs = run.store.read("pairs").to_pylist()
    assert all(p["status"] == "kept" and p["n_changes"] == 0 and p["subset"] == "distractor" for p in pairs)
    assert all(p["camera_jitter"] and any(abs(v) > 0 for v in p["camera_jitter"]) for p in pairs)
    assert all(p["image_before"] != p["image_after"] for p in pairs)
    assert run.store.count("regions") == 0
    samples = run.store.read("samples").to_pylist()
    assert {s["answer"] for s in samples if s["task"] == "grounding"} == {"[]"}
    assert all("only the camera moved" in s["answer"] for s in samples if s["task"] == "diff-caption")


def test_a_render_error_drops_that_pair_only(tmp_path, monkeypatch):
    real_run = render_module._PairRenderer.run

    def flaky(self):
        if self.plan.index == 1:
            raise RuntimeError("GPU fell off the bus")
        return real_run(self)

    monkeypatch.setattr(render_module._PairRenderer, "run", flaky)
    run = render_run(tmp_path / "db", pairs=3, sampling={"max_changes": 1})
    rows = {p["pair_id"]: p for p in run.store.read("pairs").to_pylist()}
    failed = [p for p in rows.values() if p["status"] == "dropped"]
    assert len(failed) == 1 and failed[0]["drop_stage"] == "render" and failed[0]["drop_reason"] == "render_error"
    assert failed[0]["drop_detail"] == "RuntimeError: GPU fell off the bus"
    assert run.summary.pairs_kept == 2
    render_stage = next(s for s in run_funnel(run.store, run.summary.run_id) if s.stage == "render")
    assert (render_stage.n_in, render_stage.n_dropped) == (3, 1)


def test_a_run_killed_mid_write_resumes_without_duplicates(tmp_path, monkeypatch):
    """The second batch dies after its pairs were written; the re-run redoes only that batch."""
    db = tmp_path / "db"
    real_upsert = PairStore.upsert
    calls = {"n": 0}

    def dying_upsert(self, name, rows):
        calls["n"] += name != "run_starts"  # the run's start record is written before any batch
        if calls["n"] > 5:  # batch 1: pairs, regions, samples, stats; batch 2: pairs, then death
            raise OSError("No space left on device")
        return real_upsert(self, name, rows)

    monkeypatch.setattr(PairStore, "upsert", dying_upsert)
    config = DigRenderConfig(db=str(db), pairs=4, batch_size=2, sampling={"max_changes": 2})
    from pairsmith.flows.dig_render import dig_render

    state = dig_render(config, return_state=True, )
    assert state.is_failed()
    store = PairStore(str(db))
    assert store.count("pairs") == 4 and store.count("stage_stats") == 4  # batch 2's pairs, no stats
    monkeypatch.setattr(PairStore, "upsert", real_upsert)

    summary = dig_render(config)
    assert summary.batches_resumed == 1
    ids = store.read("pairs", columns=["pair_id"]).column("pair_id").to_pylist()
    assert len(ids) == len(set(ids)) == 4
    sample_ids = store.read("samples", columns=["sample_id"]).column("sample_id").to_pylist()
    assert len(sample_ids) == len(set(sample_ids))
    funnel = run_funnel(store, summary.run_id)
    assert funnel[0].n_in == 4 and all(s.n_in == s.n_kept + s.n_dropped for s in funnel)


def test_moved_objects_are_boxed_where_they_stood_and_where_they_went(tmp_path):
    """A real render of move pairs (tiny images): the 'from' box is the object's before pixels, the
    'to' box its after pixels, and together they cover the pixels that changed with it."""
    import numpy as np

    from pairsmith.scenes.ground_truth import box_from_mask, decode_png, pixel_change

    run = render_run(tmp_path / "db", pairs=4, sampling={"change_kinds": ["move"], "max_changes": 1},
                     render={"width": 128, "height": 96, "samples": 4})
    kept = run.store.read("pairs", where="status = 'kept'").to_pylist()
    assert len(kept) >= 3
    regions = run.store.read("regions").to_pylist()
    for p in kept:
        [change] = json.loads(p["changes"])
        assert change["kind"] == "move" and change["before"]["position"] != change["after"]["position"]
        mine = {r["place"]: r for r in regions if r["pair_id"] == p["pair_id"]}
        assert set(mine) == {"from", "to"} and all(r["status"] == "kept" for r in mine.values())
        ids_before, ids_after = decode_png(p["index_before"]), decode_png(p["index_after"])
        value = change["object_id"] + 1
        assert mine["from"]["box"] == box_from_mask(ids_before == value)
        assert mine["to"]["box"] == box_from_mask(ids_after == value)
        changed = pixel_change(decode_png(p["image_before"]), decode_png(p["image_after"]), 10)
        belong = changed & ((ids_before == value) | (ids_after == value))
        boxed = np.zeros(changed.shape, bool)
        for r in mine.values():
            x1, y1, x2, y2 = (int(v) for v in r["box"])
            boxed[y1:y2, x1:x2] = True
        assert belong.sum() > 0 and (belong & boxed).sum() / belong.sum() >= 0.95
        caption = mine["to"]["difference_caption"]
        assert " moved " in caption and caption == mine["from"]["difference_caption"]
