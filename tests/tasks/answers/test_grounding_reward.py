"""The DiG reward: properties over random boxes (hypothesis), worked examples, and its TRL wrapper."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pairsmith.tasks.answers.grounding_reward import DigRewardConfig, box_iou, grounding_reward, match_boxes, parse_boxes
from pairsmith.tasks.training.dig_reward import DigReward

coord = st.integers(0, 600)
size = st.integers(2, 200)


@st.composite
def boxes(draw, min_size=1, max_size=5):
    out = []
    for _ in range(draw(st.integers(min_size, max_size))):
        x, y, w, h = draw(coord), draw(coord), draw(size), draw(size)
        out.append([x, y, x + w, y + h])
    return out


def shrink(box, t):
    """``box`` scaled about its centre by t in (0, 1]: inside it, with IoU = t²."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * t / 2, (box[3] - box[1]) * t / 2
    return [cx - hw, cy - hh, cx + hw, cy + hh]


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(boxes())
def test_the_true_boxes_as_the_answer_score_one(gt):
    assert grounding_reward(json.dumps(gt), gt) == pytest.approx(1.0)


@settings(max_examples=100, deadline=None)
@given(boxes(), boxes(), st.randoms(use_true_random=False))
def test_reward_does_not_depend_on_the_order_of_either_box_list(pred, gt, rnd):
    pred_perm, gt_perm = pred[:], gt[:]
    rnd.shuffle(pred_perm)
    rnd.shuffle(gt_perm)
    assert grounding_reward(json.dumps(pred_perm), gt_perm) == pytest.approx(grounding_reward(json.dumps(pred), gt))


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="[]"), max_size=200), boxes())
def test_an_answer_without_a_box_list_scores_zero(text, gt):
    assert grounding_reward(text, gt) == 0.0


@settings(max_examples=100, deadline=None)
@given(boxes())
def test_empty_or_malformed_box_lists_score_zero(gt):
    for answer in ("[]", "```json\n[]\n```", "<answer>[]</answer>", "[[1, 2, 3]]", "[[10, 10, 5, 20]]",
                   '[["a", 1, 2, 3]]', "[[1, 2, 3, 4], [5, 6]]", "[1, 2, 3, 4]", ""):
        assert grounding_reward(answer, gt) == 0.0, answer


@settings(max_examples=100, deadline=None)
@given(boxes(max_size=4), st.floats(0.05, 1.0), st.floats(0.05, 1.0))
def test_reward_is_monotone_in_iou(gt, t1, t2):
    """Every predicted box shrunk inside its true box by the same factor: IoU = t², the same for all."""
    lo, hi = sorted((t1, t2))
    r_lo = grounding_reward(json.dumps([shrink(b, lo) for b in gt]), gt)
    r_hi = grounding_reward(json.dumps([shrink(b, hi) for b in gt]), gt)
    assert r_lo <= r_hi + 1e-9


@settings(max_examples=100, deadline=None)
@given(boxes(max_size=1), st.integers(-300, 300), st.integers(0, 300))
def test_reward_of_one_box_follows_its_iou(gt, dx, shift):
    """One true box: of two shifted predictions, the one with the higher IoU never scores lower."""
    box = gt[0]
    a = [box[0] + dx, box[1], box[2] + dx, box[3]]
    b = [box[0] + shift, box[1], box[2] + shift, box[3]]
    if box_iou(a, box) >= box_iou(b, box):
        a, b = b, a
    assert grounding_reward(json.dumps([a]), gt) <= grounding_reward(json.dumps([b]), gt) + 1e-9


@settings(max_examples=100, deadline=None)
@given(boxes(), boxes())
def test_reward_lies_in_the_unit_interval_and_matches_are_one_to_one(pred, gt):
    r = grounding_reward(json.dumps(pred), gt)
    assert 0.0 <= r <= 1.0 + 1e-12
    matches = match_boxes([list(map(float, b)) for b in pred], [list(map(float, b)) for b in gt])
    assert len({p for p, _, _ in matches}) == len(matches) == len({g for _, g, _ in matches})
    assert all(iou >= 0.5 for _, _, iou in matches)


# --- examples -----------------------------------------------------------------------------------

GT = [[10, 10, 50, 50], [100, 100, 140, 160]]


def test_reward_formula_on_a_half_found_answer():
    # one of two boxes exact: F1 = 2·1/(1+2), mean IoU over the match = 1, format = 1
    r = grounding_reward("[[10, 10, 50, 50]]", GT)
    assert r == pytest.approx(0.9 * (0.5 * 2 / 3 + 0.5 * 1.0) + 0.1)


def test_a_box_below_the_iou_threshold_earns_only_the_format_term():
    near = [30, 10, 70, 50]  # IoU with [10,10,50,50] = 600/... = 1/3
    assert box_iou(near, GT[0]) == pytest.approx(1 / 3)
    assert grounding_reward(json.dumps([near]), GT[:1]) == pytest.approx(0.1)
    assert grounding_reward(json.dumps([near]), GT[:1], iou_threshold=0.3) == pytest.approx(
        0.9 * (0.5 * 1 + 0.5 / 3) + 0.1)


