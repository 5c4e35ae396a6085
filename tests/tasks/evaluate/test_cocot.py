"""CoCoT prompting in evaluate (Img-Diff supplementary §12): the instruction is asked first, verbatim, with the
sample's images; the question follows with the model's own answer as context; the answer is stored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pairsmith.flows.evaluate_config import EvaluateConfig
from pairsmith.models.adapters.vlm_chat import VlmRequest
from pairsmith.tasks.evaluate.cocot import COCOT_CONTEXT
from pairsmith.tasks.evaluate.generate_answers import generate_answers
from pairsmith.tasks.imgdiff.prompts import COCOT_PROMPT
from tests.conftest import paper_text

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def grounding_db(tmp_path_factory):
    from pairsmith.storage.store import PairStore
    from tests.synthetic_db import SyntheticRun, build

    store = PairStore(str(tmp_path_factory.mktemp("cocot") / "db"))
    build(store, SyntheticRun(run_id="cocot", unique_bytes=200), 3, batch_pairs=3)
    return store


def _rows(store):
    from pairsmith.tasks.training.training_data import DataSelection, pin_tables, select_samples

    selection = DataSelection(tasks=["grounding"], splits=["train", "val", "test"])
    pinned = pin_tables(store, selection)
    return selection, pinned, select_samples(store, pinned, selection).rows


class RecordingChat:
    """The adapter boundary: every request as sent; thinks before its CoCoT answer, answers questions with a box."""

    def __init__(self):
        self.calls: list[list[VlmRequest]] = []

    def generate_batch(self, requests):
        self.calls.append(list(requests))
        return [f"<think>look</think> In image {k}, the cube moved." if r.prompt == COCOT_PROMPT else "[[1, 2, 30, 40]]"
                for k, r in enumerate(requests)]


def test_cocot_asks_the_instruction_first_then_the_question_with_its_answer(grounding_db):
    selection, pinned, rows = _rows(grounding_db)
    direct, cocot = RecordingChat(), RecordingChat()
    plain = generate_answers.fn(direct, grounding_db.uri, pinned, rows, "multi", "eval-d", selection.boxes()).value
    answered = generate_answers.fn(cocot, grounding_db.uri, pinned, rows, "multi", "eval-c", selection.boxes(),
                                   "cocot")
    (asked_direct,) = direct.calls
    first, second = cocot.calls
    assert [r.prompt for r in first] == [COCOT_PROMPT] * len(rows)  # verbatim, nothing added
    for k, (f, s, d) in enumerate(zip(first, second, asked_direct)):
        assert f.images == s.images == d.images  # the same pictures in both turns
        differences = f"In image {k}, the cube moved."  # after </think>
        assert s.prompt == COCOT_CONTEXT.format(instruction=COCOT_PROMPT, differences=differences, question=d.prompt)
        assert s.prompt.endswith(d.prompt)
    predictions, (stats,) = answered.value, answered.stats
    assert stats.n_kept == len(rows)
    assert [p.context for p in predictions] == [f"In image {k}, the cube moved." for k in range(len(rows))]
    assert [json.loads(p.parsed) for p in predictions] == [json.loads(p.parsed) for p in plain]
    assert all(p.context is None for p in plain)


def test_prompting_is_validated_counts_in_the_evaluation_and_the_preset_asks_cocot():
    with pytest.raises(ValidationError, match="prompting"):
        EvaluateConfig(prompting="cot")
    from pairsmith.storage.ids import content_key

    assert content_key(EvaluateConfig()) != content_key(EvaluateConfig(prompting="cocot"))
    assert content_key(EvaluateConfig()) == content_key(EvaluateConfig(prompting="direct"))
    preset = EvaluateConfig.model_validate(yaml.safe_load(
        (ROOT / "configs/papers/imgdiff/evaluate_cocot.yaml").read_text()))
    assert preset.prompting == "cocot" and preset.model_id == "llava-hf/llava-1.5-7b-hf"


def test_the_instruction_is_the_papers():
    text = " ".join(paper_text("Contrastive Chain-of-Thought").split())
    assert f'"{COCOT_PROMPT},"' in text
