"""``pairsmith refilter``: new verdicts from stored scores, a new funnel, idempotent, honest about gaps."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pairsmith.filters.imgdiff import pipelines as pl
from pairsmith.filters.imgdiff.pipelines import ImgDiffThresholds
from pairsmith.filters.refilterable import RefilterThresholds, rejudge_order
from pairsmith.filters.rejudge import rejudge_pairs
from pairsmith.storage.verdict import StageStats
from pairsmith.flows.cli.main import main
from pairsmith.flows.engine.funnel import run_funnel
from pairsmith.flows.refilter import RefilterConfig, refilter
from pairsmith.storage.schemas import Message, PairRow, RegionRow, SampleRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.tasks.write_batch import stage_rows

RUN = "imgdiff-replace-synthetic"
REMOVE_RUN = "imgdiff-remove-synthetic"
W, H = 320, 240

# Stricter than the paper for replacement: BITM .4, CITM .5, IS upper end .97.
STRICT = {"replace": {"bitm_min": 0.4, "citm_min": 0.5, "pair_sim_max": 0.97}}
# Looser: the paper's first ablation rows (IS .85-.98, CITM .3).
LOOSE = {"replace": {"pair_sim_min": 0.85, "citm_min": 0.3}}


def _pair(pid, status="kept", sim=0.95, stage=None, reason=None, method="imgdiff-replace", run=RUN):
    return PairRow(pair_id=pid, run_id=run, method=method, width=W, height=H, pair_clip_sim=sim,
                   image_before=b"\x89PNG-before-" + pid.encode(), status=status, drop_stage=stage,
                   drop_reason=reason, created_at=utc_now())


def _region(rid, pid, box, status="kept", reason=None, crop=None, itm=(None, None), citm=(None, None), cs=None,
            caption=None, run=RUN):
    return RegionRow(region_id=rid, pair_id=pid, run_id=run, box=box, proposer="fastsam", status=status,
                     reason=reason, crop_clip_sim=crop, itm_before=itm[0], itm_after=itm[1], citm_before=citm[0],
                     citm_after=citm[1], caption_sim=cs, difference_caption=caption, created_at=utc_now())


def _sample(pid, run=RUN):
    return SampleRow(sample_id=f"s-{pid}", pair_id=pid, run_id=run, method="imgdiff-replace", task="diff-caption",
                     conversation=[Message(role="user", content="<image>\n<image>\nWhat changed?")], answer="x",
                     split="train", created_at=utc_now())


GOOD = dict(crop=0.5, itm=(0.6, 0.6), citm=(0.7, 0.7), cs=0.5, caption="the cup became a bowl")


def replace_rows():
    """A run as the imgdiff-replace flow stores it under the paper's thresholds."""
    pairs = [
        _pair("p1"),
        _pair("p2", "dropped", 0.99, pl.PAIR_FILTER.name, "pair_sim_too_high"),
        _pair("p3", "dropped", 0.87, pl.PAIR_FILTER.name, "pair_sim_too_low"),
        _pair("p4", sim=0.975),
        _pair("p5", "dropped", None, "generate", "generate_failed"),
        _pair("p6", "dropped", 0.93, pl.REGIONS.name, pl.NO_REGION_KEPT),
        _pair("p7", sim=None),  # a kept pair whose similarity was never stored
        _pair("p8"),
    ]
    regions = [
        _region("r1a", "p1", [10, 10, 60, 60], **GOOD),
        _region("r1b", "p1", [12, 10, 62, 60], "dropped", "nms_suppressed", crop=0.6, itm=(0.6, 0.6)),
        _region("r1c", "p1", [100, 100, 150, 150], "dropped", "crop_sim_too_close", crop=0.9, itm=(0.6, 0.6)),
        _region("r1d", "p1", [0, 0, 5, 5], "dropped", "box_too_small"),
        _region("r1e", "p1", [200, 20, 260, 80], crop=0.4, itm=(0.38, 0.5), citm=(0.7, 0.7), cs=0.5, caption="y"),
        _region("r1f", "p1", [200, 150, 260, 200], "dropped", "caption_vlm_failed", crop=0.3, itm=(0.9, 0.9)),
        _region("r4a", "p4", [50, 50, 120, 120], crop=0.7, itm=(0.5, 0.5), citm=(0.45, 0.45), cs=0.8, caption="z"),
        _region("r6a", "p6", [50, 50, 120, 120], "dropped", "citm_too_low", crop=0.5, itm=(0.6, 0.6),
                citm=(0.35, 0.6), cs=0.5),
        _region("r7a", "p7", [50, 50, 120, 120], **GOOD),
        _region("r8a", "p8", [50, 50, 120, 120], crop=0.5, itm=(0.6, 0.6), citm=(0.7, 0.7), cs=None, caption="w"),
    ]
    samples = [_sample(p) for p in ("p1", "p4", "p7", "p8")]
    return pairs, regions, samples


