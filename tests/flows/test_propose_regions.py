"""The propose-regions flow on stored edited pairs: verdicts, confidences, runs side by side, grounding."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from benchmarks.proposer_recall import match_count
from pairsmith.flows.engine.funnel import run_funnel
from pairsmith.flows.propose_regions import GroundingConfig, ProposeRegionsConfig, propose_regions
from pairsmith.storage.schemas import PairRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.tasks.sample_builders import GROUNDING_PROMPT
from tests.models.proposers.test_change_regions import EDIT_BOX, edited, jpeg, photo


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _pair(pair_id: str, before: Image.Image, after: Image.Image, method: str = "med-edit", bench: bool = False) -> PairRow:
    return PairRow(pair_id=pair_id, run_id="import-x", method=method, image_before=_png(before), image_after=_png(after),
                   width=before.width, height=before.height, bench_candidate=bench, edit_category="Object",
                   status="kept", created_at=utc_now())


@pytest.fixture(scope="module")
def edited_db(tmp_path_factory) -> str:
    db = str(tmp_path_factory.mktemp("propose") / "db.lance")
    local, reframed, other = photo(3), photo(4, size=(400, 300)), photo(8)
    crop = jpeg(reframed.crop((100, 70, 340, 250)).resize((480, 360), Image.BICUBIC))
    PairStore(db).upsert("pairs", [
        _pair("p-local", local, edited(local), bench=True),
        _pair("p-reframed", reframed, crop),
        _pair("p-same", other, jpeg(other, quality=90)),
        _pair("p-render", local, edited(local), method="dig-render"),  # not selected: methods = [med-edit]
    ])
    return db


def test_verdicts_confidences_and_funnel(edited_db):
    config = ProposeRegionsConfig(db=edited_db)
    summary = propose_regions(config)
    assert (summary.pairs, summary.aligned, summary.local, summary.global_edits, summary.with_regions) == (3, 3, 2, 1, 1)
    store = PairStore(edited_db)
    pairs = {p["pair_id"]: p for p in store.read("pairs").to_pylist()}
    assert pairs["p-reframed"]["change_extent"] == "global"
    assert pairs["p-reframed"]["change_extent_reason"] == "extent_reframed"
    assert pairs["p-reframed"]["change_extent_score"] > 0.5
    assert pairs["p-local"]["change_extent"] == "local" and pairs["p-local"]["change_extent_reason"] is None
    assert pairs["p-render"]["change_extent"] is None  # not selected
    regions = store.read("regions", where=f"run_id = '{summary.run_id}'").to_pylist()
    assert {r["pair_id"] for r in regions} == {"p-local"}
    assert match_count([r["box"] for r in regions if r["status"] == "kept"], [EDIT_BOX], 0.5) == 1
    assert all(0 < r["confidence"] <= 1 and r["proposer"] == "diffmap" for r in regions)
    funnel = {s.stage: s for s in run_funnel(store, summary.run_id)}
    assert list(funnel) == ["register", "extent", "region_propose", "confidence"]
    assert dict(funnel["extent"].reasons) == {"extent_reframed": 1}
    assert dict(funnel["region_propose"].reasons) == {"propose_no_regions": 1}  # the identical pair
    again = propose_regions(config)  # a finished run: nothing is redone or duplicated
    assert again.run_id == summary.run_id and store.count("regions") == len(regions)


def test_a_new_proposer_config_writes_a_new_run_beside_the_old_one(edited_db):
    store = PairStore(edited_db)
    first = propose_regions(ProposeRegionsConfig(db=edited_db))
    old = {r["region_id"]: (r["box"], r["status"]) for r in store.read("regions", where=f"run_id = '{first.run_id}'").to_pylist()}
    strict = ProposeRegionsConfig(db=edited_db, min_confidence=0.999)
    second = propose_regions(strict)
    assert second.run_id != first.run_id and second.with_regions == 0 and second.regions == 0
    new = store.read("regions", where=f"run_id = '{second.run_id}'").to_pylist()
    assert new and not set(old) & {r["region_id"] for r in new}
    assert all(r["status"] == "dropped" and r["reason"] == "confidence_too_low" for r in new)
    kept_before = {r["region_id"]: (r["box"], r["status"]) for r in store.read("regions", where=f"run_id = '{first.run_id}'").to_pylist()}
    assert kept_before == old  # the first run's regions are untouched
    assert {first.run_id, second.run_id} <= {r["run_id"] for r in store.runs()}
    assert run_funnel(store, second.run_id)[-1].reasons["confidence_too_low"] == 1


def test_grounding_samples_from_real_edits_when_enabled(edited_db):
    store = PairStore(edited_db)
    off = propose_regions(ProposeRegionsConfig(db=edited_db))
    assert off.samples == 0
    on = propose_regions(ProposeRegionsConfig(db=edited_db, grounding=GroundingConfig(enabled=True)))
    samples = store.read("samples", where=f"run_id = '{on.run_id}'").to_pylist()
    kept = [r["box"] for r in store.read("regions", where=f"run_id = '{on.run_id}' AND status = 'kept'").to_pylist()]
    assert len(samples) == on.samples == 1
    s = samples[0]
    assert (s["pair_id"], s["task"], s["method"], s["split"]) == ("p-local", "grounding", "med-edit", "bench")
    assert sorted(map(list, s["boxes"])) == sorted(map(list, kept))
    prompt = GROUNDING_PROMPT.format(count="", width=320, height=240)
    assert s["conversation"][0]["content"].endswith(prompt)
    assert json.loads(s["answer"]) == [[round(v) for v in b] for b in s["boxes"]]
    funnel = {x.stage: x for x in run_funnel(store, on.run_id)}
    assert funnel["grounding"].n_kept == 1


def test_a_pair_without_images_is_a_counted_drop_and_its_bytes_are_never_filtered_on(tmp_path):
    """``only_kept: false`` also selects an import's reason rows, which have no images: each is an
    ``align`` drop (``pair_missing_images``), and the selection filters on no image column."""
    db = str(tmp_path / "db.lance")
    local = photo(3)
    PairStore(db).upsert("pairs", [
        _pair("p-local", local, edited(local)),
        PairRow(pair_id="p-missing", run_id="import-x", method="med-edit", status="dropped",
                drop_reason="import_image_missing", width=0, height=0, created_at=utc_now()),
    ])
    config = ProposeRegionsConfig(db=db, only_kept=False)
    assert "image" not in config.where()
    summary = propose_regions(config)
    assert (summary.pairs, summary.aligned, summary.local, summary.with_regions) == (2, 1, 1, 1)
    funnel = {s.stage: s for s in run_funnel(PairStore(db), summary.run_id)}
    assert dict(funnel["register"].reasons) == {"pair_missing_images": 1}
    assert PairStore(db).read("pairs", where="pair_id = 'p-missing'").to_pylist()[0]["align_method"] is None
