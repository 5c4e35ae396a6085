"""MED's training and benchmark samples: a difference question and a four-option MCQ per pair.

``med-diff-qa`` asks one of 9 phrasings of "what is the primary difference?" and answers with the
difference sentence ("In the second image, ..."). ``med-mcq`` offers that sentence and three subtly
wrong ones as options A-D. The right letter is first drawn from the pair id, then
``balance_letters`` re-deals the letters over a whole run so each letter is right equally often
(a model that always says "A" scores 25 %, not more).
"""

from __future__ import annotations

import random

from pairsmith.storage.ids import stable_hash, stable_id
from pairsmith.storage.schemas import Message, SampleRow, utc_now
from pairsmith.tasks.sample_builders import TWO_IMAGES

LETTERS = ("A", "B", "C", "D")
QA_QUESTIONS = (
    "What is the primary difference between the two images?",
    "What is the main change from the first image to the second image?",
    "How does the second image differ from the first one?",
    "What was edited in the second image?",
    "Describe the key difference between these two images.",
    "What has changed between the first and the second image?",
    "Which detail differs between the two images?",
    "Compare the two images. What is different in the second one?",
    "What is the most noticeable difference between the two pictures?",
)
MCQ_QUESTION = "What is the primary difference between the two images?"
MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly."
METHOD = "med-edit"


def diff_qa_sample(*, pair_id: str, run_id: str, difference: str, category: str, split: str) -> SampleRow:
    question = QA_QUESTIONS[int(stable_hash(["qa", pair_id], 8), 16) % len(QA_QUESTIONS)]
    return SampleRow(
        sample_id=stable_id(pair_id, "med-diff-qa"), pair_id=pair_id, run_id=run_id, method=METHOD,
        task="med-diff-qa",
        conversation=[Message(role="user", content=TWO_IMAGES + question), Message(role="assistant", content=difference)],
        answer=difference, category=category, split=split, created_at=utc_now(),
    )


def mcq_prompt(question: str, options: list[str]) -> str:
    return TWO_IMAGES + question + "\n" + "\n".join(options) + "\n" + MCQ_INSTRUCTION


def lettered(choices: list[str]) -> list[str]:
    return [f"{letter}. {text}" for letter, text in zip(LETTERS, choices)]


def mcq_sample(
    *, pair_id: str, run_id: str, correct: str, wrong: list[str], category: str, split: str,
    correct_letter: str | None = None,
) -> SampleRow:
    """Options in a shuffled order with the right one at ``correct_letter`` (default: from the id)."""
    if len(wrong) != len(LETTERS) - 1:
        raise ValueError(f"pair {pair_id}: an MCQ needs {len(LETTERS) - 1} wrong options, got {len(wrong)}")
    letter = correct_letter or LETTERS[int(stable_hash(["mcq", pair_id], 8), 16) % len(LETTERS)]
    others = list(wrong)
    random.Random(stable_hash(["mcq-order", pair_id])).shuffle(others)
    choices = others[:]
    choices.insert(LETTERS.index(letter), correct)
    options = lettered(choices)
    return SampleRow(
        sample_id=stable_id(pair_id, "med-mcq"), pair_id=pair_id, run_id=run_id, method=METHOD, task="med-mcq",
        conversation=[Message(role="user", content=mcq_prompt(MCQ_QUESTION, options)),
                      Message(role="assistant", content=letter)],
        answer=letter, options=options, category=category, split=split, created_at=utc_now(),
    )


def balance_letters(samples: list[SampleRow]) -> list[SampleRow]:
    """Re-deal the right letters over a set: in sample-id order, A, B, C, D, A, ... (counts differ by <= 1)."""
    out = []
    for i, sample in enumerate(sorted(samples, key=lambda s: s.sample_id)):
        target = LETTERS[i % len(LETTERS)]
        if sample.answer == target:
            out.append(sample)
            continue
        texts = [o.split(". ", 1)[1] for o in sample.options]
        correct = texts.pop(LETTERS.index(sample.answer))
        texts.insert(LETTERS.index(target), correct)
        options = lettered(texts)
        out.append(sample.model_copy(update={
            "answer": target, "options": options,
            "conversation": [Message(role="user", content=mcq_prompt(MCQ_QUESTION, options)),
                             Message(role="assistant", content=target)],
        }))
    return out
