"""Bad input to every importer and source reader, by kind (issue #11): each case asserts the value.

Kinds: files outside the folder the user named (case 5), one bad entry among good ones (7), image
formats (8), non-UTF-8 files (12), med-edit's input checked before the flow (14), exit codes (15),
COCO ids (16), the same entry listed twice (1).
"""

from __future__ import annotations

import json
import os
import pathlib
from pathlib import Path

import pytest
import yaml

from pairsmith.flows.cli.main import main
from pairsmith.flows.import_dataset import run_import
from pairsmith.storage.image_folder import ImageFolderConfig, ImageLimits, load_captions, read_image_folder
from pairsmith.storage.schemas import KEYS
from pairsmith.storage.store import PairStore
from pairsmith.tasks.imports.clevr_change import ClevrChangeConfig
from pairsmith.tasks.imports.image_edit_request import ImageEditRequestConfig
from pairsmith.tasks.imports.med_bench import MedBenchConfig
from pairsmith.tasks.imports.pair_folder import PairFolderConfig
from pairsmith.tasks.imports.spot_the_diff import SpotTheDiffConfig
from pairsmith.tasks.med.load_sources import load_sources
from pairsmith.tasks.med.sources import FolderSource, MedSources, list_sources
from tests.public_sets import make_clevr_change, make_pair_images, stand_in

LONG = "a" * 300  # longer than a file name may be: every look-up raises OSError (ENAMETOOLONG)


