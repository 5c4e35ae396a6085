"""What the MED pipeline asks its VLM, and how the answers are read (design.md §4.4).

Closed questions (editable or not, which category, does the difference match the request) are
answered by option scoring (``VlmChat.score_options_batch``), so they always yield a valid
choice. Open answers (the edit action, captions, the difference sentence, wrong MCQ options) are
parsed here; an answer that cannot be used returns None and becomes a reason row upstream.
"""

from __future__ import annotations

import re

CATEGORIES: tuple[str, ...] = (
    "Object", "Attribute", "Scene", "Spatial Relation", "Action Relation", "Part Relation",
    "Counting", "Differentiation", "Comparison", "Negation", "Universality",
)
CATEGORY_HINTS: dict[str, str] = {
    "Object": "add, remove or replace one object",
    "Attribute": "change a colour, material, texture, shape or size",
    "Scene": "change the weather, time of day, season or setting",
    "Spatial Relation": "move an object to another position relative to others",
    "Action Relation": "change what a person or animal is doing",
    "Part Relation": "change one part of an object",
    "Counting": "change how many of some object there are",
    "Differentiation": "make one of several similar objects differ from the others",
    "Comparison": "make one object bigger, smaller, taller or shorter than another",
    "Negation": "remove something so that it is no longer present",
    "Universality": "make all objects of a kind share, or stop sharing, a property",
}
YES_NO = ["yes", "no"]

GATE_PROMPT = (
    'Caption: "{caption}". Is this a clear, good-quality photo in which one small, local change '
    "(an object, an attribute, a count or a relation) could be made with an image editor? "
    "Answer yes or no."
)
CATEGORY_PROMPT = (
    "This is a photo of {caption}. We want one small, realistic edit. Which kind of edit fits this "
    "photo best? Choose one of: {choices}. Prefer a kind other than Object when one fits."
)
ACTION_PROMPT = (
    "This is a photo of {caption}. Write one short edit instruction of the kind {category} "
    "({hint}) that changes one small detail. Reply with the instruction only, starting with a verb, "
    "for example: change the colour of the car to blue"
)
EDIT_REQUEST = "This is a photo of {caption}. Can you {action} and output the image?"
COMPLETE_CAPTION_PROMPT = (
    'A short caption of this photo is: "{caption}". Write one complete, detailed caption of everything '
    "visible in the photo."
)
EDITED_CAPTION_PROMPT = "Write one complete, detailed caption of everything visible in this photo."
DIFFERENCE_PROMPT = (
    "The second image is an edited version of the first. In one sentence, what is the primary "
    'difference? Start your sentence with "In the second image".'
)
DIFFERENCE_CATEGORY_PROMPT = (
    'The difference between the two images is: "{difference}". Which kind of difference is it? '
    "Choose one of: {choices}."
)
MATCH_PROMPT = (
    'An editor was asked to: "{action}". The observed difference is: "{difference}". '
    "Does the observed difference match the request? Answer yes or no."
)
DISTRACTOR_PROMPT = (
    'The correct description of the difference between two images is: "{difference}". Write three '
    "subtly wrong alternatives, each changing one detail (another object, colour, number or position). "
    "One per line, no numbering."
)

MIN_WORDS, MAX_ACTION_WORDS = 2, 40


def plain_caption(caption: str) -> str:
    """A caption to embed in a sentence: one line, no trailing full stop."""
    return " ".join(caption.split()).rstrip(". ")


def parse_action(answer: str) -> str | None:
    """The edit action from an answer: first line, no quotes or labels, a few words, no full stop."""
    for line in answer.strip().splitlines():
        line = re.sub(r"^\s*(?:instruction|edit|answer)\s*:\s*", "", line, flags=re.I)
        line = line.strip().strip("\"'`*").rstrip(".!").strip()
        if not line:
            continue
        words = line.split()
        if not MIN_WORDS <= len(words) <= MAX_ACTION_WORDS:
            return None
        line = re.sub(r"^(?:can you|please)\s+", "", line, flags=re.I)
        return line[0].lower() + line[1:]
    return None


def parse_sentence(answer: str, min_words: int = 3) -> str | None:
    """The first sentence of an answer, if it has a few words."""
    text = " ".join(answer.split()).strip("\"'` ")
    if not text:
        return None
    sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].strip()
    if len(sentence.split()) < min_words:
        return None
    return sentence if sentence[-1] in ".!?" else sentence + "."


def parse_difference(answer: str) -> str | None:
    """A difference sentence that starts 'In the second image', as MED's answers do."""
    sentence = parse_sentence(answer)
    if sentence is None:
        return None
    if re.match(r"^in the second image\b", sentence, re.I):
        return "In the second image" + sentence[len("in the second image"):]
    return f"In the second image, {sentence[0].lower()}{sentence[1:]}"


def parse_distractors(answer: str, correct: str, n: int = 3) -> list[str] | None:
    """``n`` distinct wrong options, each a real sentence and none equal to the right one."""
    seen = {_key(correct)}
    out = []
    for line in answer.splitlines():
        line = re.sub(r"^\s*(?:[-*•]|\d+[.)]|[A-Da-d][.)])\s*", "", line).strip()
        sentence = parse_sentence(line)
        if sentence is None or _key(sentence) in seen:
            continue
        seen.add(_key(sentence))
        out.append(sentence)
        if len(out) == n:
            return out
    return None


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()