def _dicts(rows):
    return [r.model_dump() for r in rows]


def _judge(thresholds: dict, rows=None):
    pairs, regions, samples = rows or replace_rows()
    return rejudge_pairs(_dicts(pairs), _dicts(regions), {s.pair_id for s in samples},
                         RefilterThresholds.model_validate(thresholds))


def _funnel(result) -> dict[str, tuple[int, int, int]]:
    return {s.stage: (s.n_in, s.n_kept, s.n_dropped) for s in result.ordered_stages({"imgdiff-replace"})}


def _assert_funnel(result, expected: dict[str, tuple[int, int, int]]) -> None:
    """Every re-judged stage of the replace pipeline, in its declared order; the stages named have
    these (in, kept, dropped), and any other filter drops nothing of these rows."""
    funnel = _funnel(result)
    # the unnatural-image filter is off (natural_min None): not counted
    assert list(funnel) == [s for s in rejudge_order([pl.REPLACE.method]) if s != "natural"]
    assert {stage: funnel[stage] for stage in expected} == expected
    others = {stage: f for stage, f in funnel.items() if stage not in expected}
    assert all(dropped == 0 for _, _, dropped in others.values()), others


def test_the_papers_thresholds_change_nothing_in_a_run_made_with_them():
    result = _judge({})
    assert result.pair_updates == {} and result.region_updates == {}
    assert result.not_rejudged == {"pairs: pair_clip_sim missing at pair_filter": 1,
                                   "regions: caption_sim missing at caption_filter": 1}
    assert result.left_alone == {"pairs dropped at generate": 1, "regions dropped as caption_vlm_failed": 1}


def test_stricter_thresholds_drop_what_they_should_with_reasons():
    result = _judge(STRICT)
    assert result.pair_updates == {"p4": {"status": "dropped", "drop_stage": "pair_filter",
                                          "drop_reason": "pair_sim_too_high"}}
    assert result.region_updates == {
        "r1e": {"status": "dropped", "reason": "bitm_too_low"},
        "r4a": {"status": "dropped", "reason": "pair_sim_too_high"},  # its pair left the window
    }
    _assert_funnel(result, {
        "pair_filter": (7, 3, 4),  # p1 p6 p8 kept; p2 p3 p4 out of the window; p7 not re-judged
        "box_area": (7, 6, 1),
        "crop_filter": (6, 4, 2),
        "nms": (4, 3, 1),
        "caption_filter": (3, 1, 2),  # r6a CITM too low; r8a not re-judged (no caption_sim)
        "region_outputs": (1, 1, 0),
        "regions": (3, 2, 1),  # p1 and p8 (its region kept as stored), p6 none kept
    })
    reasons = {s.stage: dict(s.reasons) for s in result.ordered_stages()}
    assert reasons["pair_filter"] == {"pair_sim_too_high": 2, "pair_sim_too_low": 1, "pair_filter_not_rejudged": 1}
    assert reasons["caption_filter"] == {"citm_too_low": 1, "caption_filter_not_rejudged": 1}
    assert reasons["regions"] == {pl.NO_REGION_KEPT: 1}


def test_looser_thresholds_count_what_a_rerun_would_add_but_keep_nothing_unmade():
    result = _judge(LOOSE)
    assert result.pair_updates == {
        "p3": {"status": "dropped", "drop_stage": "regions", "drop_reason": pl.NEEDS_RERUN},  # never proposed
        "p6": {"status": "dropped", "drop_stage": "regions", "drop_reason": pl.NEEDS_RERUN},  # never described
    }
    assert result.region_updates == {"r6a": {"status": "dropped", "reason": pl.NEEDS_RERUN}}
    funnel = _funnel(result)
    assert funnel["pair_filter"] == (7, 5, 2) and funnel["region_outputs"] == (4, 3, 1)


