"""Evaluation: metric functions on known answers, and the evaluate flow on a tiny random Qwen2-VL.

A random model never answers in format, so the flow tests check what is stored and counted
(every answer, unparseable ones included, metrics recomputable from the stored answers, resume),
and the scoring of *known* answers is tested separately through the same scoring task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pairsmith.filters.mcq_answer import parse_choice
from pairsmith.flows.cli.main import main
from pairsmith.storage.schemas import EvalPredictionRow, Message, SampleRow, utc_now
from pairsmith.storage.store import PairStore, sql_literal
from pairsmith.tasks.evaluate.caption_metrics import caption_metrics
from pairsmith.tasks.evaluate.grounding_metrics import average_precision, grounding_metrics
from pairsmith.tasks.evaluate.mcq_metrics import McqItem, mcq_metrics
from pairsmith.tasks.sample_builders import TWO_IMAGES

CATEGORIES = ("Attribute", "Counting")


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- metric functions ---------------------------------------------------------------------------


def test_ap50_ranks_boxes_by_their_place_in_the_answer():
    assert average_precision([(0, True), (0, False)], n_gt=2) == pytest.approx(0.5 * 0.5)  # one tie group: P x R
    # ranks 0, 1, 2 -> (R, P) = (.5, 1), (.5, .5), (1, 2/3); interpolated area = .5·1 + .5·2/3
    assert average_precision([(0, True), (1, False), (2, True)], n_gt=2) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([], n_gt=3) == 0.0
    assert average_precision([(0, False)], n_gt=0) is None


def test_grounding_metrics_on_known_answers():
    gt = [[[0, 0, 10, 10], [20, 20, 30, 30]], [[50, 50, 60, 60]]]
    perfect = grounding_metrics([[[0, 0, 10, 10], [20, 20, 30, 30]], [[50, 50, 60, 60]]], gt)
    assert (perfect.f1, perfect.mean_iou, perfect.ap50, perfect.format_rate) == (1.0, 1.0, 1.0, 1.0)
    half = grounding_metrics([[[0, 0, 10, 10], [90, 90, 99, 99]], None], gt)
    assert half.precision == pytest.approx(1 / 2) and half.recall == pytest.approx(1 / 3)
    assert half.f1 == pytest.approx(2 * 1 / (2 + 3))
    assert half.mean_iou == pytest.approx(0.5)  # sample 1: its one match has IoU 1; sample 2: nothing
    assert half.parse_rate == 0.5 and half.format_rate == 0.5
    assert half.ap50 == pytest.approx(1 / 3)  # rank 0: (1/3, 1); rank 1: (1/3, 1/2)
    with pytest.raises(ValueError, match="2 predictions for 1 samples"):
        grounding_metrics([None, None], gt[:1])


def test_mcq_accuracy_per_category_counts_unparseable_as_wrong_and_never_guesses():
    options = ["A. the cube is red", "B. the cube is blue", "C. the sphere moved", "D. nothing changed"]
    items = [
        McqItem("B", "B", options, "Attribute"),
        McqItem("The answer is (B).", "B", options, "Attribute"),
        McqItem("the sphere moved", "C", options, "Counting"),  # names one option's text exactly
        McqItem("The answer is A or B.", "A", options, "Counting"),  # two letters: no choice
        McqItem("I cannot tell.", "D", options, "Counting"),
        McqItem("D", "A", options, "Counting"),
    ]
    metrics = mcq_metrics(items)
    assert list(metrics.groups) == ["all", "Attribute", "Counting"]
    assert (metrics.groups["all"].n, metrics.groups["all"].correct, metrics.groups["all"].unparseable) == (6, 3, 2)
    assert metrics.groups["Attribute"].accuracy == 1.0 and metrics.groups["Counting"].accuracy == 0.25
    rows = {(g, m): (v, n) for g, m, v, n in metrics.rows()}
    assert rows[("all", "accuracy")] == (0.5, 6) and rows[("Counting", "unparseable")] == (2.0, 4)


def test_caption_metrics_reward_the_reference_and_need_no_java():
    refs = {"a": ["The red cube turned blue."], "b": ["A small green sphere was added."]}
    exact = caption_metrics({"a": "the red cube turned blue", "b": "A small green sphere was added!"}, refs)
    assert exact["bleu4"] == pytest.approx(1.0) and exact["rouge_l"] == pytest.approx(1.0)
    assert exact["cider"] == pytest.approx(10.0)  # CIDEr-D's scale: 10 for captions equal to their reference
    wrong = caption_metrics({"a": "nothing changed", "b": ""}, refs)
    assert wrong["bleu4"] < 0.01 and wrong["rouge_l"] == 0.0 and wrong["cider"] == 0.0
    with pytest.raises(ValueError, match="differ in ids"):
        caption_metrics({"a": "x"}, refs)


# --- scoring stored answers ---------------------------------------------------------------------


def _sample(sample_id: str, task: str, answer: str, **extra) -> dict:
    return {"sample_id": sample_id, "pair_id": f"p-{sample_id}", "task": task, "subset": extra.pop("subset", None),
            "category": extra.pop("category", None), "split": "test", "answer": answer,
            "boxes": extra.pop("boxes", []), "options": extra.pop("options", None), **extra}


def test_scoring_reads_every_stored_answer_of_an_evaluation(tmp_path):
    from pairsmith.tasks.evaluate.score_answers import score_answers

    db = str(tmp_path / "scores.lance")
    samples = [
        _sample("g1", "grounding", "[[0, 0, 10, 10]]", subset="single", boxes=[[0.0, 0.0, 10.0, 10.0]]),
        _sample("g2", "grounding", "[[5, 5, 9, 9]]", subset="mixed", boxes=[[5.0, 5.0, 9.0, 9.0]]),
        _sample("m1", "med-mcq", "C", category="Counting", options=["A. a", "B. b", "C. c", "D. d"]),
        _sample("m2", "med-mcq", "A", category="Counting", options=["A. a", "B. b", "C. c", "D. d"]),
        _sample("c1", "diff-caption", "The red cube turned blue."),
        _sample("c2", "diff-caption", "A small green sphere was added."),
    ]
    answers = {"g1": "<answer>[[0, 0, 10, 10]]</answer>", "g2": "somewhere", "m1": "C", "m2": "maybe",
               "c1": "The red cube turned blue.", "c2": "A small green sphere was added."}
    PairStore(db).upsert("eval_predictions", [EvalPredictionRow(
        prediction_id=f"e-{s['sample_id']}", eval_id="e", sample_id=s["sample_id"], pair_id=s["pair_id"],
        task=s["task"], split="test", prediction=answers[s["sample_id"]],
        parsed=json.dumps([[0, 0, 10, 10]]) if s["sample_id"] == "g1" else None, created_at=utc_now(),
    ) for s in samples])
    rows = score_answers.fn(db, "e", samples, model_id="m", adapter=None, samples_version=3)
    got = {(r.task, r.group, r.metric): (r.value, r.n) for r in rows}
    assert got[("grounding", "all", "f1")] == (pytest.approx(2 / 3), 2)  # 1 match, 1 box answered, 2 true
    assert got[("grounding", "single", "f1")] == (1.0, 1) and got[("grounding", "mixed", "f1")] == (0.0, 1)
    assert got[("grounding", "all", "ap50")] == (0.5, 2)
    assert got[("med-mcq", "Counting", "accuracy")] == (0.5, 2) and got[("med-mcq", "all", "unparseable")] == (1.0, 2)
    assert got[("diff-caption", "all", "bleu4")][0] == pytest.approx(1.0)
    assert all(r.samples_version == 3 and r.eval_id == "e" for r in rows)
    assert len({r.result_id for r in rows}) == len(rows)
    loose = score_answers.fn(db, "e", samples, model_id="m", adapter=None, samples_version=3, iou_threshold=0.3)
    names = {r.metric for r in loose if r.task == "grounding"}
    assert {"f1@0.3", "mean_iou@0.3", "ap50"} <= names and "f1" not in names  # a threshold never hides


# --- the flow -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture
def eval_db(rendered_run, tmp_path) -> str:
    """A copy of the rendered pairs plus four MED-style MCQ samples on them, held out as 'test'."""
    db = tmp_path / "pairsmith.lance"
    shutil.copytree(rendered_run.config.db, db)
    store = PairStore(str(db))
    pair_ids = sorted(store.read("pairs", where="status = 'kept'", columns=["pair_id"]).column("pair_id").to_pylist())
    rows = []
    for i, pair_id in enumerate(pair_ids[:4]):
        options = [f"{letter}. option {letter.lower()} of pair {i}" for letter in "ABCD"]
        rows.append(SampleRow(
            sample_id=f"mcq-{i}", pair_id=pair_id, run_id="med-test", method="med-edit", task="med-mcq",
            conversation=[Message(role="user", content=TWO_IMAGES + "What is the primary difference?\n"
                                  + "\n".join(options) + "\nAnswer with the option's letter."),
                          Message(role="assistant", content="ABCD"[i])],
            answer="ABCD"[i], options=options, category=CATEGORIES[i % 2], split="test", created_at=utc_now()))
    store.upsert("samples", rows)
    return str(db)


def _artifact(key: str, flow_run_id) -> list[dict] | None:
    from prefect.client.orchestration import get_client

    body = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [str(flow_run_id)]}},
            "sort": "CREATED_DESC", "limit": 1, "offset": 0}
    with get_client(sync_client=True) as client:
        found = client.request("POST", "/artifacts/filter", json=body).json()
    return json.loads(found[0]["data"]) if found else None


@pytest.mark.slow
def test_evaluate_stores_every_answer_and_metric_and_resumes(eval_db, tiny_vlm):
    from pairsmith.flows.evaluate import evaluate
    from pairsmith.flows.evaluate_config import EvaluateConfig

    config = EvaluateConfig(
        db=eval_db, model_id=str(tiny_vlm), runtime={"device": "cpu"}, max_new_tokens=8, batch_size=3,
        data={"tasks": ["grounding", "med-mcq", "diff-caption"], "splits": ["val", "test"]},
    )
    state = evaluate(config, return_state=True)
    summary = state.result()
    store = PairStore(eval_db)
    expected = store.count("samples", "task IN ('grounding', 'med-mcq', 'diff-caption') AND split IN ('val', 'test')")
    assert summary.n_samples == summary.n_generated == expected
    where = f"eval_id = {sql_literal(summary.eval_id)}"
    predictions = store.read("eval_predictions", where=where).to_pylist()
    assert len(predictions) == expected

    results = store.read("eval_results", where=where).to_pylist()
    by_key = {(r["task"], r["group"], r["metric"]): r for r in results}
    assert {r["task"] for r in results} == {"grounding", "med-mcq", "diff-caption"}
    for metric in ("precision", "recall", "f1", "mean_iou", "ap50", "format_rate"):
        assert 0.0 <= by_key[("grounding", "all", metric)]["value"] <= 1.0
    for metric in ("bleu4", "rouge_l", "cider"):
        assert by_key[("diff-caption", "all", metric)]["value"] >= 0.0
    mcq = [p for p in predictions if p["task"] == "med-mcq"]
    options = {s["sample_id"]: s for s in store.read("samples", where="task = 'med-mcq'").to_pylist()}
    chosen = [parse_choice(p["prediction"], options[p["sample_id"]]["options"]) for p in mcq]
    right = sum(c == options[p["sample_id"]]["answer"] for c, p in zip(chosen, mcq))
    assert by_key[("med-mcq", "all", "accuracy")]["value"] == pytest.approx(right / 4)
    assert by_key[("med-mcq", "all", "unparseable")]["value"] == sum(c is None for c in chosen)
    assert {g for t, g, m in by_key if t == "med-mcq" and m == "accuracy"} == {"all", *CATEGORIES}
    assert all(r["samples_version"] == store.db.open_table("samples").version for r in results)

    artifact = _artifact("eval-results", state.state_details.flow_run_id)
    assert {(row["task"], row["group"], row["metric"]) for row in artifact} == set(by_key)
    funnel = {r["stage"]: r for r in _artifact("filter-dropoff", state.state_details.flow_run_id)}
    assert funnel["parse-answers"]["in"] == expected and funnel["select-samples"]["kept"] == expected

    again = evaluate(config)
    assert again.eval_id == summary.eval_id and again.n_generated == 0 and again.batches_resumed == again.batches
    assert store.count("eval_predictions", where) == expected and store.count("eval_results", where) == len(results)


def _random_adapter(tiny_vlm: Path, out: Path) -> Path:
    """A LoRA adapter with large random B weights: it must change what the model says."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    from pairsmith.models.vlm_training import LoraSettings

    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(tiny_vlm), LoraSettings().peft_config())
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 1.0)
    model.save_pretrained(out)
    return out


