"""Build a noun lexicon for the lexicon caption rewriter from WordNet's hypernym tree.

Img-Diff's object-replacement captions swap a noun for another noun of the same category (machine,
living_thing, natural_object, fruit, vehicle, container, clothing, fixture, appliance, furniture,
food). nltk's WordNet data is a separate download that installs no code, so the repo ships
``models/lexicon/wordnet_lexicon.json``: about 400 hand-picked common visual nouns in those categories. This
script derives a lexicon in the same format from WordNet itself, wherever WordNet is available:

    pip install nltk && python -m nltk.downloader wordnet
    python -m pairsmith.models.lexicon.build_wordnet_lexicon --out full_lexicon.json --min-count 0 --max-per-category 0
    python -m pairsmith.models.lexicon.build_wordnet_lexicon --out frequent.json --min-count 2 --max-per-category 60

    python -m pairsmith.models.lexicon.build_wordnet_lexicon --paper --wordnet-dir /usr/share/wordnet \
        --out models/lexicon/wordnet_lexicon_paper.json

The first writes every concrete noun (about 37,000, most of them species under living_thing); the
second keeps the nouns most frequent in SemCor. On Debian/Ubuntu without nltk's downloader,
``apt-get install wordnet-base`` installs the same WordNet 3.0 database: add
``--wordnet-dir /usr/share/wordnet``. Point ``CaptionRewriterConfig.lexicon_path`` at the file.

The third is the shipped ``wordnet_lexicon_paper.json`` (name ``paper`` in
``CaptionRewriterConfig.lexicon_path``), at the scale of Img-Diff supp. §11 ("5,526 distinct object
names" in the 11 categories; the paper does not state its rule beyond "all nouns" of WordNet
"categorized based on its synsets entries"). pairsmith's rule, ``--paper``: every single-word noun
whose (at most two most frequent) concrete senses are classes written in lower case (no instances,
no proper names), not used more often as a verb or adjective, in the category below; per category
at most ``PAPER_MAX_PER_CATEGORY`` (2,640) nouns, the most familiar first (SemCor count, then more
WordNet senses, then shallower in the hypernym tree, then shorter). Without a cap the rule gives
12,658 nouns, 9,770 of them living_thing (species and kinds of person); the cap binds only
living_thing and was chosen so the total matches the paper's: 5,528 = fruit 142, food 853,
vehicle 320, appliance 23, furniture 81, clothing 508, fixture 14, machine 141, container 316,
living_thing 2,640, natural_object 490 (WordNet 3.0, Debian ``wordnet-base`` 3.0-37, nltk 3.10).
Allowing two-word nouns too gives 23,286 (17,645 living_thing), so single words it is.

A noun (concrete senses only: artifacts, food, animals, people, plants, natural objects; words used
more often as verbs or adjectives are skipped) goes to the most specific category that its two
most frequent senses reach: WordNet lists the banana plant before the fruit, files cars under
"container" and fruit under "natural_object", so the order of ``CATEGORY_ROOTS`` (specific first)
decides.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterable

# Category -> WordNet synsets whose hyponyms belong to it, most specific category first.
CATEGORY_ROOTS: dict[str, tuple[str, ...]] = {
    "fruit": ("edible_fruit.n.01",),
    "food": ("food.n.02", "foodstuff.n.02", "dish.n.02", "baked_goods.n.01"),
    "vehicle": ("vehicle.n.01",),
    "appliance": ("home_appliance.n.01", "appliance.n.02"),
    "furniture": ("furniture.n.01",),
    "clothing": ("clothing.n.01", "footwear.n.02", "headdress.n.01"),
    "fixture": ("fixture.n.01",),
    "machine": ("machine.n.01", "computer.n.01", "electronic_equipment.n.01"),
    "container": ("container.n.01",),
    "living_thing": ("living_thing.n.01",),
    "natural_object": ("natural_object.n.01",),
}
CATEGORIES = tuple(CATEGORY_ROOTS)
PAPER_MAX_PER_CATEGORY = 2640  # --paper's cap per category: binds only living_thing; see the module docstring
_ROOT_NAMES = {root.split(".")[0].replace("_", " ") for roots in CATEGORY_ROOTS.values() for root in roots}
_CONCRETE = {"noun.artifact", "noun.food", "noun.animal", "noun.person", "noun.plant", "noun.object"}
_LEMMA = re.compile(r"^[a-z]+(?:[ -][a-z]+)?$")
# WordNet 3.0's lexicographer file names; Debian's wordnet-base lacks the file that nltk reads them from.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


def category_of(ancestors: set[str]) -> str | None:
    """The most specific category one sense's hypernyms (itself included) reach."""
    for category, roots in CATEGORY_ROOTS.items():
        if any(root in ancestors for root in roots):
            return category
    return None


