"""Caption pairs for object replacement: LLM answers parsed (or dropped with a reason), the noun
lexicon's same-category swaps, a tiny chat LLM end to end, and the WordNet lexicon builder."""

from __future__ import annotations

import json
import pickle
import shutil
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from pairsmith.models.lexicon.build_wordnet_lexicon import build_lexicon, category_of, clean_lemma, word_category
from pairsmith.models.adapters.caption_answer import _word_diff, parse_rewrite_answer
from pairsmith.models.adapters.caption_rewriter import VICUNA_TEMPLATE, CaptionRewriter, CaptionRewriterConfig
from pairsmith.models.lexicon.noun_lexicon import CATEGORIES, DEFAULT_LEXICON, NounLexicon, pluralize
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.tiny.builders import build_tiny_chat_llm, hf_cache_snapshot
from tests.network_guard import block_network

ROOT = Path(__file__).resolve().parents[3]
SOURCE = "A dog sitting on a red sofa next to an apple."

# ---------------------------------------------------------------- parsing LLM answers


@pytest.mark.parametrize("answer, caption, replaced, new", [
    ("Replaced object: dog\nNew object: cat\nNew caption: A cat sitting on a red sofa next to an apple.",
     "A cat sitting on a red sofa next to an apple.", "dog", "cat"),
    ('```json\n{"replaced": "dog", "new": "horse", "new_caption": "A horse sitting on a red sofa next to an apple."}\n```',
     "A horse sitting on a red sofa next to an apple.", "dog", "horse"),
    ('Sure! Here it is:\n1. **Replaced object:** the sofa\n2. **New object:** bench.\n'
     '3. **New caption:** "A dog sitting on a red bench next to an apple."',
     "A dog sitting on a red bench next to an apple.", "sofa", "bench"),
    # only the caption: the nouns come from the word diff, articles dropped
    ("New caption: A dog sitting on a red sofa next to a pear.", "A dog sitting on a red sofa next to a pear.",
     "apple", "pear"),
    # singular noun named for a plural in the caption
    ("Replaced object: Dog\nNew object: Cat\nNew caption: Two cats sitting on a red sofa next to an apple.",
     "Two cats sitting on a red sofa next to an apple.", "Dog", "Cat"),
])
def test_good_answers_parse_in_any_of_the_shapes_llms_write(answer, caption, replaced, new):
    source = SOURCE.replace("A dog", "Two dogs") if "Two cats" in caption else SOURCE
    rewrite = parse_rewrite_answer(source, answer)
    assert rewrite.ok, rewrite.reason
    assert (rewrite.caption, rewrite.replaced, rewrite.new) == (caption, replaced, new)
    assert rewrite.answer == answer and rewrite.source == source


@pytest.mark.parametrize("answer, reason", [
    ("I'm sorry, I cannot help with that.", "rewrite_unparseable"),
    ("", "rewrite_unparseable"),
    ('{"replaced": "dog", "new": "cat"}', "rewrite_unparseable"),
    ("New caption: a dog sitting on a red sofa next to an apple", "rewrite_unchanged"),
    ("Replaced object: dog\nNew object: dog\nNew caption: A dog sitting on a blue sofa next to an apple.",
     "rewrite_same_noun"),
    ("Replaced object: zebra\nNew object: cat\nNew caption: A cat sitting on a red sofa next to an apple.",
     "rewrite_noun_not_in_caption"),
    ("Replaced object: dog\nNew object: tiger\nNew caption: A cat sitting on a red sofa next to an apple.",
     "rewrite_new_noun_not_in_caption"),
    ("Replaced object: dog\nNew object: cat\nNew caption: A large cat lies under the green table beside a pear.",
     "rewrite_too_many_changes"),
    ("New caption: A dog sitting on a red sofa next to an apple and a cat.", "rewrite_unparseable"),
])
def test_bad_answers_are_dropped_with_a_reason_not_raised(answer, reason):
    rewrite = parse_rewrite_answer(SOURCE, answer)
    assert not rewrite.ok and rewrite.reason == reason and rewrite.answer == answer


