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

from pairsmith.tasks.answers.mcq_answer import parse_choice
from pairsmith.flows.cli.main import main
from pairsmith.storage.schemas import EvalPredictionRow, Message, SampleRow, utc_now
from pairsmith.storage.store import PairStore, sql_literal
from pairsmith.tasks.evaluate.caption_metrics import caption_metrics, spice_unavailable
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


def test_caption_metrics_reward_the_reference_and_report_what_they_cannot_compute(monkeypatch):
    refs = {"a": ["The red cube turned blue."], "b": ["A small green sphere was added."]}
    exact = caption_metrics({"a": "the red cube turned blue", "b": "A small green sphere was added!"}, refs).values
    assert exact["bleu4"] == pytest.approx(1.0) and exact["rouge_l"] == pytest.approx(1.0)
    assert exact["cider"] == pytest.approx(10.0)  # CIDEr-D's scale: 10 for captions equal to their reference
    monkeypatch.setattr(shutil, "which", lambda name: None)  # a machine without Java
    wrong = caption_metrics({"a": "nothing changed", "b": ""}, refs)
    assert wrong.values["bleu4"] < 0.01 and wrong.values["rouge_l"] == 0.0 and wrong.values["cider"] == 0.0
    assert "meteor" not in wrong.values and "Java" in wrong.unavailable["meteor"]
    assert "Java" in wrong.unavailable["spice"]  # SPICE's jar needs it too (tests/tasks/evaluate/test_spice.py: the rest)
    with pytest.raises(ValueError, match="differ in ids"):
        caption_metrics({"a": "x"}, refs)


PIN_REFS = {
    "p1": ["The red cube to the left of the large cylinder turned blue.", "The small red cube became blue."],
    "p2": ["A small green sphere was added in the front."],
    "p3": ["The large metal cylinder behind the cyan sphere is gone.", "A large cylinder was removed."],
    "p4": ["The gray cube moved to the back left corner."],
    "p5": ["There is no difference."],
}
PIN_PREDS = {
    "p1": "The small red cube turned blue.",
    "p2": "A green sphere appeared in front.",
    "p3": "The large cylinder disappeared.",
    "p4": "A gray cube was moved to the left.",
    "p5": "The yellow sphere changed color.",
}


def test_meteor_and_cider_are_pycocoevalcaps_own_numbers():
    """Pinned on fixed captions, and equal to the COCO scorers called directly on the same tokens."""
    from pycocoevalcap.cider.cider import Cider

    from pairsmith.tasks.evaluate.caption_metrics import tokenize

    scores = caption_metrics(PIN_PREDS, PIN_REFS)
    gts = {k: [tokenize(r) for r in refs] for k, refs in PIN_REFS.items()}
    res = {k: [tokenize(p)] for k, p in PIN_PREDS.items()}
    assert scores.values["cider"] == pytest.approx(Cider().compute_score(gts, res)[0], abs=1e-12)
    assert scores.values["cider"] == pytest.approx(1.844967108801153, abs=1e-9)
    if shutil.which("java") is None:
        assert "meteor" in scores.unavailable
        pytest.skip("no Java runtime here: METEOR is reported as unavailable (see the README)")
    from pycocoevalcap.meteor.meteor import Meteor

    assert scores.values["meteor"] == pytest.approx(Meteor().compute_score(gts, res)[0], abs=1e-12)
    assert scores.values["meteor"] == pytest.approx(0.3260499296489414, abs=1e-6)


@pytest.mark.parametrize("answer, score, justification", [
    ('{"justification": "Names the cube and its new colour.", "score": 80}', 80.0, "Names the cube and its new colour."),
    ('Here is my verdict:\n```json\n{"Score": "65", "Reason": "misses the place"}\n```', 65.0, "misses the place"),
    ("Score: 70. The prediction gets the object right.", 70.0, "Score: 70. The prediction gets the object right."),
    ("I rate it 55/100: it names the cube, not its colour.", 55.0, "I rate it 55/100: it names the cube, not its colour."),
    # the layouts OmniDiff's Fig. 6 prompt ("your score (0-100) and a short justification") draws
    ("**Score:** 75\n\n**Justification:** The caption names the bird but not the second one.", 75.0,
     "The caption names the bird but not the second one."),
    ("Score (0-100): 80\nJustification: covers the cube's colour and place.", 80.0, "covers the cube's colour and place."),
    ("Justification: misses where the sphere is.\nScore: 50", 50.0, "misses where the sphere is."),
    ("Score: 80%. It names the bird but misses the second one.", 80.0,
     "Score: 80%. It names the bird but misses the second one."),
])
def test_judge_answers_in_many_shapes_are_read(answer, score, justification):
    from pairsmith.tasks.answers.judge_answer import parse_judge_answer

    verdict = parse_judge_answer(answer)
    assert verdict is not None and verdict.score == score and verdict.justification == justification


