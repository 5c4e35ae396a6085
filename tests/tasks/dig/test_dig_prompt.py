"""DiG's grounding prompt: verbatim against the supplement's "Prompt for DiG Task" (read from
../shared/papers at test time; skipped with a message where the text is absent), and sent as is by
the samples dig-render builds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pairsmith.flows.dig_render_config import DigRenderConfig
from pairsmith.scenes.pair_plan import PairPlan
from pairsmith.tasks.dig.prompts import (
    DIG_GROUNDING_PROMPT,
    PAIRSMITH_GROUNDING_PROMPT,
    count_sentence,
    grounding_prompt,
)
from pairsmith.tasks.dig.records import _samples
from pairsmith.tasks.sample_builders import TWO_IMAGES, SplitFractions
from tests.conftest import paper_text

ROOT = Path(__file__).resolve().parents[3]
MARKER = "Prompt for DiG Task"


def _supplement() -> str:
    return paper_text(MARKER)


def _printed_prompt(text: str) -> str:
    """The prompt as the supplement prints it, from 'You will be given' to 'pixel coordinates.', its
    code fences removed and its one LaTeX span ($[x_{-1}, ...]$, the PDF's rendering of x_1) as plain text."""
    start = text.index("You will be given two separate images.")
    end = text.index("with absolute pixel coordinates.", start) + len("with absolute pixel coordinates.")
    printed = text[start:end].replace("```", "")
    return re.sub(r"\$([^$]*)\$", lambda m: re.sub(r"[{}]", "", m.group(1).replace("{-", "")), printed)


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_dig_prompt_is_the_supplements_text_verbatim():
    text = _supplement()
    assert _norm(DIG_GROUNDING_PROMPT) == _norm(_printed_prompt(text))
    # the two rules and the Important line are in it, word for word
    for part in ("1. **Item is Missing or Changed:**", "2. **Item is New:**",
                 "Important: All coordinates must be relative to the **first ('before') image**."):
        assert part in DIG_GROUNDING_PROMPT
    # stages 1-2 state the number of differences: the paper says so (its words are not printed)
    assert "For Stage 1 and Stage 2, the model is additionally informed of the number of differences" in text


def test_stage_1_2_prompts_state_the_count_and_stage_3_prompts_do_not():
    assert grounding_prompt("dig", 1, 320, 240) == DIG_GROUNDING_PROMPT + "\nThere is exactly 1 difference between the two images."
    assert grounding_prompt("dig", 3, 320, 240).endswith("\nThere are exactly 3 differences between the two images.")
    assert grounding_prompt("dig", None, 320, 240) == DIG_GROUNDING_PROMPT
    assert count_sentence(2) == "There are exactly 2 differences between the two images."


def test_pairsmiths_prompt_stays_available_by_name():
    text = grounding_prompt("pairsmith", None, 320, 240)
    assert text == PAIRSMITH_GROUNDING_PROMPT.format(count="", width=320, height=240)
    assert "(320x240)" in text and "Answer [] if nothing changed." in text
    assert "There is exactly 1 difference." in grounding_prompt("pairsmith", 1, 320, 240)
    with pytest.raises(KeyError, match="unknown grounding prompt 'clevr'"):
        grounding_prompt("clevr", None, 320, 240)


def _plan() -> PairPlan:
    return PairPlan(index=0, pair_id="pair-0", seed=1, n_changes=2, distractor=False, scene=None, user_scene=False)


@pytest.mark.parametrize("subset, boxes", [
    ("single", [[10.0, 12.0, 40.0, 44.0]]),
    ("double", [[10.0, 12.0, 40.0, 44.0], [100.0, 80.0, 130.0, 120.0]]),
])
def test_dig_render_samples_send_exactly_the_papers_prompt(subset, boxes):
    """What dig-render stores as the grounding samples' user turn (tasks/dig/records.py builds every one)."""
    rows = _samples(_plan(), "run", boxes, ["a change"], "color", subset, 320, 240, SplitFractions(), "dig")
    grounding = {r.subset: r for r in rows if r.task == "grounding"}
    assert set(grounding) == {subset, "mixed"}
    staged = grounding[subset].conversation[0].content
    assert staged == TWO_IMAGES + DIG_GROUNDING_PROMPT + "\n" + count_sentence(len(boxes))
    assert grounding["mixed"].conversation[0].content == TWO_IMAGES + DIG_GROUNDING_PROMPT  # stage 3: no count
    assert grounding[subset].conversation[1].content == grounding[subset].answer


def test_the_dig_preset_picks_the_papers_prompt_and_the_default_stays_pairsmiths():
    import yaml

    preset = DigRenderConfig.model_validate(yaml.safe_load((ROOT / "configs/papers/dig/corpus.yaml").read_text()))
    assert preset.grounding_prompt == "dig"
    assert DigRenderConfig().grounding_prompt == "pairsmith"
    # the default prompt does not change the run id of existing configs; the paper's does
    assert DigRenderConfig().run_id() == DigRenderConfig(grounding_prompt="pairsmith").run_id()
    assert DigRenderConfig(grounding_prompt="dig").run_id() != DigRenderConfig().run_id()
    rows = _samples(_plan(), "run", [[1.0, 2.0, 3.0, 4.0]], ["x"], "color", "single", 320, 240, SplitFractions())
    assert "(320x240)" in rows[0].conversation[0].content  # pairsmith's prompt unless asked


# ------------------------------------------------------------------ DiG's three disjoint subsets

def test_dig_subsets_are_equal_and_each_has_its_k():
    from collections import Counter

    from pairsmith.scenes.pair_plan import PairSampling, plan_pair

    sampling = PairSampling(subsets="dig", min_changes=1, max_changes=4)
    plans = [plan_pair(i, f"pair-{i}", 0, sampling, None) for i in range(30)]
    assert Counter(p.subset for p in plans) == {"single": 10, "double": 10, "mixed": 10}
    assert {p.n_changes for p in plans if p.subset == "single"} == {1}
    assert {p.n_changes for p in plans if p.subset == "double"} == {2}
    assert {p.n_changes for p in plans if p.subset == "mixed"} <= {1, 2, 3, 4}
    assert len({p.n_changes for p in plans if p.subset == "mixed"}) > 1
    # 31 pairs: as equal as 31 allows; the default keeps drawing K for every pair
    assert Counter(plan_pair(i, "x", 0, sampling, None).subset for i in range(31))["single"] == 11
    assert {plan_pair(i, "x", 0, PairSampling(), None).subset for i in range(10)} == {None}
    with pytest.raises(ValueError, match="no pairs without a change"):
        PairSampling(subsets="dig", distractor_fraction=0.1)


@pytest.mark.parametrize("subset, n_boxes, count", [("single", 1, True), ("double", 2, True), ("mixed", 3, False)])
def test_a_dig_subset_pair_gives_only_its_own_grounding_sample(subset, n_boxes, count):
    plan = PairPlan(index=0, pair_id="pair-0", seed=1, n_changes=n_boxes, distractor=False, scene=None,
                    user_scene=False, subset=subset)
    boxes = [[10.0 * k, 10.0, 10.0 * k + 8, 20.0] for k in range(1, n_boxes + 1)]
    rows = _samples(plan, "run", boxes, ["a change"], "color", subset, 320, 240, SplitFractions(), "dig")
    grounding = [r for r in rows if r.task == "grounding"]
    assert [r.subset for r in grounding] == [subset]
    prompt = grounding[0].conversation[0].content
    assert prompt == TWO_IMAGES + DIG_GROUNDING_PROMPT + ("\n" + count_sentence(n_boxes) if count else "")


@pytest.mark.slow
def test_the_dig_corpus_preset_renders_disjoint_subsets_and_each_curriculum_stage_reads_its_own(tmp_path):
    """`pairsmith render --config configs/papers/dig/corpus.yaml --pairs 6`: 2 / 2 / 2 pairs, and the
    GRPO preset's stages select only their own subset's samples (with the count in stages 1-2)."""
    import yaml

    from pairsmith.flows.dig_render import dig_render
    from pairsmith.flows.finetune_config import FinetuneConfig
    from pairsmith.storage.store import PairStore
    from pairsmith.tasks.training.training_data import pin_tables, select_samples

    data = yaml.safe_load((ROOT / "configs/papers/dig/corpus.yaml").read_text())
    data.update(db=str(tmp_path / "db.lance"), pairs=6, render={"samples": 2, "width": 160, "height": 120})
    dig_render(DigRenderConfig.model_validate(data))
    store = PairStore(str(tmp_path / "db.lance"))
    kept = store.read("pairs", where="status = 'kept'").to_pylist()
    by_subset = {s: [p["n_changes"] for p in kept if p["subset"] == s] for s in ("single", "double", "mixed")}
    assert len(kept) >= 5, "at most one of 6 pairs may be dropped"
    assert set(by_subset["single"]) <= {1} and set(by_subset["double"]) <= {2}
    assert all(1 <= k <= 4 for k in by_subset["mixed"])
    assert sum(map(len, by_subset.values())) == len(kept)

    grpo = FinetuneConfig.model_validate(yaml.safe_load((ROOT / "configs/papers/dig/grpo.yaml").read_text())).root
    grpo = grpo.model_copy(update={"data": grpo.data.model_copy(update={"splits": ["train", "val", "test"]})})
    pinned = pin_tables(store, grpo.data)
    seen: dict[str, set[str]] = {}
    for stage in grpo.stages:
        rows = select_samples(store, pinned, grpo.data, stage.subsets).rows
        seen[stage.name] = {r["pair_id"] for r in rows}
        assert {r["subset"] for r in rows} <= set(stage.subsets)
        assert len(rows) == len(by_subset[stage.subsets[0]])  # one grounding sample per pair of the subset
        for r in rows:
            stated = "between the two images." in r["conversation"][0]["content"]
            assert stated == (stage.name != "mixed")
    assert not (seen["single"] & seen["double"]) and not (seen["single"] & seen["mixed"])
    assert not (seen["double"] & seen["mixed"])


# ------------------------------------------------------------------ boxes as the prompt defines them

def _maps():
    before = np.zeros((20, 30), np.uint8)
    after = np.zeros((20, 30), np.uint8)
    before[5:9, 5:9] = 1  # object 0: a small cube that grows
    after[4:12, 4:12] = 1
    before[2:6, 20:24] = 2  # object 1: removed
    after[14:18, 20:26] = 3  # object 2: added
    return before, after


def test_before_frame_boxes_changed_items_where_they_were_and_new_ones_at_their_spot():
    from pairsmith.scenes.ground_truth import measure_regions
    from pairsmith.scenes.scene_config import SceneObject
    from pairsmith.scenes.scene_sampler import Change

    before, after = _maps()
    small = SceneObject(shape="cube", color="red", size="small", material="metal", position=(0.0, 0.0))
    large = small.model_copy(update={"size": "large"})
    grow = Change(kind="size", object_id=0, before=small, after=large)
    removed = Change(kind="remove", object_id=1, before=small, after=None)
    added = Change(kind="add", object_id=2, before=None, after=small)
    box = lambda change, frame: measure_regions(change, before, after, None, frame)[0].box  # noqa: E731
    assert box(grow, "before") == [5.0, 5.0, 9.0, 9.0]  # the original item on the before image
    assert box(grow, "union") == [4.0, 4.0, 12.0, 12.0]  # pairsmith's default: both images' pixels
    assert box(removed, "before") == box(removed, "union") == [20.0, 2.0, 24.0, 6.0]
    assert box(added, "before") == box(added, "union") == [20.0, 14.0, 26.0, 18.0]  # the empty spot it fills


def test_the_dig_preset_boxes_on_the_before_image_and_the_default_stays_union():
    import yaml

    preset = DigRenderConfig.model_validate(yaml.safe_load((ROOT / "configs/papers/dig/corpus.yaml").read_text()))
    assert preset.sampling.boxes == "before" and DigRenderConfig().sampling.boxes == "union"


# ------------------------------------------------------------------ Think-Then-Answer (DiG supp. §6)

@pytest.mark.parametrize("reply, boxes", [
    ("<think>maybe [[1, 2, 3, 4]]</think>\n[[5, 6, 7, 8]]", [[5.0, 6.0, 7.0, 8.0]]),  # reasoning is not read
    ("I compared them.</think><answer>[[10, 20, 30, 40]]</answer>", [[10.0, 20.0, 30.0, 40.0]]),
    ("<think>the red cube [[1, 2, 3, 4]] moved", None),  # cut inside its reasoning: no answer, not a guess
    ("<think>a</think>[]", []),
    ("[[1, 2, 3, 4]]", [[1.0, 2.0, 3.0, 4.0]]),  # a non-thinking model: all of it is the answer
])
def test_grounding_answers_are_read_after_think(reply, boxes):
    from pairsmith.tasks.answers.grounding_reward import parse_boxes

    assert parse_boxes(reply) == boxes


def test_mcq_and_caption_answers_are_read_after_think_in_evaluation():
    from pairsmith.tasks.answers.mcq_answer import parse_choice
    from pairsmith.tasks.evaluate.generate_answers import read_answer

    assert parse_choice("<think>A looks right... no</think>B") == "B"
    assert parse_choice("<think>A looks right") is None
    assert read_answer("med-mcq", "<think>A? </think>The answer is C.", ["A. x", "B. y", "C. z"])[0] == "C"
    text, verdict = read_answer("diff-caption", "<think>hmm</think> The cube turned red. ", None)
    assert text == "The cube turned red." and verdict.keep
    text, verdict = read_answer("diff-caption", "<think>the cube turned", None)
    assert text is None and verdict.reason == "parse_unfinished_think"
