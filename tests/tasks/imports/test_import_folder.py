"""``pairsmith import folder``: a before/after/captions JSONL for any set, through the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

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


def test_a_run_that_fails_inside_its_flow_says_so_in_one_line(tmp_path):
    """As a user runs it (its own process): a flow that fails inside (here a data file of the
    database went missing) prints pairsmith's one line and exits 1. Prefect's traceback, "Finished
    in state Failed" and its temporary server's errors stay in the run's logs (API, UI, --verbose)."""
    make_pair_images(tmp_path / "a", [("1.png", "1_edit.png"), ("2.png", "2_edit.png")])
    pairs_file, db = tmp_path / "pairs.jsonl", tmp_path / "db.lance"
    pairs_file.write_text(json.dumps({"before": "a/1.png", "after": "a/1_edit.png", "caption": "x"}) + "\n")
    assert main(["import", "folder", "--pairs", str(pairs_file), "--db", str(db)]) == 0
    for data_file in (db / "pairs.lance" / "data").iterdir():
        data_file.unlink()
    with pairs_file.open("a") as lines:
        lines.write(json.dumps({"before": "a/2.png", "after": "a/2_edit.png", "caption": "y"}) + "\n")
    proc = subprocess.run([sys.executable, "-m", "pairsmith.flows.cli.main", "import", "folder", "--pairs",
                           str(pairs_file), "--db", str(db)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("pairsmith: error: run import-folder-"), proc.stderr
    assert "Not found" in lines[0]
    shutil.rmtree(db)  # broken on purpose: conftest's after-test key check could not read it
