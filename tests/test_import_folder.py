"""``pairsmith import folder``: a before/after/captions JSONL for any set, through the CLI."""

from __future__ import annotations

import json

from pairsmith.flows.cli.main import main
from pairsmith.storage.store import PairStore
from tests.public_sets import make_pair_images

LINES = [
    {"before": "a/1.png", "after": "a/1_edit.png", "captions": ["the cup is gone", "no cup"], "split": "test",
     "category": "remove", "id": "0001"},
    {"before": "a/2.jpg", "after": "a/2_edit.jpg", "caption": "the car turned red"},
    {"before": "a/3.png", "after": "a/3_edit.png", "captions": []},  # no caption: a reason row
    ["not", "an", "object"],
    {"before": "a/3.png", "after": "a/3_edit.png", "captoin": ["a misspelt key"]},  # its captions would be lost
    {"before": "a/3.png", "after": "a/3_edit.png", "captions": ["x"], "caption": "y"},
    {"before": "a/4.png", "after": "a/4_edit.png", "caption": "the tap is open", "split": None, "category": None},
]


def test_jsonl_lines_become_pairs_in_their_splits_under_the_given_dataset_name(tmp_path, capsys):
    make_pair_images(tmp_path / "a", [("1.png", "1_edit.png"), ("2.jpg", "2_edit.jpg"), ("3.png", "3_edit.png"),
                                      ("4.png", "4_edit.png")])
    pairs_file = tmp_path / "omnidiff.jsonl"
    pairs_file.write_text("\n".join(json.dumps(line) for line in LINES) + "\n\n")
    db = tmp_path / "db.lance"
    code = main(["import", "folder", "--pairs", str(pairs_file), "--dataset", "omnidiff", "--split", "val", "--db", str(db)])
    out = capsys.readouterr().out
    assert code == 0
    assert "Imported 7 entries" in out and "3 pairs kept, 4 dropped, 4 diff-caption samples" in out
    assert "splits: test (2), val (2)" in out and "categories: remove (2)" in out
    store = PairStore(str(db))
    samples = sorted((s["answer"], s["split"], s["category"], s["dataset"]) for s in store.read("samples").to_pylist())
    assert samples == [("no cup", "test", "remove", "omnidiff"), ("the car turned red", "val", None, "omnidiff"),
                       ("the cup is gone", "test", "remove", "omnidiff"), ("the tap is open", "val", None, "omnidiff")]
    dropped = sorted((p["drop_detail"], p["origin"]) for p in store.read("pairs", where="status = 'dropped'").to_pylist())
    assert dropped == [
        ("line 3: needs 'captions' (a list of strings, at least one non-blank) or 'caption' (a non-blank string)", "omnidiff:omnidiff.jsonl#line 3"),
        ("line 4: list, not an object", "omnidiff:omnidiff.jsonl#line 4"),
        ("line 5: unknown key 'captoin' (keys: before, after, captions, caption, split, category, id)",
         "omnidiff:omnidiff.jsonl#line 5"),
        ("line 6: give 'captions' or 'caption', not both", "omnidiff:omnidiff.jsonl#line 6"),
    ]
    assert {p["dataset"] for p in store.read("pairs").to_pylist()} == {"omnidiff"}
