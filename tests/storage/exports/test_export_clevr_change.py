"""clevr-change export: CLEVR-Change's published layout, read back by ``pairsmith import clevr-change``."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from pairsmith.flows.cli.main import main
from pairsmith.storage.exports import export
from pairsmith.storage.exports.base import MARKER, ExportOptions
from pairsmith.storage.exports.clevr_change import NO_CHANGE_CAPTION, clevr_type
from pairsmith.storage.schemas import PairRow, SampleRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.tasks.dig.records import DISTRACTOR_CAPTION
from pairsmith.tasks.sample_builders import diff_caption_sample
from tests.public_sets import make_clevr_change

JSON_FILES = ("change_captions.json", "no_change_captions.json", "splits.json", "type_mapping.json")
PATTERNS = {"images": r"CLEVR_default_\d{6}\.png", "sc_images": r"CLEVR_semantic_\d{6}\.png",
            "nsc_images": r"CLEVR_nonsemantic_\d{6}\.png"}


def _distractor(pair_id: str, before: bytes, after: bytes, split: str) -> tuple[PairRow, SampleRow]:
    pair = PairRow(pair_id=pair_id, run_id="distractors", method="dig-render", image_before=before, image_after=after,
                   width=1, height=1, edit_category="camera", subset="distractor", n_changes=0, status="kept",
                   created_at=utc_now())
    sample = diff_caption_sample(pair_id=pair_id, run_id="distractors", method="dig-render",
                                 sentences=[DISTRACTOR_CAPTION], boxes=[], subset="distractor", split=split,
                                 category="camera")
    return pair, sample


@pytest.fixture
def render_with_distractors(rendered_run, tmp_path) -> PairStore:
    """The session render's kept pairs and their samples, plus two camera-only distractors: one of the
    same before scene as a rendered change pair (one scene), one of a scene of its own."""
    store = PairStore(str(tmp_path / "render.lance"))
    pairs = rendered_run.store.read("pairs", where="status = 'kept'").to_pylist()
    samples = rendered_run.store.read("samples").to_pylist()
    store.upsert("pairs", [PairRow(**p) for p in pairs])
    store.upsert("samples", [SampleRow(**s) for s in samples])
    first = pairs[0]
    split = next(s["split"] for s in samples if s["pair_id"] == first["pair_id"])
    extra = [_distractor("distractor-of-first", first["image_before"], pairs[1]["image_after"], split),
             _distractor("distractor-alone", pairs[2]["image_after"], pairs[3]["image_after"], "train")]
    store.upsert("pairs", [p for p, _ in extra])
    store.upsert("samples", [s for _, s in extra])
    return store


def _read(folder: Path) -> dict[str, object]:
    return {name: json.loads((folder / name).read_text()) for name in JSON_FILES}


def test_a_render_round_trips_through_the_published_layout(render_with_distractors, tmp_path):
    store = render_with_distractors
    out = tmp_path / "clevr"
    assert main(["export", "--db", store.uri, "--format", "clevr-change", "--out", str(out)]) == 0
    captions = store.read("samples", where="task = 'diff-caption'").to_pylist()
    pairs = {p["pair_id"]: p for p in store.read("pairs").to_pylist()}
    n_pairs, n_distractors = len(pairs), sum(p["subset"] == "distractor" for p in pairs.values())
    n_scenes = n_pairs - 1  # the first distractor shares its before image, and so its scene, with a change pair
    scenes = json.loads((out / "pairsmith_scenes.json").read_text())
    assert len(scenes) == n_scenes and [s["index"] for s in scenes] == list(range(n_scenes))
    completed = Counter(s["completed"] for s in scenes)
    assert completed == {"nonsemantic": n_scenes - n_distractors, None: 1, "semantic": 1}
    assert {s["distractor_pair_id"] for s in scenes} - {None} == {"distractor-of-first", "distractor-alone"}

    db = tmp_path / "again.lance"
    assert main(["import", "clevr-change", "--root", str(out), "--db", str(db)]) == 0
    again = PairStore(str(db))
    back_pairs = again.read("pairs").to_pylist()
    back = again.read("samples").to_pylist()
    assert all(p["status"] == "kept" for p in back_pairs)
    # every scene comes back as a change pair and a distractor pair: the completed halves are the extra ones
    assert len(back_pairs) == 2 * n_scenes == n_pairs + completed["nonsemantic"] + completed["semantic"]
    assert sum(p["subset"] == "distractor" for p in back_pairs) == n_distractors + completed["nonsemantic"]
    assert len(back) == len(captions) + completed["nonsemantic"] + 1  # + the lone distractor's caption, twice

    # captions and splits per scene, both ways
    by_scene = {s["index"]: s for s in scenes}
    back_by_pair = {p["pair_id"]: p for p in back_pairs}
    got: dict[tuple[int, bool], list[str]] = {}
    for s in back:
        origin = back_by_pair[s["pair_id"]]["origin"]
        index, distractor = int(origin.rsplit("#", 1)[1]), "no_change_captions" in origin
        assert s["split"] == by_scene[index]["split"]
        got.setdefault((index, distractor), []).append(s["answer"])
    for scene in scenes:
        for distractor, key in ((False, "change_pair_id"), (True, "distractor_pair_id")):
            pair_id = scene[key]
            if pair_id is None:
                continue
            expected = [c["answer"] for c in captions if c["pair_id"] == pair_id]
            assert sorted(got[(scene["index"], distractor)]) == sorted(expected)
            assert scene["split"] == next(c["split"] for c in captions if c["pair_id"] == pair_id)
        if scene["completed"] == "nonsemantic":
            assert got[(scene["index"], True)] == [NO_CHANGE_CAPTION]
    assert Counter(s["split"] for s in back if back_by_pair[s["pair_id"]]["subset"] != "distractor") == Counter(
        by_scene[i]["split"] for i in by_scene for _ in range(len(got[(i, False)])))

    # change types: a pair with one CLEVR-Change type keeps it, shape / size / several types have none
    for scene in scenes:
        if scene["change_pair_id"] in pairs:
            assert scene["type"] == clevr_type(pairs[scene["change_pair_id"]]["edit_category"])
    back_types = Counter(p["edit_category"] for p in back_pairs if p["subset"] != "distractor")
    assert back_types == Counter(s["type"] for s in scenes)
    assert any(s["type"] for s in scenes)


def test_files_follow_the_published_name_patterns(render_with_distractors, tmp_path):
    out = tmp_path / "clevr"
    result = export(render_with_distractors, out, "clevr-change")
    n = len(json.loads((out / "pairsmith_scenes.json").read_text()))
    for folder, pattern in PATTERNS.items():
        names = sorted(p.name for p in (out / folder).iterdir())
        assert all(re.fullmatch(pattern, name) for name in names), names[:3]
        assert [int(name[-10:-4]) for name in names] == list(range(n))  # sorted position == index, as loaders use
    assert result.images == 3 * n and sorted(p.name for p in out.iterdir() if p.name != MARKER) == sorted(
        [*PATTERNS, *JSON_FILES, "pairsmith_scenes.json"])
    data = _read(out)
    keys = [f"CLEVR_default_{i:06d}.png" for i in range(n)]
    assert list(data["change_captions.json"]) == keys == list(data["no_change_captions.json"])
    assert all(isinstance(c, str) for caps in data["change_captions.json"].values() for c in caps)
    assert set(data["splits.json"]) == {"train", "val", "test"}
    assert sorted(i for ids in data["splits.json"].values() for i in ids) == list(range(n))
    assert list(data["type_mapping.json"]) == ["color", "material", "add", "drop", "move"]
    assert all(re.fullmatch(r"\d{6}\.png", name) for names in data["type_mapping.json"].values() for name in names)


def test_the_published_fixture_round_trips_to_the_same_files(tmp_path):
    fixture = make_clevr_change(tmp_path / "data", n=10, captions_per_image=2)
    db = tmp_path / "db.lance"
    assert main(["import", "clevr-change", "--root", str(fixture.root), "--db", str(db)]) == 0
    out = tmp_path / "out"
    result = export(PairStore(str(db)), out, "clevr-change")
    assert result.samples == 40 and result.skipped == {}
    assert _read(out) == _read(fixture.root)  # same captions per image, splits and type mapping
    scenes = json.loads((out / "pairsmith_scenes.json").read_text())
    assert {s["completed"] for s in scenes} == {None}  # every published scene is whole again
    for folder in PATTERNS:
        assert sorted(p.name for p in (out / folder).iterdir()) == sorted(p.name for p in (fixture.root / folder).iterdir())


def test_splits_default_to_train_val_test_and_bench_or_other_tasks_are_refused(render_with_distractors, tmp_path):
    store = render_with_distractors
    result = export(store, tmp_path / "all", "clevr-change")
    assert result.samples == store.count("samples", "task = 'diff-caption'")  # grounding samples are not read
    train = export(store, tmp_path / "train", "clevr-change", ExportOptions(splits=["train"]))
    assert train.samples == store.count("samples", "task = 'diff-caption' AND split = 'train'")
    assert json.loads((tmp_path / "train" / "splits.json").read_text())["val"] == []
    with pytest.raises(ValueError, match="bench"):
        export(store, tmp_path / "bench", "clevr-change", ExportOptions(splits=["train", "bench"]))
    with pytest.raises(ValueError, match="train, val and test lists only"):  # said before looking for samples
        export(store, tmp_path / "bench", "clevr-change", ExportOptions(splits=["bench"]))
    with pytest.raises(ValueError, match="writes diff-caption only"):
        export(store, tmp_path / "grounding", "clevr-change", ExportOptions(tasks=["grounding"]))
    assert not (tmp_path / "bench").exists() and not (tmp_path / "grounding").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all", "render.lance", "train"]
