"""Training samples that any pipeline builds from a pair: grounding and difference captions.

Conversations use ``<image>`` placeholders, one per image, in order (before, then after); the
exporters turn them into each trainer's format. Splits are drawn from the pair id, so every sample
of a pair lands in the same split and a held-out pair never leaks into training.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.storage.ids import stable_hash, stable_id
from pairsmith.storage.schemas import Message, SampleRow, utc_now
from pairsmith.tasks.dig.prompts import PAIRSMITH_GROUNDING_PROMPT, GroundingPromptName, grounding_prompt

TWO_IMAGES = "<image>\n<image>\n"

GROUNDING_PROMPT = PAIRSMITH_GROUNDING_PROMPT  # the prompts by name: pairsmith.tasks.dig.prompts

DIFF_CAPTION_QUESTIONS = (
    "What changed between the first image and the second image?",
    "Describe every difference between these two images.",
    "The second image is an edited copy of the first. What was edited?",
    "List the differences you see between the two images.",
)


class SplitFractions(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    val: float = Field(0.05, ge=0.0, le=1.0)
    test: float = Field(0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _sum(self) -> "SplitFractions":
        if self.val + self.test >= 1.0:
            raise ValueError(f"val + test must leave room for train, got {self.val} + {self.test}")
        return self


def split_for(pair_id: str, fractions: SplitFractions) -> str:
    u = int(stable_hash(["split", pair_id], 12), 16) / 16**12
    if u < fractions.test:
        return "test"
    if u < fractions.test + fractions.val:
        return "val"
    return "train"


def boxes_answer(boxes: list[list[float]]) -> str:
    """The grounding answer text: integer pixel boxes, as DiG's reward parses them."""
    return json.dumps([[round(v) for v in box] for box in boxes])


def grounding_sample(
    *, pair_id: str, run_id: str, method: str, boxes: list[list[float]], width: int, height: int,
    subset: str, state_count: bool, split: str, category: str | None, prompt_name: GroundingPromptName = "pairsmith",
) -> SampleRow:
    """A grounding sample; ``prompt_name`` picks the prompt (``pairsmith.tasks.dig.prompts``) and
    ``state_count`` whether it states the number of boxes (DiG's curriculum stages 1-2)."""
    prompt = grounding_prompt(prompt_name, len(boxes) if state_count else None, width, height)
    answer = boxes_answer(boxes)
    return SampleRow(
        sample_id=stable_id(pair_id, "grounding", subset),
        pair_id=pair_id, run_id=run_id, method=method, task="grounding", subset=subset,
        conversation=[Message(role="user", content=TWO_IMAGES + prompt), Message(role="assistant", content=answer)],
        answer=answer, boxes=boxes, category=category, split=split, created_at=utc_now(),
    )


def diff_caption_sample(
    *, pair_id: str, run_id: str, method: str, sentences: list[str], boxes: list[list[float]],
    subset: str | None, split: str, category: str | None, reference: int | None = None, dataset: str | None = None,
) -> SampleRow:
    """The pair's difference caption: its sentences joined. ``reference`` numbers one of several
    reference captions of a pair (imported sets keep each as its own sample, with its own id)."""
    question = DIFF_CAPTION_QUESTIONS[int(stable_hash(["question", pair_id], 8), 16) % len(DIFF_CAPTION_QUESTIONS)]
    answer = " ".join(sentences)
    key = (pair_id, "diff-caption") if reference is None else (pair_id, "diff-caption", reference)
    return SampleRow(
        sample_id=stable_id(*key),
        pair_id=pair_id, run_id=run_id, method=method, task="diff-caption", subset=subset,
        conversation=[Message(role="user", content=TWO_IMAGES + question), Message(role="assistant", content=answer)],
        answer=answer, boxes=boxes, category=category, split=split, dataset=dataset, created_at=utc_now(),
    )
