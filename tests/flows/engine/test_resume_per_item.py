"""Issue 22, kinds 3 and 4: a run is its content and resumes per item.

Kind 3 (resume that does not extend): a larger ``--pairs`` renders only the pairs the run lacks,
another ``--batch-size`` renders nothing again, and a database written by pairsmith before per-item resume (whose run
ids hashed both) is continued, not redone or orphaned.

Kind 4 (a fixed input that is never retried): an import retries an entry whose image file was
repaired since, ``--retry-failed`` retries all load failures, and a run's exit status follows its
own funnel even when a later import re-wrote its pairs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pairsmith.flows.cli.main import main
from pairsmith.flows.dig_render_config import DigRenderConfig
from pairsmith.flows.engine.funnel import run_funnel
from pairsmith.flows.engine.resume import plan_resume
from pairsmith.storage.store import PairStore
from tests.conftest import render_run
from tests.public_sets import make_pair_images
from tests.flows.test_evaluate import eval_db, tiny_vlm  # noqa: F401  (fixtures)
from tests.flows.test_med_edit import models, source_folder  # noqa: F401  (fixtures)

TINY = {"render": {"width": 64, "height": 48, "samples": 1}, "sampling": {"max_changes": 1}}


def _as_pairsmith_0_2(m: pytest.MonkeyPatch) -> None:
    """Render as pairsmith before per-item resume did: its run id formula, and no look for an earlier run."""
    m.setattr(DigRenderConfig, "run_id", lambda self: self.legacy_run_id(self.pairs, self.batch_size))
    m.setattr("pairsmith.flows.engine.run.resolve_run_id", lambda store, flow, run_id, *rest: (run_id, False))


def _rows(store: PairStore, run_id: str) -> list[dict]:
    return store.read("pairs", where=f"run_id = '{run_id}'", columns=["pair_id", "status", "drop_reason"]).to_pylist()


def test_a_larger_render_renders_only_the_new_pairs_and_a_batch_size_renders_none(tmp_path):
    db = tmp_path / "db.lance"
    first = render_run(db, pairs=8, batch_size=4, **TINY).summary
    assert first.pairs_rendered == 8
    grown = render_run(db, pairs=10, batch_size=4, **TINY)
    assert grown.summary.run_id == first.run_id  # the same run, grown
    assert grown.summary.pairs_rendered == 2
    assert len(_rows(grown.store, first.run_id)) == 10
    funnel = run_funnel(grown.store, first.run_id)
    assert funnel[0].n_in == 10  # every pair counted once
    rebatched = render_run(db, pairs=10, batch_size=3, **TINY).summary
    assert rebatched.run_id == first.run_id and rebatched.pairs_rendered == 0
    smaller = render_run(db, pairs=5, batch_size=7, **TINY).summary
    assert smaller.pairs_rendered == 0 and smaller.pairs_kept + smaller.pairs_dropped == 10
    assert run_funnel(grown.store, first.run_id)[0].n_in == 10


def test_a_run_stored_by_pairsmith_0_2_is_continued_under_its_own_id(tmp_path, monkeypatch):
    """A database made with 0.2's run ids (they hashed --pairs and --batch-size) still resumes."""
    db = tmp_path / "db.lance"
    legacy = DigRenderConfig(db=str(db), pairs=4, batch_size=2, **TINY)
    assert DigRenderConfig(pairs=4, batch_size=2, **TINY).legacy_run_id(4, 2) == "dig-render-c570da61faf8"
    with monkeypatch.context() as m:  # what pairsmith before per-item resume stored: its formula for the run id
        _as_pairsmith_0_2(m)
        old = render_run(db, pairs=4, batch_size=2, **TINY).summary
    assert old.run_id == "dig-render-c570da61faf8" == legacy.legacy_run_id(4, 2)
    grown = render_run(db, pairs=6, batch_size=3, **TINY)
    assert grown.summary.run_id == old.run_id and grown.summary.pairs_rendered == 2
    assert len(_rows(grown.store, old.run_id)) == 6
    assert [r["run_id"] for r in grown.store.runs()] == [old.run_id]  # nothing orphaned


