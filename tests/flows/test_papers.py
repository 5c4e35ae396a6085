"""The papers' presets against configs/papers/parameters.yaml, docs/papers.md, ``pairsmith papers``,
and Img-Diff's printed prompts against the paper text in ../shared/papers (skipped where absent)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from pairsmith.flows import papers
from pairsmith.flows.cli.main import cli
from pairsmith.flows.dig_render_config import DigRenderConfig
from pairsmith.flows.evaluate_config import EvaluateConfig
from pairsmith.flows.finetune_config import GrpoFinetuneConfig, SftFinetuneConfig
from pairsmith.filters.refilterable import RefilterThresholds
from pairsmith.flows.imgdiff_config import ImgDiffRemoveConfig, ImgDiffReplaceConfig
from pairsmith.flows.med_edit_config import MedEditConfig
from tests.conftest import paper_text

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"dig-render": DigRenderConfig, "finetune": (GrpoFinetuneConfig, SftFinetuneConfig), "evaluate": EvaluateConfig,
          "imgdiff-replace": ImgDiffReplaceConfig, "imgdiff-remove": ImgDiffRemoveConfig, "refilter": RefilterThresholds,
          "med-edit": MedEditConfig}


def _copy_repo_configs(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "configs" / "papers", tmp_path / "configs" / "papers")
    return tmp_path


def _edit_yaml(path: Path, dotted: str, value) -> None:
    data = yaml.safe_load(path.read_text())
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    path.write_text(yaml.safe_dump(data))


def test_every_preset_loads_through_its_flows_config_model():
    params = papers.load_parameters()
    assert set(params.papers) >= {"dig", "imgdiff", "med"}
    assert "data" in params.papers["med"].presets
    assert set(params.papers["dig"].presets) == {"corpus", "grpo", "evaluate"}
    assert set(params.papers["imgdiff"].presets) == {"replace", "remove", "evaluate", "evaluate-cocot", "ablation",
                                                     *(f"table17-row{r}" for r in range(1, 5))}
    assert set(params.papers["med"].presets) >= {"sft-qwen2-vl", "sft-qwen2.5-vl", "sft-llava-1.6", "sft-llama-3.2"}
    assert set(params.papers["omnidiff"].presets) >= {"sft"}
    for paper in params.papers.values():
        for preset in paper.presets.values():
            config = papers.load_preset(preset)
            assert isinstance(config, MODELS[preset.flow]), preset.file
            assert preset.file in preset.command


def test_every_preset_carries_its_papers_values():
    assert papers.check() == []


def test_every_preset_has_parameters_and_every_key_resolves():
    rows = papers.table_rows()
    params = papers.load_parameters()
    for name, paper in params.papers.items():
        for preset in paper.presets:
            assert any(r.paper == name and r.preset == preset for r in rows), f"{name}/{preset} has no parameter"
    keyed = [r for r in rows if r.key]
    assert len(keyed) >= 40
    assert all(r.preset_value != papers.NOT_CARRIED for r in keyed)


@pytest.mark.parametrize("preset, key, value, expected", [
    ("dig/grpo.yaml", "grpo.beta", 0.02, "grpo.beta is 0.02, the paper's is 0.01"),
    ("dig/grpo.yaml", "stages.1.steps", 25, "stages.1.steps is 25, the paper's is 20"),
    ("dig/corpus.yaml", "sampling.max_changes", 3, "sampling.max_changes is 3, the paper's is 4"),
    ("imgdiff/replace.yaml", "thresholds.citm_min", 0.3, "thresholds.citm_min is 0.3, the paper's is 0.4"),
    ("imgdiff/remove.yaml", "inpaint.prompt", "background, nothing, 8k", "inpaint.prompt is 'background, nothing, 8k'"),
    ("imgdiff/table17/row2.yaml", "replace.bitm_min", 0.3, "table17/row2.yaml: replace is {"),
    ("med/sft-qwen2-vl.yaml", "train.objective", "plain", "train.objective is 'plain', the paper's is 'feature-difference'"),
    ("med/sft-qwen2.5-vl.yaml", "train.gradient_accumulation_steps", 4, "gradient_accumulation_steps is 4, the paper's is 8"),
    ("med/sft-llava-1.6.yaml", "lora.vision_tower", True, "lora.vision_tower is True, the paper's is False"),
    ("med/sft-llama-3.2.yaml", "train.per_device_batch_size", 16, "per_device_batch_size is 16, the paper's is 4"),
    ("omnidiff/sft.yaml", "train.vision_learning_rate", 1.0e-5, "train.vision_learning_rate is 1e-05, the paper's is 2e-06"),
    ("omnidiff/sft.yaml", "train.gradient_accumulation_steps", 16, "train.batch_size is 128, the paper's is 256"),
    ("omnidiff/sft.yaml", "lora.alpha", 128, "lora.alpha is 128, the paper's is 256"),
    ("med/data.yaml", "bench.per_type", 10, "bench.per_type is 10, the paper's is 15"),
    ("med/data.yaml", "mllm.model_id", "Qwen/Qwen2-VL-7B-Instruct", "mllm.model_id is 'Qwen/Qwen2-VL-7B-Instruct'"),
])
def test_a_changed_preset_value_fails_the_check(tmp_path, preset, key, value, expected):
    root = _copy_repo_configs(tmp_path)
    _edit_yaml(root / "configs" / "papers" / preset, key, value)
    problems = papers.check(root=root)
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_default_that_differs_needs_its_reason(tmp_path):
    root = _copy_repo_configs(tmp_path)
    path = root / "configs" / "papers" / "parameters.yaml"
    data = yaml.safe_load(path.read_text())
    entry = next(p for p in data["parameters"] if p.get("key") == "grpo.gradient_checkpointing")
    del entry["why_default"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    problems = papers.check("dig", root=root)
    assert problems == ["dig: gradient checkpointing: grpo.gradient_checkpointing: the default False differs and "
                        "why_default is empty"]


def test_a_code_constant_that_differs_fails(monkeypatch):
    from pairsmith.storage import pair_images

    monkeypatch.setattr(pair_images, "BAR_PX", 16)
    assert papers.check("imgdiff") == [
        "imgdiff: black bar between the side-by-side images (pixels): pairsmith.storage.pair_images:BAR_PX is 16, "
        "the paper's is 20"]


def test_values_the_papers_leave_open_are_listed_as_assumptions():
    rows = {r.key: r for r in papers.table_rows("dig") if r.key}
    for key in ("reward.lambda_f1", "reward.lambda_iou", "reward.iou_threshold", "sampling.min_objects"):
        assert rows[key].assumption, key
    assert not rows["grpo.beta"].assumption


def test_docs_papers_md_is_generated_from_the_list():
    expected = papers.render_markdown()
    assert (ROOT / "docs" / "papers.md").read_text() == expected, (
        "docs/papers.md is stale: run `pairsmith papers --markdown > docs/papers.md`")
    assert "| KL coefficient beta | DiG supp. Table 5 | 0.01 | grpo | `grpo.beta` | 0.01 | 0.01 |" in expected


def test_cli_prints_the_table_and_checks():
    runner = CliRunner()
    out = runner.invoke(cli, ["papers", "dig"])
    assert out.exit_code == 0, out.output
    assert "KL coefficient beta  [DiG supp. Table 5]" in out.output
    assert "paper 0.01 | preset grpo: 0.01 | default 0.01 | key grpo.beta" in out.output
    assert "== imgdiff" not in out.output
    ok = runner.invoke(cli, ["papers", "--check"])
    assert ok.exit_code == 0 and "carries the paper's values" in ok.output
    bad = runner.invoke(cli, ["papers", "nope"])
    assert bad.exit_code == 2 and "unknown paper 'nope'; known: dig, imgdiff, med" in bad.output
    md = runner.invoke(cli, ["papers", "--markdown"])
    assert md.exit_code == 0 and md.output == papers.render_markdown()


def test_cli_check_fails_on_a_drifted_preset(tmp_path, monkeypatch):
    root = _copy_repo_configs(tmp_path)
    _edit_yaml(root / "configs" / "papers" / "dig" / "grpo.yaml", "reward.alpha", 0.2)
    monkeypatch.setattr(papers, "ROOT", root)
    out = CliRunner().invoke(cli, ["papers", "dig", "--check"])
    assert out.exit_code == 1
    assert "reward.alpha is 0.2, the paper's is 0.1" in out.output


# ------------------------------------------------------------------ Img-Diff prompts as printed

def _norm(text: str) -> str:
    return " ".join(text.split())


def test_removal_question_is_img_diffs_fig_10_verbatim():
    from PIL import Image

    from pairsmith.tasks.imgdiff.samples import ONE_IMAGE, object_presence_sample

    text = paper_text('"object removal" data, including the image pair')
    printed = json.loads("{" + re.search(r'"conversations": (\[\{"from": "human".*?\}\])', text).group(0) + "}")
    question = printed["conversations"][0]["value"]
    description = re.search(r'related to "(.*?)" within', question).group(1)
    img = Image.new("RGB", (64, 48), "white")
    sample = object_presence_sample(pair_id="p", region_id="r", run_id="run", method="imgdiff-remove",
                                    original=img, inpainted=img, box=[4.0, 4.0, 20.0, 20.0],
                                    description=description, split="train")
    sent = sample.conversation[0].content
    assert sent.startswith(ONE_IMAGE)
    assert sent.removeprefix(ONE_IMAGE) == question  # line breaks included: Fig. 10 prints them as \n
    assert printed["conversations"][1]["value"] in ("A", "B")


def test_removal_inpainting_prompt_is_as_printed():
    text = paper_text("background, nothing, 8k")
    printed = re.search(r'The prompt is "([^"]+)"', text).group(1)
    remove = papers.load_preset(papers.load_parameters().papers["imgdiff"].presets["remove"])
    assert remove.inpaint.prompt == printed == "background, nothing, 8k."


def test_cocot_and_lexicon_categories_match_the_text():
    text = paper_text("Contrastive Chain-of-Thought")
    rows = {r.name: r for r in papers.table_rows("imgdiff")}
    assert _norm(rows["CoCoT instruction"].paper_value) in _norm(text)
    from pairsmith.tasks.imgdiff.prompts import COCOT_PROMPT

    assert f"\"{COCOT_PROMPT}," in text  # printed in quotes, its comma the sentence's
    categories = rows["lexicon categories (11)"].paper_value
    assert all(f'"{c}' in text for c in categories) and len(categories) == 11


def test_the_grpo_presets_table_5_settings_reach_trls_config(monkeypatch, tmp_path):
    """What run_grpo_stage hands TRL, captured at the trainer boundary (no model is loaded)."""
    import trl

    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.training.vlm_grpo import run_grpo_stage

    grpo = papers.load_preset(papers.load_parameters().papers["dig"].presets["grpo"]).grpo
    captured = {}

    class Stop(Exception):
        pass

    class FakeTrainer:
        def __init__(self, *, args, **kwargs):
            captured["args"] = args
            raise Stop

    monkeypatch.setattr(trl, "GRPOTrainer", FakeTrainer)
    with pytest.raises(Stop):
        run_grpo_stage(None, None, [], [], grpo, 60, ModelRuntime(device="cpu"), tmp_path)
    args = captured["args"]
    assert (args.weight_decay, args.max_grad_norm, args.beta, args.learning_rate) == (0.01, 1.0, 0.01, 1e-6)
    assert (args.temperature, args.top_p, args.num_generations, args.epsilon) == (1.0, 1.0, 5, 0.2)
    assert args.loss_type == "grpo" and args.max_completion_length == 4096 and args.max_steps == 60
    assert args.gradient_checkpointing is True


def test_finetune_print_args_shows_the_presets_trainer_arguments_without_a_gpu(tmp_path):
    out = CliRunner().invoke(cli, ["finetune", "--config", str(ROOT / "configs/papers/dig/grpo.yaml"), "--print-args",
                                   "--db", str(tmp_path / "none.lance")])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    assert printed["model_id"] == "Qwen/Qwen3-VL-8B-Thinking"
    assert [(s["name"], s["subsets"], s["trl_grpo_config"]["max_steps"]) for s in printed["stages"]] == [
        ("single", ["single"], 60), ("double", ["double"], 20), ("mixed", ["mixed"], 30)]
    trl_args = printed["stages"][0]["trl_grpo_config"]
    assert trl_args["weight_decay"] == 0.01 and trl_args["activation_checkpointing"] is True
    assert trl_args["loss_type"] == "grpo" and trl_args["beta"] == 0.01 and trl_args["top_p"] == 1.0
    assert printed["reward"]["alpha"] == 0.1
    assert not (tmp_path / "none.lance").exists()  # nothing is opened or created
    sft = CliRunner().invoke(cli, ["finetune", "--config", str(ROOT / "configs/sft.yaml"), "--print-args"])
    assert sft.exit_code == 0 and json.loads(sft.output)["method"] == "sft"


@pytest.mark.slow  # ~20-50 s per case on 2 CPU cores
@pytest.mark.parametrize("rewards, dropped", [
    ([1.0] * 5, 1.0),  # every rollout right: mean 1.0 > 0.99, the group is dropped
    ([0.0] * 5, 1.0),  # every rollout wrong: mean 0.0 < 0.01, dropped
    ([1.0, 0.0, 1.0, 0.0, 0.5], 0.0),  # mixed outcomes: the group trains
])
def test_grpo_online_filter_drops_groups_outside_the_range_on_a_tiny_cpu_run(tmp_path, rewards, dropped):
    """2 GRPO steps of a tiny random Qwen2-VL with the DiG preset's settings and crafted rewards."""
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
    from pairsmith.models.training.vlm_grpo import FILTER_METRIC, run_grpo_stage
    from pairsmith.models.training.vlm_training import LoraSettings, load_trainable_vlm
    from pairsmith.storage.store import PairStore
    from pairsmith.tasks.training.training_data import (
        DataSelection, PairImages, pin_tables, select_samples, training_dataset,
    )
    from tests.synthetic_db import SyntheticRun, build

    db = str(tmp_path / "db.lance")
    store = PairStore(db)
    build(store, SyntheticRun(width=64, height=48, unique_bytes=16), n_pairs=4)
    selection = DataSelection(tasks=["grounding"], splits=["train", "val", "test"])
    pinned = pin_tables(store, selection)
    rows = select_samples(store, pinned, selection).rows[:2]
    dataset = training_dataset(rows, PairImages(db, pinned.pairs_version), "multi", with_completion=False,
                               with_boxes=True)

    def crafted(completions, **kwargs):
        return [rewards[i % 5] for i in range(len(completions))]

    preset = papers.load_preset(papers.load_parameters().papers["dig"].presets["grpo"]).grpo
    settings = preset.model_copy(update={"max_completion_length": 6, "gradient_checkpointing": False})
    assert settings.filter_range == (0.01, 0.99)
    runtime = ModelRuntime(device="cpu")
    model, processor = load_trainable_vlm(str(build_tiny_qwen2_vl(tmp_path / "tiny")), runtime)
    _, log = run_grpo_stage(model, processor, dataset, [crafted], settings, 2, runtime, tmp_path / "work",
                            lora=LoraSettings())
    assert log.steps == 2
    fractions = [h[FILTER_METRIC] for h in log.history if FILTER_METRIC in h]
    assert fractions == [dropped, dropped]


