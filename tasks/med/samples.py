"""MED's training and benchmark samples: a difference question and a four-option MCQ per pair.

``med-diff-qa`` asks one of MED Fig. 15's nine phrasings of "what is the primary difference?" (picked
by the pair id) and answers with the rewritten difference description (Fig. 14). ``med-mcq`` (the
benchmark, §3.3) asks one of the same phrasings and offers the answer writer's right answer (Fig. 16)
and three wrong ones (Fig. 17) as options A-D. The right letter is first drawn from the pair id, then
``balance_letters`` re-deals the letters over a whole run so each letter is right equally often
(a model that always says "A" scores 25 %, not more).
"""

from __future__ import annotations

import random

from pairsmith.storage.ids import stable_hash, stable_id
from pairsmith.storage.schemas import Message, SampleRow, utc_now
from pairsmith.tasks.med.prompts import QUESTIONS
from pairsmith.tasks.sample_builders import TWO_IMAGES

LETTERS = ("A", "B", "C", "D")
QA_QUESTIONS = QUESTIONS  # MED Fig. 15's nine phrasings, for the SFT question and the benchmark's
MCQ_QUESTION = QUESTIONS[0]
MCQ_INSTRUCTION = "Answer with the option's letter from the given choices directly."
METHOD = "med-edit"


def diff_qa_sample(*, pair_id: str, run_id: str, difference: str, category: str, split: str) -> SampleRow:
    question = question_for(pair_id)
    return SampleRow(
        sample_id=stable_id(pair_id, "med-diff-qa"), pair_id=pair_id, run_id=run_id, method=METHOD,
        task="med-diff-qa",
        conversation=[Message(role="user", content=TWO_IMAGES + question), Message(role="assistant", content=difference)],
        answer=difference, category=category, split=split, created_at=utc_now(),
    )


def question_for(pair_id: str, purpose: str = "qa") -> str:
    """One of Fig. 15's nine phrasings, drawn from the pair id (the same pair, the same question)."""
    return QUESTIONS[int(stable_hash([purpose, pair_id], 8), 16) % len(QUESTIONS)]


def mcq_prompt(question: str, options: list[str]) -> str:
    return TWO_IMAGES + question + "\n" + "\n".join(options) + "\n" + MCQ_INSTRUCTION


def lettered(choices: list[str]) -> list[str]:
    return [f"{letter}. {text}" for letter, text in zip(LETTERS, choices)]


def mcq_sample(
    *, pair_id: str, run_id: str, correct: str, wrong: list[str], category: str, split: str,
    correct_letter: str | None = None, question: str = MCQ_QUESTION,
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
        conversation=[Message(role="user", content=mcq_prompt(question, options)),
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
        question = sample.conversation[0].content.removeprefix(TWO_IMAGES).split("\n", 1)[0]
        out.append(sample.model_copy(update={
            "answer": target, "options": options,
            "conversation": [Message(role="user", content=mcq_prompt(question, options)),
                             Message(role="assistant", content=target)],
        }))
    return out
