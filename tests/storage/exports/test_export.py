"""Exports that LLaVA-style and LLaMA-Factory (ShareGPT) trainers read as they are."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from pairsmith.storage.exports import export
from pairsmith.storage.exports.base import ExportOptions

ALL_SPLITS = ["train", "val", "test"]

pytestmark = pytest.mark.slow


def _kept_pairs(run) -> int:
    return run.store.count("pairs", "status = 'kept'")


def test_llava_multi_image(rendered_run, tmp_path):
    out = tmp_path / "out"
    result = export(rendered_run.store, out, "llava", ExportOptions(splits=ALL_SPLITS))
    records = json.loads((out / "llava.json").read_text())
    assert result.samples == len(records) == rendered_run.store.count("samples")
    assert len(list((out / "images").iterdir())) == 2 * _kept_pairs(rendered_run)
    for r in records:
        assert {"id", "image", "conversations", "task", "split", "method", "category", "boxes"} <= set(r)
        assert len(r["image"]) == 2 and all((out / p).is_file() for p in r["image"])
        assert [t["from"] for t in r["conversations"]] == ["human", "gpt"]
        assert r["conversations"][0]["value"].count("<image>") == 2
    with Image.open(out / records[0]["image"][0]) as img:
        assert img.size == (rendered_run.config.render.width, rendered_run.config.render.height)


def test_llava_side_by_side_for_single_image_models(rendered_run, tmp_path):
    out = tmp_path / "out"
    export(rendered_run.store, out, "llava", ExportOptions(tasks=["grounding"], layout="side-by-side", splits=ALL_SPLITS))
    records = json.loads((out / "llava.json").read_text())
    w, h = rendered_run.config.render.width, rendered_run.config.render.height
    for r in records:
        assert isinstance(r["image"], str)
        assert r["conversations"][0]["value"].count("<image>") == 1
        assert "left" in r["conversations"][0]["value"]
    with Image.open(out / records[0]["image"]) as img:
        assert img.size == (2 * w + 20, h)
        assert img.getpixel((w + 10, h // 2)) == (0, 0, 0)  # the black bar


def test_sharegpt_for_llama_factory(rendered_run, tmp_path):
    out = tmp_path / "out"
    export(rendered_run.store, out, "sharegpt", ExportOptions(tasks=["diff-caption"]))
    records = json.loads((out / "sharegpt.json").read_text())
    expected = rendered_run.store.count("samples", "task = 'diff-caption' AND split = 'train'")
    assert len(records) == expected > 0
    for r in records:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
        assert r["messages"][0]["content"].count("<image>") == len(r["images"]) == 2
    info = json.loads((out / "dataset_info.json").read_text())
    entry = info["pairsmith_out"]
    assert entry["file_name"] == "sharegpt.json" and entry["formatting"] == "sharegpt"
    assert entry["columns"] == {"messages": "messages", "images": "images"}
    assert entry["tags"]["user_tag"] == "user" and entry["tags"]["assistant_tag"] == "assistant"
    # LLaMA-Factory loads the file with `datasets`; it must parse as a table with those columns.
    from datasets import load_dataset

    ds = load_dataset("json", data_files=str(out / "sharegpt.json"), split="train")
    assert ds.num_rows == len(records) and {"messages", "images", "task", "split"} <= set(ds.column_names)


def test_export_of_nothing_says_so(rendered_run, tmp_path):
    with pytest.raises(ValueError, match="no samples match"):
        export(rendered_run.store, tmp_path / "out", "llava", ExportOptions(tasks=["med-mcq"]))
    assert list(tmp_path.iterdir()) == []  # nothing created
