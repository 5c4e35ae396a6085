"""Img-Diff's unnatural-image filter (supplementary §15): the keep rule, the stage on a tiny Qwen2-VL that
loads through the real loader, the stored scores re-judged later, and the paper preset leaving it off."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from pairsmith.filters.imgdiff.naturalness import (
    ASSUMED_NATURAL_MIN, NATURAL, NATURAL_OPTIONS, keep_natural, yes_probability,
)
from pairsmith.filters.imgdiff.pipelines import PAIR_FILTER, REMOVE, REPLACE, RemoveThresholds, ReplaceThresholds
from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig
from pairsmith.tasks.imgdiff.items import ImgDiffItem
from pairsmith.tasks.imgdiff.prompts import NATURALNESS_PROMPT
from pairsmith.tasks.imgdiff.context import ImgDiffContext, ImgDiffModels, StepSettings
from pairsmith.tasks.imgdiff.steps import step_for

ROOT = Path(__file__).resolve().parents[3]


def test_yes_probability_is_a_two_way_softmax_of_the_answers_log_likelihoods():
    assert yes_probability(-1.0, -1.0) == pytest.approx(0.5)
    assert yes_probability(math.log(0.75), math.log(0.25)) == pytest.approx(0.75)
    assert yes_probability(-1000.0, -1.0) < 1e-6 and yes_probability(-1.0, -1000.0) > 1 - 1e-6
    assert yes_probability(float("-inf"), float("-inf")) == 0.5


@pytest.mark.parametrize("before, after, natural_min, reason", [
    (0.1, 0.1, None, None),  # off: every pair kept, nothing read
    (None, None, None, None),
    (0.9, 0.8, 0.5, None),
    (0.5, 0.9, 0.5, "unnatural_before"),  # strict: exactly on the threshold drops
    (0.9, 0.5, 0.5, "unnatural_after"),
    (0.2, 0.2, 0.5, "unnatural_before"),  # the first side that fails
    (None, 0.9, 0.5, "natural_missing"),
    (0.9, float("nan"), 0.5, "natural_missing"),
])
def test_keep_rule_boundaries(before, after, natural_min, reason):
    verdict = keep_natural(before, after, natural_min)
    assert verdict.reason == reason and verdict.keep == (reason is None)


def test_both_pipelines_run_it_after_their_pairs_are_made_and_refilter_reads_nothing_while_off():
    assert REPLACE.names.index(NATURAL.name) == REPLACE.names.index(PAIR_FILTER.name) + 1
    assert REMOVE.names.index(NATURAL.name) == REMOVE.names.index("generate") + 1
    assert NATURAL.needs(ReplaceThresholds()) == () and NATURAL.needs(RemoveThresholds()) == ()
    assert NATURAL.needs(ReplaceThresholds(natural_min=0.5)) == ("natural_before", "natural_after")
    assert step_for(NATURAL).name == NATURAL.name
    # Stored rows re-judged under a threshold (what `pairsmith refilter` does with the same rule).
    row = {"natural_before": 0.7, "natural_after": 0.3}
    assert NATURAL.judge(row, ReplaceThresholds()).keep
    assert NATURAL.judge(row, ReplaceThresholds(natural_min=0.5)).reason == "unnatural_after"
    assert NATURAL.judge({}, RemoveThresholds(natural_min=0.5)).reason == "natural_missing"


def test_a_threshold_without_scores_is_refused_and_the_paper_preset_leaves_the_filter_off():
    with pytest.raises(ValidationError, match="natural_min needs naturalness.score"):
        ImgDiffReplaceConfig(thresholds={"natural_min": 0.5})
    with pytest.raises(ValidationError, match="natural_min"):
        ImgDiffRemoveConfig(thresholds={"natural_min": 1.5}, naturalness={"score": True})
    ImgDiffRemoveConfig(thresholds={"natural_min": 0.5}, naturalness={"score": True})
    for name, model in (("replace", ImgDiffReplaceConfig), ("remove", ImgDiffRemoveConfig)):
        preset = model.model_validate(yaml.safe_load((ROOT / f"configs/papers/imgdiff/{name}.yaml").read_text()))
        assert not preset.naturalness.score and preset.thresholds.natural_min is None
    # Off by default, so a config that does not mention it keeps its run id.
    assert ImgDiffReplaceConfig().run_id() == ImgDiffReplaceConfig(naturalness={"score": False}).run_id()
    assert ImgDiffReplaceConfig().run_id() != ImgDiffReplaceConfig(naturalness={"score": True}).run_id()


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory):
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
    from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig

    path = build_tiny_qwen2_vl(tmp_path_factory.mktemp("natural-vlm"))
    return VlmChat(VlmConfig(model_id=str(path), runtime=ModelRuntime(device="cpu"), batch_size=8))


def _items(n: int) -> list[ImgDiffItem]:
    rng = np.random.default_rng(5)
    return [ImgDiffItem(index=i, pair_id=f"p{i}", seed=i,
                        before=Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)),
                        after=Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)))
            for i in range(n)]


def test_the_stage_stores_each_images_yes_probability_and_judges_with_the_threshold(tiny_vlm, monkeypatch):
    from pairsmith.models.adapters.vlm_chat import VlmChat, VlmRequest
    from pairsmith.tasks.imgdiff.naturalness import NaturalnessSettings, natural

    sent = []
    real = VlmChat.score_options_batch

    def capture(self, requests, options):  # the adapter boundary: what the judge is asked
        sent.extend((r.prompt, len(r.images), tuple(o)) for r, o in zip(requests, options))
        return real(self, requests, options)

    monkeypatch.setattr(VlmChat, "score_options_batch", capture)
    items = _items(3)
    (stats,) = natural.fn(items, ImgDiffContext(ReplaceThresholds(), ImgDiffModels(vlm=tiny_vlm), StepSettings(naturalness=NaturalnessSettings(score=True)))).stats
    assert sent == [(NATURALNESS_PROMPT, 1, NATURAL_OPTIONS)] * 6  # before and after of each pair, one image each
    assert stats.n_in == 3 and stats.n_kept == 3  # scored, but no threshold: all kept
    scores = [(i.scores["natural_before"], i.scores["natural_after"]) for i in items]
    for before, after in scores:
        assert 0.0 <= before <= 1.0 and 0.0 <= after <= 1.0
    # The stored number is P(Yes) of the two options' scores, recomputed here directly.
    direct = real(tiny_vlm, [VlmRequest((items[0].before,), NATURALNESS_PROMPT)], [list(NATURAL_OPTIONS)])[0]
    assert scores[0][0] == pytest.approx(yes_probability(*direct.scores), abs=1e-5)

    # A threshold between the scores drops exactly the pairs whose lower side is at or below it.
    lows = sorted(min(s) for s in scores)
    cut = (lows[0] + lows[1]) / 2 if lows[0] < lows[1] else lows[0]
    again = _items(3)
    (stats,) = natural.fn(again, ImgDiffContext(ReplaceThresholds(natural_min=cut), ImgDiffModels(vlm=tiny_vlm), StepSettings(naturalness=NaturalnessSettings(score=True)))).stats
    dropped = [i for i in again if not i.alive]
    assert {i.drop_reason for i in dropped} <= {"unnatural_before", "unnatural_after"}
    assert len(dropped) == sum(min(s) <= cut for s in scores) >= 1
    assert all("P(natural)" in i.drop_detail for i in dropped)
    assert stats.n_in - stats.n_kept == len(dropped)


def test_off_it_asks_nothing_and_keeps_every_pair(tiny_vlm, monkeypatch):
    from pairsmith.models.adapters.vlm_chat import VlmChat
    from pairsmith.tasks.imgdiff.naturalness import NaturalnessSettings, natural

    def refuse(*_):
        raise AssertionError("the judge was asked with the filter off")

    monkeypatch.setattr(VlmChat, "score_options_batch", refuse)
    items = _items(2)
    (stats,) = natural.fn(items, ImgDiffContext(ReplaceThresholds(), ImgDiffModels(vlm=tiny_vlm), StepSettings(naturalness=NaturalnessSettings()))).stats
    assert stats.n_in == 2 and stats.n_kept == 2 and all("natural_before" not in i.scores for i in items)
    assert ASSUMED_NATURAL_MIN == 0.5