def test_missing_scores_at_every_stage_are_reported_not_judged():
    pairs, regions, samples = replace_rows()
    regions.append(_region("r1g", "p1", [150, 150, 210, 210], "dropped", "nms_suppressed", crop=None, itm=(0.5, 0.5)))
    result = _judge(STRICT, (pairs, regions, samples))
    assert "r1g" not in result.region_updates
    assert result.not_rejudged["regions: crop_clip_sim missing at crop_filter"] == 1


def test_removal_rows_are_judged_by_the_removal_thresholds():
    pairs = [_pair("q1", method="imgdiff-remove", sim=None, run=REMOVE_RUN),
             _pair("q2", "dropped", None, pl.REGIONS.name, pl.NO_REGION_KEPT, method="imgdiff-remove", run=REMOVE_RUN)]
    regions = [_region("q1a", "q1", [10, 10, 60, 60], crop=0.5, itm=(0.5, 0.1), run=REMOVE_RUN),
               _region("q2a", "q2", [10, 10, 60, 60], "dropped", "removal_itm_inpainted_too_high", crop=0.5,
                       itm=(0.5, 0.25), run=REMOVE_RUN)]
    rows = (pairs, regions, [_sample("q1", REMOVE_RUN)])
    assert _judge({}, rows).pair_updates == {}
    strict = _judge({"remove": {"crop_sim_max": 0.4}}, rows)
    assert strict.region_updates == {"q1a": {"status": "dropped", "reason": "removal_crop_sim_too_close"},
                                     "q2a": {"status": "dropped", "reason": "removal_crop_sim_too_close"}}
    assert strict.pair_updates["q1"] == {"status": "dropped", "drop_stage": "regions", "drop_reason": pl.NO_REGION_KEPT}
    loose = _judge({"remove": {"itm_inpainted_max": 0.3}}, rows)
    assert loose.region_updates == {"q2a": {"status": "kept", "reason": None}}
    assert loose.pair_updates == {"q2": {"status": "dropped", "drop_stage": "regions", "drop_reason": pl.NEEDS_RERUN}}
    stages = [s.stage for s in loose.ordered_stages({"imgdiff-remove"})]
    assert stages == ["removal_crop", "removal_itm", "regions"]


# --- med-edit: refilter is generic over every pipeline whose verdicts are stored ------------------
MED_RUN = "med-edit-synthetic"


def med_rows():
    """A med-edit run as the flow stores it (MED's CLIP cosine >= 0.7; design.md §4.4)."""
    pairs = [
        _pair("m1", sim=0.9, method="med-edit", run=MED_RUN),
        _pair("m2", "dropped", 0.65, "similarity", "similarity_too_low", method="med-edit", run=MED_RUN),
        _pair("m3", "dropped", None, "similarity", "similarity_error", method="med-edit", run=MED_RUN),
        _pair("m4", "dropped", 0.9, "align", "align_unparseable", method="med-edit", run=MED_RUN),
        _pair("m5", sim=0.75, method="med-edit", run=MED_RUN),
    ]
    samples = [SampleRow(sample_id=f"s-{p}", pair_id=p, run_id=MED_RUN, method="med-edit", task="med-qa",
                         conversation=[Message(role="user", content="<image>\nWhat changed?")], answer="x",
                         split="train", created_at=utc_now()) for p in ("m1", "m5")]
    return pairs, [], samples


def test_med_edit_pairs_are_rejudged_by_the_similarity_rule_the_flow_applies():
    same = _judge({}, med_rows())
    assert (same.pair_updates, same.pairs_rejudged) == ({}, 3)  # the flow's own thresholds change nothing
    assert same.not_rejudged == {"pairs: pair_clip_sim missing at similarity": 1}  # m3: CLIP raised
    assert same.left_alone == {"pairs dropped at align": 1}
    assert [(s.stage, s.n_in, s.n_kept) for s in same.ordered_stages({"med-edit"})] == [
        ("similarity", 4, 2), ("pair_outputs", 2, 2)]
    strict = _judge({"similarity": {"min_clip_sim": 0.8}}, med_rows())
    assert strict.pair_updates == {"m5": {"status": "dropped", "drop_stage": "similarity",
                                          "drop_reason": "similarity_too_low"}}
    loose = _judge({"similarity": {"min_clip_sim": 0.6}}, med_rows())  # m2 passes, but was never aligned
    assert loose.pair_updates == {"m2": {"status": "dropped", "drop_stage": "pair_outputs",
                                         "drop_reason": pl.NEEDS_RERUN}}
    again = _judge({}, ([p.model_copy(update=loose.pair_updates["m2"]) if p.pair_id == "m2" else p
                         for p in med_rows()[0]], [], med_rows()[2]))
    assert again.pair_updates == {"m2": {"status": "dropped", "drop_stage": "similarity",
                                         "drop_reason": "similarity_too_low"}}  # back where the flow left it


