"""Acceptance checks of the dig-render flow over what ``pairsmith render --pairs 20`` stores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pairsmith.flows.dig_render import dig_render
from pairsmith.flows.engine.funnel import read_dropoff_artifact, run_funnel
from pairsmith.scenes.ground_truth import decode_png, pixel_change
from pairsmith.storage.store import sql_literal
from pairsmith.tasks.sample_builders import boxes_answer

pytestmark = pytest.mark.slow

CHANGED_DELTA = 10  # a pixel "changed" if a channel moved more than this (0-255)


def _kept(run) -> list[dict]:
    return run.store.read("pairs", where="status = 'kept'").to_pylist()


def _regions_by_pair(run) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in run.store.read("regions").to_pylist():
        out.setdefault(r["pair_id"], []).append(r)
    return out


def test_every_kept_pair_has_1_to_n_regions_inside_the_image(rendered_run):
    kept = _kept(rendered_run)
    assert len(kept) >= 18, "at most a couple of the 20 pairs may be dropped"
    regions = _regions_by_pair(rendered_run)
    n_max = rendered_run.config.sampling.max_changes
    for p in kept:
        boxes = [r["box"] for r in regions[p["pair_id"]] if r["status"] == "kept"]
        assert 1 <= len(boxes) <= n_max
        assert len(boxes) == p["n_changes"] == len(json.loads(p["changes"]))
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= p["width"] and 0 <= y1 < y2 <= p["height"]


def test_every_box_differs_visibly_between_before_and_after(rendered_run):
    regions = _regions_by_pair(rendered_run)
    for p in _kept(rendered_run):
        before = decode_png(p["image_before"]).astype(np.int16)
        after = decode_png(p["image_after"]).astype(np.int16)
        for r in regions[p["pair_id"]]:
            x1, y1, x2, y2 = (int(v) for v in r["box"])
            mean_abs = np.abs(before[y1:y2, x1:x2] - after[y1:y2, x1:x2]).mean()
            assert mean_abs > 5.0, f"pair {p['pair_id']} box {r['box']} ({r['change_type']}) barely changes"


def test_changed_pixels_of_changed_objects_lie_inside_the_boxes(rendered_run):
    """>= 95% of the pixels that changed and show a changed object (in either render) are boxed."""
    regions = _regions_by_pair(rendered_run)
    inside_total = belong_total = 0
    for p in _kept(rendered_run):
        before, after = decode_png(p["image_before"]), decode_png(p["image_after"])
        ids_before, ids_after = decode_png(p["index_before"]), decode_png(p["index_after"])
        changed_ids = [c["object_id"] + 1 for c in json.loads(p["changes"])]
        changed = pixel_change(before, after, CHANGED_DELTA)
        belong = changed & (np.isin(ids_before, changed_ids) | np.isin(ids_after, changed_ids))
        boxed = np.zeros(changed.shape, bool)
        for r in regions[p["pair_id"]]:
            x1, y1, x2, y2 = (int(v) for v in r["box"])
            boxed[y1:y2, x1:x2] = True
        inside, total = int((belong & boxed).sum()), int(belong.sum())
        assert total > 0
        assert inside / total >= 0.95, f"pair {p['pair_id']}: only {inside / total:.1%} of changed object pixels boxed"
        inside_total, belong_total = inside_total + inside, belong_total + total
    assert inside_total / belong_total >= 0.95


def test_strongly_changed_pixels_are_mostly_boxed_without_using_the_id_maps(rendered_run):
    """A check independent of the object-id renders: what is left outside the boxes is shadow."""
    regions = _regions_by_pair(rendered_run)
    for p in _kept(rendered_run):
        strong = pixel_change(decode_png(p["image_before"]), decode_png(p["image_after"]), 40)
        boxed = np.zeros(strong.shape, bool)
        for r in regions[p["pair_id"]]:
            x1, y1, x2, y2 = (int(v) for v in r["box"])
            boxed[y1:y2, x1:x2] = True
        assert (strong & boxed).sum() >= 0.8 * strong.sum()


def test_before_and_after_share_camera_and_noise_outside_changes(rendered_run):
    """Same camera, lights and seed: far from any change the two renders are nearly identical."""
    regions = _regions_by_pair(rendered_run)
    for p in _kept(rendered_run):
        before, after = decode_png(p["image_before"]), decode_png(p["image_after"])
        far = np.ones(before.shape[:2], bool)
        for r in regions[p["pair_id"]]:
            x1, y1, x2, y2 = (int(v) for v in r["box"])
            far[max(0, y1 - 40):y2 + 40, max(0, x1 - 40):x2 + 40] = False
        if far.sum() > 1000:
            assert pixel_change(before, after, 30)[far].mean() < 0.01


def test_funnel_adds_up_and_matches_the_stored_rows(rendered_run):
    run, store = rendered_run.summary, rendered_run.store
    funnel = run_funnel(store, run.run_id)
    assert [s.stage for s in funnel] == ["scene_plan", "render", "visibility", "dig_samples"]
    for s in funnel:
        assert s.n_in == s.n_kept + s.n_dropped
        assert s.n_dropped == sum(s.reasons.values())
    for earlier, later in zip(funnel, funnel[1:]):
        assert later.n_in == earlier.n_kept
    assert funnel[0].n_in == 20
    assert funnel[-1].n_kept == run.pairs_kept == store.count("pairs", "status = 'kept'")
    assert run.pairs_kept + run.pairs_dropped == store.count("pairs") == 20
    dropped = store.read("pairs", where="status = 'dropped'").to_pylist()
    assert all(p["drop_stage"] and p["drop_reason"] for p in dropped)


def test_dropoff_artifact_reaches_the_prefect_api(rendered_run):
    table = read_dropoff_artifact(rendered_run.flow_run_id)
    funnel = run_funnel(rendered_run.store, rendered_run.summary.run_id)
    assert table is not None
    assert [(r["stage"], r["in"], r["kept"], r["dropped"]) for r in table] == [
        (s.stage, s.n_in, s.n_kept, s.n_dropped) for s in funnel
    ]


def test_samples_ground_and_caption_every_kept_pair(rendered_run):
    store = rendered_run.store
    regions = _regions_by_pair(rendered_run)
    samples = store.read("samples").to_pylist()
    by_pair: dict[str, list[dict]] = {}
    for s in samples:
        by_pair.setdefault(s["pair_id"], []).append(s)
    for p in _kept(rendered_run):
        rows = {(s["task"], s["subset"]): s for s in by_pair[p["pair_id"]]}
        boxes = [r["box"] for r in regions[p["pair_id"]]]
        mixed = rows[("grounding", "mixed")]
        assert json.loads(mixed["answer"]) == json.loads(boxes_answer(boxes)) and mixed["boxes"] == boxes
        assert "exactly" not in mixed["conversation"][0]["content"]
        if p["subset"] in ("single", "double"):
            counted = rows[("grounding", p["subset"])]
            assert f"exactly {len(boxes)} difference" in counted["conversation"][0]["content"]
        caption = rows[("diff-caption", p["subset"])]
        assert caption["answer"].count(".") == len(boxes)  # one sentence per change
        for s in by_pair[p["pair_id"]]:
            assert s["conversation"][0]["content"].startswith("<image>\n<image>\n")
            assert s["conversation"][1]["content"] == s["answer"]
            assert s["split"] in ("train", "val", "test")
        assert len({s["split"] for s in by_pair[p["pair_id"]]}) == 1
    kept_ids = {p["pair_id"] for p in _kept(rendered_run)}
    assert set(by_pair) == kept_ids


def test_running_the_same_command_again_adds_no_rows(rendered_run):
    store = rendered_run.store
    before = {t: store.count(t) for t in ("pairs", "regions", "samples", "stage_stats")}
    again = dig_render(rendered_run.config)
    assert again.run_id == rendered_run.summary.run_id
    assert again.batches_resumed == again.batches and again.blender_seconds == 0
    assert {t: store.count(t) for t in before} == before
    rows = store.read("pairs", where=f"run_id = {sql_literal(again.run_id)}", columns=["pair_id"])
    ids = rows.column("pair_id").to_pylist()
    assert len(ids) == len(set(ids)) == 20
