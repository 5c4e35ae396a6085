"""The Img-Diff pipelines are declared once, and everything else reads the declaration.

The flows run ``pairsmith.filters.imgdiff.pipelines``' stage lists (one Prefect task per stage,
named after it), ``pairsmith refilter`` re-judges by walking them and prints them in its help, and
scores are stored under the columns the stages declare. These tests hold the pieces together, so
that a filter added to a list without its threshold field, task, column or reasons fails here.
"""

from __future__ import annotations

import inspect
import re
import sys

import pytest
from PIL import Image

from pairsmith.filters.imgdiff import pipelines as pl
from pairsmith.filters.imgdiff.pipelines import LOAD, MAKE_PAIRS, PIPELINES, REMOVE, REPLACE, ReplaceThresholds
from pairsmith.filters.refilterable import STORED, RefilterThresholds, rejudge_order
from pairsmith.filters.rejudge import RejudgeResult, pair_columns, refilter_table, region_columns
from pairsmith.filters.pipeline import PAIR, REGION, Pipeline, Stage, merged_order
from pairsmith.flows.cli.main import main
from pairsmith.flows.imgdiff_config import REMOVE_FLOW, REPLACE_FLOW, ImgDiffReplaceConfig
from pairsmith.flows.imgdiff_replace import build_models
from pairsmith.storage.schemas import PairRow, RegionRow
from pairsmith.storage.verdict import KEEP
from pairsmith.tasks.imgdiff.context import ImgDiffContext, ImgDiffModels, MissingComponent, StepSettings
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate
from pairsmith.tasks.imgdiff.regions import regions as regions_task
from pairsmith.tasks.imgdiff.rule import rule_task
from pairsmith.tasks.sample_builders import SplitFractions
from pairsmith.tasks.imgdiff.steps import STEPS, Step, step_for

REMOVE_FROM_RUN = REMOVE.with_source(MAKE_PAIRS, (LOAD,))
ALL = (REPLACE, REMOVE, REMOVE_FROM_RUN)


def test_the_flows_are_the_pipelines_and_end_with_regions_and_samples():
    assert (REPLACE.method, REMOVE.method) == (REPLACE_FLOW, REMOVE_FLOW)
    for pipeline in ALL:
        assert pipeline.names[-2:] == ("regions", "samples")
    assert REMOVE_FROM_RUN.names[:3] == ("load", "natural", "propose")  # natural: optional (Img-Diff §15)


@pytest.mark.parametrize("pipeline", ALL, ids=lambda p: "-".join(p.names[:2]))
def test_every_stage_runs_as_one_task_named_after_it_declaring_what_it_reads(pipeline):
    for stage in pipeline.until("regions"):
        step = step_for(stage)
        assert step.task.name == stage.name
        if stage.name in STEPS:  # its own module: the components it reads are the ones it declares
            assert _context_reads(step.task) == set(step.needs + step.may_use), stage.name
    assert regions_task.name == "regions"
    assert set(STEPS) <= {s.name for p in ALL for s in p.stages}  # no task for a stage nobody runs


def test_every_threshold_field_is_read_by_a_stage_of_its_pipeline():
    for pipeline in PIPELINES.values():
        read = {f for s in pipeline.stages for f in s.thresholds}
        assert read == set(pipeline.thresholds.model_fields), pipeline.method


@pytest.mark.parametrize("blip_score", ["itm", "cosine"])
def test_every_score_a_stage_writes_or_reads_is_a_stored_column(blip_score):
    thresholds = RefilterThresholds.model_validate({"replace": {"blip_score": blip_score},
                                                    "remove": {"blip_score": blip_score}})
    stored = set(PairRow.model_fields) | set(RegionRow.model_fields)
    for spec in STORED.values():
        t = spec.thresholds(thresholds)
        for s in spec.pipeline.stages:
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
    assert rejudge_order([REPLACE.method]) == [*filters, "region_outputs", "regions"]
    assert rejudge_order([REMOVE.method]) == ["natural", "removal_crop", "removal_itm", "regions"]
    assert rejudge_order(["med-edit"]) == ["similarity", "pair_outputs"]
    empty = RejudgeResult().ordered_stages({REMOVE.method})
    # natural is optional and off (natural_min None): it counts nowhere
    assert [(s.stage, s.n_in) for s in empty] == [("removal_crop", 0), ("removal_itm", 0), ("regions", 0)]
    assert REPLACE.outputs() == ("difference_caption",) and REMOVE.outputs() == ()


