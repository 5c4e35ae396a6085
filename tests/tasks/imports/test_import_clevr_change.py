"""CLEVR-Change in its published layout: change and distractor pairs, captions, splits and types."""

from __future__ import annotations

import json
import shutil

from pairsmith.flows.cli.main import main
from pairsmith.flows.import_dataset import run_import
from pairsmith.storage.store import PairStore
from pairsmith.tasks.imports.clevr_change import ClevrChangeConfig
from tests.public_sets import make_clevr_change


def test_scenes_become_change_and_distractor_pairs_with_published_splits_and_types(tmp_path):
    fixture = make_clevr_change(tmp_path / "data", n=10, captions_per_image=2)
    config = ClevrChangeConfig(db=str(tmp_path / "db.lance"), root=str(fixture.root))
    summary = run_import(config)
    assert (summary.entries, summary.pairs_kept, summary.pairs_dropped, summary.samples) == (20, 20, 0, 40)
    assert summary.splits == {"test": 8, "train": 24, "val": 8}
    assert summary.categories == {"add": 4, "color": 4, "drop": 4, "material": 4, "move": 4, "no_change": 20}

    store = PairStore(config.db)
    pairs = {p["pair_id"]: p for p in store.read("pairs").to_pylist()}
    samples = store.read("samples").to_pylist()
    assert all(p["dataset"] == "clevr-change" for p in pairs.values()) and all(s["dataset"] == "clevr-change" for s in samples)
    seen = set()
    for s in samples:
        pair = pairs[s["pair_id"]]
        index, kind = int(pair["origin"].rsplit("#", 1)[1]), pair["origin"].split(":")[1].split("#")[0]
        distractor = kind == "no_change_captions.json"
        assert s["split"] == fixture.splits[index] and s["task"] == "diff-caption"
        assert (pair["subset"], pair["edit_category"], s["category"]) == (
            ("distractor", "no_change", "no_change") if distractor else (None, fixture.types[index], fixture.types[index]))
        assert s["answer"] in (fixture.no_change_captions if distractor else fixture.change_captions)[index]
        seen.add((index, distractor, s["answer"]))
    assert len(seen) == 40  # every caption of every scene, once
    assert {(p["width"], p["height"], p["image_format"]) for p in pairs.values()} == {(96, 64, "PNG")}

    again = run_import(config)
    assert again.batches_resumed == again.batches and (store.count("pairs"), store.count("samples")) == (20, 40)


def test_a_scene_in_no_split_or_two_types_is_a_reason_row_and_the_rest_import(tmp_path):
    fixture = make_clevr_change(tmp_path / "data", n=5)
    splits = json.loads((fixture.root / "splits.json").read_text())
    splits["train"].remove(1)
    (fixture.root / "splits.json").write_text(json.dumps(splits))
    types = json.loads((fixture.root / "type_mapping.json").read_text())
    types["move"].append("000002.png")  # scene 2 is also "add"
    (fixture.root / "type_mapping.json").write_text(json.dumps(types))
    summary = run_import(ClevrChangeConfig(db=str(tmp_path / "db"), root=str(fixture.root)))
    dropped = PairStore(str(tmp_path / "db")).read("pairs", where="status = 'dropped'").to_pylist()
    assert sorted((p["drop_reason"], p["drop_detail"]) for p in dropped) == [
        ("import_bad_entry", "CLEVR_default_000001.png: scene 1 is in no split of splits.json"),
        ("import_bad_entry", "CLEVR_default_000001.png: scene 1 is in no split of splits.json"),
        ("import_bad_entry", "CLEVR_default_000002.png: scene 2 has two change types in type_mapping.json: add, move"),
    ]
    assert (summary.pairs_kept, summary.pairs_dropped) == (7, 3)  # scene 2's distractor pair has no type to doubt


def test_a_folder_missing_from_the_layout_is_one_line_and_exit_2(tmp_path, capsys):
    fixture = make_clevr_change(tmp_path / "data", n=2)
    shutil.rmtree(fixture.root / "nsc_images")
    db = tmp_path / "db.lance"
    assert main(["import", "clevr-change", "--root", str(fixture.root), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no nsc_images (the published layout has images, sc_images, nsc_images" in err
    assert not db.exists()
