"""benchmarks/proposer_recall.py on hand-marked real pairs: the lenient rule, the report, bad input."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from benchmarks.proposer_recall import Found, MarkedItem, lenient_hit, main, score_marked
from tests.models.proposers.test_change_regions import EDIT_BOX, edited, jpeg, photo


def test_lenient_rule_of_the_med_sample_readme():
    mark = [0.2, 0.2, 0.6, 0.6]
    assert lenient_hit([0.25, 0.25, 0.55, 0.55], mark)  # IoU 0.56
    assert lenient_hit([0.35, 0.35, 0.45, 0.45], [0.3, 0.3, 0.5, 0.5])  # IoU 0.25, but each centre inside the other
    assert not lenient_hit([0.25, 0.25, 0.3, 0.3], mark)  # a speck inside the mark, off its centre
    assert not lenient_hit([0.6, 0.6, 0.9, 0.9], mark)  # touching corners


def test_marked_report_counts_local_and_whole_image_items_apart():
    items = [MarkedItem(0, None, None, [[0.1, 0.1, 0.3, 0.3], [0.6, 0.6, 0.9, 0.9]], False),
             MarkedItem(1, None, None, [[0, 0, 1, 1]], True),
             MarkedItem(2, None, None, [[0.4, 0.4, 0.6, 0.6]], False)]
    found = [Found([[10, 10, 30, 30], [50, 0, 60, 10]], "local"), Found([[0, 0, 5, 5]], "local"), Found([], "global")]
    report = score_marked(items, found, [(100, 100)] * 3)
    assert (report.marks, report.found, report.boxes, report.right) == (3, 1, 2, 1)
    assert (report.recall, report.precision, report.boxes_per_edit) == (1 / 3, 0.5, 1.0)
    assert (report.global_items, report.global_verdicts, report.global_boxes, report.false_global) == (1, 0, 1, 1)


@pytest.fixture(scope="module")
def marked_set(tmp_path_factory):
    """Two MED-format items: a local edit (marked) and a re-framed view (marked global)."""
    root = tmp_path_factory.mktemp("marked")
    (root / "images").mkdir()
    local, wide = photo(3), photo(4, size=(400, 300))
    local.save(root / "images" / "a.png")
    edited(local).save(root / "images" / "a_edit.png")
    wide.save(root / "images" / "b.png")
    jpeg(wide.crop((100, 70, 340, 250)).resize((480, 360), Image.BICUBIC)).save(root / "images" / "b_edit.png")
    options = ["A. x", "B. y", "C. z", "D. w"]
    entries = [{"image_name": f"images/{n}.png", "edited_image_name": f"images/{n}_edit.png", "type": "Object",
                "question": "What changed?", "options": options, "answer": "A"} for n in ("a", "b")]
    (root / "bench.json").write_text(json.dumps(entries))
    w, h = local.size
    marks = [{"i": 0, "boxes": [[EDIT_BOX[0] / w, EDIT_BOX[1] / h, EDIT_BOX[2] / w, EDIT_BOX[3] / h]], "note": "blue box"},
             {"i": 1, "boxes": [[0, 0, 1, 1]], "global": True, "note": "re-framed"}]
    (root / "marked.jsonl").write_text("\n".join(json.dumps(m) for m in marks) + "\n")
    return root


def test_marked_mode_prints_the_figures_and_ends_with_recall_and_precision(marked_set, capsys):
    assert main(["--marked", str(marked_set / "marked.jsonl"), "--json", str(marked_set / "bench.json"), "--verbose"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "recall = 1.000 precision = 1.000"
    assert "whole-image edits: 1 of 1 judged global, 0 boxes on them" in out
    assert any(line.startswith("2 marked pairs (1 localised edits with 1 marked regions, 1 whole-image edits)")
               and "s/pair" in line for line in out)


def test_marked_mode_bad_input_exits_2_naming_the_file(marked_set, tmp_path, capsys):
    bench = str(marked_set / "bench.json")
    bad = tmp_path / "bad.jsonl"
    for text, message in [('{"i": 0}\n', "line 1: expected {i, boxes}"),
                          ('{"i": 7, "boxes": [[0, 0, 1, 1]]}\n', "line 1: item 7 is not a valid entry"),
                          ('{"i": 0, "boxes": [[0.5, 0, 0.2, 1]]}\n', "line 1: boxes must be"),
                          ("", "no marked items")]:
        bad.write_text(text)
        assert main(["--marked", str(bad), "--json", bench]) == 2
        err = capsys.readouterr().err
        assert err.startswith("proposer_recall: error: --marked") and message in err, err
    assert main(["--marked", str(tmp_path / "none.jsonl"), "--json", bench]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["--marked", str(marked_set / "marked.jsonl"), "--json", bench, "--images", str(tmp_path)]) == 0
    capsys.readouterr()  # images fall back to the JSON's folder, as the importer does
