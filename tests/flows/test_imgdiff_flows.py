"""The imgdiff-replace and imgdiff-remove flows end to end, on tiny random models on the CPU.

Every model is a tiny random one built from its config and loaded back through the adapter's own
loader (open_clip, transformers, diffusers, ultralytics), so the real flow code runs: what a user
relies on is that the funnel adds up at every stage, that every pair and region is stored with its
scores and (when dropped) its reason, that the stored rows agree with the stage stats, that
``pairsmith refilter`` re-judges a run from its stored scores, that a failing model turns into
``<stage>_error`` rows and a retry, and that the samples carry their side-by-side pictures.

Random models give random scores, so one run uses permissive thresholds (to reach every stage)
and another the paper's (whose verdicts must match the pure filters on the stored scores).
"""

from __future__ import annotations

import shutil
from collections import Counter

import numpy as np
import pytest
import torch
import yaml

from pairsmith.filters.imgdiff import pipelines as pl
from pairsmith.filters.imgdiff.pair_filter import keep_pair
from pairsmith.filters.imgdiff.pipelines import LOAD, MAKE_PAIRS, REMOVE, REPLACE, ImgDiffThresholds, ReplaceThresholds
from pairsmith.filters.pipeline import PAIR, Pipeline
from pairsmith.flows.cli.main import main
from pairsmith.flows.engine.funnel import read_dropoff_artifact, run_funnel
from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig
from pairsmith.flows.imgdiff_remove import imgdiff_remove
from pairsmith.flows.imgdiff_replace import imgdiff_replace
from pairsmith.flows.engine.run_outcome import batches_with_errors
from pairsmith.models.adapters.blip_itm import BlipItmScorer
from pairsmith.models.lazy import clear_loaded
from pairsmith.models.tiny.builders import build_tiny_blip_itm, build_tiny_clip, build_tiny_fastsam
from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
from pairsmith.models.tiny.sdxl import build_tiny_sdxl, build_tiny_sdxl_turbo
from pairsmith.storage.exports import export
from pairsmith.storage.exports.base import ExportOptions
from pairsmith.storage.pair_images import BAR_PX, open_image
from pairsmith.storage.store import PairStore, sql_literal

pytestmark = pytest.mark.slow

SIZE = 64
REMOVE_FROM_RUN = REMOVE.with_source(MAKE_PAIRS, (LOAD,))
# Permissive: every box that is big enough goes through every model step.
LOOSE_REPLACE = {"pair_sim_min": -1.0, "pair_sim_max": 1.0, "crop_sim_max": 1.0, "bitm_min": -1.0,
                 "citm_min": -1.0, "caption_sim_max": 1.0}
LOOSE_REMOVE = {"crop_sim_max": 1.0, "itm_original_min": -1.0, "itm_inpainted_max": 1.0}