def _med(root: Path, stems: list[str], db: str) -> MedBenchConfig:
    items = [{"image_name": f"{s}.png", "edited_image_name": f"{s}_2.png", "type": "Object", "question": f"q{i}?",
              "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "A"} for i, s in enumerate(stems)]
    (root / "ann").mkdir(exist_ok=True)  # image names may also be relative to the JSON's folder: keep outside/ out of it
    (root / "ann" / "bench.json").write_text(json.dumps(items))
    return MedBenchConfig(db=db, json_path=str(root / "ann" / "bench.json"), images_dir=str(root / "images"))


def _spot(root: Path, stems: list[str], db: str) -> SpotTheDiffConfig:
    (root / "test.json").write_text(json.dumps([{"img_id": s, "sentences": [f"change {i}"]} for i, s in enumerate(stems)]))
    return SpotTheDiffConfig(db=db, annotations=str(root / "test.json"), images_dir=str(root / "images"))


def _ier(root: Path, stems: list[str], db: str) -> ImageEditRequestConfig:
    (root / "train.json").write_text(json.dumps([{"img0": f"{s}.png", "img1": f"{s}_2.png", "sents": [f"edit {i}"],
                                                  "uid": f"u{i}"} for i, s in enumerate(stems)]))
    return ImageEditRequestConfig(db=db, annotations=str(root / "train.json"), images_dir=str(root / "images"))


def _folder(root: Path, stems: list[str], db: str) -> PairFolderConfig:
    (root / "pairs.jsonl").write_text("\n".join(json.dumps({"before": f"{s}.png", "after": f"{s}_2.png",
                                                            "captions": [f"c{i}"]}) for i, s in enumerate(stems)))
    return PairFolderConfig(db=db, pairs=str(root / "pairs.jsonl"), images_dir=str(root / "images"))


BUILDERS = {"med-bench": _med, "spot-the-diff": _spot, "image-edit-request": _ier, "folder": _folder}


@pytest.fixture
def spy_reads(monkeypatch):
    """Every file read through Path.read_bytes, resolved."""
    seen: list[Path] = []
    real = pathlib.Path.read_bytes

    def read_bytes(self):
        seen.append(self.resolve())
        return real(self)

    monkeypatch.setattr(pathlib.Path, "read_bytes", read_bytes)
    return seen


def _escape_layout(tmp_path: Path) -> tuple[Path, list[str]]:
    """images/ with a good pair and a symlink out; outside/ with files a bad entry must not reach."""
    images, outside = tmp_path / "images", tmp_path / "outside"
    make_pair_images(images, [("good.png", "good_2.png"), ("x.png", "link_2.png")])
    make_pair_images(outside, [("secret.png", "secret_2.png")])
    (images / "link.png").symlink_to(outside / "secret.png")
    return outside, ["good", "../outside/secret", str(outside / "secret"), "link", LONG]


@pytest.mark.parametrize("importer", sorted(BUILDERS))
def test_paths_outside_the_folder_are_never_read_and_one_bad_name_sinks_nothing(importer, tmp_path, spy_reads):
    """Case 5 (``..``, absolute, symlink out -> path_outside_root, never opened) and case 7 (a
    300-character name is that entry's row; the good entry is kept) for every importer."""
    outside, stems = _escape_layout(tmp_path)
    config = BUILDERS[importer](tmp_path, stems, str(tmp_path / "db"))
    summary = run_import(config)
    rows = {p["origin"]: p for p in PairStore(config.db).read("pairs").to_pylist()}
    reasons = [row["drop_reason"] for _, row in sorted(rows.items(), key=lambda kv: int(kv[0].rsplit("#", 1)[1].lstrip("lineu ")))]
    if importer == "folder":  # lines count from 1
        assert sorted(rows) == [f"folder:pairs.jsonl#line {n}" for n in range(1, 6)]
    assert reasons == [None, "path_outside_root", "path_outside_root", "path_outside_root", "load_unreadable"]
    assert (summary.pairs_kept, summary.pairs_dropped, summary.samples) == (1, 4, 1)
    assert not [p for p in spy_reads if p.is_relative_to(outside.resolve())]
    long_row = [r for r in rows.values() if r["drop_reason"] == "load_unreadable"][0]
    assert "File name too long" in long_row["drop_detail"]


def test_a_clevr_change_image_symlinked_out_of_the_root_is_not_read(tmp_path, spy_reads):
    fixture = make_clevr_change(tmp_path / "data", n=3)
    secret = tmp_path / "secret.png"
    stand_in(9, False).save(secret)
    target = fixture.root / "images" / "CLEVR_default_000000.png"
    target.unlink()
    target.symlink_to(secret)
    summary = run_import(ClevrChangeConfig(db=str(tmp_path / "db"), root=str(fixture.root)))
    dropped = PairStore(str(tmp_path / "db")).read("pairs", where="status = 'dropped'").to_pylist()
    assert sorted(p["drop_reason"] for p in dropped) == ["path_outside_root"] * 2  # scene 0's two pairs
    assert summary.pairs_kept == 4 and secret.resolve() not in spy_reads


def test_med_edit_sources_outside_the_folder_are_never_read_nor_sent(tmp_path, spy_reads):
    """Case 5 for med-edit's folder source: the item is dropped at ``source`` with no image, so it
    cannot reach the editor; case 7: a 300-character name is that item's row."""
    outside, _ = _escape_layout(tmp_path)
    (tmp_path / "images" / "dir").mkdir()
    captions = tmp_path / "captions.jsonl"
    names = ["good.png", "../outside/secret.png", str(outside / "secret.png"), "link.png", LONG + ".png"]
    captions.write_text("\n".join(json.dumps({"image": n, "caption": f"photo {i}"}) for i, n in enumerate(names)))
    sources = MedSources(folder=FolderSource(images_dir=str(tmp_path / "images"), captions=str(captions)))
    refs = list_sources(sources, store=None)
    items, stats = load_sources.fn(refs, [f"p{i}" for i in range(len(refs))], str(tmp_path / "db"), ImageLimits())
    assert [(i.drop_reason, i.image is not None) for i in items] == [
        (None, True), ("path_outside_root", False), ("path_outside_root", False), ("path_outside_root", False),
        ("source_unreadable", False)]
    assert dict(stats.reasons) == {"path_outside_root": 3, "source_unreadable": 1}
    assert not [p for p in spy_reads if p.is_relative_to(outside.resolve())]


def test_a_symlink_out_of_a_source_folder_is_a_reason_row(tmp_path, spy_reads):
    outside, _ = _escape_layout(tmp_path)
    (tmp_path / "c.jsonl").write_text(json.dumps({"file": "../outside/secret.png", "caption": "x"}))
    scan = read_image_folder(ImageFolderConfig(path=str(tmp_path / "images"), captions_path=str(tmp_path / "c.jsonl")))
    assert {d.path: d.reason for d in scan.drops} == {"link.png": "path_outside_root",
                                                      "../outside/secret.png": "path_outside_root"}
    assert sorted(i.path for i in scan.images) == ["good.png", "good_2.png", "link_2.png", "x.png"]
    assert not [p for p in spy_reads if p.is_relative_to(outside.resolve())]


def test_webp_and_bmp_sources_are_stored_as_png_with_their_format_kept(tmp_path):
    """Case 8, ingest side: what is stored or sent to the editor is PNG or JPEG."""
    images = tmp_path / "images"
    make_pair_images(images, [("a.webp", "a_2.webp"), ("b.bmp", "b_2.jpg"), ("c.jpg", "c_2.jpg")])
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"before": b, "after": a, "caption": "x"}) for b, a in
                                                [("a.webp", "a_2.webp"), ("b.bmp", "b_2.jpg"), ("c.jpg", "c_2.jpg")]))
    run_import(PairFolderConfig(db=str(tmp_path / "db"), pairs=str(tmp_path / "p.jsonl"), images_dir=str(images)))
    rows = sorted(PairStore(str(tmp_path / "db")).read("pairs").to_pylist(), key=lambda r: r["origin"])
    assert [(r["image_format"], r["source_format"], r["image_before"][:4], r["image_after"][:4]) for r in rows] == [
        ("PNG", "WEBP", b"\x89PNG", b"\x89PNG"), ("PNG", "BMP/JPEG", b"\x89PNG", b"\x89PNG"),
        ("JPEG", "JPEG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xe0")]
    (tmp_path / "c.jsonl").write_text(json.dumps({"image": "a.webp", "caption": "a photo"}))
    refs = list_sources(MedSources(folder=FolderSource(images_dir=str(images), captions=str(tmp_path / "c.jsonl"))), None)
    items, _ = load_sources.fn(refs, ["p0"], str(tmp_path / "db"), ImageLimits())
    assert (items[0].mime_type, items[0].image[:4]) == ("image/png", b"\x89PNG")


