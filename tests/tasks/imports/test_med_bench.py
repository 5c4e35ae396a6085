"""The published MED benchmark sample: import, alignment, proposed regions, the marked benchmark, bench."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pairsmith.flows.cli.main import main
from pairsmith.flows.import_dataset import run_import
from pairsmith.flows.propose_regions import ProposeRegionsConfig, propose_regions
from pairsmith.models.proposers.pair_alignment import AlignConfig, align_pair, warp_onto_before
from pairsmith.storage.store import PairStore
from pairsmith.tasks.imports.med_bench import MedBenchConfig
from pairsmith.tasks.med.prompts import CATEGORIES
from tests.conftest import SHARED_DATA, SHARED_DATA_HELP

SAMPLE = SHARED_DATA / "med_bench_sample"
JSON = SAMPLE / "MED_bench_sample.json"
needs_sample = pytest.mark.skipif(
    not JSON.is_file(), reason=f"the MED benchmark sample is not at {SAMPLE}: {SHARED_DATA_HELP}"
)


def _scene(seed: int = 0, size=(320, 240)) -> Image.Image:
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8)).resize(size, Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x, y = rng.integers(0, size[0] - 40), rng.integers(0, size[1] - 40)
        draw.ellipse([x, y, x + 30, y + 30], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return img


def test_alignment_recovers_a_resize_and_a_shifted_crop():
    before = _scene()
    resized = before.resize((512, 384))
    a = align_pair(before, resized)
    assert a.ok and a.score > 0.9
    assert np.allclose(a.matrix()[:2, :2], np.diag([320 / 512, 240 / 384]), atol=0.01)
    crop = before.crop((20, 10, 300, 230)).resize((560, 440))  # moved and zoomed framing
    b = align_pair(before, crop)
    assert b.ok and b.method == "similarity" and b.score > 0.8
    corner = b.matrix() @ np.array([0.0, 0.0, 1.0])
    assert np.allclose(corner[:2], [20, 10], atol=2.0)  # after's origin lands on the crop's corner
    warped = np.asarray(warp_onto_before(before, crop, b)).astype(int)
    assert np.abs(warped[20:220, 30:290] - np.asarray(before)[20:220, 30:290]).mean() < 12


def test_unrelated_images_cannot_be_aligned():
    result = align_pair(_scene(0), _scene(1), AlignConfig())
    assert not result.ok and result.reason in {"align_low_score", "align_no_overlap"}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    if not JSON.is_file():
        pytest.skip(f"the MED benchmark sample is not at {SAMPLE}: {SHARED_DATA_HELP}")
    db = str(tmp_path_factory.mktemp("medbench") / "bench.lance")
    return run_import(MedBenchConfig(db=db, json_path=str(JSON))), db


@needs_sample
def test_import_gives_44_pairs_and_mcqs_in_all_categories_once(imported):
    summary, db = imported
    store = PairStore(db)
    assert (summary.entries, summary.pairs_kept, summary.pairs_dropped, summary.samples) == (44, 44, 0, 44)
    assert set(summary.categories) == set(CATEGORIES) and sum(summary.categories.values()) == 44
    items = json.loads(JSON.read_text())
    samples = {s["options"][0]: s for s in store.read("samples").to_pylist()}
    for item in items:
        s = samples[item["options"][0].strip()]
        assert (s["answer"], s["category"], s["split"], s["task"]) == (item["answer"], item["type"], "bench", "med-mcq")
        assert item["question"] in s["conversation"][0]["content"]
    pairs = store.read("pairs").to_pylist()
    assert all(p["origin"].startswith("med-bench:MED_bench_sample.json#") for p in pairs)
    assert all(Image.open(__import__("io").BytesIO(p["image_before"])).size == (p["width"], p["height"]) for p in pairs)
    again = run_import(MedBenchConfig(db=db, json_path=str(JSON)))
    assert again.run_id == summary.run_id
    assert (store.count("pairs"), store.count("samples")) == (44, 44)


@needs_sample
def test_bad_entries_and_images_become_reason_rows(tmp_path):
    items = json.loads(JSON.read_text())[:4]
    images = tmp_path / "images"
    images.mkdir()
    for item in items[:3]:
        for key in ("image_name", "edited_image_name"):
            shutil.copy(SAMPLE / item[key], images / Path(item[key]).name)
    (images / Path(items[1]["edited_image_name"]).name).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    entries = [dict(i, image_name=Path(i["image_name"]).name, edited_image_name=Path(i["edited_image_name"]).name)
               for i in items]
    entries[2]["answer"] = "E"
    entries.append({"image_name": "x.jpg"})
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(entries))
    summary = run_import(MedBenchConfig(db=str(tmp_path / "db"), json_path=str(path),
                                                    images_dir=str(images)))
    store = PairStore(str(tmp_path / "db"))
    reasons = sorted((p["drop_stage"], p["drop_reason"]) for p in store.read("pairs", where="status = 'dropped'").to_pylist())
    assert reasons == [("image_load", "load_corrupt"), ("image_load", "load_missing_image"),
                       ("read", "import_bad_entry"), ("read", "import_bad_entry")]
    assert (summary.entries, summary.pairs_kept, summary.samples) == (5, 1, 1)


@needs_sample
@pytest.mark.slow
def test_regions_and_extent_verdicts_for_every_real_pair(imported):
    _, db = imported
    summary = propose_regions(ProposeRegionsConfig(db=db))
    store = PairStore(db)
    pairs = store.read("pairs", columns=["pair_id", "width", "height", "align_score", "change_extent",
                                         "change_extent_score"]).to_pylist()
    assert summary.pairs == 44 and summary.aligned == 44 and summary.local + summary.global_edits == 44
    assert all(p["align_score"] is not None and p["change_extent"] in ("local", "global") for p in pairs)
    assert all(0 <= p["change_extent_score"] <= 1 for p in pairs)
    regions = store.read("regions", where=f"run_id = '{summary.run_id}'").to_pylist()
    by_pair = {}
    for r in regions:
        by_pair.setdefault(r["pair_id"], []).append(r["box"])
    extent = {p["pair_id"]: p["change_extent"] for p in pairs}
    assert by_pair and all(extent[pid] == "local" for pid in by_pair)  # global pairs get no boxes
    assert summary.with_regions >= 0.8 * summary.local
    sizes = {p["pair_id"]: (p["width"], p["height"]) for p in pairs}
    for pid, boxes in by_pair.items():
        w, h = sizes[pid]
        assert all(0 <= x1 < x2 <= w + 1 and 0 <= y1 < y2 <= h + 1 for x1, y1, x2, y2 in boxes)


@needs_sample
@pytest.mark.slow
def test_marked_benchmark_on_the_shared_sample(capsys):
    from benchmarks.proposer_recall import main as benchmark

    marked = SAMPLE / "changed_regions.jsonl"
    assert benchmark(["--marked", str(marked), "--json", str(JSON)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("recall = ") and " precision = " in lines[-1]
    assert "whole-image edits: 3 of 3 judged global, 0 boxes on them" in lines


@needs_sample
@pytest.mark.slow
def test_bench_reports_every_item_answered_or_unparseable(tmp_path, capsys, monkeypatch):
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    vlm = build_tiny_qwen2_vl(tmp_path / "vlm")
    code = main(["bench", "med", "--json", str(JSON), "--model", str(vlm), "--device", "cpu",
                 "--max-new-tokens", "8", "--db", str(tmp_path / "db")])
    out = capsys.readouterr().out
    assert code == 0
    table = [line.split() for line in out.splitlines() if line and line.split()[0] in {"all", *CATEGORIES}
             or any(line.startswith(c) for c in CATEGORIES)]
    rows = {" ".join(cells[:-4]): [int(cells[-4]), int(cells[-3]), int(cells[-2])] for cells in table}
    n, correct, unparseable = rows.pop("all")
    assert n == 44 and correct + unparseable <= n
    assert set(rows) == set(CATEGORIES)
    assert sum(r[0] for r in rows.values()) == 44 and all(r[0] == 4 for r in rows.values())
    assert sum(r[1] for r in rows.values()) == correct and sum(r[2] for r in rows.values()) == unparseable