@pytest.fixture(scope="module", autouse=True)
def offline_one_torch_thread():
    """No hub requests; and tiny models gain nothing from threads, while two spinning OpenMP threads
    slow a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("YOLO_OFFLINE", "1")
        yield
    torch.set_num_threads(threads)
    clear_loaded()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """Model settings of both flows, every model a tiny random one saved to disk."""
    root = tmp_path_factory.mktemp("imgdiff-models")
    clip = build_tiny_clip(root / "clip")
    build_tiny_fastsam(root / "FastSAM-x.pt")
    return dict(
        rewriter={"mode": "lexicon"},
        generator={"model_id": str(build_tiny_sdxl(root / "sdxl")), "steps": 2, "height": SIZE, "width": SIZE,
                   "guidance_scale": 5.0},
        clip={"model_name": clip.model_name, "pretrained": str(clip.weights), "model_config_file": str(clip.config_file)},
        blip={"model_id": str(build_tiny_blip_itm(root / "blip"))},
        fastsam={"weights": "FastSAM-x.pt", "imgsz": SIZE, "conf": 0.0, "max_det": 4},  # conf 0: a random model finds segments
        # Tiny-SDXL pairs differ by a few grey levels only: a low difference level finds their boxes.
        diffmap={"diff_threshold": 2, "blur_px": 1, "open_px": 1, "min_object_px": 4, "residual_min_px": 4,
                 "residual_min_median_diff": 0},
        vlm={"model_id": str(build_tiny_qwen2_vl(root / "vlm")), "max_new_tokens": 12, "temperature": 1.0, "seed": 0},
        runtime={"device": "cpu", "offline": True, "cache_dir": str(root)},
        _turbo=str(build_tiny_sdxl_turbo(root / "turbo")),
    )


def _models(tiny: dict) -> dict:
    return {k: v for k, v in tiny.items() if not k.startswith("_")}


def _replace_config(tiny, db, **overrides) -> ImgDiffReplaceConfig:
    fields = dict(db=str(db), pairs=4, batch_size=2, thresholds=LOOSE_REPLACE, **_models(tiny))
    return ImgDiffReplaceConfig.model_validate({**fields, **overrides})


def _remove_config(tiny, db, **overrides) -> ImgDiffRemoveConfig:
    fields = dict(db=str(db), pairs=3, batch_size=2, thresholds=LOOSE_REMOVE, max_inpaint_per_pair=2,
                  inpaint={"model_id": tiny["_turbo"], "resolution": SIZE, "steps": 2}, **_models(tiny))
    return ImgDiffRemoveConfig.model_validate({**fields, **overrides})


@pytest.fixture(scope="module")
def replace_run(tiny, tmp_path_factory):
    db = tmp_path_factory.mktemp("replace") / "db.lance"
    config = _replace_config(tiny, db)
    state = imgdiff_replace(config, return_state=True)
    return config, state.result(), state.state_details.flow_run_id, PairStore(str(db))


@pytest.fixture(scope="module")
def remove_run(tiny, tmp_path_factory):
    db = tmp_path_factory.mktemp("remove") / "db.lance"
    config = _remove_config(tiny, db)
    return config, imgdiff_remove(config), PairStore(str(db))


def _rows(store: PairStore, table: str, run_id: str) -> list[dict]:
    return store.read(table, where=f"run_id = {sql_literal(run_id)}").to_pylist()


def _funnel(store: PairStore, run_id: str) -> dict:
    return {s.stage: s for s in run_funnel(store, run_id)}


def _stage_of(reason: str, stages: tuple[str, ...]) -> str:
    """The stage a stored reason belongs to: a threshold stage, or the model step it is prefixed with."""
    return pl.stage_of_reason(reason) or max((s for s in stages if reason.startswith(s + "_")), key=len)


def _pair_stages(pipeline: Pipeline) -> list[str]:
    """The stages judging pairs one after another: up to ``propose``, which makes the regions."""
    names = [s.name for s in pipeline.until(pl.REGIONS.name)]
    return names[: names.index(pl.PROPOSE.name) + 1]


def _region_stages(pipeline: Pipeline) -> list[str]:
    """The stages judging regions one after another: from the one after ``propose`` up to ``regions``."""
    names = [s.name for s in pipeline.until(pl.REGIONS.name)]
    return names[names.index(pl.PROPOSE.name) + 1:]


def _as_run(pipeline: Pipeline, funnel: dict) -> Pipeline:
    """The stages a run counted: an optional filter that was off (the unnatural-image filter without
    ``natural_min`` or scoring) runs nowhere and counts nowhere."""
    return Pipeline(pipeline.method, tuple(s for s in pipeline.stages if not s.optional or s.name in funnel),
                    pipeline.thresholds)


def _assert_stages_feed_each_other(funnel: dict, pipeline: Pipeline) -> None:
    """What a stage keeps is what the next one is given: pairs until the regions are proposed, then regions."""
    pipeline = _as_run(pipeline, funnel)
    for stages in (_pair_stages(pipeline), _region_stages(pipeline)):
        for before, after in zip(stages, stages[1:]):
            assert funnel[after].n_in == funnel[before].n_kept, (before, after)


def _assert_funnel_adds_up(store, run_id, pipeline: Pipeline) -> dict:
    funnel = _funnel(store, run_id)
    pipeline = _as_run(pipeline, funnel)
    assert tuple(funnel) == pipeline.names
    for s in funnel.values():
        assert s.n_in == s.n_kept + s.n_dropped, s.stage
        assert sum(s.reasons.values()) == s.n_dropped, s.stage
    pairs, regions = _rows(store, "pairs", run_id), _rows(store, "regions", run_id)
    # The stored verdicts are the stage stats, row for row.
    for stage in [s.name for s in pipeline.stages if s.level == PAIR]:
        dropped = Counter(p["drop_reason"] for p in pairs if p["drop_stage"] == stage)
        assert dropped == funnel[stage].reasons, stage
    for stage in _region_stages(pipeline):
        dropped = Counter(r["reason"] for r in regions if r["status"] == "dropped"
                          and _stage_of(r["reason"], pipeline.names) == stage)
        assert dropped == funnel[stage].reasons, stage
    assert funnel[_region_stages(pipeline)[0]].n_in == len(regions)
    assert funnel["samples"].n_in == sum(r["status"] == "kept" for r in regions) == len(_rows(store, "samples", run_id))
    assert funnel["regions"].n_kept == sum(p["status"] == "kept" for p in pairs)
    assert all(p["drop_reason"] for p in pairs if p["status"] == "dropped")
    assert all(r["reason"] for r in regions if r["status"] == "dropped")
    return funnel


# --------------------------------------------------------------------------- replacement


def test_replace_reaches_every_stage_and_the_funnel_adds_up(replace_run):
    config, summary, flow_run_id, store = replace_run
    funnel = _assert_funnel_adds_up(store, summary.run_id, REPLACE)
    assert all(s.n_in > 0 for s in funnel.values()), {s.stage: s.n_in for s in funnel.values()}
    assert funnel["rewrite"].n_in == config.pairs == summary.pairs_requested
    _assert_stages_feed_each_other(funnel, REPLACE)
    assert summary.samples > 0 and summary.pairs_kept > 0 and summary.pairs_failed == 0
    artifact = read_dropoff_artifact(flow_run_id)
    assert [(r["stage"], r["in"], r["kept"], r["dropped"]) for r in artifact] == [
        (s.stage, s.n_in, s.n_kept, s.n_dropped) for s in funnel.values()]


def test_replace_rows_carry_every_score_seed_and_proposer(replace_run):
    _, summary, _, store = replace_run
    pairs, regions = _rows(store, "pairs", summary.run_id), _rows(store, "regions", summary.run_id)
    assert len({p["seed"] for p in pairs}) == len(pairs) and all(p["seed"] is not None for p in pairs)
    for pair in pairs:
        assert pair["method"] == "imgdiff-replace" and pair["pair_clip_sim"] is not None
        assert open_image(pair["image_before"]).size == open_image(pair["image_after"]).size == (SIZE, SIZE)
        assert pair["edit_instruction"].startswith("replace ") and pair["caption_before"] != pair["caption_after"]
    assert {r["proposer"] for r in regions} == {"fastsam", "diffmap"}
    # Every score the region stages declare they write is stored on a kept region, under that column.
    written = [c for stage in REPLACE.stages if stage.level != PAIR for c in stage.writes]
    assert {"crop_clip_sim", "itm_cosine_after", "citm_before", "caption_sim", "difference_caption"} <= set(written)
    for region in regions:
        if region["status"] == "kept":
            assert all(region[c] is not None for c in written), region["region_id"]
        elif region["reason"] == "nms_suppressed":  # dropped after scoring: its scores are stored
            assert all(region[c] is not None for c in pl.CROP_FILTER.writes)
        elif region["reason"] == "box_too_small":  # dropped before any model looked at it
            assert region["crop_clip_sim"] is None
        x1, y1, x2, y2 = region["box"]
        assert 0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE


def test_replace_samples_show_the_pair_side_by_side_with_the_red_box(replace_run, tmp_path):
    _, summary, _, store = replace_run
    samples = _rows(store, "samples", summary.run_id)
    kept = {r["region_id"]: r for r in _rows(store, "regions", summary.run_id) if r["status"] == "kept"}
    assert {s["region_id"] for s in samples} == set(kept)
    for sample in samples:
        region = kept[sample["region_id"]]
        assert sample["task"] == "diff-caption" and sample["answer"] == region["difference_caption"]
        assert sample["boxes"] == [region["box"]]
        assert sample["conversation"][0]["content"].count("<image>") == 1
        picture = np.asarray(open_image(sample["image"]))
        assert picture.shape == (SIZE, 2 * SIZE + BAR_PX, 3)
        assert (picture[:, SIZE:SIZE + BAR_PX] == 0).all()  # the black bar
        red = (picture == [255, 0, 0]).all(axis=-1)
        assert red[:, :SIZE].any() and red[:, SIZE + BAR_PX:].any()  # the box on both images
    out = tmp_path / "export"
    result = export(store, out, "llava", ExportOptions(run_id=summary.run_id, splits=["train", "val", "test"]))
    assert result.samples == len(samples)
    records = yaml.safe_load((out / "llava.json").read_text())
    assert all(len(r["image"]) == 1 and (out / r["image"][0]).is_file() for r in records)  # always a list


def test_refilter_rejudges_a_replace_run_from_its_stored_scores(replace_run, tmp_path, capsys):
    _, summary, _, store = replace_run
    db = tmp_path / "copy.lance"
    shutil.copytree(store.uri, db)  # refilter rewrites verdicts: keep the module's run as it is
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump({"replace": LOOSE_REPLACE}))
    assert main(["refilter", "--run", summary.run_id, "--config", str(same), "--db", str(db)]) == 0
    assert "0 changed" in capsys.readouterr().out  # the run's own thresholds: nothing changes
    paper = tmp_path / "paper.yaml"
    paper.write_text("{}\n")
    assert main(["refilter", "--run", summary.run_id, "--config", str(paper), "--db", str(db)]) == 0
    copy = PairStore(str(db))
    for pair in _rows(copy, "pairs", summary.run_id):  # the pair filter re-judged from pair_clip_sim alone
        verdict = keep_pair(pair["pair_clip_sim"], ReplaceThresholds())
        if not verdict.keep:
            assert (pair["status"], pair["drop_stage"], pair["drop_reason"]) == ("dropped", "pair_filter", verdict.reason)
    refiltered = f"{summary.run_id}-refilter-{ImgDiffThresholds().content_hash()}"
    funnel = _funnel(copy, refiltered)
    assert funnel["pair_filter"].n_in == summary.pairs_requested
    assert all(s.n_in == s.n_kept + s.n_dropped for s in funnel.values())


def test_rerunning_resumes_and_adds_nothing_through_the_cli(replace_run, tiny, tmp_path, capsys):
    config, summary, _, store = replace_run
    counts = {t: store.count(t) for t in ("pairs", "regions", "samples", "stage_stats")}
    path = tmp_path / "imgdiff.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude={"pairs", "db"})))
    assert main(["run", "imgdiff-replace", "--config", str(path), "--pairs", "4", "--db", store.uri]) == 0
    out = capsys.readouterr().out
    assert f"run {summary.run_id} (imgdiff-replace)" in out and "difference_captions" in out
    assert {t: store.count(t) for t in counts} == counts


def test_paper_thresholds_verdicts_match_the_filters_on_the_stored_scores(tiny, tmp_path):
    config = _replace_config(tiny, tmp_path / "db.lance", pairs=2, thresholds={})
    assert config.thresholds == ReplaceThresholds()
    summary = imgdiff_replace(config)
    store = PairStore(str(tmp_path / "db.lance"))
    funnel = _assert_funnel_adds_up(store, summary.run_id, REPLACE)
    assert funnel["pair_filter"].n_in == 2
    for pair in _rows(store, "pairs", summary.run_id):
        verdict = keep_pair(pair["pair_clip_sim"], config.thresholds)
        assert (pair["drop_stage"] == "pair_filter") == (not verdict.keep)
        if not verdict.keep:
            assert pair["drop_reason"] == verdict.reason


def test_a_model_failing_mid_batch_gives_error_rows_and_the_retry_redoes_them(tiny, tmp_path, monkeypatch, capsys):
    db = tmp_path / "db.lance"
    path = tmp_path / "imgdiff.yaml"
    config = _replace_config(tiny, db, pairs=2, seed=7)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))

    def out_of_memory(self, pairs):
        import torch

        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")  # transient: retried by the next run

    with monkeypatch.context() as patch:
        patch.setattr(BlipItmScorer, "score_batch", out_of_memory)
        assert main(["run", "imgdiff-replace", "--config", str(path)]) == 3
    assert "crop_filter_error" in capsys.readouterr().err
    store = PairStore(str(db))
    run_id = config.run_id()
    funnel = _assert_funnel_adds_up(store, run_id, REPLACE)
    assert funnel["crop_filter"].n_in > 0 and funnel["crop_filter"].reasons == {"crop_filter_error": funnel["crop_filter"].n_in}
    failed = [r for r in _rows(store, "regions", run_id) if r["reason"] == "crop_filter_error"]
    assert failed and all("CUDA out of memory (simulated)" in r["drop_detail"] for r in failed)
    assert batches_with_errors(store, run_id) == {"0000000-0000002"}

    assert main(["run", "imgdiff-replace", "--config", str(path)]) == 0  # the retry redoes that batch
    funnel = _assert_funnel_adds_up(store, run_id, REPLACE)
    assert "crop_filter_error" not in funnel["crop_filter"].reasons and funnel["region_captions"].n_in > 0
    assert not any(r["reason"] == "crop_filter_error" for r in _rows(store, "regions", run_id))


# --------------------------------------------------------------------------- removal


def test_remove_reaches_every_stage_and_the_funnel_adds_up(remove_run):
    config, summary, store = remove_run
    funnel = _assert_funnel_adds_up(store, summary.run_id, REMOVE)
    assert all(s.n_in > 0 for s in funnel.values()), {s.stage: s.n_in for s in funnel.values()}
    assert funnel["rewrite"].n_in == config.pairs
    _assert_stages_feed_each_other(funnel, REMOVE)
    per_pair = Counter(r["pair_id"] for r in _rows(store, "regions", summary.run_id) if r["reason"] != "inpaint_over_limit"
                       and r["image_edited"] is not None)
    assert max(per_pair.values()) <= config.max_inpaint_per_pair


def test_removal_regions_carry_their_inpainting_and_the_questions_their_answer(remove_run):
    _, summary, store = remove_run
    pairs = {p["pair_id"]: p for p in _rows(store, "pairs", summary.run_id)}
    regions = {r["region_id"]: r for r in _rows(store, "regions", summary.run_id)}
    assert {r["proposer"] for r in regions.values()} == {"fastsam", "diffmap"}
    inpainted = [r for r in regions.values() if r["image_edited"] is not None]
    assert inpainted
    for region in inpainted:
        original = np.asarray(open_image(pairs[region["pair_id"]]["image_before"]), np.int16)
        edited = np.asarray(open_image(region["image_edited"]), np.int16)
        changed = np.abs(original - edited).sum(-1) > 0
        x1, y1, x2, y2 = (int(v) for v in region["box"])
        outside = changed.copy()
        outside[max(y1 - 1, 0):y2 + 1, max(x1 - 1, 0):x2 + 1] = False
        assert not outside.any()  # inpainting touched only the region's mask
        assert region["crop_clip_sim"] is not None and region["object_description"]
        assert None not in (region["itm_before"], region["itm_after"], region["itm_cosine_before"], region["itm_cosine_after"])
    samples = _rows(store, "samples", summary.run_id)
    assert {s["region_id"] for s in samples} == {r["region_id"] for r in regions.values() if r["status"] == "kept"}
    for sample in samples:
        region = regions[sample["region_id"]]
        assert sample["task"] == "object-presence-mcq" and sample["options"] == ["A. the left image", "B. the right image"]
        assert sample["answer"] == {"left": "A", "right": "B"}[sample["object_side"]]
        assert region["object_description"] in sample["conversation"][0]["content"]
        picture = np.asarray(open_image(sample["image"]), np.int16)
        original = np.asarray(open_image(pairs[sample["pair_id"]]["image_before"]), np.int16)
        left, right = picture[:, :SIZE], picture[:, SIZE + BAR_PX:]
        with_object = left if sample["object_side"] == "left" else right
        inside = (slice(int(region["box"][1]) + 3, int(region["box"][3]) - 3),
                  slice(int(region["box"][0]) + 3, int(region["box"][2]) - 3))
        np.testing.assert_array_equal(with_object[inside], original[inside])  # the original shows the object
    assert {s["object_side"] for s in samples} <= {"left", "right"}


def test_remove_from_a_replace_run_and_refilter_it(replace_run, tiny, tmp_path, capsys):
    _, replace_summary, _, replace_store = replace_run
    db = tmp_path / "db.lance"
    shutil.copytree(replace_store.uri, db)
    config = _remove_config(tiny, db, source_run=replace_summary.run_id, pairs=2, thresholds={})
    summary = imgdiff_remove(config)
    store = PairStore(str(db))
    funnel = _assert_funnel_adds_up(store, summary.run_id, REMOVE_FROM_RUN)
    assert funnel["load"].n_in == 2 == summary.pairs_requested
    sources = {p["pair_id"]: p for p in _rows(store, "pairs", replace_summary.run_id)}
    for pair in _rows(store, "pairs", summary.run_id):
        source = sources[pair["origin"].removeprefix("pair:")]
        assert pair["image_before"] == source["image_before"] and pair["seed"] == source["seed"]
    path = tmp_path / "paper.yaml"
    path.write_text("{}\n")
    assert main(["refilter", "--run", summary.run_id, "--config", str(path), "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "0 changed" in out and "removal_itm" in out  # made with the paper's thresholds: nothing changes


def test_the_defaults_run_from_the_command_line_and_a_missing_model_stops_the_run_naming_it(tmp_path, monkeypatch, capsys):
    """`pairsmith run imgdiff-replace --pairs 2` needs no config; here the default LLM is not cached:
    the run stops at once with one line naming the model (issue 22: not an error row per item)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    db = tmp_path / "db.lance"
    assert main(["run", "imgdiff-replace", "--pairs", "2", "--db", str(db)]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (after the progress bar)
    assert err.startswith("pairsmith: error: run imgdiff-replace-") and "ModelUnavailable" in err
    assert "'lmsys/vicuna-7b-v1.5'" in err and "not in the Hugging Face cache" in err
    assert not PairStore(str(db)).exists() or PairStore(str(db)).count("pairs", "drop_reason = 'rewrite_error'") == 0

def test_naturalness_scores_are_stored_by_the_flow_and_applied_later_by_refilter(tiny, tmp_path, capsys):
    """Img-Diff supp. §15 end to end: the run scores each image (no threshold: nothing drops for it), the
    scores are stored on the pairs, and `pairsmith refilter` with natural_min drops the pairs at or below it."""
    db = tmp_path / "db.lance"
    config = _replace_config(tiny, db, pairs=2, naturalness={"score": True})
    summary = imgdiff_replace(config)
    store = PairStore(str(db))
    pairs = _rows(store, "pairs", summary.run_id)
    assert len(pairs) == 2 and all(0.0 <= p["natural_before"] <= 1.0 and 0.0 <= p["natural_after"] <= 1.0
                                   for p in pairs)
    assert _funnel(store, summary.run_id)["natural"].n_dropped == 0
    cut = sorted(min(p["natural_before"], p["natural_after"]) for p in pairs)[0]  # the lowest pair sits on it
    rows = tmp_path / "natural.yaml"
    rows.write_text(yaml.safe_dump({"replace": {**LOOSE_REPLACE, "natural_min": float(cut)}}))
    assert main(["refilter", "--run", summary.run_id, "--config", str(rows), "--db", str(db)]) == 0
    capsys.readouterr()
    after = {p["pair_id"]: p for p in _rows(PairStore(str(db)), "pairs", summary.run_id)}
    for p in pairs:
        low = min(p["natural_before"], p["natural_after"])
        if low <= cut:
            assert (after[p["pair_id"]]["drop_stage"], after[p["pair_id"]]["drop_reason"]) == (
                "natural", "unnatural_before" if p["natural_before"] <= cut else "unnatural_after")
