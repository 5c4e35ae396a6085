"""Read an LLM judge's verdict on a difference caption: a 0–100 score and its justification.

The judge is asked with OmniDiff's prompt (supp. Fig. 6, ``pairsmith.models.adapters.caption_judge``):
"Provide your score (0-100) and a short justification", in no fixed layout. GPT-4o-class judges
answer ``Score: 70`` / ``**Score:** 70/100`` / ``Score (0-100): 70`` lines followed by
``Justification: ...``, or a JSON object ``{"score": N, "justification": ...}`` (in a code fence
or after prose, keys in any case, the score as a string). ``parse_judge_answer`` accepts those and
nothing vaguer. Unparseable (None, counted by the caller as ``judge_unparseable``, never guessed):
no score, two different scores, a score outside 0–100, or no justification (the figure asks for
both: a JSON object without a justification key, or a reply whose text besides its score
statement has fewer than ``MIN_JUSTIFICATION_WORDS`` words).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_SCORE_LINE = re.compile(
    r"\bscore\b\**\s*(?:\(\s*0\s*[-–]\s*100\s*\)\s*)?\**\s*(?:is|of|=|:)?\s*\**\s*(\d+(?:\.\d+)?)\b", re.I)
_LABEL = re.compile(r"\bjustification\b\s*\**\s*[:：-]\s*\**\s*(?P<text>\S.*)", re.I | re.S)
_WORD = re.compile(r"[^\W\d_]{2,}")
MIN_JUSTIFICATION_WORDS = 4
_OUT_OF_100 = re.compile(r"\b(\d+(?:\.\d+)?)\s*(?:/|out of)\s*100\b", re.I)
_JUSTIFICATION_KEYS = ("justification", "reason", "reasoning", "explanation", "rationale")


@dataclass(frozen=True)
class JudgeScore:
    score: float  # 0–100: share of the reference's aspects the prediction states correctly
    justification: str  # the judge's reasons: the text after "Justification:", else its whole reply


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
        why = next((keys[k].strip() for k in _JUSTIFICATION_KEYS if isinstance(keys.get(k), str)), "")
        verdicts.append((_number(keys["score"]), why))
    if not verdicts:
        return False
    scores = {s for s, _ in verdicts}
    if len(scores) != 1 or None in scores:
        return None
    score, why = verdicts[0]
    return JudgeScore(score, why) if 0 <= score <= 100 and why else None


def parse_judge_answer(text: str | None) -> JudgeScore | None:
    """The score (0–100) and justification in a judge's answer, or None if it does not state one
    score and a justification (OmniDiff supp. Fig. 6 asks for both)."""
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
    label = _LABEL.search(text)
    if label:
        why = _SCORE_LINE.sub(" ", label.group("text")).strip().strip("*").strip()  # a score line after it
    else:  # no label: the reply itself is the justification, if it says more than its score
        rest = _OUT_OF_100.sub(" ", _SCORE_LINE.sub(" ", text))
        why = text.strip() if len(_WORD.findall(rest)) >= MIN_JUSTIFICATION_WORDS else ""
    return JudgeScore(score, why) if why else None