NOT_UTF8 = b'[\n  {"img_id": "1",\n   "sentences": ["caf\xe9"]}\n]\n'  # Latin-1, not UTF-8: byte 0xe9 on line 3


@pytest.mark.parametrize("args, file_option", [
    (["spot-the-diff", "--annotations", "{f}", "--images", "{d}"], "--annotations"),
    (["image-edit-request", "--annotations", "{f}", "--images", "{d}", "--split", "test"], "--annotations"),
    (["med-bench", "--json", "{f}"], "--json"),
    (["folder", "--pairs", "{f}"], "--pairs"),
])
def test_a_non_utf8_import_file_is_one_line_naming_file_and_line(args, file_option, tmp_path, capsys):
    """Case 12 for every importer's annotation file (exit 2, nothing created)."""
    path = tmp_path / "test.json"
    path.write_bytes(NOT_UTF8)
    db = tmp_path / "db.lance"
    code = main(["import", *[a.format(f=path, d=tmp_path) for a in args], "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{file_option} {str(path)!r} line 3: not UTF-8 text (byte 0xe9 at column 22)" in err
    assert not db.exists()


def test_a_non_utf8_clevr_change_file_and_captions_file_name_file_and_line(tmp_path, capsys):
    fixture = make_clevr_change(tmp_path / "data", n=2)
    (fixture.root / "splits.json").write_bytes(b'{"train": [0, 1],\n "val": [], "test": [\xff]}')
    assert main(["import", "clevr-change", "--root", str(fixture.root), "--db", str(tmp_path / "db")]) == 2
    assert f"'{fixture.root / 'splits.json'}' line 2: not UTF-8 text (byte 0xff at column 22)" in capsys.readouterr().err
    (tmp_path / "c.jsonl").write_bytes(b'{"file": "a.png", "caption": "ok"}\n{"file": "b.png", "caption": "\xe9t\xe9"}\n')
    with pytest.raises(ValueError, match=r"captions '.*c.jsonl' line 2: not UTF-8 text \(byte 0xe9 at column 31\)"):
        load_captions(str(tmp_path / "c.jsonl"))


@pytest.fixture
def med_edit_config(tmp_path, monkeypatch):
    """Write a med-edit config whose source is a photo folder and the given captions text."""
    monkeypatch.setenv("GEMINI_API_KEY", "k")

    def write(captions_name: str, captions_text: str | None) -> tuple[Path, Path]:
        make_pair_images(tmp_path / "photos", [("a.png", "b.png")])
        if captions_text is not None:
            (tmp_path / captions_name).write_text(captions_text)
        db = tmp_path / "med.lance"
        path = tmp_path / "med.yaml"
        path.write_text(yaml.safe_dump({"db": str(db), "sources": {"folder": {
            "images_dir": str(tmp_path / "photos"), "captions": str(tmp_path / captions_name)}}}))
        return path, db

    return write


COCO_MISSING_IMAGE = json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                 "annotations": [{"image_id": 1, "caption": "ok"}, {"image_id": 7, "caption": "lost"}]})
COCO_DUPLICATE_ID = json.dumps({"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"}],
                                "annotations": [{"image_id": 1, "caption": "which photo?"}]})