def test_source_captions_from_an_mscoco_captions_file(tmp_path):
    from pairsmith.tasks.imgdiff.caption_source import load_captions

    coco = tmp_path / "captions_train2017.json"
    coco.write_text(json.dumps({"info": {}, "images": [{"id": 9}, {"id": 139}], "annotations": [
        {"image_id": 139, "id": 48, "caption": "A dog sits on a red couch. "},
        {"image_id": 9, "id": 3, "caption": "Two cats on a bed."},
        {"image_id": 139, "id": 12, "caption": "A brown dog on a sofa."}]}))
    assert load_captions(str(coco)) == ["Two cats on a bed.", "A brown dog on a sofa.", "A dog sits on a red couch."]
    config = ImgDiffReplaceConfig.model_validate({"captions_path": str(coco)})
    assert config.content_key() != ImgDiffReplaceConfig().content_key()  # the captions count by their text
    jsonl_named_json = tmp_path / "mine.json"
    jsonl_named_json.write_text('{"caption": "a cup on a table"}\n{"caption": "a car in the street"}\n')
    assert load_captions(str(jsonl_named_json)) == ["a cup on a table", "a car in the street"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"annotations": [{"image_id": 1, "id": 1, "caption": "ok"}, {"image_id": 1, "id": 2}]}))
    with pytest.raises(ValueError, match=r"bad.json' annotations\[1\]: needs a non-empty \"caption\" string"):
        load_captions(str(bad))


