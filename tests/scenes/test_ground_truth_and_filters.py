"""Boxes from id maps, the visibility filter's boundaries, and stage counting."""

from __future__ import annotations

import numpy as np
import pytest

from pairsmith.filters.change_visibility import VisibilityThresholds, keep_change, keep_scene_objects
from pairsmith.storage.verdict import KEEP, StageStats, Verdict
from pairsmith.scenes.ground_truth import (
    box_from_mask,
    decode_png,
    encode_png,
    measure_change,
    measure_regions,
    pixel_change,
)
from pairsmith.scenes.scene_config import SceneObject
from pairsmith.scenes.scene_sampler import Change

CUBE = SceneObject(shape="cube", color="red", size="small", material="metal", position=(0.0, 0.0))


def test_box_uses_pixel_edges():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:8] = True  # rows 2..4, columns 3..7
    assert box_from_mask(mask) == [3.0, 2.0, 8.0, 5.0]
    assert box_from_mask(np.zeros((4, 4), bool)) is None


def _maps():
    before = np.zeros((20, 20), np.uint8)
    after = np.zeros((20, 20), np.uint8)
    before[2:6, 2:6] = 1  # object 0 small before
    after[2:10, 2:10] = 1  # ... and bigger after
    before[12:15, 12:15] = 2  # object 1 only before (removed)
    after[15:18, 1:4] = 3  # object 2 only after (added)
    return before, after


def test_regions_cover_the_object_in_either_image():
    before, after = _maps()
    grow = measure_change(Change("size", 0, CUBE, CUBE.model_copy(update={"size": "large"})), before, after, None)
    assert grow.box == [2.0, 2.0, 10.0, 10.0] and grow.visible_px_before == 16 and grow.visible_px_after == 64
    removed = measure_change(Change("remove", 1, CUBE, None), before, after, None)
    assert removed.box == [12.0, 12.0, 15.0, 15.0] and removed.visible_px_after == 0
    added = measure_change(Change("add", 2, None, CUBE), before, after, None)
    assert added.box == [1.0, 15.0, 4.0, 18.0] and added.visible_px_before == 0


def test_a_move_has_two_regions_its_old_place_and_the_spot_it_fills():
    before = np.zeros((20, 20), np.uint8)
    after = np.zeros((20, 20), np.uint8)
    before[2:6, 2:6] = 1  # object 0 stood here ...
    after[12:18, 10:16] = 1  # ... and moved here (nearer the camera: bigger)
    rgb_b, rgb_a = np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
    rgb_b[2:6, 2:6] = 200
    rgb_a[12:18, 10:16] = 200
    rgb_a[2:4, 2:6] = 200  # half of the old place still looks the same (a shadow, say)
    move = Change("move", 0, CUBE, CUBE.model_copy(update={"position": (1.0, 1.0)}))
    was, went = measure_regions(move, before, after, pixel_change(rgb_b, rgb_a, 12))
    assert (was.place, was.box, was.region_px, was.changed_fraction) == ("from", [2.0, 2.0, 6.0, 6.0], 16, 0.5)
    assert (went.place, went.box, went.region_px, went.changed_fraction) == ("to", [10.0, 12.0, 16.0, 18.0], 36, 1.0)
    assert (was.visible_px_before, was.visible_px_after) == (went.visible_px_before, went.visible_px_after) == (16, 36)
    assert measure_regions(Change("remove", 0, CUBE, None), before, after, None) == [
        measure_change(Change("remove", 0, CUBE, None), before, after, None)]
    # the visibility filter judges each place: a move whose new place is hidden is dropped
    assert keep_change("move", 16, 99, 1.0, min_pixels=100, min_changed_fraction=0.25).reason == "visibility_hidden_before"
    assert keep_change("move", 100, 99, 1.0, min_pixels=100, min_changed_fraction=0.25).reason == "visibility_hidden_after"


def test_changed_fraction_is_measured_inside_the_region():
    before, after = _maps()
    rgb_b = np.zeros((20, 20, 3), np.uint8)
    rgb_a = rgb_b.copy()
    rgb_a[2:6, 2:10] = 200  # half of the 64-pixel region of object 0 changes
    changed = pixel_change(rgb_b, rgb_a, delta=12)
    m = measure_change(Change("color", 0, CUBE, CUBE.model_copy(update={"color": "blue"})), before, after, changed)
    assert m.region_px == 64 and m.changed_fraction == pytest.approx(0.5)


def test_pixel_change_threshold_is_strict():
    a = np.zeros((1, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 1], b[0, 1, 2] = 12, 13
    assert pixel_change(a, b, 12).tolist() == [[False, True]]


def test_png_round_trip_keeps_ids():
    ids = np.arange(0, 255, dtype=np.uint8).reshape(15, 17)
    assert np.array_equal(decode_png(encode_png(ids)), ids)


@pytest.mark.parametrize(
    "kind, before_px, after_px, fraction, expected",
    [
        ("color", 100, 100, 0.9, None),
        ("color", 99, 100, 0.9, "visibility_hidden_before"),
        ("color", 100, 99, 0.9, "visibility_hidden_after"),
        ("remove", 100, 0, 0.9, None),
        ("add", 0, 100, 0.9, None),
        ("add", 0, 99, 0.9, "visibility_hidden_after"),
        ("remove", 99, 0, 0.9, "visibility_hidden_before"),
        ("shape", 100, 100, 0.25, None),  # boundary: equal to the threshold is kept
        ("shape", 100, 100, 0.2499, "visibility_no_pixel_change"),
        ("shape", 100, 100, None, None),  # pixels not rendered yet: only counts judged
    ],
)
def test_keep_change_boundaries(kind, before_px, after_px, fraction, expected):
    verdict = keep_change(kind, before_px, after_px, fraction, min_pixels=100, min_changed_fraction=0.25)
    assert verdict.keep is (expected is None)
    assert verdict.reason == expected


def test_scene_objects_must_all_be_seen():
    assert keep_scene_objects({0: 200, 1: 115}, 115) == KEEP
    assert keep_scene_objects({0: 200, 1: 114}, 115) == Verdict.drop("visibility_object_hidden")


def test_min_pixels_scale_with_resolution():
    t = VisibilityThresholds()
    assert t.min_pixels(320, 240) == 115
    assert t.min_pixels(640, 480) == 461


def test_stage_stats_add_up_and_refuse_other_stages():
    a, b = StageStats("render"), StageStats("render")
    for v in (KEEP, Verdict.drop("render_error"), KEEP):
        a.record(v)
    b.record(Verdict.drop("render_error"))
    total = a + b
    assert (total.n_in, total.n_kept, total.n_dropped) == (4, 2, 2)
    assert total.top_reasons() == [("render_error", 2)]
    with pytest.raises(ValueError, match="stage 'plan'"):
        total + StageStats("plan")
