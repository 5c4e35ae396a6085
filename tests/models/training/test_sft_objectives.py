"""SFT objectives and optimiser groups on a tiny random Qwen2-VL (CPU): MED's Eq. 7 (the language model
fed the difference of the two images' visual features), OmniDiff's separate vision-tower learning rate,
and a LoRA that leaves the vision tower frozen (MED Table 6)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl

    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


def _pictures(seed: int, n: int, size=(84, 56)):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


def _pair_dataset(pairs: list[tuple], answers: list[str]):
    """A ``datasets.Dataset`` whose items are what ``training_dataset`` gives a two-image sample."""
    import datasets

    def items(batch):
        out = {"prompt": [], "completion": [], "images": []}
        for i in batch["i"]:
            out["prompt"].append([{"role": "user", "content": [
                {"type": "image"}, {"type": "image"}, {"type": "text", "text": "What is the primary difference?"}]}])
            out["completion"].append([{"role": "assistant", "content": [{"type": "text", "text": answers[i]}]}])
            out["images"].append(list(pairs[i]))
        return out

    return datasets.Dataset.from_dict({"i": list(range(len(pairs)))}).with_transform(items)


def _capture_lm_inputs(model) -> list[tuple]:
    """(input_ids, inputs_embeds) of every forward: what the language model is fed, per batch."""
    seen, ids = [], []
    model.model.register_forward_pre_hook(lambda m, a, kw: ids.append(kw["input_ids"].detach().clone()),
                                          with_kwargs=True)
    model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.append((ids[-1], kw["inputs_embeds"].detach().clone())), with_kwargs=True)
    return seen


def _settings(**kw):
    from pairsmith.models.training.vlm_sft import SftSettings

    base = dict(objective="feature-difference", learning_rate=1e-2, lr_scheduler="constant", warmup_ratio=0.0,
                per_device_batch_size=2, gradient_accumulation_steps=1)
    return SftSettings(**{**base, **kw})


@pytest.mark.slow  # two short trainings: ~10 s of CPU, 30 s on 2 shared cores
def test_eq7_loss_falls_and_identical_images_feed_the_language_model_zeros(tiny_vlm, tmp_path):
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.training.vlm_sft import run_sft
    from pairsmith.models.training.vlm_training import LoraSettings, load_trainable_vlm

    runtime = ModelRuntime(device="cpu")
    answers = ["In the second image, the cup is red.", "In the second image, the dog is gone."]
    image_token = None

    # different images (the edit at another size: resized to the source's grid): the caption loss falls
    model, processor = load_trainable_vlm(str(tiny_vlm), runtime)
    image_token = model.config.image_token_id
    fed = _capture_lm_inputs(model)
    src = _pictures(0, 2)
    edits = [im.resize((70, 50)) for im in _pictures(1, 2)]
    trained, log = run_sft(model, processor, _pair_dataset(list(zip(src, edits)), answers), _settings(max_steps=6),
                           LoraSettings(), runtime, tmp_path / "a")
    losses = log.values("loss")
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.1, losses
    tower_b = [p for n, p in trained.named_parameters() if ".visual.blocks." in n and "lora_B" in n]
    assert tower_b and max(float(p.abs().max()) for p in tower_b) > 0  # the loss reaches the tower through I(x) - I(x_hat)
    ids, embeds = fed[0]
    grid_tokens = 2 * 3  # an 84x56 source: 6x4 patches of 14 px, merged 2x2 -> 3x2 tokens per image
    assert int((ids == image_token).sum()) == 2 * grid_tokens  # one placeholder per sample, not two
    assert embeds[ids == image_token].abs().max() > 0

    # the same image twice (LoRA dropout 0: the tower is deterministic): I(x) - I(x) is zero at every step
    model, processor = load_trainable_vlm(str(tiny_vlm), runtime)
    fed = _capture_lm_inputs(model)
    same = [(im, im.copy()) for im in _pictures(2, 2)]
    run_sft(model, processor, _pair_dataset(same, answers), _settings(max_steps=2), LoraSettings(dropout=0.0),
            runtime, tmp_path / "b")
    assert len(fed) == 2
    for ids, embeds in fed:
        visual = embeds[ids == image_token]
        assert visual.shape == (2 * grid_tokens, embeds.shape[-1])
        assert torch_all_zero(visual)
        assert embeds[ids != image_token].abs().max() > 0  # the text tokens are their embeddings


def torch_all_zero(tensor) -> bool:
    return bool((tensor == 0).all())


def test_the_difference_collator_keeps_one_placeholder_and_one_grid(tiny_vlm):
    from transformers import AutoProcessor
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from pairsmith.models.training.vlm_sft import AFTER_PIXELS, DifferenceCollator

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    collate = DifferenceCollator(DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True), processor)
    src, edit = _pictures(3, 1)[0], _pictures(4, 1, size=(112, 112))[0]  # another size and aspect
    item = _pair_dataset([(src, edit)], ["In the second image, the sky is grey."])[0]
    batch = collate([item])
    assert batch["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert batch[AFTER_PIXELS].shape == batch["pixel_values"].shape
    assert not bool((batch[AFTER_PIXELS] == batch["pixel_values"]).all())
    answer = batch["input_ids"][0][batch["labels"][0] != -100]
    assert processor.tokenizer.decode(answer) == "In the second image, the sky is grey.<|im_end|>\n"
    one = _pair_dataset([(src,)], ["x"])[0]
    with pytest.raises(ValueError, match="item 0 has 1 images"):
        collate([one])


def test_the_vision_tower_trains_at_its_own_learning_rate(tiny_vlm, tmp_path):
    from trl import SFTConfig

    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.training.vlm_sft import sft_config_args, sft_trainer_class
    from pairsmith.models.training.vlm_training import LoraSettings, in_vision_tower, load_trainable_vlm

    runtime = ModelRuntime(device="cpu")
    model, processor = load_trainable_vlm(str(tiny_vlm), runtime)
    settings = _settings(objective="plain", learning_rate=1e-5, vision_learning_rate=2e-6, max_steps=1)
    trainer = sft_trainer_class(settings.objective, settings.vision_learning_rate)(
        model=model, args=SFTConfig(**sft_config_args(settings, runtime, tmp_path)),
        train_dataset=_pair_dataset(list(zip(*[_pictures(5, 1)] * 2)), ["a"]), processing_class=processor,
        peft_config=LoraSettings(rank=128, alpha=256).peft_config(),
    )
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    rates = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[names[id(p)]] = group["lr"]
    tower = {n: lr for n, lr in rates.items() if in_vision_tower(n)}
    rest = {n: lr for n, lr in rates.items() if not in_vision_tower(n)}
    assert tower and rest
    assert set(tower.values()) == {2e-6} and set(rest.values()) == {1e-5}
    assert any(".visual.merger." in n for n in rest)  # the merger is the projector, not the tower
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(rates) == trainable


def test_a_frozen_vision_tower_gets_no_adapter(tiny_vlm):
    from peft import get_peft_model
    from transformers import AutoModelForImageTextToText

    from pairsmith.models.training.vlm_training import LoraSettings, in_vision_tower

    for frozen in (False, True):
        base = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
        model = get_peft_model(base, LoraSettings(vision_tower=not frozen).peft_config())
        lora = [n for n, p in model.named_parameters() if "lora_" in n]
        assert any(not in_vision_tower(n) for n in lora)
        assert any(in_vision_tower(n) for n in lora) is not frozen


@pytest.mark.parametrize("name, yes", [
    ("base_model.model.model.visual.blocks.0.attn.qkv.lora_A.default.weight", True),
    ("model.visual.patch_embed.proj.weight", True),
    ("model.visual.merger.mlp.0.weight", False),
    ("model.vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight", True),
    ("model.vision_model.transformer.layers.0.mlp.fc1.weight", True),
    ("model.language_model.layers.0.self_attn.q_proj.weight", False),
    ("model.multi_modal_projector.linear_1.weight", False),
])
def test_which_parameters_are_the_vision_tower(name, yes):
    from pairsmith.models.training.vlm_training import in_vision_tower

    assert in_vision_tower(name) is yes


def test_eq7_needs_the_pair_as_two_images():
    from pydantic import ValidationError

    from pairsmith.flows.finetune_config import SftFinetuneConfig

    with pytest.raises(ValidationError, match="data.layout must be multi"):
        SftFinetuneConfig(data={"layout": "side-by-side"}, train={"objective": "feature-difference"})
    with pytest.raises(ValidationError, match="objective"):
        SftFinetuneConfig(train={"objective": "difference"})


def test_print_args_shows_the_objective_and_table_5(tmp_path):
    from click.testing import CliRunner

    from pairsmith.flows.cli.main import cli

    out = CliRunner().invoke(cli, ["finetune", "--config", str(ROOT / "configs/papers/med/sft-qwen2-vl.yaml"),
                                   "--print-args", "--db", str(tmp_path / "none.lance")])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    assert printed["objective"]["name"] == "feature-difference" and "MED Eq. 7" in printed["objective"]["loss"]
    assert printed["data"]["tasks"] == ["med-diff-qa"]
    assert printed["lora"] == {"rank": 8, "alpha": 16, "dropout": 0.1, "target_modules": "all-linear",
                               "vision_tower": True}
    trl = printed["trl_sft_config"]
    assert (trl["learning_rate"], trl["lr_scheduler_type"], trl["warmup_steps"]) == (1e-4, "cosine", 0.1)
    assert (trl["per_device_train_batch_size"], trl["gradient_accumulation_steps"]) == (16, 8)
    assert printed["learning_rates"] == {"vision_tower": 1e-4, "rest": 1e-4}
    assert not (tmp_path / "none.lance").exists()

    llava = json.loads(CliRunner().invoke(cli, ["finetune", "--config", str(ROOT / "configs/papers/med/sft-llava-1.6.yaml"),
                                                "--print-args"]).output)
    assert llava["learning_rates"] == {"vision_tower": "frozen", "rest": 1e-5} and llava["objective"]["name"] == "plain"
    omni = json.loads(CliRunner().invoke(cli, ["finetune", "--config", str(ROOT / "configs/papers/omnidiff/sft.yaml"),
                                               "--print-args"]).output)
    assert omni["learning_rates"] == {"vision_tower": 2e-6, "rest": 1e-5}
    assert omni["batch_size"]["per_optimizer_step_on_one_process"] == 256
    assert (omni["lora"]["rank"], omni["lora"]["alpha"], omni["trl_sft_config"]["num_train_epochs"]) == (128, 256, 1.0)


@pytest.mark.slow  # one 2-step training through the flow: ~10 s of CPU
def test_the_finetune_flow_trains_eq7_on_stored_pairs(tiny_vlm, tmp_path, capsys):
    """The whole path: stored two-image samples -> training_dataset -> the difference collator -> a run card."""
    import math

    import yaml

    from pairsmith.flows.cli.main import main
    from pairsmith.storage.store import PairStore
    from tests.synthetic_db import SyntheticRun, build

    db = str(tmp_path / "db.lance")
    build(PairStore(db), SyntheticRun(width=64, height=48, unique_bytes=16), n_pairs=4)
    config = tmp_path / "eq7.yaml"
    config.write_text(yaml.safe_dump({
        "method": "sft", "db": db, "model_id": str(tiny_vlm), "runtime": {"device": "cpu"},
        "output_dir": str(tmp_path / "runs"), "data": {"tasks": ["diff-caption"], "splits": ["train", "val"]},
        "train": {"objective": "feature-difference", "max_steps": 2, "per_device_batch_size": 2,
                  "gradient_accumulation_steps": 1},
    }))
    assert main(["finetune", "--config", str(config)]) == 0, capsys.readouterr().err
    run_dir = next((tmp_path / "runs").iterdir())
    card = json.loads((run_dir / "run_card.json").read_text())
    assert card["status"] == "complete" and card["config"]["train"]["objective"] == "feature-difference"
    losses = [line["loss"] for line in card["logs"]["sft"] if "loss" in line]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)


def test_eq7_refuses_a_model_outside_the_qwen2_vl_class(tmp_path):
    from types import SimpleNamespace

    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.training.vlm_sft import run_sft
    from pairsmith.models.training.vlm_training import LoraSettings

    llava = SimpleNamespace(config=SimpleNamespace(model_type="llava_next"))
    with pytest.raises(ValueError, match="needs a Qwen2-VL-class model .* this model is 'llava_next'"):
        run_sft(llava, None, [], _settings(max_steps=1), LoraSettings(), ModelRuntime(device="cpu"), tmp_path)