def test_extra_boxes_cost_precision_not_iou():
    r = grounding_reward(json.dumps(GT + [[300, 300, 310, 310]]), GT)
    assert r == pytest.approx(0.9 * (0.5 * 4 / 5 + 0.5) + 0.1)


def test_weights_are_configurable():
    assert grounding_reward("[[10, 10, 50, 50]]", GT, alpha=0.0, lambda_f1=1.0, lambda_iou=0.0) == pytest.approx(2 / 3)
    assert grounding_reward("nothing", GT, alpha=1.0) == 0.0
    assert grounding_reward("[[0, 0, 1, 1]]", GT, alpha=1.0) == 1.0


def test_no_change_pairs_reward_an_explicit_empty_answer():
    assert grounding_reward("[]", []) == pytest.approx(0.9)  # right, but no box list: no format point
    assert grounding_reward("I see nothing", []) == 0.0
    assert grounding_reward("[[1, 1, 5, 5]]", []) == pytest.approx(0.1)


@pytest.mark.parametrize("completion", [
    "The red cube moved.\n```json\n[[10, 10, 50, 50], [100, 100, 140, 160]]\n```",
    "<think>I compare [x1, y1, x2, y2] of both.</think><answer>[[100, 100, 140, 160], [10, 10, 50, 50]]</answer>",
    "<answer>\n```json\n[[10,10,50,50],[100,100,140,160]]\n```\n</answer>",
    "First guess [[0, 0, 5, 5]] was wrong. Final: [[10.0, 10.0, 50.0, 50.0], [100, 100, 140, 160]]",
    '[{"bbox_2d": [10, 10, 50, 50], "label": "cube"}, {"bbox_2d": [100, 100, 140, 160]}]',
    "<answer>[[10, 10, 50, 50], [100, 100, 140, 160]]",  # unclosed tag: the rest is the answer
])
def test_the_answer_is_found_in_reasoning_fences_and_answer_tags(completion):
    assert sorted(parse_boxes(completion)) == [[10.0, 10.0, 50.0, 50.0], [100.0, 100.0, 140.0, 160.0]]
    assert grounding_reward(completion, GT) == pytest.approx(1.0)


def test_the_answer_tag_wins_over_lists_in_the_reasoning():
    completion = "Maybe [[10, 10, 50, 50], [100, 100, 140, 160]]? <answer>[[500, 500, 510, 510]]</answer>"
    assert parse_boxes(completion) == [[500.0, 500.0, 510.0, 510.0]]
    assert grounding_reward(completion, GT) == pytest.approx(0.1)


def test_hungarian_matching_counts_the_most_matches_not_the_greedy_first():
    # pred 0 overlaps both truths; greedy on pred 0 would take gt 0 (IoU 0.6) and leave pred 1 without a match.
    gt = [[0, 0, 100, 100], [60, 0, 160, 100]]
    pred = [[0, 0, 100, 100], [30, 0, 130, 100]]
    rnd = random.Random(0)
    r = grounding_reward(json.dumps(pred), gt)
    assert len(match_boxes([list(map(float, b)) for b in pred], [list(map(float, b)) for b in gt])) == 2
    for _ in range(5):
        p = pred[:]
        rnd.shuffle(p)
        assert grounding_reward(json.dumps(p), gt) == pytest.approx(r)


def test_reward_config_rejects_bad_weights():
    with pytest.raises(ValueError, match="alpha"):
        DigRewardConfig(alpha=1.5)
    with pytest.raises(ValueError, match="iou_threshold"):
        DigRewardConfig(iou_threshold=0)


# --- the TRL wrapper ----------------------------------------------------------------------------


def test_dig_reward_takes_trl_chat_completions_and_gt_boxes_columns_and_logs_its_parts():
    logged: dict[str, list[float]] = {}
    reward = DigReward(DigRewardConfig())
    completions = [
        [{"role": "assistant", "content": "<answer>[[10, 10, 50, 50], [100, 100, 140, 160]]</answer>"}],
        [{"role": "assistant", "content": [{"type": "text", "text": "[[10, 10, 50, 50]]"}]}],
        [{"role": "assistant", "content": "no idea"}],
        "[]",
    ]
    values = reward(completions=completions, gt_boxes=[GT] * 4, prompts=["p"] * 4,
                    log_metric=lambda k, v: logged.setdefault(k, []).append(v), trainer_state=None)
    assert values == pytest.approx([1.0, 0.9 * (0.5 * 2 / 3 + 0.5) + 0.1, 0.0, 0.0])
    assert logged["dig/format"] == [pytest.approx(0.5)]
    assert logged["dig/f1"] == [pytest.approx((1 + 2 / 3) / 4)]
    assert logged["dig/mean_iou"] == [pytest.approx(0.5)]
    assert reward.__name__ == "dig_reward"  # TRL logs it as rewards/dig_reward/mean
    with pytest.raises(ValueError, match="2 completions for 1 gt_boxes"):
        reward(completions=completions[:2], gt_boxes=[GT])


@settings(max_examples=50, deadline=None)
@given(boxes())
def test_dig_reward_equals_the_pure_function(gt):
    answer = json.dumps(gt[::-1])
    assume(answer)
    assert DigReward()(completions=[[{"role": "assistant", "content": answer}]], gt_boxes=[gt]) == [
        pytest.approx(grounding_reward(answer, gt))]
