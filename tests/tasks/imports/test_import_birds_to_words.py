"""Birds-to-Words in its published layout (google-research-datasets/birds-to-words: one TSV line per
annotation, photos named by iNaturalist id): pairs, captions in annotator order, splits, reason rows."""

from __future__ import annotations

from pairsmith.flows.cli.main import main
from pairsmith.flows.import_dataset import run_import
from pairsmith.storage.store import PairStore
from pairsmith.tasks.imports.birds_to_words import BirdsToWordsConfig
from tests.public_sets import make_birds_to_words


def test_annotation_lines_become_one_pair_per_photo_pair_with_every_description(tmp_path):
    fixture = make_birds_to_words(tmp_path / "b2w", n=6, annotators=3)
    config = BirdsToWordsConfig(db=str(tmp_path / "db.lance"), tsv=str(fixture.tsv), images_dir=str(fixture.images))
    summary = run_import(config)
    assert (summary.entries, summary.pairs_kept, summary.pairs_dropped, summary.samples) == (6, 6, 0, 18)
    assert summary.splits == {"test": 6, "train": 6, "val": 6} and summary.categories == {}

    store = PairStore(config.db)
    pairs = {p["pair_id"]: p for p in store.read("pairs").to_pylist()}
    samples = store.read("samples").to_pylist()
    assert {(p["dataset"], p["method"], p["width"], p["height"], p["image_format"], p["source_format"])
            for p in pairs.values()} == {("birds-to-words", "birds-to-words", 96, 72, "JPEG", "JPEG")}
    lines = fixture.tsv.read_text().splitlines()
    by_pair: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for s in samples:
        pair = pairs[s["pair_id"]]
        first_line = int(pair["origin"].rsplit("#", 1)[1])
        fields = lines[first_line - 1].split("\t")
        key = (fields[1].split("/photos/")[1].split("/")[0], fields[5].split("/photos/")[1].split("/")[0])
        assert s["split"] == fixture.splits[key] and s["task"] == "diff-caption" and s["dataset"] == "birds-to-words"
        by_pair.setdefault(key, []).append((s["sample_id"], s["answer"]))
    # every description verbatim, once, on the pair of its two photos (lines of one pair were interleaved)
    assert {k: sorted(a for _, a in v) for k, v in by_pair.items()} == {
        k: sorted(v) for k, v in fixture.descriptions.items()}

    again = run_import(config)
    assert again.run_id == summary.run_id and again.batches_resumed == again.batches
    assert (store.count("pairs"), store.count("samples")) == (6, 18)


def test_lines_that_do_not_fit_are_reason_rows_naming_their_line_and_the_rest_import(tmp_path):
    fixture = make_birds_to_words(tmp_path / "b2w", n=6, annotators=2)
    lines = fixture.tsv.read_text().splitlines()
    # lines 2..7 are annN 2 of pairs 0..5, lines 8..13 annN 1
    lines[1] = lines[1].replace("\ttrain\t", "\tdev\t")  # pair 0, annN 2: no such split
    lines[2] = lines[2].rsplit("\t", 2)[0] + "\tsecond\t" + lines[2].rsplit("\t", 1)[1]  # pair 1: annN not a number
    lines[3] = lines[3].replace("/photos/", "/pictures/", 1)  # pair 2: no photo id in img1ImgURL
    lines[4] = "\t".join(lines[4].split("\t")[:-1])  # pair 3: a field short
    lines[12] = lines[12].replace("\ttest\t", "\ttrain\t")  # pair 5 (test): annN 1 says train
    lines[7] = lines[7].rsplit("\t", 1)[0] + "\t   "  # pair 0's annN 1: blank, so pair 0 has no description
    fixture.tsv.write_text("\n".join(lines) + "\n")
    (fixture.images / f"{fixture.pairs[4][1]}.jpg").unlink()  # pair 4's right photo was never downloaded
    db = str(tmp_path / "db.lance")
    summary = run_import(BirdsToWordsConfig(db=db, tsv=str(fixture.tsv), images_dir=str(fixture.images)))
    dropped = sorted((p["drop_reason"], p["drop_detail"]) for p in
                     PairStore(db).read("pairs", where="status = 'dropped'").to_pylist())
    name = fixture.tsv.name
    assert dropped[:6] == [
        ("import_bad_entry", f"{name} line 2: split 'dev' is not train, val or test"),
        ("import_bad_entry", f"{name} line 3: annN 'second' is not a number"),
        ("import_bad_entry", f"{name} line 4: img1ImgURL: no iNaturalist photo id (…/photos/<id>/…) in the URL"),
        ("import_bad_entry", f"{name} line 5: 10 tab-separated fields, the header has 11"),
        ("import_bad_entry", f"{name} line 7: photos {fixture.pairs[5][0]} and {fixture.pairs[5][1]} are in test "
                             "and train (lines 7, 13)"),
        ("import_bad_entry", f"{name} line 8: photos {fixture.pairs[0][0]} and {fixture.pairs[0][1]} have no "
                             "non-blank description"),
    ]
    assert [r for r, _ in dropped[6:]] == ["load_missing_image"] and f"{fixture.pairs[4][1]}.jpg" in dropped[6][1]
    # pairs 1, 2, 3 keep their other line's description; pair 4 lost its photo; pairs 0 and 5 are reason rows
    assert (summary.pairs_kept, summary.samples) == (3, 3)


def test_a_header_without_the_published_columns_is_one_line_and_exit_2(tmp_path, capsys):
    fixture = make_birds_to_words(tmp_path / "b2w", n=2)
    text = fixture.tsv.read_text()
    fixture.tsv.write_text(text.replace("\tannN\t", "\tannotator\t", 1))
    db = tmp_path / "db.lance"
    args = ["import", "birds-to-words", "--tsv", str(fixture.tsv), "--images", str(fixture.images), "--db", str(db)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1: no column annN in the header" in err and str(fixture.tsv) in err
    assert not db.exists()
    fixture.tsv.write_text(text)
    assert main([*args[:5], str(tmp_path / "no-photos"), *args[6:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--images" in err and "not a folder" in err


def test_a_file_without_its_header_line_is_read_in_the_readmes_column_order(tmp_path):
    fixture = make_birds_to_words(tmp_path / "b2w", n=3, annotators=2)
    with_header = run_import(BirdsToWordsConfig(db=str(tmp_path / "a"), tsv=str(fixture.tsv),
                                                images_dir=str(fixture.images)))
    headless = tmp_path / "headless.tsv"
    headless.write_text("\n".join(fixture.tsv.read_text().splitlines()[1:]) + "\n")
    summary = run_import(BirdsToWordsConfig(db=str(tmp_path / "b"), tsv=str(headless), images_dir=str(fixture.images)))
    assert (summary.pairs_kept, summary.samples) == (with_header.pairs_kept, with_header.samples) == (3, 6)
    origins = sorted(PairStore(str(tmp_path / "b")).read("pairs", columns=["origin"]).column("origin").to_pylist())
    assert origins == ["birds-to-words:headless.tsv#1", "birds-to-words:headless.tsv#2", "birds-to-words:headless.tsv#3"]
