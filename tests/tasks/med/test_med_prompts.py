"""MED's prompts against the paper's figures, their parsers, and the §3.3 benchmark builder."""

from __future__ import annotations

from collections import Counter

import pytest

from pairsmith.tasks.med import prompts as P
from pairsmith.tasks.med.bench import BenchCandidate, plan_bench, select_bench
from tests.conftest import paper_text



def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name, figure", [
    ("FILTER_PROMPT", 7), ("REQUEST_PROMPT", 8), ("COMPLETE_PROMPT", 9), ("CAPTION_PROMPT", 10),
    ("DIFFERENCE_PROMPT", 11), ("JUDGE_1_PROMPT", 12), ("REWRITE_PROMPT", 14), ("RIGHT_ANSWER_PROMPT", 16),
    ("WRONG_ANSWERS_PROMPT", 17),
])
def test_every_med_prompt_is_its_figures_text(name, figure):
    text = _norm(paper_text("HALLUCINATION AT A GLANCE"))
    prompt = _norm(getattr(P, name))
    assert prompt in text, f"{name} is not MED Fig. {figure}'s text"
    at = text.index(prompt)
    # between the captions of the figures before and after it (Fig. 10's own caption is lost in the text)
    before = max(text.find(f"Figure {figure - 1}:"), text.find(f"Figure {figure - 2}:"))
    after = [i for i in (text.find(f"Figure {figure + 1}:"), text.find(f"Figure {figure + 2}:")) if i >= 0]
    assert 0 <= before < at and (figure == 17 or at + len(prompt) < min(after)), f"{name} is not where Fig. {figure} is"


def test_the_second_judge_is_fig_13_around_its_elision():
    text = _norm(paper_text("HALLUCINATION AT A GLANCE"))
    head, tail = P.JUDGE_2_PROMPT.split("{difference_description}\n")
    elided = _norm(head + "{difference_description} ..... " + tail)
    assert elided in text and "Figure 13:" in text[text.index(elided) + len(elided):][:100]


def test_the_nine_question_phrasings_are_fig_15s():
    text = paper_text("HALLUCINATION AT A GLANCE")
    figure = _norm(text[text.index("variations = ["):text.index("Figure 15:")])
    assert len(P.QUESTIONS) == 9 and len(set(P.QUESTIONS)) == 9
    assert all(f'"{q}"' in figure for q in P.QUESTIONS)
    assert figure.count('"') == 18  # nine quoted phrasings, no more


def test_categories_are_the_eleven_of_figs_8_and_11():
    text = _norm(paper_text("HALLUCINATION AT A GLANCE"))
    assert len(P.CATEGORIES) == 11
    for category, description in P.CATEGORY_DESCRIPTIONS.items():
        assert f"- {category}: {description}" in text


def test_prompts_fill_every_placeholder():
    filled = [P.filter_prompt("a cat"), P.request_prompt("a cat"), P.complete_prompt("a cat", "Hi, ..."),
              P.caption_prompt("a cat", "Spatial Relation"), P.difference_prompt("a", "b"), P.judge_1_prompt("e", "d"),
              P.judge_2_prompt("s", "d"), P.rewrite_prompt("d"), P.right_answer_prompt("d"),
              P.wrong_answers_prompt("d", "r")]
    for text in filled:
        assert "{" not in text and "}" not in text, text[:80]
    assert "Key aspect to focus on: Spatial Relation (Altering physical arrangements (right, left, on top, below, " \
           "inside))" in filled[3]
    assert filled[8].endswith('Input difference description: "d"\n\nOutput:')


# ------------------------------------------------------------------------------ parsers

def test_filter_keeps_only_a_strict_yes():
    assert P.parse_filter("## **Evaluation**\n**Final Recommendation:** **Yes**\n**1. Image quality:**") is True
    assert P.parse_filter("**Final Recommendation:** No\n...") is False
    for reply in ["**Final Recommendation:** **Yes** or **No**", "Yes", "", "**Final Recommendation:** Maybe"]:
        with pytest.raises(P.Unparsed) as err:
            P.parse_filter(reply)
        assert err.value.reason == "med_filter_unparseable"


def test_filter_lowercase_yes_is_not_a_strict_yes():
    with pytest.raises(P.Unparsed):
        P.parse_filter("**Final Recommendation:** yes")