def test_an_older_run_whose_pairs_a_later_run_rewrote_is_explained(tmp_path, monkeypatch, capsys):
    """An earlier pairsmith made a second run for --pairs 6 after --pairs 4; the first owns no pairs any more: stats,
    export --run and contact-sheet --run name the run that holds them."""
    db = tmp_path / "db.lance"
    with monkeypatch.context() as m:
        _as_pairsmith_0_2(m)
        small = render_run(db, pairs=2, batch_size=2, **TINY).summary
        large = render_run(db, pairs=3, batch_size=2, **TINY).summary
    assert small.run_id != large.run_id
    capsys.readouterr()
    assert main(["stats", "--db", str(db), "--run", small.run_id]) == 0
    assert f"now stored under run {large.run_id}" in capsys.readouterr().out
    assert main(["export", "--format", "llava", "--out", str(tmp_path / "out"), "--db", str(db),
                 "--run", small.run_id, "--split", "train", "--split", "val", "--split", "test"]) == 2
    assert f"use --run {large.run_id}" in capsys.readouterr().err
    assert main(["contact-sheet", "--out", str(tmp_path / "s.png"), "--db", str(db), "--run", small.run_id]) == 2
    assert f"use --run {large.run_id}" in capsys.readouterr().err


def test_batches_are_cut_only_in_the_gaps_and_redone_under_their_own_name():
    class Stored:
        def completed_batches(self, run_id):
            return {"0000000-0000004", "0000004-0000008", "0000010-0000012", "select"}

    plan = plan_resume(Stored(), "r", 15, 3, redo={"0000004-0000008"})
    assert [(r.start, r.stop) for r in plan.todo] == [(8, 10), (12, 15), (4, 8)]
    assert plan.redone == ["0000004-0000008"] and plan.done_items == 15 - 9
    assert plan_resume(Stored(), "r", 6, 100).todo == []  # a smaller run: nothing to do


# --- imports -----------------------------------------------------------------------------------------------


def _folder(tmp_path: Path, n: int = 3) -> Path:
    make_pair_images(tmp_path / "img", [(f"{i}.png", f"{i}_b.png") for i in range(n)], size=(64, 48))
    lines = [json.dumps({"before": f"img/{i}.png", "after": f"img/{i}_b.png", "caption": f"change {i}"})
             for i in range(n)]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.jsonl"


def _import(pairs: Path, db: Path, *more: str) -> int:
    return main(["import", "folder", "--pairs", str(pairs), "--db", str(db), *more])