def test_refilter_help_lists_every_filter_with_its_thresholds_and_reasons(capsys):
    assert main(["refilter", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for method, stage, thresholds, reasons in refilter_table():
        assert f"Stages of {method}" in out
        assert f"{stage} {thresholds or 'no thresholds'}; {reasons}" in out
    table = {(m, s): r for m, s, _, r in refilter_table()}
    for spec in STORED.values():
        for stage in spec.pipeline.filters:
            assert all(reason in table[spec.method, stage.name] for reason in stage.reasons)
    assert {"imgdiff-replace", "imgdiff-remove", "med-edit"} <= {m for m, *_ in refilter_table()}


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
        step_for(Stage("unknown_model_step", PAIR))


def test_merged_order_keeps_the_order_of_every_pipeline():
    assert merged_order([["a", "b", "z"], ["c", "d", "z"]]) == ["a", "b", "c", "d", "z"]
    assert merged_order([["a", "z"], ["a", "m", "z"], []]) == ["a", "m", "z"]


def _context_reads(task) -> set[str]:
    """The context components a step's module reads: ``ctx.<model>``, ``ctx.models.<m>``,
    ``ctx.settings.<s>``, ``ctx.component("<name>")`` and the thresholds."""
    source = inspect.getsource(sys.modules[task.fn.__module__])
    names = set(re.findall(r"ctx\.(?:models\.|settings\.)?(\w+)", source))
    names |= set(re.findall(r'ctx\.component\("(\w+)"\)', source))
    names = {"thresholds" if n.endswith("thresholds") else n for n in names}
    return names - {"models", "settings", "component"}


def _context(**models) -> ImgDiffContext:
    return ImgDiffContext(ReplaceThresholds(), ImgDiffModels(**models))


def test_a_step_missing_a_component_of_the_context_is_an_error_naming_it():
    ctx = ImgDiffContext(pl.RemoveThresholds(), build_models(ImgDiffReplaceConfig()), StepSettings(db="db"))
    with pytest.raises(MissingComponent, match="stage 'inpaint' needs 'inpainter'"):
        step_for(pl.INPAINT).ready(ctx)  # checked before the task runs
    with pytest.raises(MissingComponent, match="has no 'inpainter'"):
        STEPS["inpaint"].task.fn([], ctx)  # and where the task reads it
    no_vlm = _context()
    with pytest.raises(MissingComponent, match="stage 'region_captions' needs 'vlm'"):
        step_for(pl.REGION_CAPTIONS).ready(no_vlm)
    with pytest.raises(MissingComponent, match="stage 'load' needs 'db'"):
        step_for(LOAD).ready(no_vlm)
    with pytest.raises(MissingComponent, match="'fastsam' or 'diffmap'"):
        STEPS["propose"].task.fn([], no_vlm)
    with pytest.raises(MissingComponent, match="needs ReplaceThresholds, not RemoveThresholds"):
        STEPS["pair_filter"].task.fn([], ctx)
    with pytest.raises(MissingComponent, match="no component 'clipp'"):
        ctx.component("clipp")
    with pytest.raises(ValueError, match=r"names \['clipp'\], not components"):
        Step(STEPS["pair_filter"].task, needs=("clipp",))
    assert step_for(pl.BOX_AREA).ready(no_vlm) is False  # a rule needs only the thresholds


def _item(boxes: dict[str, tuple[list[float], float | None]], size=(100, 80)) -> ImgDiffItem:
    image = Image.new("RGB", size)
    regions = [RegionCandidate(region_id=rid, box=box, proposer="diffmap", scores={"crop_clip_sim": sim})
               for rid, (box, sim) in boxes.items()]
    return ImgDiffItem(index=0, pair_id="p", seed=0, before=image, after=image, regions=regions)


def test_the_rule_task_applies_a_filters_declared_rule_and_counts_it():
    item = _item({"big": ([0, 0, 50, 40], 0.5), "tiny": ([0, 0, 2, 2], 0.1), "flat": ([5, 5, 5, 9], 0.2)})
    result = rule_task(pl.BOX_AREA).fn([item], _context())
    (stats,) = result.stats
    assert rule_task(pl.BOX_AREA).name == "box_area" and stats.stage == "box_area"
    assert (stats.n_in, stats.n_kept, dict(stats.reasons)) == (3, 1, {"box_too_small": 1, "box_invalid": 1})
    assert {r.region_id: r.drop_reason for r in item.regions} == {"big": None, "tiny": "box_too_small", "flat": "box_invalid"}


def test_nms_through_the_rule_task_keeps_the_most_different_box_whatever_the_order():
    boxes = {"b": ([1, 0, 51, 40], 0.4), "a": ([0, 0, 50, 40], 0.8), "c": ([60, 40, 90, 70], 0.7)}
    for order in (list(boxes), list(reversed(boxes))):
        item = _item({k: boxes[k] for k in order})
        (stats,) = rule_task(pl.NMS).fn([item], _context()).stats
        assert {r.region_id: r.drop_reason for r in item.regions} == {"a": "nms_suppressed", "b": None, "c": None}
        assert (stats.n_in, stats.n_dropped) == (3, 1)


def test_gpu_tags_follow_the_models_a_stage_takes(monkeypatch):
    ctx = ImgDiffContext(ReplaceThresholds(), build_models(ImgDiffReplaceConfig()), StepSettings(db="db"))

    def tagged(on_gpu: set[str]) -> set[str]:
        monkeypatch.setattr(ImgDiffModels, "gpu", lambda self, adapter: any(adapter is getattr(self, n) for n in on_gpu))
        return {s.name for s in REPLACE.until("regions") if step_for(s).ready(ctx)}

    assert tagged({"vlm"}) == {"natural", "region_captions", "difference_captions"}  # natural: the judge
    assert tagged({"clip"}) == {"pair_filter", "crop_filter", "caption_filter"}
    assert tagged({"blip", "fastsam"}) == {"propose", "crop_filter", "caption_filter"}
    assert tagged(set()) == set()


def test_scores_are_stored_under_their_column_and_one_without_a_column_fails_the_batch():
    item = _item({"r": ([0, 0, 50, 40], 0.5)})
    item.regions[0].drop_reason = "crop_sim_too_close"
    item.scores["pair_clip_sim"] = 0.93
    result = regions_task.fn([item], "run", REPLACE.method, {}, SplitFractions())
    (pair,), (region,), samples = result.value
    assert (pair.pair_clip_sim, region.crop_clip_sim, samples) == (0.93, 0.5, [])
    assert [(s.stage, s.n_in, dict(s.reasons)) for s in result.stats] == [
        ("regions", 1, {"regions_none_kept": 1}), ("samples", 0, {})]
    item.regions[0].scores["crop_clip_simm"] = 0.5  # a stage's typo must not vanish silently
    with pytest.raises(ValueError, match=r"region r: scores \['crop_clip_simm'\] have no RegionRow column"):
        regions_task.fn([item], "run", REPLACE.method, {}, SplitFractions())


def test_every_keep_rule_is_a_named_function_of_its_filters_module():
    """No lambdas kept apart from what they call: a stage's rule (and its columns, when they depend on
    the thresholds) is a function of the filter module named after the stage."""
    for spec in STORED.values():
        for stage in spec.pipeline.filters:
            for fn in (stage.rule, stage.reads) if callable(stage.reads) else (stage.rule,):
                assert fn.__name__ != "<lambda>" and not fn.__name__.startswith("_"), stage.name
                module = fn.__module__.rsplit(".", 1)[-1]  # natural: naturalness; similarity: med_similarity
                assert module.startswith(stage.name) or module == f"med_{stage.name}", (stage.name, fn.__module__)


def test_no_filter_module_imports_the_pipelines_that_import_it():
    import ast
    from pathlib import Path

    import pairsmith.filters.imgdiff as package

    for path in Path(package.__file__).parent.glob("*.py"):
        if path.stem == "pipelines":
            continue
        imported = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)}
        assert "pairsmith.filters.imgdiff.pipelines" not in imported, path.name


def test_every_item_type_shares_the_candidate_base():
    from pairsmith.storage.verdict import StageStats, Verdict
    from pairsmith.tasks.candidate import Candidate, alive, judge
    from pairsmith.tasks.med.item import MedItem
    from pairsmith.tasks.med.sources import SourceRef

    med = MedItem(ref=SourceRef(source_id="s", caption="a photo"), pair_id="m")
    region = RegionCandidate(region_id="r", box=[0, 0, 4, 4], proposer="diffmap")
    pair = ImgDiffItem(index=0, pair_id="p", seed=0, regions=[region])
    assert all(isinstance(c, Candidate) for c in (med, region, pair))
    stats = StageStats("similarity")
    judge(stats, med, KEEP)
    judge(stats, region, Verdict.drop("similarity_too_low"), "clip cosine 0.5")
    assert (stats.n_in, stats.n_kept, dict(stats.reasons)) == (2, 1, {"similarity_too_low": 1})
    assert (region.drop_stage, region.drop_reason, region.drop_detail) == ("similarity", "similarity_too_low",
                                                                          "clip cosine 0.5")
    assert alive([med, region, pair]) == [med, pair] and pair.live_regions() == []
    with pytest.raises(ValueError, match="needs a reason"):
        pair.drop("x", "")