def test_edit_request_in_fig_8s_format():
    reply = 'Type: Counting\\n## Prompt: "Hi, This is a photo of two cats. Can you add one cat and output the image?"\\n'
    assert P.parse_request(reply) == ("Counting", "Hi, This is a photo of two cats. Can you add one cat and output the image?")
    real_newline = "Type: **Spatial Relation**\n## Prompt: Hi, This is a picture of a desk. Can you move the cup left and output the image?"
    assert P.parse_request(real_newline)[0] == "Spatial Relation"
    for reply, reason in [("Make the cat blue.", "med_request_unparseable"),
                          ('Type: Glitter\\n## Prompt: "Hi, This is a photo of a cat. Can you x and output the image?"',
                           "med_request_unknown_type"),
                          ("Type: Object\\n## Prompt: Add a dog.", "med_request_off_template")]:
        with pytest.raises(P.Unparsed) as err:
            P.parse_request(reply)
        assert err.value.reason == reason


def test_completion_no_update_keeps_the_caption_whole_and_an_update_replaces_it():
    caption = "A red ball lies on a table. Behind it is a window. The light is soft."
    assert P.parse_completion("NO UPDATE", caption) == caption
    assert P.parse_completion("Caption is complete. No updates needed.", caption) == caption
    longer = "A red ball lies on a wooden table. Behind it is a window. A cup stands to the left."
    assert P.parse_completion(longer, caption) == longer  # every sentence kept
    with pytest.raises(P.Unparsed, match="med_complete_empty"):
        P.parse_completion("  \n", caption)


def test_caption_difference_judges_rewrite_and_answers():
    assert P.parse_caption("CAPTION: A blue ball. It is round.") == "A blue ball. It is round."
    with pytest.raises(P.Unparsed, match="med_caption_unparseable"):
        P.parse_caption("A blue ball.")
    assert P.parse_difference("TYPE:Attribute\\nDIFFERENCE:The ball is blue.") == ("Attribute", "The ball is blue.")
    assert P.parse_difference("TYPE: Negation\nDIFFERENCE: The cup is gone.") == ("Negation", "The cup is gone.")
    with pytest.raises(P.Unparsed, match="med_difference_unknown_type"):
        P.parse_difference("TYPE:Colour\nDIFFERENCE:The ball is blue.")
    with pytest.raises(P.Unparsed, match="med_difference_unparseable"):
        P.parse_difference("The ball is blue.")
    assert P.parse_yes_no("Yes", "med_judge_1") is True and P.parse_yes_no("No.", "med_judge_2") is False
    with pytest.raises(P.Unparsed, match="med_judge_2_unparseable"):
        P.parse_yes_no("Yes, they match.", "med_judge_2")
    assert P.parse_rewrite("IMPROVED_DESCRIPTION: The second image shows a blue ball.") == \
        "The second image shows a blue ball."
    with pytest.raises(P.Unparsed, match="med_rewrite_unparseable"):
        P.parse_rewrite("The second image shows a blue ball.")
    assert P.parse_right_answer("ANSWER: In the second image, the ball is blue.") == "In the second image, the ball is blue."
    wrong = P.parse_wrong_answers("wrong_answer1: A green.\nwrong_answer2: A red.\nwrong_answer3: A gone.", "A blue.")
    assert wrong == ["A green.", "A red.", "A gone."]
    with pytest.raises(P.Unparsed, match="med_bench_wrong_duplicate"):
        P.parse_wrong_answers("wrong_answer1: A blue. wrong_answer2: B. wrong_answer3: C.", "A blue.")
    with pytest.raises(P.Unparsed, match="med_bench_wrong_unparseable"):
        P.parse_wrong_answers("wrong_answer1: A. wrong_answer2: B.", "X")


# ------------------------------------------------------------------------------ the benchmark (§3.3)

def _candidates(per_type: int) -> list[BenchCandidate]:
    return [BenchCandidate(f"pair-{c[:4]}-{k:02d}", c, f"difference {k} of {c}")
            for c in P.CATEGORIES for k in range(per_type)]


def test_22_candidates_per_type_give_15_per_type_and_the_rest_train():
    candidates = _candidates(22)
    selected = select_bench(candidates, 15)
    assert {c: len(ids) for c, ids in selected.items()} == {c: 15 for c in P.CATEGORIES}
    chosen = {p for ids in selected.values() for p in ids}
    assert len(chosen) == 165 and len({c.pair_id for c in candidates} - chosen) == 11 * 7
    # the same pairs whatever order the candidates come in
    assert select_bench(list(reversed(candidates)), 15) == selected
    assert sum(len(v) for v in select_bench(candidates, 3).values()) == 33  # --per-type scales it