def test_a_truncated_image_replaced_by_a_good_copy_is_imported_on_the_next_run(tmp_path, capsys):
    pairs, db = _folder(tmp_path), tmp_path / "db.lance"
    good = (tmp_path / "img" / "1_b.png").read_bytes()
    (tmp_path / "img" / "1_b.png").write_bytes(good[: len(good) // 2])
    assert _import(pairs, db) == 0
    store = PairStore(str(db))
    (run,) = {r["run_id"] for r in store.runs()}
    assert sorted(r["drop_reason"] or "" for r in _rows(store, run)) == ["", "", "load_truncated"]
    assert _import(pairs, db) == 0  # nothing changed: nothing retried
    assert "tried again" not in capsys.readouterr().out
    (tmp_path / "img" / "1_b.png").write_bytes(good)  # the good copy
    assert _import(pairs, db) == 0
    assert "1 dropped entries were tried again" in capsys.readouterr().out
    assert [r["status"] for r in _rows(store, run)] == ["kept"] * 3
    funnel = run_funnel(store, run)
    assert (funnel[0].n_in, funnel[-1].n_kept) == (3, 3)  # counted once


def test_a_missing_image_copied_in_is_retried_and_retry_failed_retries_every_load_failure(tmp_path, capsys):
    pairs, db = _folder(tmp_path), tmp_path / "db.lance"
    moved = tmp_path / "kept-aside.png"
    shutil.move(tmp_path / "img" / "2.png", moved)
    (tmp_path / "img" / "0_b.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    assert _import(pairs, db) == 0
    capsys.readouterr()
    assert _import(pairs, db, "--retry-failed") == 0  # both tried again, neither fixed
    assert "2 dropped entries were tried again" in capsys.readouterr().out
    shutil.move(moved, tmp_path / "img" / "2.png")
    assert _import(pairs, db) == 0
    assert "1 dropped entries were tried again" in capsys.readouterr().out
    store = PairStore(str(db))
    (run,) = {r["run_id"] for r in store.runs()}
    assert sorted(r["status"] for r in _rows(store, run)) == ["dropped", "kept", "kept"]
    assert run_funnel(store, run)[0].n_in == 3


def test_a_run_whose_pairs_another_import_took_over_exits_by_its_own_funnel(tmp_path, capsys):
    pairs, db = _folder(tmp_path), tmp_path / "db.lance"
    assert _import(pairs, db) == 0
    assert _import(pairs, db, "--split", "val") == 0  # other options: the same pair ids, re-written
    capsys.readouterr()
    assert _import(pairs, db) == 0  # its funnel shows 3 kept: not "kept no pair"
    out = capsys.readouterr()
    assert "kept no pair" not in out.err
    assert "3 of its kept pairs are now stored under another run" in out.out


def test_another_import_batch_size_redoes_nothing(tmp_path, capsys):
    pairs, db = _folder(tmp_path, 5), tmp_path / "db.lance"
    assert _import(pairs, db, "--batch-size", "2") == 0
    capsys.readouterr()
    assert _import(pairs, db, "--batch-size", "4") == 0
    assert "3 of 3 batches were already stored" in capsys.readouterr().out


def test_a_pair_that_failed_with_an_error_is_rendered_again_alone(tmp_path, monkeypatch):
    """The retry does that pair only, not its batch-mates, and the funnel still counts it once."""
    from pairsmith.scenes.blender_render import BlenderRenderer

    real, calls = BlenderRenderer.render_color, {"n": 0}

    def third_fails(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(self, *args, **kwargs)

    db = tmp_path / "db.lance"
    with monkeypatch.context() as m:
        m.setattr(BlenderRenderer, "render_color", third_fails)
        first = render_run(db, pairs=4, batch_size=4, **TINY)
    assert first.summary.pairs_failed == 1
    again = render_run(db, pairs=4, batch_size=4, **TINY)
    assert again.summary.pairs_rendered == 1 and again.summary.pairs_failed == 0
    funnel = run_funnel(again.store, first.summary.run_id)
    assert [s.n_in for s in funnel][:1] == [4] and again.store.count("stage_stats", None) == len(funnel)
    assert [r["drop_reason"] for r in _rows(again.store, first.summary.run_id) if r["drop_reason"]] == []


def test_propose_regions_grows_with_its_limit_and_redoes_a_pair_written_again(tmp_path):
    """Kind 3: --limit is a size, not the run; kind 4: a pair re-imported since (new images) is
    proposed again, the others are not."""
    from pairsmith.flows.propose_regions import ProposeRegionsConfig, propose_regions
    from pairsmith.storage.schemas import utc_now
    from tests.models.proposers.test_change_regions import edited, photo
    from tests.flows.test_propose_regions import _pair

    db = str(tmp_path / "db.lance")
    store = PairStore(db)
    store.upsert("pairs", [_pair(f"p{i}", photo(i), edited(photo(i))) for i in range(3)])
    first = propose_regions(ProposeRegionsConfig(db=db, limit=2, batch_size=1))
    assert first.pairs == 2 and run_funnel(store, first.run_id)[0].n_in == 2
    grown = propose_regions(ProposeRegionsConfig(db=db, limit=3, batch_size=2))
    assert grown.run_id == first.run_id and run_funnel(store, first.run_id)[0].n_in == 3
    batches = {r["batch"]: r["created_at"] for r in store.read("stage_stats", where=f"run_id = '{first.run_id}'"
                                                                 " AND stage = 'register'").to_pylist()}
    assert sorted(batches) == ["0000000-0000001", "0000001-0000002", "0000002-0000003"]
    row = store.read("pairs", where="pair_id = 'p1'").to_pylist()[0]
    store.upsert("pairs", [type(_pair("p1", photo(1), photo(1)))(**{**row, "created_at": utc_now()})])
    propose_regions(ProposeRegionsConfig(db=db, limit=3, batch_size=2))
    after = {r["batch"]: r["created_at"] for r in store.read("stage_stats", where=f"run_id = '{first.run_id}'"
                                                               " AND stage = 'register'").to_pylist()}
    assert after["0000001-0000002"] > batches["0000001-0000002"]  # redone
    for untouched in ("0000000-0000001", "0000002-0000003"):
        assert after[untouched] == batches[untouched]
    assert run_funnel(store, first.run_id)[0].n_in == 3


@pytest.mark.slow
def test_med_edit_grows_with_its_limit_and_retries_a_source_photo_copied_in(tmp_path, models, source_folder,
                                                                           monkeypatch):
    """Kind 3: a larger sources limit is the same run, nothing paid twice; kind 4: a photo that was
    missing and has been copied in is edited on the next run."""
    from PIL import Image

    from pairsmith.flows.med_edit import med_edit
    from tests.fake_gemini import FakeGemini
    from tests.flows.test_med_edit import API_KEY, _config, _edits

    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    folder, captions = source_folder

    def sources(limit: int) -> dict:
        return {"folder": {"images_dir": str(folder), "captions": str(captions)}, "limit": limit}

    with FakeGemini() as server:
        small = med_edit(_config(tmp_path, models, server, folder, captions, sources=sources(4)))
        grown = med_edit(_config(tmp_path, models, server, folder, captions, sources=sources(11), batch_size=3))
        assert grown.run_id == small.run_id and grown.batches_resumed == 1
        store = PairStore(str(tmp_path / "med.lance"))
        assert run_funnel(store, small.run_id)[0].n_in == 11
        missing = store.read("pairs", where="drop_reason = 'source_missing'", columns=["pair_id"]).to_pylist()
        assert len(missing) == 1
        Image.new("RGB", (160, 120), (200, 30, 30)).save(folder / "missing.jpg")
        med_edit(_config(tmp_path, models, server, folder, captions, sources=sources(11), batch_size=3))
        shas = [r.image_sha for r in _edits(server)]  # the editor's requests (MED's roles ask the same server)
    assert len(shas) == len(set(shas)), "an already edited photo was sent to Gemini again"
    row = store.read("pairs", where=f"pair_id = '{missing[0]['pair_id']}'").to_pylist()[0]
    assert row["drop_reason"] != "source_missing"
    assert run_funnel(store, small.run_id)[0].n_in == 11


@pytest.mark.slow
def test_evaluate_with_a_larger_limit_asks_only_the_new_samples(eval_db, tiny_vlm):
    from pairsmith.flows.evaluate import evaluate
    from pairsmith.flows.evaluate_config import EvaluateConfig

    def config(limit: int, batch_size: int) -> EvaluateConfig:
        return EvaluateConfig(db=eval_db, model_id=str(tiny_vlm), runtime={"device": "cpu"}, max_new_tokens=4,
                              batch_size=batch_size, tag_data=False,
                              data={"tasks": ["med-mcq"], "splits": ["test"], "limit": limit})

    first = evaluate(config(2, 1))
    grown = evaluate(config(4, 3))
    assert grown.eval_id == first.eval_id and (first.n_generated, grown.n_generated) == (2, 2)
    assert evaluate(config(4, 2)).n_generated == 0
    store = PairStore(eval_db)
    assert store.count("eval_predictions", f"eval_id = '{first.eval_id}'") == 4
