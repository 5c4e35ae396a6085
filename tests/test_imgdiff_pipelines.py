"""The Img-Diff pipelines are declared once, and everything else reads the declaration.

The flows run ``pairsmith.filters.imgdiff.pipelines``' stage lists (one Prefect task per stage,
named after it), ``pairsmith refilter`` re-judges by walking them and prints them in its help, and
scores are stored under the columns the stages declare. These tests hold the pieces together, so
that a filter added to a list without its threshold field, task, column or reasons fails here.
"""

from __future__ import annotations

from dataclasses import fields

import pytest
from PIL import Image

from pairsmith.filters.imgdiff import pipelines as pl
from pairsmith.filters.imgdiff.pipelines import LOAD, MAKE_PAIRS, PIPELINES, REMOVE, REPLACE, ReplaceThresholds
from pairsmith.filters.imgdiff.rejudge import RejudgeResult, pair_columns, refilter_table, region_columns
from pairsmith.filters.pipeline import PAIR, REGION, Pipeline, Stage, merged_order
from pairsmith.flows.cli.main import main
from pairsmith.flows.imgdiff_config import REMOVE_FLOW, REPLACE_FLOW, ImgDiffReplaceConfig
from pairsmith.flows.imgdiff_replace import MODEL_INPUTS, ImgDiffModels, StepInputs
from pairsmith.storage.schemas import PairRow, RegionRow
from pairsmith.storage.verdict import KEEP
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate
from pairsmith.tasks.imgdiff.regions import regions as regions_task
from pairsmith.tasks.imgdiff.rule import rule_task
from pairsmith.tasks.sample_builders import SplitFractions
from pairsmith.tasks.imgdiff.steps import STEPS, inputs_of, task_for

REMOVE_FROM_RUN = REMOVE.with_source(MAKE_PAIRS, (LOAD,))
ALL = (REPLACE, REMOVE, REMOVE_FROM_RUN)


def test_the_flows_are_the_pipelines_and_end_with_regions_and_samples():
    assert (REPLACE.method, REMOVE.method) == (REPLACE_FLOW, REMOVE_FLOW)
    for pipeline in ALL:
        assert pipeline.names[-2:] == ("regions", "samples")
    assert REMOVE_FROM_RUN.names[:3] == ("load", "natural", "propose")  # natural: optional (Img-Diff §15)


@pytest.mark.parametrize("pipeline", ALL, ids=lambda p: "-".join(p.names[:2]))
def test_every_stage_runs_as_one_task_named_after_it_taking_what_the_flow_has(pipeline):
    flow_inputs = {f.name for f in fields(StepInputs)} - {"models"} | MODEL_INPUTS
    for stage in pipeline.until("regions"):
        task = task_for(stage)
        assert task.name == stage.name
        assert set(inputs_of(task)) <= flow_inputs, stage.name
    assert regions_task.name == "regions"
    assert set(STEPS) <= {s.name for p in ALL for s in p.stages}  # no task for a stage nobody runs


def test_every_threshold_field_is_read_by_a_stage_of_its_pipeline():
    for pipeline in PIPELINES.values():
        read = {f for s in pipeline.stages for f in s.thresholds}
        assert read == set(pipeline.thresholds.model_fields), pipeline.method


@pytest.mark.parametrize("blip_score", ["itm", "cosine"])
def test_every_score_a_stage_writes_or_reads_is_a_stored_column(blip_score):
    thresholds = pl.ImgDiffThresholds.model_validate({"replace": {"blip_score": blip_score},
                                                      "remove": {"blip_score": blip_score}})
    stored = set(PairRow.model_fields) | set(RegionRow.model_fields)
    for pipeline in PIPELINES.values():
        t = pl.thresholds_of(thresholds, pipeline)
        for s in pipeline.stages:
            assert set(s.writes) <= stored, s.name
            table = PairRow if s.level == PAIR else RegionRow
            assert set(s.needs(t)) <= set(table.model_fields), s.name
    assert set(pair_columns(thresholds)) <= set(PairRow.model_fields)
    assert set(region_columns(thresholds)) <= set(RegionRow.model_fields)
    read = {"itm": {"itm_before", "citm_after"}, "cosine": {"itm_cosine_before", "citm_cosine_after"}}[blip_score]
    assert read <= set(region_columns(thresholds))


def test_refilter_reports_the_declared_filters_in_order():
    filters = [s.name for s in REPLACE.filters]
    paper = ["pair_filter", "box_area", "crop_filter", "nms", "caption_filter"]  # design.md §4.2, in this order
    assert sorted(paper, key=filters.index) == paper
    assert pl.rejudge_order([REPLACE.method]) == [*filters, "region_outputs", "regions"]
    assert pl.rejudge_order([REMOVE.method]) == ["natural", "removal_crop", "removal_itm", "regions"]
    empty = RejudgeResult().ordered_stages({REMOVE.method})
    assert [(s.stage, s.n_in) for s in empty] == [("natural", 0), ("removal_crop", 0), ("removal_itm", 0), ("regions", 0)]
    assert REPLACE.outputs() == ("difference_caption",) and REMOVE.outputs() == ()


