"""The recaption flow (docs/adding.md's worked example): kept pairs of an imported run captioned again by
a tiny random Qwen2-VL, loaded through the real loader; resume adds nothing; an empty answer is a reason."""

from __future__ import annotations

import json

import pytest

from pairsmith.flows.cli.main import main
from pairsmith.flows.recaption import caption_text, recaption
from pairsmith.flows.recaption_config import PIPELINE, RecaptionConfig
from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
from pairsmith.models.adapters.vlm_chat import VlmChat
from pairsmith.storage.store import PairStore
from pairsmith.tasks.sample_builders import DIFF_CAPTION_QUESTIONS, TWO_IMAGES
from tests.public_sets import make_pair_images

LINES = [
    {"before": "a/1.png", "after": "a/1_edit.png", "caption": "the cup is gone", "split": "test", "category": "remove"},
    {"before": "a/2.png", "after": "a/2_edit.png", "caption": "the car turned red", "split": "train"},
    {"before": "a/3.png", "after": "a/3_edit.png", "caption": "the tap is open", "split": "val"},
    {"before": "a/4.png", "after": "a/4_edit.png", "captions": []},  # no caption: dropped, not re-captioned
]
# Sampled with a seed, the random tiny model's answers hold words (greedy with 4 new tokens, they held none).
VLM = {"max_new_tokens": 8, "temperature": 1.0, "seed": 0}


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> str:
    return str(build_tiny_qwen2_vl(tmp_path_factory.mktemp("models") / "vlm"))


def test_caption_text_keeps_words_and_refuses_answers_without_any():
    assert caption_text("  the cup\n is gone ") == "the cup is gone"
    assert caption_text(" \n\t") is None and caption_text("...") is None and caption_text(None) is None


def test_kept_pairs_get_a_new_caption_sample_each_and_a_rerun_adds_nothing(tmp_path, tiny_vlm, monkeypatch,
                                                                          one_torch_thread):
    make_pair_images(tmp_path / "a", [(f"{i}.png", f"{i}_edit.png") for i in range(1, 5)])
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    db = str(tmp_path / "db.lance")
    assert main(["import", "folder", "--pairs", str(tmp_path / "pairs.jsonl"), "--db", db]) == 0
    store = PairStore(db)
    source = store.read("pairs", columns=["run_id"]).to_pylist()[0]["run_id"]
    earlier = {s["pair_id"]: s for s in store.read("samples").to_pylist()}

    calls: list[int] = []
    real = VlmChat.generate_batch

    def first_answer_blank(self, requests):  # the real model's answers, the very first one emptied
        answers = real(self, requests)
        if not calls:
            answers[0] = " \n "
        calls.append(len(requests))
        return answers

    monkeypatch.setattr(VlmChat, "generate_batch", first_answer_blank)
    config = RecaptionConfig(db=db, runs=[source], batch_size=2,
                             vlm=VLM | {"model_id": tiny_vlm})
    summary = recaption(config)
    assert calls == [2, 1]  # two batches, one generate call each (the dropped import pair is not selected)
    assert (summary.pairs, summary.samples, summary.batches, summary.pairs_failed) == (3, 2, 2, 0)

    made = store.read("samples", where=f"run_id = '{summary.run_id}'").to_pylist()
    assert len(made) == 2 and len({s["sample_id"] for s in made}) == 2
    for sample in made:  # the pair's split and category, its question, the model's words as the answer
        before = earlier[sample["pair_id"]]
        assert (sample["task"], sample["subset"], sample["split"], sample["category"]) == (
            "diff-caption", "recaption", before["split"], before["category"])
        assert sample["sample_id"] != before["sample_id"]
        question = sample["conversation"][0]["content"]
        assert question.startswith(TWO_IMAGES) and question.removeprefix(TWO_IMAGES) in DIFF_CAPTION_QUESTIONS
        assert sample["answer"] == sample["conversation"][1]["content"] and caption_text(sample["answer"])
    assert len(store.read("samples").to_pylist()) == len(earlier) + 2  # the import's samples untouched

    stats = store.read("stage_stats", where=f"run_id = '{summary.run_id}'").to_pylist()
    assert {s["stage"] for s in stats} == set(PIPELINE.names)
    reasons = [(s["stage"], r["reason"], r["count"]) for s in stats for r in s["drop_reasons"]]
    assert reasons == [("recaption-caption", "recaption_empty", 1)]

    again = recaption(config)  # resumed: no model call, no new row
    assert calls == [2, 1] and again.run_id == summary.run_id and again.batches_resumed == 2
    assert store.count("samples", f"run_id = '{summary.run_id}'") == 2
    assert store.count("stage_stats", f"run_id = '{summary.run_id}'") == len(stats)


def test_a_model_call_that_timed_out_is_an_error_reason_and_the_next_run_redoes_its_batch(tmp_path, tiny_vlm,
                                                                                       monkeypatch, one_torch_thread):
    make_pair_images(tmp_path / "a", [(f"{i}.png", f"{i}_edit.png") for i in range(1, 5)])
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(line) for line in LINES) + "\n")
    db = str(tmp_path / "db.lance")
    assert main(["import", "folder", "--pairs", str(tmp_path / "pairs.jsonl"), "--db", db]) == 0
    store = PairStore(db)
    source = store.read("pairs", columns=["run_id"]).to_pylist()[0]["run_id"]
    real = VlmChat.generate_batch

    def timing_out(self, requests):
        raise TimeoutError("the model server did not answer")

    monkeypatch.setattr(VlmChat, "generate_batch", timing_out)
    config = RecaptionConfig(db=db, runs=[source], batch_size=2, vlm=VLM | {"model_id": tiny_vlm})
    failed = recaption(config)
    assert (failed.samples, failed.pairs_failed) == (0, 3)
    stats = store.count("stage_stats", f"run_id = '{failed.run_id}'")

    monkeypatch.setattr(VlmChat, "generate_batch", real)
    healed = recaption(config)  # both batches held an error: redone, their stats replaced
    assert (healed.samples, healed.pairs_failed, healed.batches_resumed) == (3, 0, 0)
    assert store.count("stage_stats", f"run_id = '{failed.run_id}'") == stats


def test_a_config_without_kept_pairs_of_its_runs_is_refused_in_one_line(tmp_path):
    make_pair_images(tmp_path / "a", [("1.png", "1_edit.png")])
    (tmp_path / "pairs.jsonl").write_text(json.dumps(LINES[0]) + "\n")
    db = str(tmp_path / "db.lance")
    assert main(["import", "folder", "--pairs", str(tmp_path / "pairs.jsonl"), "--db", db]) == 0
    with pytest.raises(ValueError, match=r"^runs: no kept pairs of run nope in db"):
        RecaptionConfig(db=db, runs=["nope"]).check_inputs()
    with pytest.raises(ValueError, match="no such database"):
        RecaptionConfig(db=str(tmp_path / "none.lance"), runs=["x"]).check_inputs()


def test_the_example_config_validates_and_names_a_run():
    from pathlib import Path

    import yaml

    config = RecaptionConfig.model_validate(yaml.safe_load((Path(__file__).parents[2] / "configs" / "recaption.yaml").read_text()))
    assert config.run_id().startswith("recaption-") and config.runs
    assert RecaptionConfig.model_validate({**config.model_dump(), "batch_size": 3}).run_id() == config.run_id()


def test_its_stage_names_are_declared_by_no_other_flow():
    from tests.flows.engine.test_run_engine import _house_pipelines

    taken = {s.name for pipeline in _house_pipelines() if pipeline.method != PIPELINE.method for s in pipeline.stages}
    assert taken and not taken & set(PIPELINE.names)