def test_a_pair_whose_answers_fail_is_replaced_by_the_next_candidate():
    candidates = _candidates(22)
    bad = {c.pair_id for c in candidates if c.category == "Counting"}
    asked: Counter = Counter()

    def writer(todo):
        asked.update(c.pair_id for c in todo)
        return {c.pair_id: ("right", ["w1", "w2", "w3"]) for c in todo
                if c.pair_id not in bad or int(c.pair_id[-2:]) % 2 == 0}  # odd Counting pairs fail

    selected, answers = plan_bench(candidates, 15, set(), writer)
    assert all(len(selected[c]) == 15 for c in P.CATEGORIES if c != "Counting")
    assert len(selected["Counting"]) == 11  # only 11 of its 22 answer: all of them, no more
    assert set(answers) == {p for ids in selected.values() for p in ids}
    assert max(asked.values()) == 1  # no pair is asked twice
    built = set(selected["Scene"][:5])
    again, new = plan_bench(candidates, 15, built, writer)
    assert set(again["Scene"]) >= built and not (set(new) & built)  # a resumed run keeps what it built


def test_med_bench_builder_on_a_store_gives_15_per_type_and_withholds_only_them(tmp_path, monkeypatch):
    """build_bench on 22 stored candidates per type (their answers from the fake Gemini server in
    Figs. 16-17's formats; two Counting pairs answer badly and are replaced): 15 MCQs per type in
    split bench, and the other 77 pairs keep their training split."""
    from pairsmith.models.adapters.role_chat import RoleChat, RoleChatConfig
    from pairsmith.storage.schemas import PairRow, utc_now
    from pairsmith.storage.store import PairStore
    from pairsmith.tasks.med.bench import BenchSettings, bench_order, build_bench
    from pairsmith.tasks.med.samples import diff_qa_sample
    from tests.fake_gemini import FakeGemini
    from tests.med_replies import med_reply

    monkeypatch.setenv("GEMINI_API_KEY", "bench-test-key")
    db = str(tmp_path / "bench.lance")
    store = PairStore(db)
    pairs, samples = [], []
    first = sorted((f"p-06-{k:02d}" for k in range(22)), key=bench_order)[:2]  # Counting's first two in bench order
    for c, category in enumerate(P.CATEGORIES):
        for k in range(22):
            pid = f"p-{c:02d}-{k:02d}"
            fault = " #fault-answer-bad" if pid == first[0] else " #fault-wrong-bad" if pid == first[1] else ""
            difference = f"The ball on table {c}{fault} is blue in caption 2, red in caption 1."
            pairs.append(PairRow(pair_id=pid, run_id="run", method="med-edit", width=8, height=8, status="kept",
                                 bench_candidate=True, difference=difference, created_at=utc_now()))
            samples.append(diff_qa_sample(pair_id=pid, run_id="run", category=category, split="train",
                                          difference=f"In the second image, the ball on table {c} is blue."))
    store.upsert("pairs", pairs)
    store.upsert("samples", samples)
    with FakeGemini(text_reply=med_reply) as server:
        writer = RoleChat(RoleChatConfig(backend="gemini", model_id="writer", gemini={"base_url": server.base_url}))
        outcome = build_bench(db, "run", "med-edit", writer, BenchSettings())
        asked = len(server.log)
    assert {c: len(ids) for c, ids in outcome.selected.items()} == {c: 15 for c in P.CATEGORIES}
    assert dict(outcome.stats.reasons) == {"med_bench_answer_unparseable": 1, "med_bench_wrong_unparseable": 1}
    rows = store.read("samples").to_pylist()
    mcq = [s for s in rows if s["task"] == "med-mcq"]
    assert len(mcq) == 165 and all(s["split"] == "bench" for s in mcq)
    assert Counter(s["category"] for s in mcq) == {c: 15 for c in P.CATEGORIES}
    qa = {s["pair_id"]: s["split"] for s in rows if s["task"] == "med-diff-qa"}
    bench = {s["pair_id"] for s in mcq}
    assert {p for p, split in qa.items() if split == "bench"} == bench
    assert sum(split == "train" for split in qa.values()) == 242 - 165  # the rest reach training
    for s in mcq:
        question = s["conversation"][0]["content"].removeprefix("<image>\n<image>\n").split("\n")[0]
        assert question in P.QUESTIONS and len(s["options"]) == 4
        assert s["options"]["ABCD".index(s["answer"])].endswith("is blue, whereas in the first image it was red.")
    again = build_bench(db, "run", "med-edit", writer, BenchSettings())  # resumed: nothing asked again
    assert again.selected == outcome.selected and asked == 2 * 167 - 1