@pytest.mark.parametrize("name, text, expected", [
    ("missing.jsonl", None, "captions '{d}/missing.jsonl': no such file"),
    ("c.jsonl", '{"image": "a.png", "caption": "ok"}\n{"image": "b.png"}\n',
     "captions '{d}/c.jsonl' line 2: needs 'file' (or 'image') and 'caption' strings"),
    ("c.json", COCO_MISSING_IMAGE, "captions '{d}/c.json': annotations[1] names image_id 7, which no entry of 'images' has"),
    ("c.json", COCO_DUPLICATE_ID, "captions '{d}/c.json': images[1] reuses id 1 of 'a.png' for 'b.png'; give each photo its own id"),
])
def test_med_edit_input_problems_stop_before_the_flow(name, text, expected, med_edit_config, tmp_path, capsys):
    """Cases 14 and 16: one line, exit 2, no database folder, nothing sent."""
    path, db = med_edit_config(name, text)
    assert main(["run", "med-edit", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"pairsmith: error: {expected.format(d=tmp_path)}\n"
    assert not db.exists()


def test_med_edit_without_a_gemini_key_stops_before_the_flow(med_edit_config, monkeypatch, capsys):
    path, db = med_edit_config("c.jsonl", '{"image": "a.png", "caption": "ok"}\n')
    monkeypatch.delenv("GEMINI_API_KEY")
    assert main(["run", "med-edit", "--config", str(path)]) == 2
    assert capsys.readouterr().err == ("pairsmith: error: no Gemini API key: set GEMINI_API_KEY or store it in a "
                                       "Prefect Secret block and name it in secret_block\n")
    assert not db.exists()


def test_a_coco_image_listed_twice_for_the_same_file_keeps_both_captions():
    """Case 16, the benign half: the same id for the same file twice is one photo with all its captions."""
    data = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"image_id": 1, "caption": "one"}, {"image_id": 2, "caption": "two"},
                            {"image_id": 1, "caption": "three"}]}
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"coco-{os.getpid()}.json"
    path.write_text(json.dumps(data))
    try:
        assert load_captions(str(path)) == {"a.png": ["one", "three"], "b.png": ["two"]}
    finally:
        path.unlink()


