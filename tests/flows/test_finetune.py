"""Fine-tuning: configs, the pinned data path, and LoRA SFT / GRPO of a tiny random Qwen2-VL on CPU.

The model is built from a config (``build_tiny_qwen2_vl``) and loaded back through the Auto classes,
the path a hub id takes; the data is a copy of the session's 20 rendered dig-render pairs.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from pairsmith.flows.cli.main import main
from pairsmith.flows.finetune_config import FinetuneConfig, GrpoFinetuneConfig, SftFinetuneConfig
from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
from pairsmith.storage.schemas import Message, SampleRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.tasks.sample_builders import TWO_IMAGES
from pairsmith.tasks.training.training_data import DataSelection, PairImages, pin_tables, select_samples, training_dataset

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return build_tiny_qwen2_vl(tmp_path_factory.mktemp("tiny-qwen2-vl"))


@pytest.fixture
def train_db(rendered_run, tmp_path) -> str:
    """A private copy of the rendered database: these tests tag and add to it."""
    db = tmp_path / "pairsmith.lance"
    shutil.copytree(rendered_run.config.db, db)
    return str(db)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --- configs ------------------------------------------------------------------------------------


def test_defaults_are_med_for_sft_and_dig_for_grpo():
    sft = SftFinetuneConfig()
    assert sft.model_id == "Qwen/Qwen2-VL-2B-Instruct"
    assert (sft.lora.rank, sft.lora.alpha, sft.lora.dropout, sft.lora.target_modules) == (8, 16, 0.1, "all-linear")
    assert (sft.train.learning_rate, sft.train.lr_scheduler, sft.train.warmup_ratio) == (1e-4, "cosine", 0.1)
    grpo = GrpoFinetuneConfig()
    assert (grpo.grpo.beta, grpo.grpo.num_generations, grpo.grpo.temperature, grpo.grpo.learning_rate) == (
        0.01, 5, 1.0, 1e-6)
    assert [(s.name, s.subsets, s.steps) for s in grpo.stages] == [
        ("single", ["single"], 60), ("double", ["double"], 20), ("mixed", ["mixed"], 30)]
    assert (grpo.reward.alpha, grpo.reward.lambda_f1, grpo.reward.lambda_iou, grpo.reward.iou_threshold) == (
        0.1, 0.5, 0.5, 0.5)
    assert grpo.data.tasks == ["grounding"]


def test_repo_configs_validate_and_train_the_real_model_for_at_least_ten_steps():
    sft = FinetuneConfig.model_validate(yaml.safe_load((ROOT / "configs/sft.yaml").read_text())).root
    grpo = FinetuneConfig.model_validate(yaml.safe_load((ROOT / "configs/grpo.yaml").read_text())).root
    assert isinstance(sft, SftFinetuneConfig) and isinstance(grpo, GrpoFinetuneConfig)
    assert sft.model_id == grpo.model_id == "Qwen/Qwen2-VL-2B-Instruct"
    assert sft.train.max_steps >= 10 and sum(s.steps for s in grpo.stages) >= 10
    assert grpo.model_dump() == GrpoFinetuneConfig().model_dump()  # the file spells out the defaults


@pytest.mark.parametrize("data, message", [
    ({"method": "grpo", "grpo": {"num_generations": 4}}, "must be a multiple of num_generations = 4"),
    ({"method": "grpo", "data": {"tasks": ["diff-caption"]}}, "data.tasks must be ['grounding']"),
    ({"method": "grpo", "data": {"subsets": ["single"]}}, "set stages[].subsets"),
    ({"method": "grpo", "stages": [{"name": "a", "subsets": ["single"], "steps": 1}] * 2}, "unique"),
    ({"method": "sft", "data": {"table_version": 2, "table_tag": "x"}}, "not both"),
    ({"method": "dpo"}, "method"),
    ({"method": "sft", "lora": {"rank": 0}}, "rank"),
    ({"method": "sft", "learning_rate": 1e-4}, "learning_rate"),  # belongs under train:
])
def test_bad_configs_say_what_is_wrong(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FinetuneConfig.model_validate(data)


def test_run_name_follows_what_shapes_the_result():
    a = SftFinetuneConfig(output_dir="a", show_progress=True)
    assert a.run_name() == SftFinetuneConfig(output_dir="b").run_name() == SftFinetuneConfig(
        runtime={"device": "cpu"}).run_name()
    assert a.run_name() != SftFinetuneConfig(train={"learning_rate": 2e-4}).run_name()
    assert a.run_name().startswith("finetune-sft-")


def _row(sample_id: str, method: str, task: str = "diff-caption", dataset: str | None = None) -> dict:
    return {"sample_id": sample_id, "method": method, "task": task, "dataset": dataset}


def test_a_mix_takes_the_largest_total_its_ratios_allow_and_says_what_it_left_out():
    from pairsmith.tasks.training.training_mix import TrainingMix

    rows = ([_row(f"c{i:02d}", "import", dataset="clevr-change") for i in range(30)]
            + [_row(f"s{i:02d}", "import", dataset="spot-the-diff") for i in range(4)]
            + [_row(f"d{i:02d}", "dig-render", task) for i in range(40) for task in ("grounding",)]
            + [_row(f"e{i:02d}", "dig-render") for i in range(10)]  # dig-render captions: not in the mix
            + [_row(f"m{i:02d}", "med-edit", "med-mcq") for i in range(5)])
    mix = TrainingMix(ratios={"clevr-change": 3, "spot-the-diff": 1, "dig-render/grounding": 6})
    outcome = mix.take(rows)
    assert outcome.shares == {"clevr-change": 0.3, "spot-the-diff": 0.1, "dig-render/grounding": 0.6}
    assert outcome.available == {"clevr-change": 30, "spot-the-diff": 4, "dig-render/grounding": 40}
    assert outcome.taken == {"clevr-change": 12, "spot-the-diff": 4, "dig-render/grounding": 24}  # spot-the-diff limits
    reasons = [v.reason for v in outcome.left_out.values()]
    assert reasons.count("select_not_in_mix") == 15 and reasons.count("select_mix_surplus") == 18 + 16
    kept = {r["sample_id"] for r in rows} - set(outcome.left_out)
    assert {k for k in kept if k.startswith("c")} == {f"c{i:02d}" for i in range(12)}  # in sample-id order
    assert outcome.as_dict()["realised_shares"] == {"clevr-change": 0.3, "spot-the-diff": 0.1, "dig-render/grounding": 0.6}
    capped = TrainingMix(ratios={"clevr-change": 1, "spot-the-diff": 1}, total=5).take(rows)
    assert capped.taken == {"clevr-change": 3, "spot-the-diff": 2} or capped.taken == {"clevr-change": 2, "spot-the-diff": 3}
    assert sum(capped.taken.values()) == 5
    with pytest.raises(ValueError, match="'birds-to-words' matches no selected sample"):
        TrainingMix(ratios={"birds-to-words": 1, "clevr-change": 1}).take(rows)


@pytest.mark.parametrize("data, message", [
    ({"method": "sft", "data": {"splits": ["train", "test"]}}, "['test'] are held out"),
    ({"method": "grpo", "data": {"splits": ["bench"]}}, "['bench'] are held out"),
    ({"method": "sft", "mix": {"dig-render": 1, "dig-render/grounding": 1}}, "both alone and with a task"),
    ({"method": "sft", "mix": {"dig-render": 0}}, "positive"),
    ({"method": "sft", "mix": {"a/b/c": 1}}, "source/task"),
    ({"method": "sft", "mix_total": 100}, "mix_total needs a mix"),
])
def test_training_configs_refuse_held_out_splits_and_bad_mixes(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        FinetuneConfig.model_validate(data)


def test_the_readmes_mix_example_is_a_valid_config():
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- mix-config", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = FinetuneConfig.model_validate(yaml.safe_load(block)).root
    assert config.training_mix().ratios == {"clevr-change": 0.3, "spot-the-diff": 0.1, "dig-render": 0.6}


def test_a_mix_names_its_own_run_and_no_mix_names_the_old_one():
    assert SftFinetuneConfig(mix={}).run_name() == SftFinetuneConfig().run_name()
    mixed = SftFinetuneConfig(mix={"clevr-change": 0.3, "dig-render": 0.7})
    assert mixed.run_name() != SftFinetuneConfig().run_name()
    assert SftFinetuneConfig(mix={"clevr-change": 0.3, "dig-render": 0.7}, mix_total=50).run_name() != mixed.run_name()


def test_cli_rejects_a_bad_config_in_one_line(capsys, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: grpo\ngrpo:\n  beta: -1\n")
    assert main(["finetune", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "beta" in err and err.startswith("pairsmith: error: ")


# --- data ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_samples_are_read_at_a_pinned_tagged_version_and_bad_ones_are_counted(train_db):
    store = PairStore(train_db)
    selection = DataSelection(tasks=["grounding"], splits=["train", "val", "test"])
    pinned = pin_tables(store, selection, tag_as="finetune-sft-test")
    samples = store.db.open_table("samples")
    assert pinned.samples_version == samples.version
    assert samples.tags.get_version(pinned.tag) == pinned.samples_version
    pairs = store.db.open_table("pairs")  # data-loader workers reopen pairs at its version: the same tag keeps it
    assert pairs.tags.get_version(pinned.tag) == pinned.pairs_version
    n_grounding = store.count("samples", "task = 'grounding'")

    store.upsert("samples", [SampleRow(
        sample_id="orphan", pair_id="no-such-pair", run_id="r", method="dig-render", task="grounding",
        subset="single", conversation=[Message(role="user", content=TWO_IMAGES + "Where?"),
                                       Message(role="assistant", content="[]")],
        answer="[]", split="train", created_at=utc_now())])
    at_pin = select_samples(store, pinned, selection)
    assert len(at_pin.rows) == n_grounding and at_pin.stats.n_dropped == 0  # the later write is not seen
    latest = select_samples(store, pin_tables(store, selection), selection)
    assert latest.stats.n_in == n_grounding + 1
    assert latest.stats.reasons == {"select_pair_missing": 1}
    by_tag = pin_tables(store, DataSelection(tasks=["grounding"], table_tag=pinned.tag))
    assert by_tag.samples_version == pinned.samples_version
    with pytest.raises(ValueError, match="no such tag"):
        pin_tables(store, DataSelection(table_tag="nope"))

    single = select_samples(store, pinned, selection, subsets=["single"]).rows
    mixed = select_samples(store, pinned, selection, subsets=["mixed"]).rows
    assert single and mixed
    assert all("exactly 1 difference" in r["conversation"][0]["content"] for r in single)
    assert not any("exactly" in r["conversation"][0]["content"] for r in mixed)


def _imported_samples(store: PairStore, n_pairs: int) -> list[SampleRow]:
    """Spot-the-Diff-style caption samples on rendered pairs: train, test and bench ones."""
    pair_ids = sorted(store.read("pairs", where="status = 'kept'", columns=["pair_id"]).column("pair_id").to_pylist())
    rows = []
    for i, pair_id in enumerate(pair_ids[:n_pairs]):
        for split in ("train", "test", "bench"):
            rows.append(SampleRow(
                sample_id=f"std-{split}-{i}", pair_id=pair_id, run_id="import-std", method="spot-the-diff",
                task="diff-caption", conversation=[Message(role="user", content=TWO_IMAGES + "What changed?"),
                                                   Message(role="assistant", content="a car drove away")],
                answer="a car drove away", split=split, dataset="spot-the-diff", created_at=utc_now()))
    return rows


@pytest.mark.slow
def test_a_training_selection_never_reads_test_or_bench_samples(train_db):
    store = PairStore(train_db)
    store.upsert("samples", _imported_samples(store, 4))
    everything = DataSelection(tasks=["grounding", "diff-caption"], splits=["train", "val", "test", "bench"])
    pinned = pin_tables(store, everything)
    trained = select_samples(store, pinned, everything, training=True).rows
    assert trained and not [r for r in trained if r["split"] in ("test", "bench")]
    held_out = select_samples(store, pinned, everything).rows  # evaluation may read them
    assert {"test", "bench"} <= {r["split"] for r in held_out}
    only_std = DataSelection(tasks=["diff-caption"], splits=["train", "test", "bench"], datasets=["spot-the-diff"])
    assert {r["sample_id"] for r in select_samples(store, pinned, only_std, training=True).rows} == {
        f"std-train-{i}" for i in range(4)}


@pytest.mark.slow
def test_sft_on_a_mix_records_what_it_took_in_the_run_card(train_db, tiny_vlm, tmp_path):
    from pairsmith.flows.finetune import finetune

    store = PairStore(train_db)
    store.upsert("samples", _imported_samples(store, 4))
    config = SftFinetuneConfig(
        db=train_db, model_id=str(tiny_vlm), runtime={"device": "cpu"}, output_dir=str(tmp_path / "runs"),
        data={"tasks": ["grounding", "diff-caption"]}, mix={"spot-the-diff": 1, "dig-render/diff-caption": 1},
        train={"max_steps": 1, "per_device_batch_size": 2, "gradient_accumulation_steps": 1},
    )
    summary = finetune(config)
    card = json.loads(Path(summary.run_card).read_text())
    ours = store.count("samples", "method = 'dig-render' AND task = 'diff-caption' AND split = 'train'")
    mix = card["data"]["mix"]["sft"]
    assert mix["available"] == {"spot-the-diff": 4, "dig-render/diff-caption": ours}
    assert mix["taken"] == {"spot-the-diff": 4, "dig-render/diff-caption": 4} and mix["total"] == 8
    assert card["data"]["n_samples"] == 8 and card["data"]["samples_version"] == store.db.open_table("samples").version
    n_grounding = store.count("samples", "task = 'grounding' AND split = 'train'")
    assert card["data"]["drop_reasons"] == {"select_not_in_mix": n_grounding, "select_mix_surplus": ours - 4}
    assert not any(k.endswith(("/test", "/bench")) for k in card["data"]["counts"])


@pytest.mark.slow
def test_sft_items_carry_both_images_and_the_loss_covers_only_the_answer(train_db, tiny_vlm):
    from transformers import AutoProcessor
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    store = PairStore(train_db)
    selection = DataSelection(tasks=["grounding"])
    pinned = pin_tables(store, selection)
    rows = select_samples(store, pinned, selection).rows[:2]
    processor = AutoProcessor.from_pretrained(tiny_vlm)
    collate = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)
    for layout, n_images in (("multi", 2), ("side-by-side", 1)):
        dataset = training_dataset(rows, PairImages(train_db, pinned.pairs_version), layout,
                                   with_completion=True, with_boxes=False)
        item = dataset[0]
        assert len(item["images"]) == n_images
        assert [b["type"] for b in item["prompt"][0]["content"]].count("image") == n_images
        batch = collate([item])
        assert batch["image_grid_thw"].shape[0] == n_images
        answer_ids = batch["input_ids"][0][batch["labels"][0] != -100]
        assert processor.tokenizer.decode(answer_ids) == rows[0]["answer"] + "<|im_end|>\n"
    side = dataset[0]["prompt"][0]["content"][-1]["text"]
    assert side.startswith("The image shows two pictures side by side")
    assert dataset[0]["images"][0].width == 2 * 320 + 20


# --- training -----------------------------------------------------------------------------------


def _assert_adapter_reloads(tiny_vlm: Path, adapter_dir: Path) -> None:
    """PeftModel.from_pretrained on the base gives back the saved LoRA weights, and they change outputs."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    saved = load_file(adapter_dir / "adapter_model.safetensors")
    assert any(".visual." in k for k in saved), "all-linear LoRA covers the vision tower"
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in saved.items()), "training moved the adapter"
    base = AutoModelForImageTextToText.from_pretrained(tiny_vlm)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
    model = PeftModel.from_pretrained(base, adapter_dir)
    state = get_peft_model_state_dict(model)
    assert set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)
    with torch.no_grad():
        after = model(input_ids=ids).logits
    assert (after - before).abs().max() > 0