def test_the_table_17_ablation_run_keeps_whatever_any_row_keeps():
    """Each row's survivors are a subset of the ablation run's, so refilter can re-judge every row."""
    presets = papers.load_parameters().papers["imgdiff"].presets
    loose = papers.load_preset(presets["ablation"]).thresholds
    rows = [papers.load_preset(presets[f"table17-row{r}"]).replace for r in range(1, 5)]
    assert loose.pair_sim_min == min(r.pair_sim_min for r in rows) == 0.85
    assert loose.bitm_min == min(r.bitm_min for r in rows) == 0.3
    assert loose.citm_min == min(r.citm_min for r in rows) == 0.3
    assert loose.caption_sim_max == max(r.caption_sim_max for r in rows) == 0.9
    assert rows[2] == papers.load_preset(presets["replace"]).thresholds  # row (3) is the paper's choice
    replace = papers.load_preset(presets["replace"])
    assert papers.load_preset(presets["ablation"]).model_copy(update={"thresholds": replace.thresholds}) == replace


def test_rewriter_rounds_give_each_caption_several_different_replacements():
    """Img-Diff §11: several rounds of noun replacement on one caption; each round its own draw."""
    from pairsmith.models.adapters.caption_rewriter import CaptionRewriter, CaptionRewriterConfig
    from pairsmith.tasks.imgdiff.sources import plan_caption_items

    items = plan_caption_items("imgdiff-replace", "key", 0, ["A dog sits on a red couch.", "A cat on a car."],
                               range(6), rounds=3)
    assert [(i.source_caption[:5], i.rewrite_round) for i in items] == [
        ("A dog", 0), ("A dog", 1), ("A dog", 2), ("A cat", 0), ("A cat", 1), ("A cat", 2)]
    assert len({i.pair_id for i in items}) == 6 and len({i.seed for i in items}) == 6
    rewriter = CaptionRewriter(CaptionRewriterConfig(mode="lexicon", rounds=3))
    out = rewriter.rewrite_batch([i.source_caption for i in items[:3]], [i.rewrite_round for i in items[:3]])
    assert all(r.ok for r in out) and len({r.caption for r in out}) == 3
    assert out[0] == rewriter.rewrite(items[0].source_caption)  # round 0 is the rewrite without rounds
    # one round (the default) plans exactly as before
    assert [i.origin for i in plan_caption_items("f", "k", 0, ["a", "b"], range(3))] == [
        "caption:0", "caption:1", "caption:0"]
    with pytest.raises(ValueError, match="rounds > 1 with an LLM needs temperature > 0"):
        CaptionRewriterConfig(mode="llm", rounds=2)
    preset = papers.load_preset(papers.load_parameters().papers["imgdiff"].presets["replace"]).rewriter
    assert preset.rounds == 3 and preset.temperature > 0