def test_the_changed_word_limit_is_configurable():
    answer = "Replaced object: dog\nNew object: old cat\nNew caption: An old cat sitting on a red sofa next to an apple."
    assert parse_rewrite_answer(SOURCE, answer, max_changed_words=2).ok
    assert parse_rewrite_answer(SOURCE, answer, max_changed_words=1).reason == "rewrite_too_many_changes"


# ---------------------------------------------------------------- lexicon mode


@pytest.fixture(scope="module")
def lexicon():
    return NounLexicon.load()


def test_shipped_lexicon_has_every_category_and_ships_with_the_package(lexicon):
    assert set(lexicon.categories) == set(CATEGORIES)
    assert all(len(nouns) >= 20 for nouns in lexicon.categories.values())
    nouns = [n for ns in json.loads(DEFAULT_LEXICON.read_text())["categories"].values() for n in ns]
    assert len(nouns) == len(set(nouns)) and len(nouns) >= 300  # each noun in one category
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert DEFAULT_LEXICON.name in package_data["pairsmith.models.lexicon"]


def test_lexicon_swaps_a_noun_for_another_of_its_category_and_says_which(lexicon):
    rewriter = CaptionRewriter(CaptionRewriterConfig(mode="lexicon"))
    captions = [SOURCE, "Two dogs and a hot dog on the table.", "Apples in a basket", "An umbrella in the rain", ""]
    results = rewriter.rewrite_batch(captions)
    assert [r.source for r in results] == captions
    for result in results[:3]:
        assert result.ok
        replaced = next(m for m in lexicon.find_nouns(result.source) if m.text == result.replaced)
        swapped_in = next(m for m in lexicon.find_nouns(result.caption) if m.text == result.new)
        assert replaced.category == swapped_in.category == result.category
        assert swapped_in.noun != replaced.noun
        _, _, changed = _word_diff(result.source, result.caption)
        assert changed <= 3  # the noun (at most two words) and perhaps its article
    assert results[3].reason == "rewrite_no_known_noun"
    assert results[4].reason == "rewrite_empty_caption"
    assert rewriter.rewrite_batch(captions) == results  # seeded: a re-run makes the same pairs


def test_lexicon_keeps_plurals_capitals_articles_and_multiword_nouns():
    lexicon = NounLexicon({"fruit": ["apple", "pear", "orange"], "food": ["hot dog", "ice cream"],
                           "living_thing": ["dog", "cat"], "furniture": ["chair", "couch"]})
    assert [m.noun for m in lexicon.find_nouns("Two Dogs eat a hot dog and ice cream")] == ["dog", "hot dog", "ice cream"]
    plural = lexicon.rewrite("Dogs on a couch", seed=0)
    assert plural.ok
    assert plural.caption in {"Cats on a couch", "Dogs on a chair"}
    seen = {lexicon.rewrite("A pear on a chair", seed=s).caption for s in range(30)}
    assert "An apple on a chair" in seen or "An orange on a chair" in seen  # "a" became "an"
    assert seen <= {"An apple on a chair", "An orange on a chair", "A pear on a couch"}
    assert pluralize("box") == "boxes" and pluralize("cherry") == "cherries" and pluralize("man") == "men"
    assert pluralize("hot dog") == "hot dogs"


def test_lexicon_mode_can_be_limited_to_some_categories_and_checks_its_file(tmp_path):
    fruit_only = CaptionRewriter(CaptionRewriterConfig(mode="lexicon", categories=("fruit",)))
    result = fruit_only.rewrite(SOURCE)
    assert result.ok and result.category == "fruit" and result.replaced == "apple"
    with pytest.raises(ValidationError, match="subset"):
        CaptionRewriterConfig(mode="lexicon", categories=("weapons",))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"categories": {"weapons": ["sword"]}}))
    with pytest.raises(ValueError, match="unknown categories"):
        CaptionRewriter(CaptionRewriterConfig(mode="lexicon", lexicon_path=str(bad))).rewrite(SOURCE)
    custom = tmp_path / "custom.json"
    custom.write_text(json.dumps({"categories": {"vehicle": ["tram", "ferry"]}}))
    tram = CaptionRewriter(CaptionRewriterConfig(mode="lexicon", lexicon_path=str(custom))).rewrite("A tram at night")
    assert tram.caption == "A ferry at night" and tram.category == "vehicle"


