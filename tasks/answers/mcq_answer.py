"""Read which option a model chose in a multiple-choice answer, without ever guessing.

Benchmarks count an answer as right only if it names exactly one option. An answer that names
none, or several, or that cannot be read, is *unparseable*: scored wrong and reported as such,
so a model that rambles is never rescued by a random pick.
"""

from __future__ import annotations

import re

from pairsmith.tasks.answers.answer_text import final_answer

LETTERS = ("A", "B", "C", "D")

# A letter, or a list of letters ("A or B", "A/B", "A, B"): a list is no choice at all.
_LETTER_LIST = r"\(?\**([A-Z](?:\**\)?\s*(?:,|/|or|and)\s*\(?\**[A-Z])*)\**\)?(?![A-Za-z])"
# Patterns that state a choice, strongest first; each captures a letter list.
_EXPLICIT = (
    re.compile(r"<answer>\s*" + _LETTER_LIST + r"[.):]?\s*</answer>", re.I),
    re.compile(r"\b(?:final\s+|correct\s+)?answer\s*(?:is|:)?\s*(?:option\s*)?" + _LETTER_LIST, re.I),
    re.compile(r"\b(?:option|choice)\s*(?:is\s*)?" + _LETTER_LIST, re.I),
)
_LEADING = re.compile(r"^\s*[\(\[\*]*([A-Z])[\)\]\*]*(?:[.:)\s]|$)")
# An answer that opens with two capital letters joined by a list word: "A or B", "A/B", "(A), (C)".
_LEADING_LIST = re.compile(r"^\s*\(?\**[A-Z]\**\)?\s*(?:,|/|or|and)\s*\(?\**[A-Z]\**\)?(?![A-Za-z])")


def option_text(option: str) -> str:
    """'B. a red car' -> 'a red car' (MED options carry their letter)."""
    return re.sub(r"^\s*[A-Z][.)]\s*", "", option).strip()


def parse_choice(answer: str, options: list[str] | None = None, letters: tuple[str, ...] = LETTERS) -> str | None:
    """The chosen letter, or None when the answer does not name exactly one option. Reads the answer
    after ``</think>`` (``pairsmith.tasks.answers.answer_text``); an unfinished ``<think>`` chooses nothing."""
    answer = final_answer(answer)
    if not answer or not answer.strip():
        return None
    text = answer.strip()
    for pattern in _EXPLICIT:
        # Words of the list are single letters; "or", "and" are not.
        named = {word.upper() for match in pattern.findall(text) for word in re.findall(r"[A-Za-z]+", match)
                 if len(word) == 1}
        if len(named) == 1:
            choice = named.pop()
            return choice if choice in letters else None
        if len(named) > 1:
            return None
    if _LEADING_LIST.match(text):
        return None  # "A or B", "A/B": several options named, none chosen
    lead = _LEADING.match(text)
    if lead and lead.group(1) in letters:
        return lead.group(1)
    if options:
        return _by_option_text(text, options, letters)
    return None


def _by_option_text(text: str, options: list[str], letters: tuple[str, ...]) -> str | None:
    """An answer that repeats exactly one option's text chooses that option."""
    norm = _normalise(text)
    hits = [letters[i] for i, opt in enumerate(options[: len(letters)])
            if (body := _normalise(option_text(opt))) and body in norm]
    if len(hits) == 1:
        return hits[0]
    return None


def _normalise(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", " ", text.lower()).strip()