def test_the_removal_describer_gets_the_box_on_the_full_image_as_in_section_19():
    from PIL import Image

    from pairsmith.tasks.imgdiff.describe import describe_request
    from pairsmith.tasks.imgdiff.items import ImgDiffItem
    from pairsmith.tasks.imgdiff.prompts import DESCRIBE_PROMPT

    original = Image.new("RGB", (200, 100), "white")
    item = ImgDiffItem(index=0, pair_id="p", seed=0, before=original)
    boxed = describe_request(item, [20.0, 10.0, 60.0, 50.0], "box")
    assert boxed.images == (original,)  # the whole original image
    assert boxed.prompt.startswith("Describe the object in the region [0.10, 0.10, 0.30, 0.50] of this image")
    cropped = describe_request(item, [20.0, 10.0, 60.0, 50.0], "crop")
    assert cropped.images[0].size == (40, 40) and cropped.prompt == DESCRIBE_PROMPT
    remove = papers.load_preset(papers.load_parameters().papers["imgdiff"].presets["remove"])
    assert remove.describe_view == "box" and ImgDiffRemoveConfig().describe_view == "crop"
    assert ImgDiffRemoveConfig(describe_view="box").run_id() != ImgDiffRemoveConfig().run_id()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["parameters"][0].update(preset="nope"), "parameters[0] (image pairs in the corpus): paper dig has no preset 'nope'"),
    (lambda d: d["parameters"][0].update(colour="red"), "parameters.0.colour"),
])
def test_a_bad_parameter_list_is_one_line_and_exit_2(tmp_path, monkeypatch, edit, message):
    root = _copy_repo_configs(tmp_path)
    path = root / "configs" / "papers" / "parameters.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setattr(papers, "ROOT", root)
    out = CliRunner().invoke(cli, ["papers", "--check"])
    assert out.exit_code == 2
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and "parameters.yaml" in lines[0] and message in lines[0]


