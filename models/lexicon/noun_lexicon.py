"""Lexicon caption rewriting: swap one known noun for another noun of the same category.

Img-Diff's second way to make caption pairs needs no LLM: find a noun of a known category in the
caption (machine, living_thing, fruit, vehicle, ...) and replace it with another noun of that
category ("a dog on a sofa" -> "a horse on a sofa"). The nouns come from a JSON lexicon
(``wordnet_lexicon.json`` ships with the package; ``build_wordnet_lexicon.py`` derives a full one
from WordNet). Multi-word nouns win over their parts ("hot dog" is food, not an animal), plurals
stay plural, capitals stay capitals and "a"/"an" follow the new noun. Choices are seeded per
caption, so a re-run makes the same pairs.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from pairsmith.models.adapters.caption_answer import CaptionRewrite

DEFAULT_LEXICON = Path(__file__).with_name("wordnet_lexicon.json")
# Lexicons shipped with the package, by the name a config may give instead of a path: "default" (about
# 400 hand-picked common visual nouns) and "paper" (5,528 WordNet nouns at the scale of Img-Diff supp.
# §11, built by ``build_wordnet_lexicon.py --paper``).
SHIPPED_LEXICONS = {"default": DEFAULT_LEXICON, "paper": Path(__file__).with_name("wordnet_lexicon_paper.json")}
CATEGORIES = (
    "machine", "living_thing", "natural_object", "fruit", "vehicle", "container", "clothing", "fixture",
    "appliance", "furniture", "food",
)
_IRREGULAR_PLURALS = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice", "goose": "geese",
    "foot": "feet", "tooth": "teeth", "sheep": "sheep", "deer": "deer", "fish": "fish", "knife": "knives",
    "leaf": "leaves", "wolf": "wolves", "shelf": "shelves", "loaf": "loaves", "ox": "oxen",
}
_IRREGULAR_SINGULARS = {plural: single for single, plural in _IRREGULAR_PLURALS.items() if plural != single}
_WORD = re.compile(r"[A-Za-z]+(?:['-][A-Za-z]+)*")


@dataclass(frozen=True)
class NounMatch:
    start: int
    end: int
    text: str
    noun: str  # the lexicon's (singular) form
    category: str
    plural: bool


class NounLexicon:
    def __init__(self, categories: dict[str, list[str]]):
        self.categories = {c: tuple(sorted({n.lower() for n in nouns})) for c, nouns in categories.items()}
        self.index: dict[str, str] = {}
        for category in CATEGORIES:  # a noun listed twice belongs to the first category in CATEGORIES
            for noun in self.categories.get(category, ()):
                self.index.setdefault(noun, category)
        self.max_words = max((len(n.split()) for n in self.index), default=1)

    @classmethod
    def load(cls, path: str | Path | None = None, categories: tuple[str, ...] = CATEGORIES) -> NounLexicon:
        """``path``: a JSON lexicon file, or the name of a shipped one (``SHIPPED_LEXICONS``); None: the default."""
        path = SHIPPED_LEXICONS.get(str(path), Path(path)) if path else DEFAULT_LEXICON
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read noun lexicon {path}: {exc}") from exc
        found = data.get("categories") if isinstance(data, dict) else None
        if not isinstance(found, dict):
            raise ValueError(f"noun lexicon {path} has no 'categories' object")
        unknown = sorted(set(found) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"noun lexicon {path} has unknown categories {unknown}; known: {list(CATEGORIES)}")
        return cls({c: list(found.get(c, [])) for c in categories})

    def find_nouns(self, caption: str) -> list[NounMatch]:
        """Known nouns in the caption, left to right, longest match first, not overlapping."""
        words = list(_WORD.finditer(caption))
        matches, i = [], 0
        while i < len(words):
            for n in range(min(self.max_words, len(words) - i), 0, -1):
                span = words[i:i + n]
                if any(caption[a.end():b.start()] not in (" ", "-") for a, b in zip(span, span[1:])):
                    continue
                text = caption[span[0].start():span[-1].end()]
                match = self._lookup(text, span[0].start(), span[-1].end())
                if match:
                    matches.append(match)
                    i += n
                    break
            else:
                i += 1
        return matches

    def rewrite(self, caption: str, seed: int = 0) -> CaptionRewrite:
        if not caption.strip():
            return CaptionRewrite(caption, reason="rewrite_empty_caption")
        matches = [m for m in self.find_nouns(caption) if len(self.categories[m.category]) > 1]
        if not matches:
            return CaptionRewrite(caption, reason="rewrite_no_known_noun")
        rng = random.Random(hashlib.sha256(f"{seed}\x00{caption}".encode()).hexdigest())
        match = rng.choice(matches)
        noun = rng.choice([n for n in self.categories[match.category] if n != match.noun])
        new = pluralize(noun) if match.plural else noun
        if match.text[:1].isupper():
            new = new[:1].upper() + new[1:]
        before = _fix_article(caption[:match.start], new) if not match.plural else caption[:match.start]
        return CaptionRewrite(caption, before + new + caption[match.end:], match.text, new, match.category)

    def _lookup(self, text: str, start: int, end: int) -> NounMatch | None:
        key = text.lower()
        if key in self.index:
            return NounMatch(start, end, text, key, self.index[key], plural=False)
        head, _, last = key.rpartition(" ")
        for single in singular_forms(last):
            noun = f"{head} {single}" if head else single
            if noun in self.index:
                return NounMatch(start, end, text, noun, self.index[noun], plural=True)
        return None


def pluralize(noun: str) -> str:
    head, _, last = noun.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        plural = _IRREGULAR_PLURALS[last]
    elif re.search(r"(s|x|z|ch|sh)$", last):
        plural = last + "es"
    elif re.search(r"[^aeiou]y$", last):
        plural = last[:-1] + "ies"
    else:
        plural = last + "s"
    return f"{head} {plural}" if head else plural


def singular_forms(word: str) -> list[str]:
    """Candidate singulars of a plural-looking word, most likely first (no dictionary needed:
    the lexicon lookup decides which one is a noun)."""
    if word in _IRREGULAR_SINGULARS:
        return [_IRREGULAR_SINGULARS[word]]
    forms = []
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 2:
        forms.append(word[:-1])
    return forms


def _fix_article(prefix: str, new: str) -> str:
    """Make a trailing "a"/"an" in ``prefix`` agree with the noun that follows it."""
    match = re.search(r"\b(an?)(\s+)$", prefix, flags=re.IGNORECASE)
    if not match:
        return prefix
    article = "an" if _starts_with_vowel_sound(new) else "a"
    if match.group(1)[0].isupper():
        article = article.capitalize()
    return prefix[:match.start(1)] + article + match.group(2)


def _starts_with_vowel_sound(word: str) -> bool:
    w = word.lower()
    if w.startswith(("uni", "use", "usu", "eu", "one", "ukulele")):
        return False
    return w[:1] in "aeiou" or w.startswith(("hour", "honest", "honor"))
