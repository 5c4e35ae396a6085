"""The Img-Diff flows' parts: configs and their defaults, source captions, VLM answer cleaning, the
two-choice samples, and that crop scoring sends all crops of a batch to CLIP and BLIP at once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from pydantic import ValidationError

from pairsmith.filters.imgdiff.pipelines import RemoveThresholds, ReplaceThresholds
from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig
from pairsmith.models.adapters.caption_answer import CaptionRewrite
from pairsmith.models.lexicon.noun_lexicon import NounLexicon
from pairsmith.storage.pair_images import BAR_PX, open_image
from pairsmith.tasks.imgdiff.context import ImgDiffContext, ImgDiffModels
from pairsmith.tasks.imgdiff.items import ImgDiffItem, RegionCandidate, int_box
from pairsmith.tasks.imgdiff.prompts import clean_answer
from pairsmith.tasks.imgdiff.samples import object_presence_sample, object_side
from pairsmith.tasks.imgdiff.caption_source import BUNDLED_CAPTIONS, load_captions
from pairsmith.tasks.imgdiff.sources import plan_caption_items

ROOT = Path(__file__).resolve().parents[3]


def test_defaults_name_the_real_hub_models_and_the_papers_thresholds():
    replace, remove = ImgDiffReplaceConfig(), ImgDiffRemoveConfig()
    assert replace.generator.model_id == "stabilityai/stable-diffusion-xl-base-1.0"
    assert (replace.generator.steps, replace.generator.guidance_scale) == (50, 7.5)
    assert (replace.generator.self_replace, replace.generator.cross_replace) == (0.4, 1.0)
    assert (replace.clip.model_name, replace.clip.pretrained) == ("ViT-B-32", "openai")
    assert replace.blip.model_id == "Salesforce/blip-itm-large-coco"
    assert (replace.fastsam.weights, replace.fastsam.conf, replace.fastsam.iou) == ("FastSAM-x.pt", 0.05, 0.5)
    assert replace.rewriter.model_id == "lmsys/vicuna-7b-v1.5" and replace.vlm.model_id.startswith("Qwen/Qwen2-VL")
    assert replace.proposers == ("fastsam", "diffmap") and replace.captions_path is None
    assert replace.thresholds == ReplaceThresholds() and remove.thresholds == RemoveThresholds()
    assert remove.inpaint.model_id == "stabilityai/sdxl-turbo" and remove.inpaint.prompt == "background, nothing, 8k"
    assert remove.inpaint.guidance_scale == 0.0 and remove.source_run is None


@pytest.mark.parametrize("name, config", [("imgdiff.yaml", ImgDiffReplaceConfig), ("imgdiff_remove.yaml", ImgDiffRemoveConfig)])
def test_shipped_configs_are_the_defaults(name, config):
    loaded = config.model_validate(yaml.safe_load((ROOT / "configs" / name).read_text()))
    assert loaded.run_id() == config().run_id()


def test_run_ids_follow_what_shapes_the_rows_not_where_models_run():
    base = ImgDiffReplaceConfig()
    same = ImgDiffReplaceConfig(runtime={"device": "cpu"}, clip={"batch_size": 8}, generator={"pairs_per_call": 4},
                                blip={"batch_size": 2}, show_progress=True, batch_size=3)
    assert same.run_id() == base.run_id() and same.content_key() == base.content_key()
    # the run's size says how far it goes, not what it is: a larger run extends the same run
    assert ImgDiffReplaceConfig(pairs=8).run_id() == base.run_id()
    for changed in (ImgDiffReplaceConfig(thresholds={"bitm_min": 0.3}), ImgDiffReplaceConfig(seed=1),
                    ImgDiffReplaceConfig(rewriter={"mode": "lexicon"})):
        assert changed.run_id() != base.run_id()
    assert ImgDiffRemoveConfig(source_run="imgdiff-replace-x").run_id() != ImgDiffRemoveConfig().run_id()
    # With a source run, the caption and generator settings make nothing and do not change the run.
    a = ImgDiffRemoveConfig(source_run="r", seed=1, rewriter={"mode": "lexicon"})
    assert a.run_id() == ImgDiffRemoveConfig(source_run="r").run_id()


def test_the_flow_wide_runtime_reaches_every_model():
    config = ImgDiffRemoveConfig(runtime={"device": "cpu", "cache_dir": "/models", "offline": True})
    for part in (config.clip, config.blip, config.fastsam, config.vlm, config.inpaint, config.generator):
        assert config.with_runtime(part).runtime == config.runtime
    assert ImgDiffReplaceConfig().with_runtime(ImgDiffReplaceConfig().clip).runtime.device == "auto"


@pytest.mark.parametrize("data, message", [
    ({"thresholds": {"bitm": 0.3}}, "bitm"),
    ({"proposers": ["fastsam", "fastsam"]}, "listed twice"),
    ({"proposers": ["sam"]}, "proposers"),
    ({"pairs": 0}, "pairs"),
    ({"max_inpaint_per_pair": 0}, "max_inpaint_per_pair"),
])
def test_bad_settings_are_refused_with_the_field_named(data, message):
    with pytest.raises(ValidationError, match=message):
        ImgDiffRemoveConfig.model_validate(data)


def test_bundled_captions_ship_with_the_package_and_the_lexicon_rewrites_them_all():
    captions = load_captions()
    assert len(captions) >= 30 and len(set(captions)) == len(captions)
    lexicon = NounLexicon.load()
    assert all(lexicon.rewrite(c).ok for c in captions)
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert BUNDLED_CAPTIONS.name in package_data["pairsmith.tasks.imgdiff"]


def test_caption_files_jsonl_or_text_and_their_errors_name_file_and_line(tmp_path):
    (tmp_path / "c.txt").write_text("a cat on a sofa\n\na dog on a bench\n")
    assert load_captions(str(tmp_path / "c.txt")) == ["a cat on a sofa", "a dog on a bench"]
    for name, text, message in [
        ("bad.jsonl", '{"caption": "a cat"}\n{oops\n', "line 2: not valid JSON"),
        ("nocap.jsonl", '{"text": "a cat"}\n', "line 1: needs a non-empty \"caption\" string"),
        ("empty.txt", "\n\n", "holds no captions"),
    ]:
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=message):
            load_captions(str(tmp_path / name))
    with pytest.raises(ValueError, match="missing.jsonl': no such file"):
        load_captions(str(tmp_path / "missing.jsonl"))
    (tmp_path / "latin.txt").write_bytes(b"a cat\na caf\xe9 table\n")
    with pytest.raises(ValueError, match="latin.txt' line 2: not UTF-8"):
        load_captions(str(tmp_path / "latin.txt"))
    with pytest.raises(ValidationError, match="line 2: not valid JSON"):
        ImgDiffReplaceConfig(captions_path=str(tmp_path / "bad.jsonl"))


def test_planned_candidates_have_stable_ids_and_seeds_and_cycle_the_captions():
    captions = ["a cat on a sofa", "a dog on a bench"]
    first = plan_caption_items("imgdiff-replace", "key", 0, captions, range(0, 3))
    again = plan_caption_items("imgdiff-replace", "key", 0, captions, range(2, 4))
    assert [i.source_caption for i in first] == [captions[0], captions[1], captions[0]]
    assert (first[2].pair_id, first[2].seed) == (again[0].pair_id, again[0].seed)
    assert len({i.seed for i in first}) == 3 and all(0 <= i.seed < 2**63 for i in first)
    other_seed = plan_caption_items("imgdiff-replace", "key", 1, captions, range(0, 1))[0]
    assert other_seed.seed != first[0].seed


@pytest.mark.parametrize("answer, expected", [
    ("A red apple.", "A red apple."),
    ("  \n- a small brown dog\nmore text", "a small brown dog"),
    ('"a bicycle"', "a bicycle"),
    ("1. a cup", "a cup"),
    ("", None),
    ("  \n ... 12 !", None),
])
def test_vlm_answers_are_tidied_or_refused(answer, expected):
    assert clean_answer(answer) == expected


def test_long_answers_are_cut():
    assert len(clean_answer("word " * 200, max_chars=50)) == 50


def test_boxes_become_pixel_bounds_inside_the_image():
    assert int_box([10.4, 5.5, 20.2, 9.0], 64, 48) == (10, 5, 21, 9)
    assert int_box([-3, -1, 70, 60], 64, 48) == (0, 0, 64, 48)
    assert int_box([63.5, 47.5, 63.6, 47.9], 64, 48) == (63, 47, 64, 48)  # never empty


def test_object_presence_question_shows_the_original_on_the_recorded_side():
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 200, (40, 60, 3), dtype=np.uint8))
    inpainted = Image.fromarray(np.zeros((40, 60, 3), np.uint8))
    sides = set()
    for k in range(12):
        region_id = f"region-{k}"
        sample = object_presence_sample(pair_id="p", region_id=region_id, run_id="r", method="imgdiff-remove",
                                        original=original, inpainted=inpainted, box=[10, 10, 30, 30],
                                        description="a red mug", split="train")
        picture = np.asarray(open_image(sample.image))
        assert picture.shape == (40, 2 * 60 + BAR_PX, 3)
        left_is_original = (picture[20, 20] == np.asarray(original)[20, 20]).all() and picture[20, 20].any()
        assert sample.object_side == object_side(region_id) == ("left" if left_is_original else "right")
        assert sample.answer == ("A" if sample.object_side == "left" else "B")
        assert sample.conversation[1].content == sample.answer and 'object related to "a red mug" within the red bounding box' in sample.conversation[0].content
        assert sample.conversation[0].content.count("<image>") == 1 and sample.boxes == [[10, 10, 30, 30]]
        sides.add(sample.object_side)
    assert sides == {"left", "right"}  # drawn per region, both sides occur


@pytest.mark.slow
def test_crop_scoring_sends_every_crop_of_the_batch_in_one_clip_and_one_blip_call(tmp_path):
    from pairsmith.models.adapters.blip_itm import BlipItmConfig, BlipItmScorer
    from pairsmith.models.adapters.clip_scorer import ClipScorer, ClipScorerConfig
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.tiny.builders import build_tiny_blip_itm, build_tiny_clip
    from pairsmith.tasks.imgdiff.crop_filter import crop_filter

    cpu = ModelRuntime(device="cpu")
    tiny_clip = build_tiny_clip(tmp_path / "clip")
    clip = ClipScorer(ClipScorerConfig(model_name=tiny_clip.model_name, pretrained=str(tiny_clip.weights),
                                       model_config_file=str(tiny_clip.config_file), runtime=cpu, batch_size=512))
    blip = BlipItmScorer(BlipItmConfig(model_id=str(build_tiny_blip_itm(tmp_path / "blip")), runtime=cpu, batch_size=512))
    calls = {"clip": [], "blip": []}
    clip_forward, blip_forward = clip._embed_images, blip._score
    clip._embed_images = lambda loaded, images: calls["clip"].append(len(images)) or clip_forward(loaded, images)
    blip._score = lambda pairs: calls["blip"].append(len(pairs)) or blip_forward(pairs)
    rng = np.random.default_rng(1)
    items = []
    for p in range(3):
        images = [Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)) for _ in range(2)]
        regions = [RegionCandidate(region_id=f"{p}-{k}", box=[k, k, k + 20, k + 16], proposer="diffmap") for k in range(5)]
        regions.append(RegionCandidate(region_id=f"{p}-dead", box=[0, 0, 8, 8], proposer="diffmap", drop_reason="box_too_small"))
        items.append(ImgDiffItem(index=p, pair_id=f"p{p}", seed=p, before=images[0], after=images[1], regions=regions,
                                 rewrite=CaptionRewrite("a cat", "a dog", "cat", "dog", "living_thing")))
    result = crop_filter.fn(items, ImgDiffContext(ReplaceThresholds(crop_sim_max=1.0, bitm_min=-1.0), ImgDiffModels(clip=clip, blip=blip)))
    assert calls == {"clip": [30], "blip": [30]}  # 15 live boxes: 30 crops, one forward each
    (stats,) = result.stats
    assert (stats.stage, stats.n_in, stats.n_kept) == ("crop_filter", 15, 15) and stats.seconds > 0
    live = [r for item in items for r in item.regions if r.drop_reason is None]
    assert all(set(r.scores) == {"crop_clip_sim", "itm_before", "itm_after", "itm_cosine_before", "itm_cosine_after"}
               and None not in r.scores.values() for r in live)
    assert all(not r.scores for item in items for r in item.regions if r.drop_reason == "box_too_small")


def test_readme_imgdiff_commands_name_registered_flows_and_shipped_configs():
    from pairsmith.flows.registry import FLOWS

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Img-Diff flows", 1)[1].split("\n### ", 1)[0]
    commands = [line.split("#")[0].split() for line in section.split("```bash\n", 1)[1].split("```")[0].splitlines()]
    assert commands and all(c[:2] == ["pairsmith", "run"] and c[2] in FLOWS for c in commands)
    configs = [c[c.index("--config") + 1] for c in commands if "--config" in c]
    assert all((ROOT / path).is_file() for path in configs if path.startswith("configs/"))
    assert {"imgdiff-replace", "imgdiff-remove"} <= set(FLOWS)


@pytest.mark.slow
def test_one_extreme_crop_costs_only_its_own_region_in_a_captioning_batch(tmp_path):
    """Issue 11 case 6: a 1000x4 box makes the real Qwen2-VL processor raise ("aspect ratio must be
    smaller than 200"); that region alone is dropped as ``region_captions_rejected`` (issue 22: an
    error that will repeat is final, not retried), the other regions of the batch, other pairs
    included, get their captions."""
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
    from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig
    from pairsmith.tasks.imgdiff.region_captions import region_captions

    vlm = VlmChat(VlmConfig(model_id=str(build_tiny_qwen2_vl(tmp_path / "vlm")), runtime=ModelRuntime(device="cpu"),
                            max_new_tokens=4, temperature=1.0, seed=0, batch_size=8))
    rng = np.random.default_rng(2)
    items = []
    for p in range(2):
        images = [Image.fromarray(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)) for _ in range(2)]
        regions = [RegionCandidate(region_id=f"{p}-ok", box=[100, 100, 228, 228], proposer="diffmap")]
        if p == 0:
            regions.append(RegionCandidate(region_id="0-sliver", box=[0, 500, 1000, 504], proposer="diffmap"))
        items.append(ImgDiffItem(index=p, pair_id=f"p{p}", seed=p, before=images[0], after=images[1], regions=regions))
    (stats,) = region_captions.fn(items, ImgDiffContext(ReplaceThresholds(), ImgDiffModels(vlm=vlm))).stats
    by_id = {r.region_id: r for item in items for r in item.regions}
    assert by_id["0-sliver"].drop_reason == "region_captions_rejected" and "aspect ratio" in by_id["0-sliver"].drop_detail
    assert stats.n_in == 3 and stats.reasons["region_captions_rejected"] == 1
    for rid in ("0-ok", "1-ok"):  # captioned (a random model's words may still be judged empty)
        assert by_id[rid].drop_reason in (None, "region_captions_empty")
        assert "region_caption_before" in by_id[rid].scores