def word_category(sense_ancestors: list[set[str]]) -> str | None:
    """The most specific category among a word's most frequent senses: WordNet often lists the
    plant before the fruit (banana) or the animal before the dish, so one sense is not enough."""
    found = {category_of(ancestors) for ancestors in sense_ancestors} - {None}
    return min(found, key=CATEGORIES.index) if found else None


def clean_lemma(name: str) -> str | None:
    """A WordNet lemma as a caption would write it, or None for proper nouns, numbers, long phrases."""
    word = name.replace("_", " ")
    if not _LEMMA.match(word) or len(word) < 3 or word in _ROOT_NAMES:
        return None
    return word


def build_lexicon(entries: Iterable[tuple], min_count: int = 0,
                  max_per_category: int = 0) -> dict[str, list[str]]:
    """Group (lemma, category, frequency[, familiarity]) entries by category, keeping the most
    frequent nouns (``max_per_category`` 0 keeps all); each noun once, lists sorted alphabetically.
    Ties in frequency (most nouns never occur in SemCor) go to the most familiar noun: the optional
    fourth element is a sort key, smaller first (``wordnet_entries`` gives (-senses, depth, length))."""
    best: dict[str, tuple[int, tuple, str]] = {}
    for lemma, category, count, *rest in entries:
        word = clean_lemma(lemma)
        if word is None or category is None or count < min_count:
            continue
        familiarity = tuple(rest[0]) if rest else ()
        if word not in best or count > best[word][0]:
            best[word] = (count, familiarity, category)
    by_category: dict[str, list[tuple[int, tuple, str]]] = {c: [] for c in CATEGORIES}
    for word, (count, familiarity, category) in best.items():
        by_category[category].append((count, familiarity, word))
    lexicon = {}
    for category, scored in by_category.items():
        scored.sort(key=lambda cfw: (-cfw[0], cfw[1], cfw[2]))
        kept = scored[:max_per_category] if max_per_category else scored
        lexicon[category] = sorted(word for _, _, word in kept)
    return lexicon


def wordnet_entries(wn, senses: int = 2, names: Iterable[str] | None = None, single_word: bool = False,
                    common_only: bool = False, familiarity: bool = False) -> Iterable[tuple]:
    """(lemma, category, SemCor count) for every concrete noun (or each of ``names``) that is
    mostly used as a noun. ``single_word`` skips "traffic light"; ``common_only`` keeps a sense only
    where it is a class (not an instance such as a named ship) that writes the lemma in lower case
    (so "Pomeranian" the dog breed is skipped, "pomeranian" being no WordNet lemma);
    ``familiarity`` appends the tie-break key (-senses of the word, depth of its shallowest
    category sense, length) that ``build_lexicon`` uses among nouns of equal count."""
    for name in names if names is not None else wn.all_lemma_names("n"):
        if clean_lemma(name) is None or (single_word and ("_" in name or "-" in name)):
            continue
        noun_senses = [s for s in wn.synsets(name, "n")[:senses] if s.lexname() in _CONCRETE]
        if common_only:
            noun_senses = [s for s in noun_senses
                           if not s.instance_hypernyms() and any(lemma.name() == name for lemma in s.lemmas())]
        if not noun_senses:
            continue
        noun_count = _count(name, wn.synsets(name, "n"))
        if any(_count(name, wn.synsets(name, pos)) > noun_count for pos in "vasr"):
            continue  # "have", "great": more often a verb or adjective in text
        category = word_category([{a.name() for path in s.hypernym_paths() for a in path} for s in noun_senses])
        if not familiarity:
            yield name, category, noun_count
            continue
        depth = min(s.min_depth() for s in noun_senses)
        yield name, category, noun_count, (-len(wn.synsets(name)), depth, len(name))


