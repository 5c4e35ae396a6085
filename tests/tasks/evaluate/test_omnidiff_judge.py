"""OmniDiff's LLM-judge prompt: verbatim against supp. Fig. 6 ("Prompt for LLM-based Evaluation",
read from ../shared/papers at test time; skipped with a message where the text is absent), and sent
as is to a Gemini judge (the local fake Gemini server) by the task the evaluate flow runs."""

from __future__ import annotations

import json
import re
from pathlib import Path


from pairsmith.flows import papers
from pairsmith.flows.evaluate_config import EvaluateConfig
from pairsmith.models.adapters.caption_judge import JUDGE_PROMPT, CaptionJudge, CaptionJudgeConfig, judge_prompt
from pairsmith.storage.schemas import EvalPredictionRow
from pairsmith.storage.schemas import utc_now
from tests.conftest import paper_text

ROOT = Path(__file__).resolve().parents[3]
MARKER = "Prompt for LLM-based Evaluation"


def _norm(text: str) -> str:
    return " ".join(text.split())


def _printed_prompt() -> str:
    """Fig. 6 as the supplement prints it, from "You are an impartial judge" to the response slot;
    the text extraction set each numbered guideline as a "- " list item, which is not the figure's."""
    text = paper_text(MARKER)
    start = text.index("You are an impartial judge")
    end = text.index("{assistant_response}", start) + len("{assistant_response}")
    assert "Figure 6. The prompt for LLM-based evaluation." in text[end:end + 200]
    return re.sub(r"(?m)^- (?=\(\d\))", "", text[start:end])


def test_the_judge_prompt_is_omnidiff_fig_6_verbatim():
    assert _norm(JUDGE_PROMPT) == _norm(_printed_prompt())
    for part in ("(through exact or partial matches)", "each aspect contributes equally to the score",
                 "Provide your score (0-100) and a short justification."):
        assert part in JUDGE_PROMPT


def test_a_filled_prompt_keeps_the_figures_text_around_the_two_captions():
    filled = judge_prompt("  A red cube appeared. ", "A cube appeared.")
    assert filled.endswith("Standard answer: A red cube appeared.\nAssistant's response: A cube appeared.")
    assert filled == JUDGE_PROMPT.format(standard_answer="A red cube appeared.", assistant_response="A cube appeared.")
    assert judge_prompt("A red cube appeared.", "  ").endswith("Assistant's response: (empty)")


def _row(sample_id: str, reference: str) -> dict:
    return {"sample_id": sample_id, "pair_id": f"p-{sample_id}", "task": "diff-caption", "answer": reference,
            "references": [reference]}


def _prediction(sample_id: str, text: str) -> EvalPredictionRow:
    return EvalPredictionRow(prediction_id=f"e-{sample_id}", eval_id="e", sample_id=sample_id, pair_id=f"p-{sample_id}",
                             task="diff-caption", split="test", prediction=text, parsed=json.dumps(text),
                             created_at=utc_now())


def test_the_prompt_that_reaches_a_gemini_judge_is_fig_6s_and_its_answer_is_read(monkeypatch):
    from pairsmith.tasks.evaluate.judge_captions import judge_captions
    from tests.fake_gemini import FakeGemini

    printed = _printed_prompt()  # skips where the paper text is absent

    def reply(prompt: str) -> str:  # GPT-4o's usual layout for this prompt, and one reply without a score
        if "mumble" in prompt:
            return "It is hard to tell what the caption means."
        return "**Score:** 50\n\n**Justification:** The response names the cube but not its colour."

    rows = [_row("c1", "A red cube appeared on the left."), _row("c2", "The sphere is gone.")]
    predictions = [_prediction("c1", "A cube appeared."), _prediction("c2", "mumble")]
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    preset = papers.load_preset(papers.load_parameters().papers["omnidiff"].presets["evaluate"])
    assert isinstance(preset, EvaluateConfig) and preset.judge.backend == "gemini"
    with FakeGemini(text_reply=reply) as server:
        config = preset.judge.model_copy(update={"gemini": preset.judge.gemini.model_copy(update={
            "base_url": server.base_url, "retry_attempts": 1})})
        result = judge_captions.fn(CaptionJudge(config), predictions, rows)
        sent = {r.instruction for r in server.log}
    filled = printed.replace("{standard_answer}", "A red cube appeared on the left.").replace(
        "{assistant_response}", "A cube appeared.")
    assert _norm(filled) in {_norm(s) for s in sent}  # Fig. 6, its slots filled, nothing added
    assert sent == {judge_prompt("A red cube appeared on the left.", "A cube appeared."),
                    judge_prompt("The sphere is gone.", "mumble")}
    judged = {p.sample_id: p for p in result.value}
    assert (judged["c1"].judge_score, judged["c1"].judge_justification) == (
        50.0, "The response names the cube but not its colour.")
    assert judged["c2"].judge_score is None and judged["c2"].judge_answer.startswith("It is hard")
    stats = result.stats[0]
    assert (stats.n_in, stats.n_kept, dict(stats.reasons)) == (2, 1, {"judge_unparseable": 1})


def test_a_new_judge_prompt_is_a_new_evaluation(monkeypatch):
    """The prompt's text is part of a judged evaluation's id (its scores depend on it), not of an unjudged one."""
    from pairsmith.flows import evaluate_config
    from pairsmith.tasks.training.training_data import PinnedTables

    pinned = PinnedTables(db="memory://x", samples_version=3, pairs_version=2)
    judged = EvaluateConfig(judge=CaptionJudgeConfig(backend="gemini"))
    plain = EvaluateConfig()
    before = judged.eval_id(pinned), plain.eval_id(pinned)
    monkeypatch.setattr(evaluate_config, "JUDGE_PROMPT", JUDGE_PROMPT + " Be brief.")
    assert judged.eval_id(pinned) != before[0] and plain.eval_id(pinned) == before[1]
