"""``pairsmith stats --dataset [--plot]``: per dataset the pairs, samples per task and split, DiG's subsets / K /
change kinds / objects per scene, MED's per-category pairs, bench items and SFT samples, caption lengths and
words, and the funnel with every reason, all grouped by what the rows hold (a new stage or category shows up)."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from click.testing import CliRunner
from PIL import Image

from pairsmith.flows.cli.main import cli
from pairsmith.storage.dataset_stats import caption_words, dataset_stats, format_dataset_stats, length_histogram
from pairsmith.storage.schemas import Message, PairRow, SampleRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.write_batch import stage_rows


def _pair(pair_id, run_id, method, status="kept", **kw):
    return PairRow(pair_id=pair_id, run_id=run_id, method=method, dataset=method, width=8, height=8, status=status,
                   drop_stage=None if status == "kept" else "judge_2",
                   drop_reason=None if status == "kept" else "judge_2_no", created_at=utc_now(), **kw)


def _sample(sample_id, pair_id, method, task, split, answer, category=None):
    return SampleRow(sample_id=sample_id, pair_id=pair_id, run_id="r", method=method, dataset=method, task=task,
                     split=split, conversation=[Message(role="user", content="q"), Message(role="assistant",
                                                                                             content=answer)],
                     answer=answer, category=category, created_at=utc_now())


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    store = PairStore(str(tmp_path_factory.mktemp("dsstats") / "db.lance"))
    scene = lambda n: json.dumps({"objects": [{"id": i} for i in range(n)]})  # noqa: E731
    store.upsert("pairs", [
        _pair("d1", "dig-1", "dig-render", subset="single", n_changes=1, edit_category="color", scene_before=scene(3)),
        _pair("d2", "dig-1", "dig-render", subset="double", n_changes=2, edit_category="color,shape",
              scene_before=scene(5)),
        _pair("d3", "dig-1", "dig-render", subset="mixed", n_changes=3, edit_category="size,add,color",
              scene_before=scene(5)),
        _pair("d4", "dig-1", "dig-render", status="dropped"),
        _pair("m1", "med-1", "med-edit", edit_category="Color"),
        _pair("m2", "med-1", "med-edit", edit_category="Counting"),  # a category nothing in the code names
        _pair("m3", "med-1", "med-edit", status="dropped"),
    ])
    store.upsert("samples", [
        _sample("s1", "d1", "dig-render", "grounding", "train", "[[1, 2, 3, 4]]"),
        _sample("s2", "d2", "dig-render", "diff-caption", "train", "The cube on the left side is red now."),
        _sample("s3", "m1", "med-edit", "med-diff-qa", "train", "The car on the right side turned blue.",
                category="Color"),
        _sample("s4", "m1", "med-edit", "med-mcq", "bench", "A", category="Color"),
        _sample("s5", "m2", "med-edit", "med-mcq", "bench", "B", category="Counting"),
        _sample("s6", "m2", "med-edit", "med-diff-qa", "val", "Two more birds sit on the left.", category="Counting"),
    ])
    med = [StageStats("filter", 3, 3), StageStats("judge_1", 3, 3),
           StageStats("judge_2", 3, 2, 1, Counter({"judge_2_no": 1}))]  # a stage the report does not know by name
    dig = [StageStats("render", 4, 4), StageStats("visibility", 4, 3, 1, Counter({"visibility_too_small": 1}))]
    store.upsert("stage_stats", stage_rows("med-1", "med-edit", "0-2", med) + stage_rows("dig-1", "dig-render", "0-3", dig))
    return store


def test_each_dataset_reports_what_its_rows_hold(store):
    by_name = {d.name: d for d in dataset_stats(store)}
    assert set(by_name) == {"dig-render", "med-edit"}
    dig, med = by_name["dig-render"], by_name["med-edit"]
    assert (dig.pairs_kept, dig.pairs_dropped, med.pairs_kept, med.pairs_dropped) == (3, 1, 2, 1)
    assert dig.pairs_by["subset"] == Counter(single=1, double=1, mixed=1)
    assert dig.pairs_by["n_changes"] == Counter({1: 1, 2: 1, 3: 1})
    assert dig.pairs_by["edit_category"] == Counter(color=3, shape=1, size=1, add=1)  # comma-joined kinds, one by one
    assert dig.objects_per_scene == Counter({3: 1, 5: 2})
    assert dig.samples == Counter({("grounding", "train"): 1, ("diff-caption", "train"): 1})
    assert med.pairs_by["edit_category"] == Counter(Color=1, Counting=1)
    assert med.categories == {("med-mcq", "bench"): Counter(Color=1, Counting=1),  # bench items per type
                              ("med-diff-qa", "train"): Counter(Color=1), ("med-diff-qa", "val"): Counter(Counting=1)}
    assert [(s.stage, s.n_in, s.n_kept) for s in med.funnel] == [("filter", 3, 3), ("judge_1", 3, 3), ("judge_2", 3, 2)]
    assert med.funnel[-1].reasons == Counter({"judge_2_no": 1})
    assert sorted(med.caption_lengths) == [7, 8] and dig.caption_lengths == [9]
    assert med.words["left"] == 1 and "the" not in med.words and med.words["side"] == 1


def test_the_report_prints_every_figure_and_reason(store):
    text = format_dataset_stats(dataset_stats(store))
    assert "dataset dig-render: 3 pairs kept, 1 dropped (1 run)" in text
    assert "pairs by subset: double 1, mixed 1, single 1" in text
    assert "pairs by differences per pair (K): 1 1, 2 1, 3 1" in text
    assert "pairs by objects per scene: 3 1, 5 2" in text
    assert "med-mcq/bench by category: Color 1, Counting 1" in text
    assert "judge_2: 3 -> 2; judge_2_no 1" in text and "visibility: 4 -> 3; visibility_too_small 1" in text
    assert "caption length (words): mean 7.5, min 7, max 8; 5-10 2" in text


def test_caption_helpers():
    assert caption_words("The cube's left side, RED.") == ["the", "cube's", "left", "side", "red"]
    assert length_histogram([0, 4, 5, 130]) == {"0-5": 2, "5-10": 1, "10-15": 0, "15-20": 0, "20-30": 0, "30-40": 0,
                                                "40-60": 0, "60-80": 0, "80-120": 0, "120+": 1}


def test_cli_prints_and_draws_and_refuses_a_plot_it_cannot_write(store, tmp_path):
    out = tmp_path / "stats.png"
    result = CliRunner().invoke(cli, ["stats", "--db", store.uri, "--dataset", "--plot", str(out)])
    assert result.exit_code == 0, result.output
    assert "dataset med-edit: 2 pairs kept" in result.output and f"plot: {out}" in result.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 400
    for args, message in ((["--plot", str(tmp_path / "a.png")], "add --dataset"),
                          (["--dataset", "--plot", str(tmp_path / "a.jpg")], "PNG"),
                          (["--dataset", "--plot", str(tmp_path / "no" / "a.png")], "does not exist")):
        bad = CliRunner().invoke(cli, ["stats", "--db", store.uri, *args])
        assert bad.exit_code == 2 and message in bad.output, bad.output