def test_a_preset_that_does_not_validate_names_the_file_and_field(tmp_path, monkeypatch):
    root = _copy_repo_configs(tmp_path)
    _edit_yaml(root / "configs" / "papers" / "dig" / "grpo.yaml", "grpo.num_generations", 4)  # 5 per device
    monkeypatch.setattr(papers, "ROOT", root)
    out = CliRunner().invoke(cli, ["papers", "dig"])
    assert out.exit_code == 2 and "dig/grpo.yaml: grpo: per_device_batch_size" in out.output
    assert "Value error" not in out.output and len(out.output.strip().splitlines()) == 1


def test_sft_presets_are_compared_with_pairsmiths_sft_defaults():
    rows = {(r.preset, r.key): r for r in papers.table_rows("omnidiff") if r.key}
    assert rows[("sft", "train.vision_learning_rate")].default_value is None
    assert rows[("sft", "train.batch_size")].default_value == 16  # 4 x 4: SftSettings' defaults, a property
    med = {(r.preset, r.name.split(": ", 1)[1]): r for r in papers.table_rows("med") if r.preset.startswith("sft-")}
    eq7 = "SFT objective, Eq. 7 (caption loss on Z[I(x) - I(x_hat)])"
    assert med[("sft-qwen2-vl", eq7)].preset_value == "feature-difference"
    assert med[("sft-llava-1.6", eq7)].key is None and "NOT carried" in med[("sft-llava-1.6", eq7)].note
