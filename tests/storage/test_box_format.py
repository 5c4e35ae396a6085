"""Box conventions per model family (issue 12 §6): conversions both ways, against the real processor."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pairsmith.tasks.answers.grounding_reward import box_iou, parse_boxes
from pairsmith.storage.box_format import PIXEL_CLAUSE, BoxFormat, ResizeRule
from pairsmith.storage.pair_images import side_by_side_text
from pairsmith.tasks.sample_builders import GROUNDING_PROMPT

BOXES = [[12.0, 30.0, 98.5, 141.0], [200.0, 10.0, 319.0, 239.0]]


def test_norm1000_and_pixels_convert_both_ways():
    norm = BoxFormat.named("norm1000")
    assert norm.to_model(BOXES, 320, 240) == [[38, 125, 308, 588], [625, 42, 997, 996]]
    back = norm.to_pixels(norm.to_model(BOXES, 320, 240), 320, 240)
    assert all(abs(a - b) <= 320 / 1000 for box, got in zip(BOXES, back) for a, b in zip(box, got))
    pixels = BoxFormat.named("pixels")
    assert pixels.to_model(BOXES, 320, 240) == [[12, 30, 98, 141], [200, 10, 319, 239]]
    assert pixels.to_pixels([[12, 30, 98, 141]], 320, 240) == [[12.0, 30.0, 98.0, 141.0]]


def test_resized_pixels_follow_qwen2_5_vl_processor():
    """320x240 is seen as 308x252 by Qwen2.5-VL; the real image processor agrees, for other sizes too."""
    from transformers import Qwen2VLImageProcessor

    rule = ResizeRule.from_processor("qwen2.5-vl")
    assert rule.resized(320, 240) == (308, 252)
    processor = Qwen2VLImageProcessor()
    for width, height in [(320, 240), (660, 240), (1024, 683), (37, 300), (3000, 2000)]:
        image = Image.fromarray(np.zeros((height, width, 3), np.uint8))
        grid = processor(images=[image], return_tensors="np")["image_grid_thw"][0]
        assert rule.resized(width, height) == (int(grid[2]) * 14, int(grid[1]) * 14), (width, height)
    box = BoxFormat.named("resized-pixels")
    model = box.to_model(BOXES, 320, 240)
    assert model[0] == [round(12 * 308 / 320), round(30 * 252 / 240), round(98.5 * 308 / 320), round(141 * 252 / 240)]
    back = box.to_pixels(model, 320, 240)
    assert all(box_iou(a, b) > 0.97 for a, b in zip(BOXES, back))


def test_a_processor_folder_sets_the_resize_rule(tmp_path):
    from transformers import Qwen2VLImageProcessor

    processor = Qwen2VLImageProcessor(min_pixels=64 * 28 * 28, max_pixels=256 * 28 * 28)
    processor.save_pretrained(tmp_path)
    rule = ResizeRule.from_processor(str(tmp_path))
    assert rule == ResizeRule(28, 64 * 28 * 28, 256 * 28 * 28)
    grid = processor(images=[Image.new("RGB", (1024, 768))], return_tensors="np")["image_grid_thw"][0]
    assert rule.resized(1024, 768) == (int(grid[2]) * 14, int(grid[1]) * 14) == (504, 364)  # at most 256 tokens
    with pytest.raises(ValueError, match="--processor 'nowhere': cannot load an image processor"):
        ResizeRule.from_processor("nowhere")
    with pytest.raises(ValueError, match="only applies to box format 'resized-pixels'"):
        BoxFormat.named("norm1000", str(tmp_path))


def test_prompts_name_the_frame_of_each_format():
    prompt = GROUNDING_PROMPT.format(count="", width=320, height=240)
    assert PIXEL_CLAUSE.format(width=320, height=240) in prompt  # what stored samples say
    turns = [("user", "<image>\n<image>\n" + prompt), ("assistant", "[[12, 30, 98, 141]]")]
    same, _ = BoxFormat.named("pixels").grounding(turns, BOXES[:1], (320, 240), (320, 240))
    assert same == turns
    norm, boxes = BoxFormat.named("norm1000").grounding(turns, BOXES[:1], (320, 240), (320, 240))
    assert "normalised to 0-1000" in norm[0][1] and "(320x240)" not in norm[0][1]
    assert json.loads(norm[1][1]) == boxes == [[38, 125, 308, 588]]
    side = (660, 240)
    resized, boxes = BoxFormat.named("resized-pixels").grounding(
        [("user", side_by_side_text(turns[0][1], True)), turns[1]], BOXES[:1], (320, 240), side, side_by_side=True)
    assert "of the whole picture as you see it (672x252)" in resized[0][1]
    assert "left picture" not in resized[0][1] and "first image (" not in resized[0][1]  # one frame, stated once
    assert boxes == [[round(12 * 672 / 660), round(30 * 252 / 240), round(98.5 * 672 / 660), round(141 * 252 / 240)]]


def test_the_side_by_side_note_states_the_layout_and_leaves_coordinates_to_the_prompt():
    question = "<image>\n<image>\nWhat changed between the first image and the second image?"
    for asked in (False, True):
        assert "oordinates" not in side_by_side_text(question, boxes_asked=asked)
        assert "side by side" in side_by_side_text(question, boxes_asked=asked)


def test_the_parser_reads_a_bare_bbox_object_and_answers_convert_back_to_pixels():
    assert parse_boxes('{"bbox_2d": [38, 125, 308, 588], "label": "cube"}') == [[38.0, 125.0, 308.0, 588.0]]
    assert parse_boxes('Thinking {"note": 1}. <answer>{"bbox_2d": [1, 2, 3, 4]}</answer>') == [[1.0, 2.0, 3.0, 4.0]]
    assert parse_boxes('```json\n[{"bbox_2d": [1, 2, 3, 4]}, {"bbox_2d": [5, 6, 7, 8]}]\n```') == [
        [1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]
    assert parse_boxes('{"label": "cube"}') is None
    answer = parse_boxes('{"bbox_2d": [38, 125, 308, 588]}')
    back = BoxFormat.named("norm1000").to_pixels(answer, 320, 240)
    assert box_iou(back[0], BOXES[0]) > 0.98


@pytest.fixture(scope="module")
def grounding_db(tmp_path_factory):
    from pairsmith.storage.store import PairStore
    from tests.synthetic_db import SyntheticRun, build

    store = PairStore(str(tmp_path_factory.mktemp("boxes") / "db"))
    build(store, SyntheticRun(run_id="boxes", unique_bytes=200), 6, batch_pairs=6)
    return store


def _grounding_rows(store, selection):
    from pairsmith.tasks.training.training_data import pin_tables, select_samples

    pinned = pin_tables(store, selection)
    return pinned, select_samples(store, pinned, selection).rows


def test_sft_and_grpo_data_use_the_box_format_in_the_frame_shown(grounding_db):
    from pairsmith.tasks.training.training_data import DataSelection, PairImages, training_dataset

    selection = DataSelection(tasks=["grounding"], splits=["train", "val", "test"], box_format="norm1000")
    pinned, rows = _grounding_rows(grounding_db, selection)
    images = PairImages(grounding_db.uri, pinned.pairs_version)
    sft = training_dataset(rows, images, "multi", with_completion=True, with_boxes=False, box=selection.boxes())
    grpo = training_dataset(rows, images, "side-by-side", with_completion=False, with_boxes=True,
                            box=selection.boxes())
    for i, row in enumerate(rows):
        expected = BoxFormat.named("norm1000").to_model(row["boxes"], 320, 240)
        item = sft[i]
        assert json.loads(item["completion"][0]["content"][0]["text"]) == expected
        assert "normalised to 0-1000" in item["prompt"][0]["content"][-1]["text"]
        side = grpo[i]
        assert side["gt_boxes"] == BoxFormat.named("norm1000").to_model(row["boxes"], 660, 240)  # the whole picture
        text = side["prompt"][0]["content"][-1]["text"]
        assert "of the whole picture (660x240: both images and the bar between them) normalised to 0-1000" in text
        assert "left picture" not in text
    with pytest.raises(ValueError, match="processor only applies to box_format resized-pixels"):
        DataSelection(processor="x")


def test_evaluate_asks_in_the_box_format_and_stores_pixels(grounding_db):
    from pairsmith.models.adapters.vlm_chat import VlmRequest
    from pairsmith.tasks.evaluate.generate_answers import generate_answers
    from pairsmith.tasks.training.training_data import DataSelection

    selection = DataSelection(tasks=["grounding"], splits=["train", "val", "test"], box_format="norm1000")
    pinned, rows = _grounding_rows(grounding_db, selection)
    asked: list[VlmRequest] = []

    class Norm1000Chat:  # answers each box exactly, the way Qwen2-VL / VLM-R1 would: one bbox_2d object each
        def generate_batch(self, requests):
            asked.extend(requests)
            return [json.dumps([{"bbox_2d": b} for b in BoxFormat.named("norm1000").to_model(r["boxes"], 320, 240)])
                    for r in rows]

    answered = generate_answers.fn(Norm1000Chat(), grounding_db.uri, pinned, rows, "multi", "eval-x",
                                   selection.boxes())
    predictions, (stats,) = answered.value, answered.stats
    assert stats.n_kept == len(rows) and all("normalised to 0-1000" in r.prompt for r in asked)
    for row, prediction in zip(rows, predictions):
        stored = json.loads(prediction.parsed)
        assert all(box_iou(a, b) > 0.97 for a, b in zip(stored, row["boxes"]))  # back in pixels of the image
