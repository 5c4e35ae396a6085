"""What a caption rewrite is, and how an LLM's free-text answer becomes one (or a reason it can't).

An instruction LLM asked to "replace one object" answers in many shapes: the three labelled lines
it was asked for, JSON, markdown bold labels, quotes, a chatty preamble, or only the new caption.
``parse_rewrite_answer`` accepts all of these, recovers the two nouns from a word diff when the
answer omits them, and checks the result against the source caption. A bad answer is a
``CaptionRewrite`` with a ``reason`` (snake_case, starting with ``rewrite_``), never an exception,
so one confused answer drops one caption, not a batch.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass

REWRITE_PROMPT = (
    'Here is an image caption: "{caption}"\n'
    "Replace exactly one object noun in the caption with a different object of the same kind "
    "(an animal with another animal, a vehicle with another vehicle, a fruit with another fruit, ...), "
    "so that the new caption describes the same picture with only that object changed. "
    "Keep every other word.\n"
    "Answer with exactly three lines:\n"
    "Replaced object: <the noun from the caption>\n"
    "New object: <the new noun>\n"
    "New caption: <the whole new caption>"
)

_CAPTION_KEYS = ("newcaption", "editedcaption", "modifiedcaption", "caption", "output")
_REPLACED_KEYS = ("replacedobject", "replacednoun", "replaced", "originalobject", "original", "oldobject", "old", "from")
_NEW_KEYS = ("newobject", "newnoun", "replacement", "new", "to")
_LINE = re.compile(r"^[\s>*#\d.)-]*\**\s*([A-Za-z][A-Za-z _-]{1,30}?)\s*\**\s*[:=]\s*\**\s*(.+?)\s*$")
_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


@dataclass(frozen=True)
class CaptionRewrite:
    """One source caption and its rewrite; ``reason`` is None when ``caption`` is usable.
    ``replaced`` is the noun as it appears in ``source``, ``new`` the noun that took its place."""

    source: str
    caption: str | None = None
    replaced: str | None = None
    new: str | None = None
    category: str | None = None
    reason: str | None = None
    answer: str | None = None  # the model's raw answer (LLM mode), for inspection

    @property
    def ok(self) -> bool:
        return self.reason is None


def parse_rewrite_answer(source: str, answer: str, max_changed_words: int = 3) -> CaptionRewrite:
    fields = _json_fields(answer) or _line_fields(answer)
    caption = _clean_caption(fields.get("caption", ""))
    replaced, new = _clean_noun(fields.get("replaced", "")), _clean_noun(fields.get("new", ""))
    failed = CaptionRewrite(source, caption or None, replaced or None, new or None, answer=answer)
    if not caption:
        return _with(failed, "rewrite_unparseable")
    if _words(caption) == _words(source):
        return _with(failed, "rewrite_unchanged")
    removed, inserted, changed = _word_diff(source, caption)
    if not (replaced and new):  # answer gave only the caption: the nouns are what the diff swapped
        if not (removed and inserted):
            return _with(failed, "rewrite_unparseable")
        replaced, new = replaced or _clean_noun(removed), new or _clean_noun(inserted)
        failed = CaptionRewrite(source, caption, replaced, new, answer=answer)
    if _words(replaced) == _words(new):
        return _with(failed, "rewrite_same_noun")
    if not contains_noun(source, replaced):
        return _with(failed, "rewrite_noun_not_in_caption")
    if not contains_noun(caption, new):
        return _with(failed, "rewrite_new_noun_not_in_caption")
    if changed > max_changed_words:
        return _with(failed, "rewrite_too_many_changes")
    return failed


def contains_noun(text: str, noun: str) -> bool:
    """``noun`` occurs in ``text`` as whole words, case-insensitively, singular or plural."""
    words = _words(noun)
    if not words:
        return False
    stem = r"\s+".join(re.escape(w) for w in words)
    return re.search(rf"(?<![a-z0-9]){stem}(?:s|es)?(?![a-z0-9])", text.lower()) is not None


def _with(rewrite: CaptionRewrite, reason: str) -> CaptionRewrite:
    return CaptionRewrite(rewrite.source, rewrite.caption, rewrite.replaced, rewrite.new, rewrite.category,
                          reason, rewrite.answer)


def _json_fields(answer: str) -> dict[str, str]:
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end <= start:
        return {}
    try:
        data = json.loads(answer[start:end + 1])
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return _pick({re.sub(r"[\s_-]", "", str(k).lower()): str(v) for k, v in data.items() if isinstance(v, (str, int))})


def _line_fields(answer: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in answer.splitlines():
        match = _LINE.match(line)
        if match:
            found.setdefault(re.sub(r"[\s_-]", "", match.group(1).lower()), match.group(2))
    return _pick(found)


def _pick(found: dict[str, str]) -> dict[str, str]:
    fields = {}
    for field, keys in (("caption", _CAPTION_KEYS), ("replaced", _REPLACED_KEYS), ("new", _NEW_KEYS)):
        for key in keys:
            if found.get(key, "").strip():
                fields[field] = found[key]
                break
    return fields


def _clean_caption(text: str) -> str:
    text = text.strip().strip("*`").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text.strip("\u201c\u201d").strip()


def _clean_noun(text: str) -> str:
    text = _clean_caption(text).strip(".,;!").strip()
    return re.sub(r"^(?:a|an|the)\s+", "", text, flags=re.IGNORECASE)


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _word_diff(before: str, after: str) -> tuple[str, str, int]:
    """(first removed span, first inserted span, number of words changed) between two captions."""
    a, b = ([("a" if w == "an" else w) for w in _words(text)] for text in (before, after))  # "a"/"an" is agreement
    removed = inserted = ""
    changed = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changed += max(i2 - i1, j2 - j1)
        if not removed and not inserted:
            removed, inserted = " ".join(a[i1:i2]), " ".join(b[j1:j2])
    return removed, inserted, changed
