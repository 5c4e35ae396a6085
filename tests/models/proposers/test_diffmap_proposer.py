"""The weight-free diff-map proposer: exact boxes on synthetic pairs, recall on rendered pairs."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from benchmarks.proposer_recall import load_truth_pairs, main, match_count, pair_proposer, run, score
from pairsmith.models.proposers.diffmap_proposer import DiffMapConfig, DiffMapProposer
from pairsmith.models.proposers.pair_proposer import RENDER

H, W = 120, 160
GRAY, RED, BLUE, GREEN, YELLOW = (128, 128, 128), (200, 40, 40), (40, 60, 200), (40, 170, 60), (220, 200, 40)


def _canvas(seed: int = 0) -> np.ndarray:
    """A gray floor with the same noise in both images (one render seed), as in dig-render pairs."""
    noise = np.random.default_rng(seed).normal(0, 4, (H, W, 1))
    return np.clip(np.full((H, W, 3), GRAY, float) + noise, 0, 255)


def _rect(img: np.ndarray, box, color) -> None:
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = color


def _disc(img: np.ndarray, cx, cy, r, color) -> list[float]:
    yy, xx = np.mgrid[:H, :W]
    img[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = color
    return [float(cx - r), float(cy - r), float(cx + r + 1), float(cy + r + 1)]


def _u8(img: np.ndarray) -> np.ndarray:
    return img.round().astype(np.uint8)


def _boxes(before, after, **config) -> list[list[float]]:
    return DiffMapProposer(DiffMapConfig(**config)).propose(before, after).boxes


def test_a_colour_change_gives_its_exact_box():
    before, after = _canvas(), _canvas()
    for img in (before, after):
        _rect(img, (100, 20, 130, 50), GREEN)  # an object that does not change
    _rect(before, (20, 30, 60, 80), RED)
    _rect(after, (20, 30, 60, 80), BLUE)
    assert _boxes(_u8(before), _u8(after)) == [[20.0, 30.0, 60.0, 80.0]]


def test_identical_images_give_no_boxes():
    img = _canvas()
    _rect(img, (20, 30, 60, 80), RED)
    result = DiffMapProposer().propose(_u8(img), _u8(img.copy()))
    assert result.boxes == [] and result.kinds == []


def test_touching_changes_are_split_into_one_box_each():
    """The case a plain connected-components proposer gets wrong: two changed objects touch."""
    before, after = _canvas(), _canvas()
    _rect(before, (20, 30, 60, 80), RED)
    _rect(after, (20, 30, 60, 80), GREEN)
    disc_box = _disc(before, 82, 55, 21, BLUE)  # touches the rectangle's right edge
    _disc(after, 82, 55, 21, YELLOW)
    boxes = _boxes(_u8(before), _u8(after))
    truths = [[20.0, 30.0, 60.0, 80.0], disc_box]
    assert match_count(boxes, truths, 0.9) == 2
    assert len(boxes) <= 3


def test_a_shape_change_is_boxed_where_the_object_is_in_either_image():
    before, after = _canvas(), _canvas()
    _rect(before, (60, 40, 90, 70), RED)  # a small square ...
    union = _disc(after, 75, 55, 25, RED)  # ... became a bigger disc around it
    boxes = _boxes(_u8(before), _u8(after))
    assert match_count(boxes, [union], 0.9) == 1


def test_added_and_removed_objects():
    before, after = _canvas(), _canvas()
    _rect(before, (10, 10, 40, 40), BLUE)  # removed
    _rect(after, (100, 60, 140, 110), YELLOW)  # added
    boxes = _boxes(_u8(before), _u8(after))
    assert match_count(boxes, [[10, 10, 40, 40], [100, 60, 140, 110]], 0.9) == 2


def test_batch_api_masks_and_inputs():
    before, after = _canvas(), _canvas()
    _rect(before, (20, 30, 60, 80), RED)
    _rect(after, (20, 30, 60, 80), BLUE)
    pil_pair = (Image.fromarray(_u8(before)), Image.fromarray(_u8(after)))
    proposer = DiffMapProposer(DiffMapConfig(return_masks=True))
    results = proposer.propose_batch([pil_pair, (_u8(before), _u8(before))])
    assert [r.boxes for r in results] == [[[20.0, 30.0, 60.0, 80.0]], []]
    first = results[0]
    assert first.kinds == ["object"] and first.changed_fraction[0] > 0.9
    truth = np.zeros((H, W), bool)
    truth[30:80, 20:60] = True
    mask = first.masks[0]
    assert mask.shape == (H, W) and (mask & truth).sum() / (mask | truth).sum() > 0.99
    # an after image of another size is resized onto the before image; boxes stay in before pixels
    bigger = Image.fromarray(_u8(after)).resize((W * 2, H * 2), Image.NEAREST)
    assert match_count(proposer.propose(pil_pair[0], bigger).boxes, [[20, 30, 60, 80]], 0.9) == 1
    # the proposer travels to workers as its config
    assert pickle.loads(pickle.dumps(proposer)).config == proposer.config


def test_otsu_threshold_and_config_errors():
    before, after = _canvas(), _canvas()
    _rect(before, (20, 30, 60, 80), RED)
    _rect(after, (20, 30, 60, 80), BLUE)
    result = DiffMapProposer(DiffMapConfig(diff_threshold="otsu")).propose(_u8(before), _u8(after))
    assert result.boxes == [[20.0, 30.0, 60.0, 80.0]] and result.threshold >= 8
    with pytest.raises(ValidationError):
        DiffMapConfig(diff_treshold=10)
    with pytest.raises(ValidationError):
        DiffMapConfig(diff_threshold="mean")
    with pytest.raises(ValueError, match="expected an RGB image"):
        DiffMapProposer().propose(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))


def test_score_counts_one_to_one_matches():
    truths = [[[0, 0, 10, 10], [20, 0, 30, 10]], []]
    proposals = [[[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 60, 60]], [[0, 0, 5, 5]]]
    report = score(proposals, truths)
    assert (report.truths, report.proposals, report.matched) == (2, 4, 1)  # two boxes on one truth count once
    assert report.recall == 0.5 and report.precision == 0.25
    assert report.pair_recall == 0.5 and report.pair_precision == pytest.approx((1 / 3 + 0) / 2)


@pytest.mark.slow
def test_recall_on_rendered_pairs_is_at_least_point_nine(rendered_run):
    pairs = load_truth_pairs(rendered_run.config.db, rendered_run.summary.run_id)
    assert len(pairs) == rendered_run.summary.pairs_kept and sum(len(p.boxes) for p in pairs) >= len(pairs)
    report = run(pairs, pair_proposer(RENDER, 0.0))
    assert report.recall >= 0.85, report  # the benchmark reports the figures; this guards against collapse
    assert report.precision >= 0.6, report
    assert report.global_pairs == 0  # rendered pairs are never whole-image edits


@pytest.mark.slow
def test_benchmark_script_ends_with_the_recall_line(rendered_run, capsys):
    assert main(["--db", rendered_run.config.db, "--proposer", "diffmap"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("recall@0.5 = ") and float(lines[-1].split(" = ")[1]) >= 0.9
    assert lines[-2].startswith("precision@0.5 = ")


def test_benchmark_script_errors(tmp_path, capsys):
    assert main(["--db", str(tmp_path / "none.lance"), "--proposer", "fastsam", "--weights", str(tmp_path / "x.pt")]) == 2
    assert "FastSAM weights" in capsys.readouterr().err
    assert main(["--db", str(tmp_path / "none.lance")]) == 2
    assert "no such database" in capsys.readouterr().err
    assert main([]) == 2 and "either --db" in capsys.readouterr().err
    assert main(["--marked", str(tmp_path / "m.jsonl")]) == 2 and "--marked needs --json" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("proposer: {work_sid: 3}\n")
    assert main(["--db", str(tmp_path), "--config", str(bad)]) == 2
    assert f"--config {str(bad)!r}" in capsys.readouterr().err


def test_occluded_neighbours_are_not_boxed():
    """A new object in front of an unchanged one: only the new object is a change."""
    before, after = _canvas(), _canvas()
    for img in (before, after):
        _rect(img, (60, 30, 110, 80), GREEN)  # stays, but the new object hides 42 % of it
    _rect(after, (40, 45, 90, 100), RED)
    assert _boxes(_u8(before), _u8(after), occlusion_max_changed=0.7) == [[40.0, 45.0, 90.0, 100.0]]
    without_rule = _boxes(_u8(before), _u8(after))  # off by default: the neighbour joins the new object's box
    assert without_rule == [[40.0, 30.0, 110.0, 100.0]]


def test_rules_that_are_off_leave_the_config_dump_and_so_older_run_ids_as_they_were():
    from pairsmith.models.proposers.diffmap_proposer import RENDER_DIFFMAP
    from pairsmith.storage.ids import stable_hash

    assert stable_hash(DiffMapConfig().model_dump(mode="json"), 12) == "41315223afe0"  # as before the new rules
    render = RENDER_DIFFMAP.model_dump(mode="json")
    assert render["occlusion_max_changed"] == 0.7 and render["min_box_changed_fraction"] == 0.3
    assert DiffMapConfig.model_validate(render) == RENDER_DIFFMAP