# ---------------------------------------------------------------- LLM mode on a tiny chat model


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    return build_tiny_chat_llm(tmp_path_factory.mktemp("tiny-llm"))


def test_llm_mode_runs_batched_end_to_end_and_drops_bad_answers_per_item(tiny_llm, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = CaptionRewriterConfig(model_id=str(tiny_llm), batch_size=2, max_new_tokens=12,
                                   runtime=ModelRuntime(device="cpu"))
    rewriter = CaptionRewriter(config)
    captions = [SOURCE, "", "A red car next to a tree.", "Two apples in a bowl.", "A man riding a horse."]
    results = rewriter.rewrite_batch(captions)
    assert [r.source for r in results] == captions
    assert results[1].reason == "rewrite_empty_caption" and results[1].answer is None
    answered = [r for i, r in enumerate(results) if i != 1]
    assert all(r.answer for r in answered)  # the random model says something for every caption
    assert all(r.ok or r.reason.startswith("rewrite_") for r in answered)
    one_by_one = [rewriter.generate_answers([c])[0] for c in captions if c]
    assert [r.answer for r in answered] == one_by_one  # greedy: left padding changes no answer
    prompt = rewriter._chat_text(rewriter.loaded().tokenizer, "hello")
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    restored = pickle.loads(pickle.dumps(rewriter))
    assert restored.loaded() is rewriter.loaded() and len(pickle.dumps(rewriter)) < 4000


def test_llm_mode_loads_the_default_vicuna_id_from_a_cache_offline(tiny_llm, tmp_path, monkeypatch):
    """Vicuna-1.5's tokenizer has no chat template: the adapter falls back to Vicuna's own format."""
    attempts = block_network(monkeypatch)
    assert CaptionRewriterConfig().model_id == "lmsys/vicuna-7b-v1.5"
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_llm, no_template)
    (no_template / "chat_template.jinja").unlink()
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    hf_cache_snapshot(tmp_path / "cache", "lmsys/vicuna-7b-v1.5", no_template)
    rewriter = CaptionRewriter(CaptionRewriterConfig(
        max_new_tokens=8, runtime=ModelRuntime(device="cpu", cache_dir=str(tmp_path / "cache"), offline=True)))
    tokenizer = rewriter.loaded().tokenizer
    assert tokenizer.chat_template is None and tokenizer.padding_side == "left"
    assert rewriter._chat_text(tokenizer, "hi") == VICUNA_TEMPLATE.format(prompt="hi")
    assert len(rewriter.rewrite_batch([SOURCE, "A red car."])) == 2
    missing = CaptionRewriter(CaptionRewriterConfig(runtime=ModelRuntime(device="cpu", cache_dir=str(tmp_path / "x"),
                                                                         offline=True)))
    with pytest.raises(OSError):
        missing.loaded()
    assert attempts == []  # offline means no network call, not a failed one


def test_prompt_must_have_a_caption_slot():
    with pytest.raises(ValidationError, match="caption"):
        CaptionRewriterConfig(prompt="Replace an object.")


# ---------------------------------------------------------------- WordNet lexicon builder


def test_wordnet_categories_prefer_the_most_specific_and_skip_unusable_lemmas():
    car = {"entity.n.01", "container.n.01", "wheeled_vehicle.n.01", "vehicle.n.01", "car.n.01"}
    assert category_of(car) == "vehicle"  # WordNet files cars under "container" too
    banana_plant = {"entity.n.01", "living_thing.n.01", "herb.n.01"}
    banana_fruit = {"entity.n.01", "natural_object.n.01", "edible_fruit.n.01", "food.n.02"}
    assert word_category([banana_plant, banana_fruit]) == "fruit"
    assert word_category([{"entity.n.01"}]) is None
    assert clean_lemma("traffic_light") == "traffic light"
    assert clean_lemma("Paris") is None and clean_lemma("vehicle") is None and clean_lemma("b-52") is None
    entries = [("dog", "living_thing", 40), ("cat", "living_thing", 30), ("newt", "living_thing", 1),
               ("pear", "fruit", 5), ("London", "living_thing", 99), ("rock", None, 50)]
    assert build_lexicon(entries, min_count=2, max_per_category=2)["living_thing"] == ["cat", "dog"]
    assert build_lexicon(entries)["fruit"] == ["pear"] and set(build_lexicon(entries)) == set(CATEGORIES)


