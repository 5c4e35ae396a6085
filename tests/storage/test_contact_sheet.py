"""contact-sheet: the newest run with pairs, a chosen run's boxes, dropped pairs by reason, readable captions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pairsmith.flows.propose_regions import ProposeRegionsConfig, propose_regions
from pairsmith.storage.contact_sheet import GLOBAL_FRAME, _font, caption_text, cell_text
from pairsmith.storage.store import PairStore
from pairsmith.storage.verdict import KEEP, StageStats
from pairsmith.tasks.write_batch import stage_rows
from tests.models.proposers.test_change_regions import edited, jpeg, photo
from tests.flows.test_propose_regions import _pair
from tests.flows.cli.test_run_inspect import run_cli


@pytest.fixture(scope="module")
def sheet_db(tmp_path_factory) -> tuple[str, str]:
    """An import run 'import-x' (stage stats too) of three edited pairs, then propose-regions over them, then a
    newer run with no pairs at all."""
    db = str(tmp_path_factory.mktemp("sheet") / "db.lance")
    local, reframed, other = photo(3), photo(4, size=(400, 300)), photo(8)
    crop = jpeg(reframed.crop((100, 70, 340, 250)).resize((480, 360), Image.BICUBIC))
    store = PairStore(db)
    store.upsert("pairs", [_pair("p-local", local, edited(local)), _pair("p-reframed", reframed, crop),
                           _pair("p-same", other, jpeg(other, quality=90))])
    load = StageStats("load")
    for _ in range(3):
        load.record(KEEP)
    store.upsert("stage_stats", stage_rows("import-x", "import-med-bench", "0000000-0000003", [load]))
    run_id = propose_regions(ProposeRegionsConfig(db=db)).run_id
    store.upsert("stage_stats", stage_rows("nothing-to-draw", "refilter", "0000000-0000001", [StageStats("x")]))
    return db, run_id


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _red(img: np.ndarray) -> int:
    return int(((img[..., 0] > 200) & (img[..., 1] < 40) & (img[..., 2] < 40)).sum())


def test_defaults_to_the_newest_run_with_pairs_and_samples_dropped_pairs_by_reason(sheet_db, tmp_path, capsys):
    db, run_id = sheet_db
    code, out, err = run_cli(capsys, "contact-sheet", "--db", db, "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    assert f"Drew 1 pairs of run {run_id}" in out  # not 'nothing-to-draw'; the one local pair with boxes
    assert _red(_pixels(tmp_path / "a.png")) > 100

    code, out, _ = run_cli(capsys, "contact-sheet", "--db", db, "--run", run_id, "--reason", "extent_reframed",
                           "--out", str(tmp_path / "b.png"))
    assert code == 0 and "Drew 1 pairs" in out
    img = _pixels(tmp_path / "b.png")
    orange = (np.abs(img - np.array(GLOBAL_FRAME)).sum(axis=-1) < 30).sum()
    assert orange > 1000  # the whole-image verdict's frame
    code, out, _ = run_cli(capsys, "contact-sheet", "--db", db, "--run", run_id, "--status", "dropped",
                           "--out", str(tmp_path / "c.png"))
    assert code == 0 and "Drew 2 pairs" in out  # the whole-image pair and the one without regions
    code, _, err = run_cli(capsys, "contact-sheet", "--db", db, "--run", run_id, "--reason", "no_such_reason",
                           "--out", str(tmp_path / "d.png"))
    assert code == 2 and "no dropped pairs with images to draw (reason no_such_reason)" in err
    assert not (tmp_path / "d.png").exists()


def test_regions_run_draws_that_runs_boxes_on_another_runs_pairs(sheet_db, tmp_path, capsys):
    db, run_id = sheet_db
    code, out, _ = run_cli(capsys, "contact-sheet", "--db", db, "--run", "import-x", "--n", "1",
                           "--regions-run", "nothing-to-draw", "--out", str(tmp_path / "none.png"))
    assert code == 0 and _red(_pixels(tmp_path / "none.png")) == 0  # that run has no boxes
    code, out, _ = run_cli(capsys, "contact-sheet", "--db", db, "--run", "import-x", "--n", "1",
                           "--regions-run", run_id, "--out", str(tmp_path / "boxes.png"))
    assert code == 0 and "Drew 1 pairs of run import-x" in out  # p-local comes first by id
    assert _red(_pixels(tmp_path / "boxes.png")) > 100
    code, _, err = run_cli(capsys, "contact-sheet", "--db", db, "--regions-run", "nope", "--out", str(tmp_path / "e.png"))
    assert code == 2 and "--run 'nope': no such run" in err


def test_a_moves_shared_caption_is_written_once_with_confidence_and_question():
    move = "The small red cube was moved to the right of the yellow cylinder."
    regions = [{"status": "kept", "difference_caption": move, "confidence": None, "box": [0, 0, 1, 1]},
               {"status": "kept", "difference_caption": move, "confidence": None, "box": [2, 2, 3, 3]},
               {"status": "kept", "difference_caption": "A new gray sphere appeared.", "confidence": None, "box": [0, 0, 1, 1]}]
    assert caption_text(regions) == move + " A new gray sphere appeared."
    pair = {"status": "kept", "difference": None}
    proposed = [{"status": "kept", "difference_caption": None, "confidence": 0.734, "box": [0, 0, 1, 1]}]
    assert cell_text(pair, proposed, "Which differs? A. x B. y") == ["1 box, confidence 0.73", "Q: Which differs? A. x B. y"]
    glob = {"status": "kept", "change_extent": "global", "change_extent_reason": "extent_redrawn", "change_extent_score": 0.9}
    assert cell_text(glob, [], None) == ["whole image changed (extent_redrawn, score 0.90)"]


def test_captions_use_a_proportional_font_with_visible_word_gaps():
    font = _font()
    assert font.getlength("a b") - font.getlength("ab") >= 3  # a space a reader sees
    assert font.getlength("iiii") < font.getlength("MMMM")  # proportional, not the 6 px bitmap cells