@pytest.mark.parametrize("answer", [
    "", None, "The prediction is quite good.", '{"score": 140}', '{"score": "high"}', "Score: 30, no, score: 60",
    '{"score": 20} and on reflection {"score": 90}', "7 out of 10", '{"justification": "fine"}',
    # a score without the justification Fig. 6 asks for
    '{"score": 40}', "Score: 70/100", "I rate it 55/100.", "**Score:** 75\n**Justification:**",
])
def test_judge_answers_without_one_clear_score_are_unparseable_never_guessed(answer):
    from pairsmith.tasks.answers.judge_answer import parse_judge_answer

    assert parse_judge_answer(answer) is None


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
    rows = score_answers.fn(db, "e", samples, model_id="m", adapter=None, samples_version=3).rows
    got = {(r.task, r.group, r.metric): (r.value, r.n) for r in rows}
    assert got[("grounding", "all", "f1")] == (pytest.approx(2 / 3), 2)  # 1 match, 1 box answered, 2 true
    assert got[("grounding", "single", "f1")] == (1.0, 1) and got[("grounding", "mixed", "f1")] == (0.0, 1)
    assert got[("grounding", "all", "ap50")] == (0.5, 2)
    assert got[("med-mcq", "Counting", "accuracy")] == (0.5, 2) and got[("med-mcq", "all", "unparseable")] == (1.0, 2)
    assert got[("diff-caption", "all", "bleu4")][0] == pytest.approx(1.0)
    assert all(r.samples_version == 3 and r.eval_id == "e" for r in rows)
    assert len({r.result_id for r in rows}) == len(rows)
    loose = score_answers.fn(db, "e", samples, model_id="m", adapter=None, samples_version=3, iou_threshold=0.3).rows
    names = {r.metric for r in loose if r.task == "grounding"}
    assert {"f1@0.3", "mean_iou@0.3", "ap50"} <= names and "f1" not in names  # a threshold never hides


# --- the flow -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


def _copy_of_render(rendered_run, db: Path) -> tuple[PairStore, list[str]]:
    """A private copy of the session's render and its kept pair ids."""
    shutil.copytree(rendered_run.config.db, db)
    store = PairStore(str(db))
    return store, sorted(store.read("pairs", where="status = 'kept'", columns=["pair_id"]).column("pair_id").to_pylist())


@pytest.fixture
def eval_db(rendered_run, tmp_path) -> str:
    """A copy of the rendered pairs plus four MED-style MCQ samples on them, held out as 'test'."""
    db = tmp_path / "pairsmith.lance"
    store, pair_ids = _copy_of_render(rendered_run, db)
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
    tag = f"evaluate-v{store.db.open_table('samples').version}"  # what it reopens by number outlives any cleanup
    for name in ("samples", "pairs"):
        assert store.db.open_table(name).tags.get_version(tag) == store.db.open_table(name).version

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

    from pairsmith.models.training.vlm_training import LoraSettings

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


# --- the LLM judge ------------------------------------------------------------------------------


def _caption_rows(specs) -> list[dict]:
    """(sample_id, pair_id, reference, dataset) -> merged sample rows, as the evaluate flow holds them."""
    from pairsmith.tasks.evaluate.generate_answers import ask_once_per_pair

    return ask_once_per_pair([
        _sample(sid, "diff-caption", ref, pair_id=pair, method="dig-render", dataset=dataset)
        for sid, pair, ref, dataset in specs])


def _prediction(row: dict, text: str, eval_id: str = "e") -> EvalPredictionRow:
    return EvalPredictionRow(prediction_id=f"{eval_id}-{row['sample_id']}", eval_id=eval_id,
                             sample_id=row["sample_id"], pair_id=row["pair_id"], task=row["task"], split="test",
                             prediction=text, parsed=json.dumps(text), created_at=utc_now())