def _count(name: str, synsets) -> int:
    return sum(lemma.count() for s in synsets for lemma in s.lemmas() if lemma.name().lower() == name.lower())


def load_wordnet(wordnet_dir: str | None):
    try:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
    except ImportError as exc:
        raise SystemExit("nltk is not installed: pip install nltk") from exc
    if wordnet_dir:
        # nltk reads corpora only from real files under its data path, and needs a lexnames file.
        root = Path(tempfile.mkdtemp(prefix="nltk_data_"))
        corpus = root / "corpora" / "wordnet"
        corpus.mkdir(parents=True)
        for file in Path(wordnet_dir).iterdir():
            if file.is_file():
                shutil.copyfile(file, corpus / file.name)
        if not (corpus / "lexnames").exists():
            kinds = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
            (corpus / "lexnames").write_text(
                "".join(f"{i:02d}\t{name}\t{kinds[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES)))
        nltk.data.path.insert(0, str(root))
    reader = WordNetCorpusReader
    if wordnet_dir and not (Path(wordnet_dir) / "index.sense").exists():
        # nltk >= 3.9 maps the loaded WordNet onto its own sense keys for the multilingual data at load
        # time (``map_wn`` reads index.sense), which Debian's wordnet-base does not ship; pairsmith reads
        # no multilingual data, so the mapping is skipped.
        class _NoSenseIndexReader(WordNetCorpusReader):
            def map_wn(self, version="wordnet"):
                return None

        reader = _NoSenseIndexReader
    try:
        return reader(nltk.data.find("corpora/wordnet"), None)
    except LookupError as exc:
        raise SystemExit("WordNet data not found: python -m nltk.downloader wordnet, or --wordnet-dir") from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--min-count", type=int, default=2, help="minimum SemCor frequency of the lemma")
    parser.add_argument("--max-per-category", type=int, default=60, help="0 = no limit")
    parser.add_argument("--senses", type=int, default=2, help="most frequent senses a category may come from")
    parser.add_argument("--wordnet-dir", help="a WordNet 3.0 dict folder (e.g. /usr/share/wordnet)")
    parser.add_argument("--single-word", action="store_true", help="skip nouns of two words")
    parser.add_argument("--common-only", action="store_true",
                        help="only class senses that write the lemma in lower case (no instances, no proper names)")
    parser.add_argument("--paper", action="store_true",
                        help=f"the paper-scale rule (Img-Diff supp. §11): --single-word --common-only "
                             f"--min-count 0 --max-per-category {PAPER_MAX_PER_CATEGORY}")
    args = parser.parse_args(argv)
    if args.paper:
        args.single_word, args.common_only = True, True
        args.min_count, args.max_per_category = 0, PAPER_MAX_PER_CATEGORY
    wn = load_wordnet(args.wordnet_dir)
    entries = wordnet_entries(wn, args.senses, single_word=args.single_word, common_only=args.common_only,
                              familiarity=True)
    lexicon = build_lexicon(entries, args.min_count, args.max_per_category)
    document = {
        "source": f"WordNet {wn.get_version()} via models/lexicon/build_wordnet_lexicon.py",
        "min_count": args.min_count,
        "max_per_category": args.max_per_category,
        "senses": args.senses,
        "single_word": args.single_word,
        "common_only": args.common_only,
        "categories": lexicon,
    }
    Path(args.out).write_text(json.dumps(document, indent=1) + "\n")
    sizes = ", ".join(f"{c} {len(v)}" for c, v in lexicon.items())
    print(f"wrote {args.out}: {sum(len(v) for v in lexicon.values())} nouns ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