def test_refilter_help_lists_every_filter_with_its_thresholds_and_reasons(capsys):
    assert main(["refilter", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for method, stage, thresholds, reasons in refilter_table():
        assert f"Stages of {method}" in out
        assert f"{stage} {thresholds or 'no thresholds'}; {reasons}" in out
    table = {(m, s): r for m, s, _, r in refilter_table()}
    for pipeline in PIPELINES.values():
        for stage in pipeline.filters:
            assert all(reason in table[pipeline.method, stage.name] for reason in stage.reasons)


def test_declarations_refuse_what_no_flow_could_run():
    with pytest.raises(ValueError, match="not fields of ReplaceThresholds"):
        Pipeline("x", (Stage("f", REGION, rule=lambda row, t: KEEP, thresholds=("no_such_field",)),), ReplaceThresholds)
    with pytest.raises(ValueError, match="names a stage twice"):
        Pipeline("x", (pl.BOX_AREA, pl.BOX_AREA), ReplaceThresholds)
    with pytest.raises(ValueError, match="without a keep rule"):
        Stage("f", REGION, reads=("box",))
    with pytest.raises(ValueError, match="one snake_case word"):
        Stage("f", REGION, reasons=("too small",))
    with pytest.raises(ValueError, match="does not start with"):
        REPLACE.with_source(("generate",), (LOAD,))
    with pytest.raises(KeyError, match="has no task"):
        task_for(Stage("unknown_model_step", PAIR))


def test_merged_order_keeps_the_order_of_every_pipeline():
    assert merged_order([["a", "b", "z"], ["c", "d", "z"]]) == ["a", "b", "c", "d", "z"]
    assert merged_order([["a", "z"], ["a", "m", "z"], []]) == ["a", "m", "z"]


def _item(boxes: dict[str, tuple[list[float], float | None]], size=(100, 80)) -> ImgDiffItem:
    image = Image.new("RGB", size)
    regions = [RegionCandidate(region_id=rid, box=box, proposer="diffmap", scores={"crop_clip_sim": sim})
               for rid, (box, sim) in boxes.items()]
    return ImgDiffItem(index=0, pair_id="p", seed=0, before=image, after=image, regions=regions)


def test_the_rule_task_applies_a_filters_declared_rule_and_counts_it():
    item = _item({"big": ([0, 0, 50, 40], 0.5), "tiny": ([0, 0, 2, 2], 0.1), "flat": ([5, 5, 5, 9], 0.2)})
    result = rule_task(pl.BOX_AREA).fn([item], ReplaceThresholds())
    (stats,) = result.stats
    assert rule_task(pl.BOX_AREA).name == "box_area" and stats.stage == "box_area"
    assert (stats.n_in, stats.n_kept, dict(stats.reasons)) == (3, 1, {"box_too_small": 1, "box_invalid": 1})
    assert {r.region_id: r.reason for r in item.regions} == {"big": None, "tiny": "box_too_small", "flat": "box_invalid"}


def test_nms_through_the_rule_task_keeps_the_most_different_box_whatever_the_order():
    boxes = {"b": ([1, 0, 51, 40], 0.4), "a": ([0, 0, 50, 40], 0.8), "c": ([60, 40, 90, 70], 0.7)}
    for order in (list(boxes), list(reversed(boxes))):
        item = _item({k: boxes[k] for k in order})
        (stats,) = rule_task(pl.NMS).fn([item], ReplaceThresholds()).stats
        assert {r.region_id: r.reason for r in item.regions} == {"a": "nms_suppressed", "b": None, "c": None}
        assert (stats.n_in, stats.n_dropped) == (3, 1)


def test_gpu_tags_follow_the_models_a_stage_takes(monkeypatch):
    models = ImgDiffModels.build(ImgDiffReplaceConfig())
    inputs = StepInputs(models, ReplaceThresholds(), "db")

    def tagged(on_gpu: set[str]) -> set[str]:
        monkeypatch.setattr(ImgDiffModels, "gpu", lambda self, adapter: any(adapter is getattr(self, n) for n in on_gpu))
        return {s.name for s in REPLACE.until("regions") if inputs.gpu(inputs_of(task_for(s)))}

    assert tagged({"vlm"}) == {"natural", "region_captions", "difference_captions"}  # natural: the judge
    assert tagged({"clip"}) == {"pair_filter", "crop_filter", "caption_filter"}
    assert tagged({"blip", "fastsam"}) == {"propose", "crop_filter", "caption_filter"}
    assert tagged(set()) == set()


def test_scores_are_stored_under_their_column_and_one_without_a_column_fails_the_batch():
    item = _item({"r": ([0, 0, 50, 40], 0.5)})
    item.regions[0].reason = "crop_sim_too_close"
    item.scores["pair_clip_sim"] = 0.93
    result = regions_task.fn([item], "run", REPLACE.method, {}, SplitFractions())
    (pair,), (region,), samples = result.value
    assert (pair.pair_clip_sim, region.crop_clip_sim, samples) == (0.93, 0.5, [])
    assert [(s.stage, s.n_in, dict(s.reasons)) for s in result.stats] == [
        ("regions", 1, {"regions_none_kept": 1}), ("samples", 0, {})]
    item.regions[0].scores["crop_clip_simm"] = 0.5  # a stage's typo must not vanish silently
    with pytest.raises(ValueError, match=r"region r: scores \['crop_clip_simm'\] have no RegionRow column"):
        regions_task.fn([item], "run", REPLACE.method, {}, SplitFractions())