@pytest.mark.slow
def test_evaluate_cli_applies_the_adapter_named_by_a_run_card(capsys, eval_db, tiny_vlm, tmp_path):
    from datetime import datetime, timezone

    from pairsmith.flows.engine.run_card import RunCard

    run_dir = tmp_path / "runs" / "finetune-sft-x"
    _random_adapter(tiny_vlm, run_dir / "adapter")
    now = datetime.now(timezone.utc)
    RunCard(run_name="finetune-sft-x", method="sft", status="complete", base_model=str(tiny_vlm),
            adapter_dir="adapter", data={"samples_version": 1, "n_samples": 0}, stages=[], config={},
            started_at=now, finished_at=now, seconds=0.0).write(run_dir)

    common = ["evaluate", "--db", eval_db, "--split", "test", "--task", "med-mcq", "--max-new-tokens", "6",
              "--device", "cpu"]
    assert main([*common, "--model", str(tiny_vlm)]) == 0
    base_out = capsys.readouterr().out
    assert main([*common, "--run-card", str(run_dir / "run_card.json")]) == 0
    tuned_out = capsys.readouterr().out
    assert f"+ {run_dir / 'adapter'}" in tuned_out and "med-mcq" in tuned_out and "accuracy" in tuned_out

    store = PairStore(eval_db)
    ids = [line.rsplit("eval_id ", 1)[1].strip() for line in (base_out.splitlines()[0], tuned_out.splitlines()[0])]
    assert ids[0] != ids[1]
    answers = [{p["sample_id"]: p["prediction"] for p in store.read(
        "eval_predictions", where=f"eval_id = {sql_literal(i)}").to_pylist()} for i in ids]
    assert len(answers[0]) == len(answers[1]) == 4
    assert answers[0] != answers[1], "the adapter changes the model's answers"
    tuned = {r["adapter"] for r in store.read("eval_results", where=f"eval_id = {sql_literal(ids[1])}").to_pylist()}
    assert tuned == {str(run_dir / "adapter")}

    assert main([*common[:-2], "--run-card", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