def test_refilter_command_on_a_med_edit_run(tmp_path, capsys):
    db = tmp_path / "db.lance"
    store = PairStore(str(db))
    pairs, _, samples = med_rows()
    store.upsert("pairs", pairs)
    store.upsert("samples", samples)
    store.upsert("stage_stats", stage_rows(MED_RUN, "med-edit", "0000000-0000005", [StageStats("similarity", 4, 2, 2)]))
    config = _yaml(tmp_path, "t.yaml", {"similarity": {"min_clip_sim": 0.8}})
    assert main(["refilter", "--run", MED_RUN, "--config", config, "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "pairs: 3 of 5 re-judged, 1 changed; kept 2 -> 1" in out
    lines = {line.split()[0]: line.split()[1:4] for line in out.splitlines() if line.split()[:1]}
    assert lines["similarity"] == ["4", "1", "3"] and lines["pair_outputs"] == ["1", "1", "0"]
    assert _verdicts(store)["m5"] == ("dropped", "similarity", "similarity_too_low")
    bench = _yaml(tmp_path, "bench.yaml", {"similarity": {"bench_clip_sim": 0.9}})
    assert main(["refilter", "--run", MED_RUN, "--config", bench, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "bench_clip_sim" in err and len(err.strip().splitlines()) == 1


def test_an_imgdiff_thresholds_file_keeps_its_refilter_run_id():
    for data in ({}, STRICT, LOOSE):
        assert RefilterThresholds.model_validate(data).content_hash() == ImgDiffThresholds.model_validate(data).content_hash()
        config = RefilterConfig(run=RUN, thresholds=ImgDiffThresholds.model_validate(data))
        assert config.thresholds == RefilterThresholds.model_validate(data)


# --- the flow and the command, on a stored run ---------------------------------------------------


def _store_run(db: Path) -> PairStore:
    store = PairStore(str(db))
    pairs, regions, samples = replace_rows()
    store.upsert("pairs", pairs)
    store.upsert("regions", regions)
    store.upsert("samples", samples)
    store.upsert("stage_stats", stage_rows(RUN, "imgdiff-replace", "0000000-0000010", [StageStats("pair_filter", 7, 4, 3)]))
    return store


def _verdicts(store: PairStore) -> dict[str, tuple]:
    pairs = store.read("pairs", columns=["pair_id", "status", "drop_stage", "drop_reason"]).to_pylist()
    regions = store.read("regions", columns=["region_id", "status", "reason"]).to_pylist()
    return {p["pair_id"]: (p["status"], p["drop_stage"], p["drop_reason"]) for p in pairs} | {
        r["region_id"]: (r["status"], r["reason"]) for r in regions
    }


def _yaml(tmp_path: Path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_refilter_flow_writes_verdicts_and_a_funnel_and_is_idempotent(tmp_path):
    store = _store_run(tmp_path / "db.lance")
    original = _verdicts(store)
    config = RefilterConfig(db=str(tmp_path / "db.lance"), run=RUN, thresholds=ImgDiffThresholds.model_validate(STRICT))
    summary = refilter(config)
    assert summary.run_id == f"{RUN}-refilter-{config.thresholds.content_hash()}" == config.run_id()
    assert (summary.pairs_changed, summary.regions_changed) == (1, 2)
    assert (summary.pairs_kept_before, summary.pairs_kept_after) == (4, 3)
    after = _verdicts(store)
    assert after["p4"] == ("dropped", "pair_filter", "pair_sim_too_high")
    assert after["r1e"] == ("dropped", "bitm_too_low")
    assert after["p5"] == original["p5"] and after["r1f"] == original["r1f"]  # not the thresholds' to decide
    assert after["p7"] == original["p7"] and after["r8a"] == ("kept", None)  # scores missing: not re-judged
    p4 = store.read("pairs", where="pair_id = 'p4'").to_pylist()[0]
    assert p4["image_before"] == b"\x89PNG-before-p4" and p4["drop_detail"] == f"refilter {summary.run_id}"
    funnel = run_funnel(store, summary.run_id)
    assert all(s.n_in == s.n_kept + s.n_dropped for s in funnel)
    assert [(s.stage, s.n_in, s.n_kept) for s in funnel][:2] == [("pair_filter", 7, 3), ("box_area", 7, 6)]
    stat_rows = store.count("stage_stats", f"run_id = '{summary.run_id}'")

    again = refilter(config)  # same file again: nothing changes, nothing is duplicated
    assert (again.pairs_changed, again.regions_changed) == (0, 0)
    assert _verdicts(store) == after
    assert store.count("stage_stats", f"run_id = '{summary.run_id}'") == stat_rows
    assert [(s.stage, s.n_in, s.n_kept, s.n_dropped) for s in run_funnel(store, summary.run_id)] == [
        (s.stage, s.n_in, s.n_kept, s.n_dropped) for s in funnel
    ]
    assert store.count("pairs") == 8 and store.count("regions") == 10

    # strict then loose ends where loose alone ends: verdicts depend on the scores, not on history
    refilter(config.model_copy(update={"thresholds": RefilterThresholds.model_validate(LOOSE)}))
    fresh = _store_run(tmp_path / "fresh.lance")
    refilter(RefilterConfig(db=str(tmp_path / "fresh.lance"), run=RUN, thresholds=ImgDiffThresholds.model_validate(LOOSE)))
    assert _verdicts(store) == _verdicts(fresh)
    assert _verdicts(store)["p4"] == ("kept", None, None) and _verdicts(store)["r1e"] == ("kept", None)


def test_refilter_command_prints_the_funnel(tmp_path, capsys):
    _store_run(tmp_path / "db.lance")
    db = str(tmp_path / "db.lance")
    strict, loose = _yaml(tmp_path, "strict.yaml", STRICT), _yaml(tmp_path, "loose.yaml", LOOSE)
    assert main(["refilter", "--run", RUN, "--config", strict, "--db", db]) == 0
    out = capsys.readouterr().out
    run_id = f"{RUN}-refilter-{ImgDiffThresholds.model_validate(STRICT).content_hash()}"
    assert f"as run {run_id}" in out
    assert "pairs: 6 of 8 re-judged, 1 changed; kept 4 -> 3" in out
    assert "not re-judged, stored verdicts kept (scores missing):" in out and "pair_clip_sim missing" in out
    lines = {line.split()[0]: line.split()[1:4] for line in out.splitlines() if line.split()[:1]}
    assert lines["stage"] == ["in", "kept", "dropped"]
    assert lines["pair_filter"] == ["7", "3", "4"] and lines["nms"] == ["4", "3", "1"]
    assert lines["regions"] == ["3", "2", "1"]

    assert main(["refilter", "--run", RUN, "--config", loose, "--db", db]) == 0
    out = capsys.readouterr().out
    assert "kept 3 -> 4" in out and "refilter_needs_rerun (2)" in out
    assert main(["stats", "--run", run_id, "--db", db]) == 0  # each setting stays readable as its own run
    assert "pair_filter" in capsys.readouterr().out


@pytest.mark.parametrize(
    "config, run, message",
    [
        ({"replace": {"bitm": 0.3}}, RUN, "bitm"),
        ({"replace": {"pair_sim_min": 0.99}}, RUN, "window would keep nothing"),
        ({}, "no-such-run", "no such run"),
        ({}, "dig-render-x", "has no imgdiff-replace / imgdiff-remove / med-edit pairs to re-filter (dig-render (1))"),
    ],
)
def test_refilter_command_errors_are_one_line(tmp_path, capsys, config, run, message):
    store = _store_run(tmp_path / "db.lance")
    store.upsert("pairs", [_pair("d1", method="dig-render", run="dig-render-x")])
    store.upsert("stage_stats", stage_rows("dig-render-x", "dig-render", "b", [StageStats("plan", 1, 1, 0)]))
    before = _verdicts(store)
    code = main(["refilter", "--run", run, "--config", _yaml(tmp_path, "t.yaml", config), "--db", str(tmp_path / "db.lance")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert _verdicts(store) == before


def test_readme_thresholds_example_is_a_valid_config():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in readme.split("```yaml\n")[1:] if "thresholds.yaml" in b.split("```")[0])
    thresholds = ImgDiffThresholds.model_validate(yaml.safe_load(block.split("```")[0]))
    assert (thresholds.replace.bitm_min, thresholds.replace.citm_min, thresholds.replace.caption_sim_max) == (0.3, 0.3, 0.9)
    assert thresholds.replace.max_boxes == 10 and thresholds.remove.itm_inpainted_max == 0.2