def test_a_gemini_judge_scores_captions_per_dataset_and_counts_what_it_cannot_read(tmp_path, monkeypatch):
    from pairsmith.models.adapters.caption_judge import CaptionJudge, CaptionJudgeConfig
    from pairsmith.models.adapters.gemini_editor import GeminiAuthError
    from pairsmith.tasks.evaluate.judge_captions import judge_captions
    from pairsmith.tasks.evaluate.score_answers import score_answers
    from tests.fake_gemini import FakeGemini

    def reply(prompt: str) -> str:  # a judge that gives 100 to an exact copy of a reference, else 25
        reference, prediction = prompt.split("Standard answer: ", 1)[1].split("\nAssistant's response: ", 1)
        if "mumble" in prediction:
            return "Hard to say, it is partly right."
        score = 100 if prediction in reference else 25
        return f'```json\n{{"justification": "covers {score}% of it", "score": {score}}}\n```'

    rows = _caption_rows([
        ("c1", "p1", "The red cube turned blue.", "spot-the-diff"),
        ("c2a", "p2", "A green sphere was added.", "spot-the-diff"),
        ("c2b", "p2", "Someone put a sphere on the left.", "spot-the-diff"),  # a second reference of p2
        ("c3", "p3", "The cylinder is gone.", None),
        ("c4", "p4", "The cube moved.", None),
    ])
    assert [r["sample_id"] for r in rows] == ["c1", "c2a", "c3", "c4"] and len(rows[1]["references"]) == 2
    predictions = [_prediction(rows[0], "The red cube turned blue."), _prediction(rows[1], "A sphere appeared."),
                   _prediction(rows[2], "mumble"), _prediction(rows[3], "It moved [500x9]")]
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    with FakeGemini(text_reply=reply) as server:
        judge = CaptionJudge(CaptionJudgeConfig(backend="gemini", gemini={
            "base_url": server.base_url, "retry_attempts": 1, "concurrency": 2}))
        result = judge_captions.fn(judge, predictions, rows)
        asked = {r.instruction for r in server.log}
        assert {r.model for r in server.log} == {"gemini-2.5-flash"} and {r.api_key for r in server.log} == {"test-key"}
        with pytest.raises(GeminiAuthError):
            judge_captions.fn(judge, [_prediction(rows[0], "[401]")], rows)
    stats = result.stats[0]
    assert (stats.n_in, stats.n_kept, dict(stats.reasons)) == (4, 2, {"judge_unparseable": 1, "judge_error": 1})
    judged = {p.sample_id: p for p in result.value}
    assert (judged["c1"].judge_score, judged["c2a"].judge_score) == (100.0, 25.0)
    assert judged["c1"].judge_justification == "covers 100% of it"
    assert judged["c3"].judge_score is None and judged["c3"].judge_answer == "Hard to say, it is partly right."
    assert judged["c4"].judge_answer is None  # the request failed: no answer, nothing guessed
    assert any("- A green sphere was added.\n- Someone put a sphere on the left." in a for a in asked)

    db = str(tmp_path / "judged.lance")
    PairStore(db).upsert("eval_predictions", result.value)
    scored = score_answers.fn(db, "e", rows, model_id="m", adapter=None, samples_version=1)
    got = {(r.group, r.metric): (r.value, r.n) for r in scored.rows}
    assert got[("all", "llm_judge")] == (62.5, 2) and got[("all", "llm_judge_unparseable")] == (1.0, 3)
    assert got[("dataset:spot-the-diff", "llm_judge")] == (62.5, 2)
    assert got[("dataset:dig-render", "llm_judge_unparseable")] == (1.0, 1)
    assert ("dataset:dig-render", "llm_judge") not in got  # no readable score there: no mean made up
    assert got[("dataset:spot-the-diff", "bleu4")][1] == 2  # p2 is one answer, scored against both references
    assert {m for g, m in got if g == "dataset:spot-the-diff"} >= {"bleu4", "rouge_l", "cider"}
    assert ("spice" in scored.unavailable) == (spice_unavailable() is not None)


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory) -> Path:
    from pairsmith.models.tiny.builders import build_tiny_chat_llm

    return build_tiny_chat_llm(tmp_path_factory.mktemp("tiny-llm"))


def test_a_tiny_random_chat_model_judges_and_what_it_says_is_counted_not_guessed(tiny_llm, one_torch_thread):
    from pairsmith.tasks.answers.judge_answer import parse_judge_answer
    from pairsmith.models.adapters.caption_judge import CaptionJudge, CaptionJudgeConfig
    from pairsmith.tasks.evaluate.judge_captions import judge_captions

    tiny = tiny_llm
    rows = _caption_rows([("c1", "p1", "The red cube turned blue.", None), ("c2", "p2", "A sphere was added.", None),
                          ("g1", "p3", "[]", None)])
    rows[2]["task"] = "grounding"
    predictions = [_prediction(rows[0], "The cube is blue now."), _prediction(rows[1], ""),
                   _prediction(rows[2], "[[1, 2, 3, 4]]")]
    judge = CaptionJudge(CaptionJudgeConfig(model_id=str(tiny), runtime={"device": "cpu"}, max_new_tokens=16,
                                            batch_size=2))
    result = judge_captions.fn(judge, predictions, rows)
    stats, judged = result.stats[0], {p.sample_id: p for p in result.value}
    assert stats.n_in == 2 and judged["g1"].judge_answer is None  # only captions are judged
    for sid in ("c1", "c2"):
        answer = judged[sid].judge_answer
        assert isinstance(answer, str)
        verdict = parse_judge_answer(answer)
        assert judged[sid].judge_score == (verdict.score if verdict else None)
    assert stats.n_kept + stats.reasons["judge_unparseable"] == 2


