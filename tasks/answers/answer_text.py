"""The answer part of a model's reply: what every parser reads (grounding boxes, MCQ letters, captions).

DiG evaluates thinking models "Think–Then–Answer": "only the text after ``</think>`` is extracted
and used as the final answer" (DiG supplementary §6). So a reply with ``</think>`` is read after
its last one; a reply that opens ``<think>`` and never closes it (cut at the token limit) has no
answer at all, a counted parse failure, never a guess from its reasoning; a reply without think
tags (a non-thinking model) is all answer.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def final_answer(text: str | None) -> str | None:
    """The text after the last ``</think>``; None for an unfinished ``<think>``; else ``text``."""
    if not isinstance(text, str):
        return None
    if THINK_CLOSE in text:
        return text.rsplit(THINK_CLOSE, 1)[1]
    if THINK_OPEN in text:
        return None
    return text