@pytest.mark.slow
def test_wordnet_entries_from_real_wordnet_land_in_the_expected_categories():
    """Runs where nltk and WordNet's data exist (neither is a project requirement)."""
    pytest.importorskip("nltk", reason="nltk is optional: pip install nltk to rebuild the lexicon")
    from pairsmith.models.lexicon.build_wordnet_lexicon import load_wordnet, wordnet_entries

    wordnet_dir = "/usr/share/wordnet" if Path("/usr/share/wordnet/data.noun").exists() else None
    try:
        wn = load_wordnet(wordnet_dir)
    except SystemExit as exc:
        pytest.skip(f"WordNet data unavailable: {exc}")
    names = ["dog", "cat", "car", "banana", "chair", "sofa", "refrigerator", "have", "idea"]
    categories = {name: category for name, category, _ in wordnet_entries(wn, names=names)}
    assert categories == {"dog": "living_thing", "cat": "living_thing", "car": "vehicle", "banana": "fruit",
                          "chair": "furniture", "sofa": "furniture", "refrigerator": "appliance"}
    # "have" is mostly a verb and "idea" is not a concrete noun: neither is a candidate
    lexicon = build_lexicon(wordnet_entries(wn, names=names))
    rewrite = NounLexicon(lexicon).rewrite("A dog on a chair")
    assert rewrite.caption in {"A cat on a chair", "A dog on a sofa"}


# ---------------------------------------------------------------- the paper-scale lexicon (Img-Diff supp. §11)


def test_the_paper_lexicon_ships_at_the_papers_scale_and_the_imgdiff_presets_read_it():
    from pairsmith.flows import papers
    from pairsmith.models.lexicon.noun_lexicon import SHIPPED_LEXICONS

    path = SHIPPED_LEXICONS["paper"]
    assert path != DEFAULT_LEXICON and path.stat().st_size < 400_000
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert path.name in package_data["pairsmith.models.lexicon"]
    lexicon = NounLexicon.load("paper")
    sizes = {c: len(nouns) for c, nouns in lexicon.categories.items()}
    assert set(sizes) == set(CATEGORIES) and all(sizes.values())  # all 11 of §11's categories
    assert len(lexicon.index) >= 5_500  # §11: 5,526 distinct object names
    assert all(len(n.split()) == 1 and n.islower() for n in lexicon.index)  # the --paper rule: single common words
    assert {"dog", "banana", "car", "chair", "refrigerator", "shirt"} <= set(lexicon.index)
    assert len(NounLexicon.load("default").index) == len(NounLexicon.load().index) < 1_000  # the default is unchanged

    params = papers.load_parameters()
    for name in ("replace", "remove", "ablation"):
        config = papers.load_preset(params.papers["imgdiff"].presets[name])
        assert config.rewriter.lexicon_path == "paper", name
        rewriter = CaptionRewriter(config.rewriter.model_copy(update={"mode": "lexicon"}))
        assert len(rewriter.loaded().index) == len(lexicon.index), name
    rewrite = CaptionRewriter(CaptionRewriterConfig(mode="lexicon", lexicon_path="paper")).rewrite("A dog on a chair")
    assert rewrite.ok and rewrite.caption != "A dog on a chair" and rewrite.new in lexicon.index


def test_the_familiarity_key_breaks_count_ties_and_the_cap_keeps_the_most_familiar():
    # (lemma, category, SemCor count, (-senses, depth, length)): equal counts -> more senses first
    entries = [("aardwolf", "living_thing", 0, (-1, 14, 8)), ("dog", "living_thing", 0, (-7, 8, 3)),
               ("cat", "living_thing", 0, (-8, 9, 3)), ("newt", "living_thing", 3, (-1, 12, 4))]
    assert build_lexicon(entries, max_per_category=3)["living_thing"] == ["cat", "dog", "newt"]
    assert build_lexicon(entries, max_per_category=1)["living_thing"] == ["newt"]