def test_exit_codes_empty_list_missing_images_folder_and_nothing_kept(tmp_path, capsys):
    """Case 15: an empty list or a missing images folder is bad input (2, nothing created); a run
    that keeps no pair exits 1 after storing its reason rows."""
    db = tmp_path / "db.lance"
    (tmp_path / "empty.json").write_text("[]")
    assert main(["import", "med-bench", "--json", str(tmp_path / "empty.json"), "--db", str(db)]) == 2
    assert f"'{tmp_path / 'empty.json'}': no entries to import" in capsys.readouterr().err
    (tmp_path / "test.json").write_text(json.dumps([{"img_id": "1", "sentences": ["a change"]}]))
    assert main(["import", "spot-the-diff", "--annotations", str(tmp_path / "test.json"),
                 "--images", str(tmp_path / "nope"), "--db", str(db)]) == 2
    assert capsys.readouterr().err == f"pairsmith: error: --images '{tmp_path / 'nope'}': not a folder\n"
    assert main(["import", "spot-the-diff", "--annotations", str(tmp_path / "test.json"), "--db", str(db)]) == 2
    assert capsys.readouterr().err == "pairsmith: error: missing option --images\n"
    assert not db.exists()
    (tmp_path / "images").mkdir()
    assert main(["import", "spot-the-diff", "--annotations", str(tmp_path / "test.json"),
                 "--images", str(tmp_path / "images"), "--db", str(db)]) == 1
    out, err = capsys.readouterr()
    assert "0 pairs kept, 1 dropped" in out and "load_missing_image (1)" in out and "kept no pair" in err


def _assert_unique_keys(store: PairStore) -> None:
    for table in store.table_names():
        keys = store.read(table, columns=[KEYS[table]]).column(KEYS[table]).to_pylist()
        assert len(keys) == len(set(keys)), table


