"""Img-Diff's filters pinned to the paper's chosen thresholds, boundaries included."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from pairsmith.filters.imgdiff import pipelines as pl
from pairsmith.filters.imgdiff.box_area import keep_box_area
from pairsmith.filters.imgdiff.box_aspect import box_aspect, keep_box_aspect
from pairsmith.filters.imgdiff.caption_filter import keep_region_captions
from pairsmith.filters.imgdiff.crop_filter import keep_crop
from pairsmith.filters.imgdiff.nms import box_iou, nms_most_different_first
from pairsmith.filters.imgdiff.pair_filter import keep_pair
from pairsmith.filters.imgdiff.pipelines import PAPER_REMOVE as REMOVE
from pairsmith.filters.imgdiff.pipelines import PAPER_REPLACE as PAPER
from pairsmith.filters.imgdiff.pipelines import ImgDiffThresholds, RemoveThresholds, ReplaceThresholds
from pairsmith.filters.imgdiff.removal_crop import keep_removal_crop
from pairsmith.filters.imgdiff.removal_itm import keep_removal_itm


def test_defaults_are_the_papers_chosen_setting():
    r, m = ReplaceThresholds(), RemoveThresholds()
    assert (r.pair_sim_min, r.pair_sim_max, r.crop_sim_max, r.bitm_min) == (0.90, 0.98, 0.85, 0.35)
    assert (r.nms_iou, r.max_boxes, r.min_area_denominator) == (0.5, 10, 400.0)
    assert r.box_aspect_max == 100.0  # not the paper's: drops only slivers (see test_box_aspect_*)
    assert (r.citm_min, r.caption_sim_max, r.blip_score) == (0.4, 0.85, "itm")
    assert (m.crop_sim_max, m.itm_original_min, m.itm_inpainted_max) == (0.9, 0.35, 0.2)


def test_config_rejects_unknown_keys_bad_ranges_and_an_empty_window():
    with pytest.raises(ValidationError, match="extra"):
        ReplaceThresholds(bitm=0.3)
    with pytest.raises(ValidationError):
        ReplaceThresholds(nms_iou=1.5)
    with pytest.raises(ValidationError, match="window would keep nothing"):
        ReplaceThresholds(pair_sim_min=0.98, pair_sim_max=0.9)
    with pytest.raises(ValidationError, match="extra"):
        ImgDiffThresholds.model_validate({"replace": {}, "removal": {}})


def test_thresholds_hash_names_the_setting():
    assert ImgDiffThresholds().content_hash() == ImgDiffThresholds().content_hash()
    looser = ImgDiffThresholds.model_validate({"replace": {"bitm_min": 0.3}})
    assert looser.content_hash() != ImgDiffThresholds().content_hash()


def test_blip_score_choice_picks_the_stored_columns():
    assert ReplaceThresholds().bitm_columns() == ("itm_before", "itm_after")
    assert ReplaceThresholds(blip_score="cosine").citm_columns() == ("citm_cosine_before", "citm_cosine_after")
    assert RemoveThresholds(blip_score="cosine").itm_columns() == ("itm_cosine_before", "itm_cosine_after")


@pytest.mark.parametrize(
    "sim, reason",
    [
        (0.90, "pair_sim_too_low"),  # open window: the lower end drops
        (0.9000001, None),
        (0.95, None),
        (0.9799999, None),
        (0.98, "pair_sim_too_high"),  # ... and so does the upper end
        (0.85, "pair_sim_too_low"),
        (0.999, "pair_sim_too_high"),
        (None, "pair_sim_missing"),
        (math.nan, "pair_sim_missing"),
    ],
)
def test_pair_similarity_window(sim, reason):
    assert keep_pair(sim, PAPER).reason == reason
    assert keep_pair(sim, PAPER).keep is (reason is None)


def test_pair_window_follows_the_config():
    wide = ReplaceThresholds(pair_sim_min=0.85)  # the paper's IS .85-.98 ablation row
    assert keep_pair(0.87, wide).keep and not keep_pair(0.87, PAPER).keep


@pytest.mark.parametrize(
    "crop, before, after, reason",
    [
        (0.84, 0.5, 0.5, None),
        (0.85, 0.5, 0.5, "crop_sim_too_close"),  # crop < 0.85: equal drops
        (0.90, 0.5, 0.5, "crop_sim_too_close"),
        (0.5, 0.35, 0.9, "bitm_too_low"),  # BITM > 0.35: equal drops, for either image
        (0.5, 0.9, 0.35, "bitm_too_low"),
        (0.5, 0.3500001, 0.3500001, None),
        (0.5, 0.2, 0.2, "bitm_too_low"),
        (None, 0.5, 0.5, "crop_sim_missing"),
        (0.5, None, 0.5, "bitm_missing"),
        (0.9, None, 0.5, "crop_sim_too_close"),  # the first failing check names the reason
    ],
)
def test_crop_filter(crop, before, after, reason):
    assert keep_crop(crop, before, after, PAPER).reason == reason


def test_bitm_threshold_of_the_first_ablation_row():
    assert keep_crop(0.5, 0.32, 0.32, ReplaceThresholds(bitm_min=0.3)).keep
    assert keep_crop(0.5, 0.32, 0.32, PAPER).reason == "bitm_too_low"


@pytest.mark.parametrize(
    "box, reason",
    [
        ([0, 0, 16, 12], None),  # 192 px = exactly 1/400 of 320x240: kept
        ([0, 0, 16, 11.99], "box_too_small"),
        ([10.5, 10.5, 26.5, 22.5], None),
        ([0, 0, 1, 1], "box_too_small"),
        ([5, 5, 5, 20], "box_invalid"),
        ([20, 5, 10, 20], "box_invalid"),
    ],
)
def test_box_area(box, reason):
    assert keep_box_area(box, 320, 240, PAPER).reason == reason


def test_box_area_scales_with_the_image_and_the_denominator():
    # 1000x800: the smallest kept box has 1000*800/400 = 2000 px
    assert keep_box_area([0, 0, 40, 50], 1000, 800, PAPER).keep
    assert keep_box_area([0, 0, 40, 49.9], 1000, 800, PAPER).reason == "box_too_small"
    assert keep_box_area([0, 0, 40, 50], 1000, 800, ReplaceThresholds(min_area_denominator=200)).reason == "box_too_small"
    assert keep_box_area([0, 0, 20, 20], 1000, 800, ReplaceThresholds(min_area_denominator=2000)).keep


@pytest.mark.parametrize(
    "box, reason",
    [
        ([0, 0, 1000, 4], "box_aspect_too_extreme"),  # a sliver: passes the area rule on 1024 x 1024
        ([0, 0, 4, 1000], "box_aspect_too_extreme"),  # tall ones too
        ([0, 0, 400, 4], None),  # exactly 100: kept
        ([0, 0, 400.5, 4], "box_aspect_too_extreme"),
        ([10.5, 20.5, 60.5, 21.0], None),  # 50 x 0.5: a thin box is fine while it is not a sliver
        ([5, 5, 5, 20], "box_aspect_too_extreme"),  # no width at all
    ],
)
def test_box_aspect(box, reason):
    assert keep_box_aspect(box, PAPER).reason == reason


def test_box_aspect_default_drops_only_what_the_vlm_refuses_to_see():
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    from pairsmith.tasks.imgdiff.items import int_box

    with pytest.raises(ValueError, match="aspect ratio must be smaller than 200"):
        smart_resize(4, 1000)  # Qwen2-VL's processor on the crop of [0, 0, 1000, 4]: a lost batch
    worst = [0.5, 0, 400.5, 4]  # aspect 100 exactly; rounded out to pixels its crop is 401 x 4
    assert keep_box_aspect([0, 0, 400, 4], PAPER).keep and box_aspect(worst) == 100.0
    x1, y1, x2, y2 = int_box(worst, 1024, 1024)
    smart_resize(y2 - y1, x2 - x1)  # what the filter keeps, the VLM takes
    # Ordinary boxes keep the paper's verdicts: any box the area rule keeps with a ratio up to 50:1.
    for w, h in [(52, 52), (640, 480), (1000, 20), (20, 1000), (60, 45)]:
        box = [0, 0, w, h]
        assert keep_box_area(box, 1024, 1024, PAPER).keep and keep_box_aspect(box, PAPER).keep, box
    assert keep_box_aspect([0, 0, 300, 4], ReplaceThresholds(box_aspect_max=50)).reason == "box_aspect_too_extreme"


def test_box_iou():
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert iou.shape == (1, 4)
    assert iou[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0, 0.0])


def test_nms_keeps_the_most_different_box_of_an_overlapping_group():
    boxes = [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 1, 10, 11]]
    sims = [0.80, 0.40, 0.70, 0.60]  # box 1 differs most, so it survives its group
    result = nms_most_different_first(boxes, sims, PAPER)
    assert result.kept == [1, 2]
    assert {i: v.reason for i, v in result.dropped.items()} == {0: "nms_suppressed", 3: "nms_suppressed"}


def test_nms_iou_boundary_is_kept():
    # IoU exactly 0.5: [0,0,30,10] vs [10,0,40,10] -> 20*10 / (300+300-200) = 0.5
    boxes = [[0, 0, 30, 10], [10, 0, 40, 10]]
    assert box_iou(boxes[:1], boxes[1:])[0, 0] == 0.5
    assert nms_most_different_first(boxes, [0.1, 0.2], PAPER).kept == [0, 1]
    # just above 0.5 suppresses the more similar box
    tighter = [[0, 0, 30, 10], [9.9, 0, 39.9, 10]]
    result = nms_most_different_first(tighter, [0.2, 0.1], PAPER)
    assert result.kept == [1] and result.dropped[0].reason == "nms_suppressed"


def test_nms_caps_at_ten_boxes_most_different_first():
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(12)]  # disjoint
    sims = [0.5 - i * 0.01 for i in range(12)]  # later boxes differ more
    result = nms_most_different_first(boxes, sims, PAPER)
    assert result.kept == list(range(11, 1, -1))
    assert {i: v.reason for i, v in result.dropped.items()} == {0: "nms_too_many_boxes", 1: "nms_too_many_boxes"}
    assert nms_most_different_first(boxes, sims, ReplaceThresholds(max_boxes=3)).kept == [11, 10, 9]


def test_nms_result_does_not_depend_on_input_order():
    boxes = [[0, 0, 10, 10], [2, 0, 12, 10], [0, 2, 10, 12]]
    sims = [0.5, 0.5, 0.5]  # a tie: broken by box coordinates, not by position
    first = nms_most_different_first(boxes, sims, PAPER)
    flipped = nms_most_different_first(boxes[::-1], sims[::-1], PAPER)
    assert [boxes[i] for i in first.kept] == [boxes[::-1][i] for i in flipped.kept] == [[0, 0, 10, 10]]


def test_nms_drops_boxes_without_a_score_and_checks_lengths():
    result = nms_most_different_first([[0, 0, 10, 10], [20, 20, 30, 30]], [None, 0.3], PAPER)
    assert result.kept == [1] and result.dropped[0].reason == "nms_score_missing"
    assert nms_most_different_first([], [], PAPER).kept == []
    with pytest.raises(ValueError, match="2 boxes but 1 crop"):
        nms_most_different_first([[0, 0, 1, 1], [0, 0, 2, 2]], [0.1], PAPER)


@pytest.mark.parametrize(
    "before, after, cs, reason",
    [
        (0.5, 0.5, 0.5, None),
        (0.4, 0.9, 0.5, "citm_too_low"),  # CITM > 0.4: equal drops
        (0.9, 0.4, 0.5, "citm_too_low"),
        (0.4000001, 0.4000001, 0.8499999, None),
        (0.9, 0.9, 0.85, "caption_sim_too_high"),  # CS < 0.85: equal drops
        (0.9, 0.9, 0.95, "caption_sim_too_high"),
        (None, 0.9, 0.5, "citm_missing"),
        (0.9, 0.9, None, "caption_sim_missing"),
    ],
)
def test_region_caption_filter(before, after, cs, reason):
    assert keep_region_captions(before, after, cs, PAPER).reason == reason


def test_caption_thresholds_of_the_first_ablation_row():
    row1 = ReplaceThresholds(citm_min=0.3, caption_sim_max=0.9)
    assert keep_region_captions(0.35, 0.35, 0.87, row1).keep
    assert keep_region_captions(0.35, 0.35, 0.87, PAPER).reason == "citm_too_low"


@pytest.mark.parametrize(
    "crop, reason",
    [(0.89, None), (0.9, "removal_crop_sim_too_close"), (0.95, "removal_crop_sim_too_close"), (None, "removal_crop_sim_missing")],
)
def test_removal_crop_filter(crop, reason):
    assert keep_removal_crop(crop, REMOVE).reason == reason


@pytest.mark.parametrize(
    "original, inpainted, reason",
    [
        (0.3500001, 0.1999999, None),  # strict, as Img-Diff §19.2.4 prints them: > 0.35, < 0.2
        (0.35, 0.1, "removal_itm_original_too_low"),  # exactly on a threshold drops
        (0.9, 0.2, "removal_itm_inpainted_too_high"),
        (0.3499999, 0.1, "removal_itm_original_too_low"),
        (0.9, 0.2000001, "removal_itm_inpainted_too_high"),
        (0.9, 0.5, "removal_itm_inpainted_too_high"),
        (0.1, 0.9, "removal_itm_original_too_low"),
        (None, 0.1, "removal_itm_missing"),
        (0.9, math.nan, "removal_itm_missing"),
    ],
)
def test_removal_itm_filter(original, inpainted, reason):
    assert keep_removal_itm(original, inpainted, REMOVE).reason == reason


def test_every_reason_starts_with_its_filter_name_and_maps_to_its_stage():
    prefixes = {
        "pair_filter": "pair_sim_", "box_area": "box_", "box_aspect": "box_aspect_", "nms": "nms_",
        "caption_filter": ("citm_", "caption_sim_"),
        "crop_filter": ("crop_sim_", "bitm_"), "removal_crop": "removal_crop_", "removal_itm": "removal_itm_",
        "natural": ("unnatural_", "natural_"),
    }
    assert set(pl.REASONS) == set(prefixes)  # every filter of both pipelines, and nothing else
    for stage, reasons in pl.REASONS.items():
        for reason in reasons:
            assert reason.startswith(prefixes[stage]), reason
            assert pl.stage_of_reason(reason) == stage
    assert pl.stage_of_reason("generate_failed") is None