@pytest.fixture
def caption_db(rendered_run, tmp_path) -> str:
    """The rendered pairs plus Spot-the-Diff-style caption samples on three of them: one sample per
    reference sentence, ``dataset`` set, held out as 'test'."""
    db = tmp_path / "captions.lance"
    store, pair_ids = _copy_of_render(rendered_run, db)
    rows = []
    for i, pair_id in enumerate(pair_ids[:3]):
        for k, sentence in enumerate(("the car in the parking lot is gone", "a person walked into the street")):
            rows.append(SampleRow(
                sample_id=f"std-{i}-{k}", pair_id=pair_id, run_id="import-spot-the-diff", method="spot-the-diff",
                task="diff-caption", conversation=[Message(role="user", content=TWO_IMAGES + "What changed?"),
                                                   Message(role="assistant", content=sentence)],
                answer=sentence, split="test", dataset="spot-the-diff", created_at=utc_now()))
    store.upsert("samples", rows)
    return str(db)


@pytest.mark.slow
def test_evaluate_cli_scores_each_dataset_with_caption_metrics_and_a_judge(capsys, caption_db, tiny_vlm, tiny_llm):
    common = ["evaluate", "--db", caption_db, "--model", str(tiny_vlm), "--task", "diff-caption", "--split", "test",
              "--split", "val", "--max-new-tokens", "8", "--device", "cpu", "--judge-model", str(tiny_llm)]
    assert main(common) == 0
    out = capsys.readouterr().out
    with capsys.disabled():
        print(out)  # what a user sees (the README shows the same layout)
    store = PairStore(caption_db)
    eval_id = out.splitlines()[0].rsplit("eval_id ", 1)[1].strip()
    results = store.read("eval_results", where=f"eval_id = {sql_literal(eval_id)}").to_pylist()
    by_key = {(r["group"], r["metric"]): r for r in results}
    ours = store.count("samples", "task = 'diff-caption' AND split IN ('test', 'val') AND dataset = 'dig-render'")
    groups = {"all", "dataset:spot-the-diff"} | ({"dataset:dig-render"} if ours else set())
    assert {g for g, _ in by_key} == groups
    metrics = {"bleu4", "rouge_l", "cider", "llm_judge_unparseable"} | ({"meteor"} if shutil.which("java") else set())
    for group in groups:
        assert metrics <= {m for g, m in by_key if g == group}, group
    assert by_key[("dataset:spot-the-diff", "bleu4")]["n"] == 3  # 3 pairs asked once, 2 references each
    assert by_key[("all", "llm_judge_unparseable")]["n"] == 3 + ours
    assert ("spice: unavailable" in out) == (spice_unavailable() is not None) and "dataset:spot-the-diff" in out
    predictions = store.read("eval_predictions", where=f"eval_id = {sql_literal(eval_id)}").to_pylist()
    assert len(predictions) == 3 + ours and all(p["judge_answer"] is not None for p in predictions)

    assert main([*common, "--dataset", "spot-the-diff"]) == 0
    only = capsys.readouterr().out
    assert "on 3 samples" in only and "dataset:dig-render" not in only


def test_a_model_that_cannot_load_stops_the_evaluation_in_one_line_naming_it(capsys, eval_db, tmp_path, monkeypatch):
    """A model folder that is not there (issue 22, kind 6): not one ``generate_error`` per item and
    exit 3 ("the messages are in drop_detail", with none stored), but exit 1 at once with one line
    naming the model and why; nothing is stored, and running it again says the same."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-such-model"
    args = ["evaluate", "--db", eval_db, "--split", "test", "--task", "med-mcq", "--max-new-tokens", "4",
            "--device", "cpu", "--model", str(missing)]
    for attempt in range(2):
        assert main(args) == 1
        captured = capsys.readouterr()
        assert captured.err.strip() == (f"pairsmith: error: evaluation failed: ModelUnavailable: model "
                                        f"{str(missing)!r}: no such folder")
        assert PairStore(eval_db).count("eval_predictions") == 0


def test_call_per_item_isolates_a_bad_item_and_keeps_the_others():
    from pairsmith.tasks.stage import call_per_item

    failed: list[int] = []

    def model(part: list[int]) -> list[int]:
        if 3 in part:
            raise ValueError("aspect ratio must be smaller than 200")
        return [x * 10 for x in part]

    assert call_per_item(model, [1, 3, 5], lambda item, err: failed.append(item)) == [10, None, 50]
    assert failed == [3]