def test_an_entry_listed_twice_is_stored_once_and_a_conflicting_one_is_a_reason_row(tmp_path, capsys):
    """Case 1, import side: identical entries collapse; the same pair with other content keeps the
    first and stores the second as ``import_duplicate_entry``; every table has unique keys."""
    make_pair_images(tmp_path / "images", [("a.png", "a_2.png"), ("b.png", "b_2.png")])
    item = {"image_name": "a.png", "edited_image_name": "a_2.png", "type": "Object", "question": "q?",
            "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "A"}
    other = dict(item, image_name="b.png", edited_image_name="b_2.png")
    (tmp_path / "bench.json").write_text(json.dumps([item, other, item, dict(other, answer="B")]))
    db = tmp_path / "db.lance"
    assert main(["import", "med-bench", "--json", str(tmp_path / "bench.json"), "--images", str(tmp_path / "images"),
                 "--db", str(db), "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "Imported 3 entries" in out and "1 entries repeated an earlier entry exactly and were stored once" in out
    store = PairStore(str(db))
    pairs = store.read("pairs").to_pylist()
    assert sorted((p["status"], p["drop_reason"]) for p in pairs) == [
        ("dropped", "import_duplicate_entry"), ("kept", None), ("kept", None)]
    conflict = next(p for p in pairs if p["status"] == "dropped")
    assert conflict["drop_detail"] == ("med-bench:bench.json#3: the same pair as med-bench:bench.json#1 with other "
                                       "content; med-bench:bench.json#1 is kept")
    assert [s["answer"] for s in store.read("samples").to_pylist()] == ["A", "A"]
    _assert_unique_keys(store)
    assert set(store.table_names()) >= {"pairs", "samples", "stage_stats"}


def test_import_run_and_pair_ids_are_pinned(tmp_path, monkeypatch):
    """Ids survive upgrades (tests/storage/test_ids.py's rule, for importers): the run id comes from the
    config's content and the bytes of the files read, the pair id from the entry alone; the
    database, defaults and the batch size count for nothing (0.2 counted a batch size: legacy_run_id)."""
    from pairsmith.tasks.imports.spot_the_diff import SpotTheDiffImporter

    monkeypatch.chdir(tmp_path)
    Path("test.json").write_text('[{"img_id": "1", "sentences": ["a car left"]}]')
    importer, config = SpotTheDiffImporter(), SpotTheDiffConfig(annotations="test.json", images_dir="images")
    assert importer.run_id(config) == "import-spot-the-diff-fe5a9664e3de"
    assert importer.pair_id(config, importer.listing(config).entries[0]) == "d15d0b74fd5c09b2"
    assert importer.run_id(config.model_copy(update={"db": "/elsewhere.lance"})) == importer.run_id(config)
    assert importer.run_id(config.model_copy(update={"batch_size": 7})) == importer.run_id(config)
    assert importer.legacy_run_id(config, 1, 32) == importer.run_id(config)
    assert importer.legacy_run_id(config, 1, 7) != importer.run_id(config)
    Path("test.json").write_text('[{"img_id": "1", "sentences": ["a car left", "and a bus came"]}]')
    assert importer.run_id(config) != "import-spot-the-diff-fe5a9664e3de"


def test_med_bench_ids_are_those_the_importer_always_stored(tmp_path):
    """The MED importer moved onto the registry with its ids unchanged: databases that already hold
    the benchmark get no second copy."""
    from pairsmith.tasks.imports.med_bench import MedBenchImporter

    item = {"image_name": "images/test_00043.jpg", "edited_image_name": "images/test_00043_edited.jpg",
            "type": "Object", "question": "Q?", "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "A"}
    (tmp_path / "MED_bench.json").write_text(json.dumps([item, item, item, {"image_name": "x"}]))
    importer, config = MedBenchImporter(), MedBenchConfig(json_path=str(tmp_path / "MED_bench.json"))
    listing = importer.listing(config)
    entry, bad = listing.entries
    assert listing.duplicates == 2
    assert importer.pair_id(config, entry) == "ec9a6f1ab06079b9"
    assert importer.samples(config, entry, "ec9a6f1ab06079b9", "r")[0].sample_id == "10e4993f339bbbcd"
    assert importer.bad_entry_row(config, "r", bad).pair_id == "7ece66318836642e"


def test_blank_captions_and_non_text_fields_are_bad_entries_in_every_importer(tmp_path):
    """A blank caption would become a training answer of nothing, and a null question the text
    'None': both are reason rows (import_bad_entry), in every importer that reads text."""
    from pairsmith.tasks.imports.base import BAD_ENTRY, BadEntry, Entry
    from pairsmith.tasks.imports.image_edit_request import ImageEditRequestImporter
    from pairsmith.tasks.imports.med_bench import _entry as med_entry
    from pairsmith.tasks.imports.pair_folder import PairFolderConfig, _entry as folder_entry
    from pairsmith.tasks.imports.spot_the_diff import SpotTheDiffImporter

    folder = PairFolderConfig(pairs=str(tmp_path / "pairs.jsonl"))
    med = {"image_name": "a.jpg", "edited_image_name": "b.jpg", "type": "Attribute", "question": "What changed?",
           "options": ["A. a", "B. b", "C. c", "D. d"], "answer": "A"}
    bad = [
        SpotTheDiffImporter().entry("test.json", 0, {"img_id": "1", "sentences": [""]}, "test"),
        ImageEditRequestImporter().entry("valid.json", 0, {"img0": "a.png", "img1": "b.png", "sents": [" "]}, "val"),
        folder_entry(folder, "pairs.jsonl", 1, {"before": "a.png", "after": "b.png", "captions": [""]}),
        folder_entry(folder, "pairs.jsonl", 2, {"before": "a.png", "after": "b.png", "caption": "\n"}),
        folder_entry(folder, "pairs.jsonl", 3, {"before": " ", "after": "b.png", "caption": "x"}),
        med_entry("MED_bench.json", 0, {**med, "question": None}),
        med_entry("MED_bench.json", 1, {**med, "question": "   "}),
        med_entry("MED_bench.json", 2, {**med, "image_name": 7}),
        med_entry("MED_bench.json", 3, {**med, "options": ["A. a", "B. b", None, "D. d"]}),
    ]
    assert [type(b).__name__ for b in bad] == ["BadEntry"] * len(bad)
    assert {b.reason for b in bad if isinstance(b, BadEntry)} == {BAD_ENTRY}
    assert "question must be non-blank text" in bad[5].detail
    # the same entries with text in them are read
    good = [SpotTheDiffImporter().entry("test.json", 0, {"img_id": "1", "sentences": ["a car left", " "]}, "test"),
            folder_entry(folder, "pairs.jsonl", 1, {"before": "a.png", "after": "b.png", "caption": "x"}),
            med_entry("MED_bench.json", 0, med)]
    assert all(isinstance(g, Entry) for g in good) and good[2].extra["question"] == "What changed?"
    assert good[0].captions == ("a car left",)  # a blank sentence beside real ones is left out, not stored
