"""Read an LLM judge's verdict on a difference caption: a 0–100 score and its justification.

The judge is asked for one JSON object ``{"justification": ..., "score": N}``
(``pairsmith.models.caption_judge``). Models answer in other shapes too: the object inside a code
fence or after some prose, keys in another case, the score as a string, or no JSON but a line such
as ``Score: 70`` or ``70/100``. ``parse_judge_answer`` accepts those and nothing vaguer: an answer
that names no score, names two different ones, or a score outside 0–100 is unparseable (None). It
is counted as such by the caller, never guessed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_SCORE_LINE = re.compile(r"\bscore\b\s*(?:is|of|=|:)?\s*\**\s*(\d+(?:\.\d+)?)\b", re.I)
_OUT_OF_100 = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*100\b", re.I)
_JUSTIFICATION_KEYS = ("justification", "reason", "reasoning", "explanation", "rationale")


@dataclass(frozen=True)
class JudgeScore:
    score: float  # 0–100: share of the reference's aspects the prediction states correctly
    justification: str | None


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*(?:/\s*100)?\s*", value):
        return float(value.split("/")[0])
    return None


def _from_json(text: str) -> JudgeScore | None | bool:
    """The verdict of the JSON objects in ``text``; False when none has a score key."""
    verdicts = []
    for match in _OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if not isinstance(data, dict):
            continue
        keys = {k.lower(): v for k, v in data.items()}
        if "score" not in keys:
            continue
        why = next((keys[k] for k in _JUSTIFICATION_KEYS if isinstance(keys.get(k), str)), None)
        verdicts.append((_number(keys["score"]), why))
    if not verdicts:
        return False
    scores = {s for s, _ in verdicts}
    if len(scores) != 1 or None in scores:
        return None
    score, why = verdicts[0]
    return JudgeScore(score, (why.strip() or None) if why else None) if 0 <= score <= 100 else None


def parse_judge_answer(text: str | None) -> JudgeScore | None:
    """The score (0–100) and justification in a judge's answer, or None if it does not state one score."""
    if not text or not text.strip():
        return None
    found = _from_json(text)
    if found is not False:
        return found
    values = {float(m.group(1)) for m in _SCORE_LINE.finditer(text)} | {
        float(m.group(1)) for m in _OUT_OF_100.finditer(text)}
    if len(values) != 1:
        return None
    score = values.pop()
    if not 0 <= score <= 100:
        return None
    return JudgeScore(score, text.strip())
