"""Spot-the-Diff's published test annotations in, with stand-in images: pairs, captions, idempotence."""

from __future__ import annotations

import json

import pytest

from pairsmith.flows.import_dataset import run_import
from pairsmith.storage.store import PairStore
from pairsmith.tasks.imports.spot_the_diff import SpotTheDiffConfig
from tests.conftest import SHARED_DATA, SHARED_DATA_HELP
from tests.public_sets import spot_the_diff_images

TEST_JSON = SHARED_DATA / "spot_the_diff" / "test.json"
needs_annotations = pytest.mark.skipif(
    not TEST_JSON.is_file(), reason=f"the Spot-the-Diff annotations are not at {TEST_JSON}: {SHARED_DATA_HELP}"
)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    if not TEST_JSON.is_file():
        pytest.skip(f"the Spot-the-Diff annotations are not at {TEST_JSON}: {SHARED_DATA_HELP}")
    root = tmp_path_factory.mktemp("spot")
    spot_the_diff_images(json.loads(TEST_JSON.read_text()), root / "resized_images")
    config = SpotTheDiffConfig(db=str(root / "db.lance"), annotations=str(TEST_JSON), images_dir=str(root / "resized_images"),
                               batch_size=128)
    return config, run_import(config)


@needs_annotations
@pytest.mark.slow
def test_the_test_split_gives_1404_entries_and_2100_captions_and_twice_adds_nothing(imported):
    config, summary = imported
    annotations = json.loads(TEST_JSON.read_text())
    # 2,107 sentences, 7 of them "" (the only sentence of 7 pairs): those 7 entries are reason rows
    assert sum(len(a["sentences"]) for a in annotations) == 2107
    blank = {i for i, a in enumerate(annotations) if not any(s.strip() for s in a["sentences"])}
    assert (summary.entries, summary.pairs_kept, summary.pairs_dropped, len(blank)) == (1404, 1397, 7, 7)
    assert summary.samples == 2100 == sum(1 for a in annotations for s in a["sentences"] if s.strip())
    assert summary.splits == {"test": 2100} and summary.batches == 11  # 1404 entries in batches of 128
    store = PairStore(config.db)
    pairs = store.read("pairs", columns=["pair_id", "dataset", "method", "origin", "width", "height",
                                         "image_format", "source_format", "status"]).to_pylist()
    samples = store.read("samples").to_pylist()
    assert len(pairs) == 1404 and len(samples) == 2100
    assert {(p["dataset"], p["method"], p["width"], p["height"], p["image_format"], p["source_format"])
            for p in pairs if p["status"] == "kept"} == {("spot-the-diff", "spot-the-diff", 224, 224, "PNG", "PNG")}
    assert {int(p["origin"].rsplit("#", 1)[1]) for p in pairs if p["status"] == "dropped"} == blank
    assert {(s["task"], s["split"], s["dataset"]) for s in samples} == {("diff-caption", "test", "spot-the-diff")}
    # every annotator's every sentence, verbatim, on the pair of its own entry
    origin = {p["pair_id"]: int(p["origin"].rsplit("#", 1)[1]) for p in pairs}
    by_entry: dict[int, list[str]] = {}
    for s in sorted(samples, key=lambda s: s["sample_id"]):
        by_entry.setdefault(origin[s["pair_id"]], []).append(s["answer"])
    assert {i: sorted(v) for i, v in by_entry.items()} == {
        i: sorted(a["sentences"]) for i, a in enumerate(annotations) if i not in blank}

    again = run_import(config)
    assert again.run_id == summary.run_id and again.batches_resumed == again.batches == 11
    assert (store.count("pairs"), store.count("samples")) == (1404, 2100)
    rebatched = run_import(config.model_copy(update={"batch_size": 500}))  # the same run: nothing to redo
    assert rebatched.run_id == summary.run_id and rebatched.batches_resumed == rebatched.batches == 11
    assert (store.count("pairs"), store.count("samples")) == (1404, 2100)
