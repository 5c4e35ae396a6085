"""CLEVR-DC in its published layout (hsgkim/clevr-dc: captions.json, split.json, the extracted
bef/ and aft/ archives) and in the renamed layout Tu et al.'s loader makes of it."""

from __future__ import annotations

import json
import shutil

from pairsmith.flows.cli.main import main
from pairsmith.flows.import_dataset import run_import
from pairsmith.storage.store import PairStore
from pairsmith.tasks.imports.clevr_dc import ClevrDcConfig
from tests.public_sets import make_clevr_dc


def test_scenes_become_pairs_with_every_caption_in_the_published_split(tmp_path):
    fixture = make_clevr_dc(tmp_path / "dc", n=10, captions_per_scene=3)
    config = ClevrDcConfig(db=str(tmp_path / "db.lance"), root=str(fixture.root))
    summary = run_import(config)
    assert (summary.entries, summary.pairs_kept, summary.pairs_dropped, summary.samples) == (10, 10, 0, 30)
    assert summary.splits == {"test": 6, "train": 18, "val": 6} and summary.categories == {}

    store = PairStore(config.db)
    pairs = {p["pair_id"]: p for p in store.read("pairs").to_pylist()}
    samples = store.read("samples").to_pylist()
    assert {(p["dataset"], p["width"], p["height"], p["image_format"], p["edit_category"]) for p in pairs.values()} == {
        ("clevr-dc", 96, 64, "PNG", None)}
    seen = set()
    for s in samples:
        scene = int(pairs[s["pair_id"]]["origin"].rsplit("#", 1)[1])
        assert s["split"] == fixture.splits[scene] and s["answer"] in fixture.captions[scene]
        seen.add((scene, s["answer"]))
    assert len(seen) == 30

    again = run_import(config)
    assert again.batches_resumed == again.batches and (store.count("pairs"), store.count("samples")) == (10, 30)


def test_the_renamed_layout_of_tu_et_al_gives_the_same_pairs(tmp_path):
    """images/ and sc_images/ with %06d.png names, change_captions.json keyed "%06d.png", splits.json."""
    fixture = make_clevr_dc(tmp_path / "dc", n=5)
    renamed = tmp_path / "renamed"
    for src, dst in (("bef", "images"), ("aft", "sc_images")):
        (renamed / dst).mkdir(parents=True)
        for i in range(5):
            shutil.copy(fixture.root / src / f"{i}.png", renamed / dst / f"{i:06d}.png")
    captions = json.loads((fixture.root / "captions.json").read_text())
    (renamed / "change_captions.json").write_text(json.dumps({f"{int(k):06d}.png": v for k, v in captions.items()}))
    shutil.copy(fixture.root / "split.json", renamed / "splits.json")
    published = run_import(ClevrDcConfig(db=str(tmp_path / "a"), root=str(fixture.root)))
    other = run_import(ClevrDcConfig(db=str(tmp_path / "b"), root=str(renamed)))
    assert (other.pairs_kept, other.samples) == (published.pairs_kept, published.samples) == (5, 15)
    ids = [sorted(PairStore(str(tmp_path / d)).read("samples", columns=["sample_id"]).column("sample_id").to_pylist())
           for d in "ab"]
    assert ids[0] == ids[1]  # the same scenes and captions: the same pairs and samples, whatever the file names


def test_scenes_that_do_not_fit_are_reason_rows_and_the_rest_import(tmp_path):
    fixture = make_clevr_dc(tmp_path / "dc", n=5)
    splits = json.loads((fixture.root / "split.json").read_text())
    splits["train"].remove(1)
    splits["test"].append(2)  # scene 2 is in train and test
    (fixture.root / "split.json").write_text(json.dumps(splits))
    captions = json.loads((fixture.root / "captions.json").read_text())
    captions["0"] = ["", " "]
    captions["scene-x"] = ["a caption"]
    (fixture.root / "captions.json").write_text(json.dumps(captions))
    (fixture.root / "aft" / "3.png").unlink()
    db = str(tmp_path / "db")
    summary = run_import(ClevrDcConfig(db=db, root=str(fixture.root)))
    dropped = sorted((p["drop_reason"], p["drop_detail"]) for p in
                     PairStore(db).read("pairs", where="status = 'dropped'").to_pylist())
    assert dropped[:4] == [
        ("import_bad_entry", "captions.json '0': captions must be a list of strings with at least one non-blank"),
        ("import_bad_entry", "captions.json '1': scene 1 is in no split of split.json"),
        ("import_bad_entry", "captions.json '2': scene 2 is in test and train of split.json"),
        ("import_bad_entry", "captions.json 'scene-x': not a scene number"),
    ]
    assert [r for r, _ in dropped[4:]] == ["load_missing_image"] and "aft/3.png" in dropped[4][1]
    assert (summary.entries, summary.pairs_kept) == (6, 1)


def test_a_file_missing_from_the_layout_is_one_line_and_exit_2(tmp_path, capsys):
    fixture = make_clevr_dc(tmp_path / "dc", n=2)
    (fixture.root / "split.json").unlink()
    db = tmp_path / "db.lance"
    assert main(["import", "clevr-dc", "--root", str(fixture.root), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no split.json (the published layout has bef/, aft/, captions.json and split.json)" in err
    assert not db.exists()