@pytest.mark.slow
def test_sft_from_the_cli_trains_logs_saves_a_reloadable_adapter_and_a_run_card(capsys, train_db, tiny_vlm, tmp_path):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({
        "method": "sft", "db": train_db, "model_id": str(tiny_vlm), "runtime": {"device": "cpu"},
        "output_dir": str(tmp_path / "runs"),
        "train": {"max_steps": 3, "per_device_batch_size": 2, "gradient_accumulation_steps": 1},
    }))
    assert main(["finetune", "--config", str(config)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "Trained sft run finetune-sft-" in out and "stage sft:" in out

    run_dir = next((tmp_path / "runs").iterdir())
    card = json.loads((run_dir / "run_card.json").read_text())
    store = PairStore(train_db)
    n_train = store.count("samples", "task IN ('grounding', 'diff-caption') AND split = 'train'")
    assert card["status"] == "complete" and card["method"] == "sft"
    assert card["data"]["n_samples"] == n_train and sum(card["data"]["counts"].values()) == n_train
    assert card["data"]["samples_version"] == store.db.open_table("samples").version
    assert store.db.open_table("samples").tags.get_version(card["data"]["tag"]) == card["data"]["samples_version"]
    assert card["config"]["lora"] == {"rank": 8, "alpha": 16, "dropout": 0.1, "target_modules": "all-linear",
                                      "vision_tower": True}
    assert card["stages"][0]["steps"] == 3
    losses = [line["loss"] for line in card["logs"]["sft"] if "loss" in line]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    _assert_adapter_reloads(tiny_vlm, run_dir / card["adapter_dir"])

    stamp = (run_dir / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    assert main(["finetune", "--config", str(config)]) == 0
    assert "Already trained sft run" in capsys.readouterr().out
    assert (run_dir / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_grpo_runs_the_curriculum_with_the_dig_reward_and_kl(train_db, tiny_vlm, tmp_path):
    from pairsmith.flows.finetune import finetune

    config = GrpoFinetuneConfig(
        db=train_db, model_id=str(tiny_vlm), runtime={"device": "cpu"}, output_dir=str(tmp_path / "runs"),
        grpo={"max_completion_length": 8},
        stages=[{"name": "single", "subsets": ["single"], "steps": 1},
                {"name": "double", "subsets": ["double"], "steps": 1},
                {"name": "mixed", "subsets": ["mixed"], "steps": 2}],
    )
    summary = finetune(config)
    card = json.loads(Path(summary.run_card).read_text())
    stages = card["stages"]
    store = PairStore(train_db)
    present = [s for s in ("single", "double", "mixed")
               if store.count("samples", f"task = 'grounding' AND split = 'train' AND subset = '{s}'")]
    assert [s["name"] for s in stages] == present and "mixed" in present
    for stage in stages:
        assert stage["steps"] == stage["steps_planned"]
        assert stage["n_samples"] == store.count(
            "samples", f"task = 'grounding' AND split = 'train' AND subset = '{stage['name']}'")
        lines = card["logs"][stage["name"]]
        for key in ("loss", "reward", "kl", "rewards/dig_reward/mean", "dig/format", "dig/f1", "dig/mean_iou"):
            values = [line[key] for line in lines if key in line]
            assert values and all(math.isfinite(v) for v in values), (stage["name"], key)
        assert all(0.0 <= line["reward"] <= 1.0 for line in lines)
    assert card["config"]["grpo"]["beta"] == 0.01 and card["config"]["grpo"]["num_generations"] == 5
    adapter = Path(summary.adapter_dir)
    assert not (adapter / "ref").exists(), "only the trained adapter is saved, not TRL's reference copy"
    _assert_adapter_reloads_structure(tiny_vlm, adapter)


def _assert_adapter_reloads_structure(tiny_vlm: Path, adapter_dir: Path) -> None:
    """GRPO at lr 1e-6 on random rollouts may leave LoRA B at zero: check the reload, not the movement."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText

    saved = load_file(adapter_dir / "adapter_model.safetensors")
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(tiny_vlm), adapter_dir)
    state = get_peft_model_state_dict(model)
    assert saved and set(state) == set(saved) and all(torch.equal(state[k], saved[k]) for k in saved)


@pytest.mark.slow
def test_grpo_hands_each_prompts_true_boxes_to_the_reward(train_db, tiny_vlm, tmp_path):
    """gt_boxes travels from the dataset to the reward function; a known right answer scores 1."""
    from pairsmith.tasks.answers.grounding_reward import grounding_reward
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.models.training.vlm_grpo import GrpoSettings, run_grpo_stage
    from pairsmith.models.training.vlm_training import LoraSettings, load_trainable_vlm
    from pairsmith.tasks.training.dig_reward import DigReward

    store = PairStore(train_db)
    selection = DataSelection(tasks=["grounding"])
    pinned = pin_tables(store, selection)
    rows = select_samples(store, pinned, selection).rows[:2]
    as_floats = lambda boxes: json.dumps([[float(v) for v in b] for b in boxes])  # noqa: E731  (pixels: ints or floats)
    truth = {as_floats(r["boxes"]) for r in rows}
    seen: list = []

    def recording_reward(completions, gt_boxes, **kwargs):
        seen.extend(gt_boxes)
        perfect = [grounding_reward(json.dumps(gt), gt) for gt in gt_boxes]
        assert perfect == pytest.approx([1.0] * len(gt_boxes))
        return DigReward()(completions=completions, gt_boxes=gt_boxes, **kwargs)

    runtime = ModelRuntime(device="cpu")
    model, processor = load_trainable_vlm(str(tiny_vlm), runtime)
    dataset = training_dataset(rows, PairImages(train_db, pinned.pairs_version), "multi",
                               with_completion=False, with_boxes=True)
    _, log = run_grpo_stage(model, processor, dataset, [recording_reward], GrpoSettings(max_completion_length=6),
                            1, runtime, tmp_path / "work", lora=LoraSettings())
    assert len(seen) == 5 and {as_floats(b) for b in seen} <= truth  # one prompt x 5 rollouts
    assert log.steps == 1 and log.all_finite("reward")
