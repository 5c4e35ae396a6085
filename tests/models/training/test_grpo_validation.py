"""GRPO validation as DiG runs it (supplementary Table 5, "Validation override: T=0.6, p=0.95, n=1"): the
preset carries it, --print-args shows it, TRL gets evaluation arguments, and while validating the trainer
samples with the override, not the rollouts' settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pairsmith.flows import papers
from pairsmith.flows.cli.main import cli
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.training.vlm_grpo import GrpoSettings, GrpoValidation, grpo_args, validation_sampling

ROOT = Path(__file__).resolve().parents[3]


def _preset() -> GrpoSettings:
    return papers.load_preset(papers.load_parameters().papers["dig"].presets["grpo"]).grpo


def test_the_preset_validates_with_table_5s_override_and_trl_gets_evaluation_arguments(tmp_path):
    v = _preset().validation
    assert (v.temperature, v.top_p, v.n, v.every_steps, v.before_train, v.split) == (0.6, 0.95, 1, 5, True, "val")
    args = grpo_args(_preset(), 60, ModelRuntime(device="cpu"), tmp_path)
    assert (args["eval_strategy"], args["eval_steps"], args["eval_on_start"], args["num_generations_eval"]) == (
        "steps", 5, True, 1)
    assert (args["temperature"], args["top_p"]) == (1.0, 1.0)  # the rollouts keep Table 5's own settings
    # A stage without validation samples, or settings without validation, add no evaluation arguments.
    assert "eval_strategy" not in grpo_args(_preset(), 60, ModelRuntime(device="cpu"), tmp_path, validate=False)
    assert "eval_strategy" not in grpo_args(GrpoSettings(), 60, ModelRuntime(device="cpu"), tmp_path)
    # TRL accepts them (its own checks run in GRPOConfig's __post_init__).
    from trl import GRPOConfig

    config = GRPOConfig(**args)
    assert config.num_generations_eval == 1 and config.eval_steps == 5


def test_validation_sampling_swaps_the_override_in_and_restores_the_rollouts():
    from transformers import GenerationConfig

    class Trainer:  # the attributes TRL's GRPOTrainer samples with
        temperature, top_p = 1.0, 1.0
        generation_config = GenerationConfig(do_sample=True, temperature=1.0, top_p=1.0, max_new_tokens=7)
        generation_kwargs = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 7}

    trainer = Trainer()
    with validation_sampling(trainer, GrpoValidation()):
        assert (trainer.temperature, trainer.top_p) == (0.6, 0.95)
        assert (trainer.generation_config.temperature, trainer.generation_config.top_p) == (0.6, 0.95)
        assert trainer.generation_config.max_new_tokens == 7
        assert (trainer.generation_kwargs["temperature"], trainer.generation_kwargs["top_p"]) == (0.6, 0.95)
    assert (trainer.temperature, trainer.top_p) == (1.0, 1.0)
    assert (trainer.generation_config.temperature, trainer.generation_kwargs["top_p"]) == (1.0, 1.0)


def test_print_args_shows_the_validation_settings(tmp_path):
    out = CliRunner().invoke(cli, ["finetune", "--config", str(ROOT / "configs/papers/dig/grpo.yaml"), "--print-args",
                                   "--db", str(tmp_path / "none.lance")])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output)
    assert printed["validation"] == {"temperature": 0.6, "top_p": 0.95, "n": 1, "every_steps": 5,
                                     "before_train": True, "split": "val"}
    assert printed["stages"][0]["trl_grpo_config"]["eval_strategy"] == "steps"


@pytest.mark.slow  # ~30-60 s on 2 CPU cores
def test_a_tiny_cpu_stage_validates_with_the_override_and_trains_with_the_rollout_settings(tmp_path, monkeypatch):
    import transformers

    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
    from pairsmith.models.training.vlm_grpo import run_grpo_stage
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
    rows = select_samples(store, pinned, selection).rows
    images = PairImages(db, pinned.pairs_version)
    train = training_dataset(rows[:1], images, "multi", with_completion=False, with_boxes=True)
    val = training_dataset(rows[1:2], images, "multi", with_completion=False, with_boxes=True)

    sampled: list[tuple[bool, float, float]] = []  # (training?, temperature, top_p) of each generate call
    real = transformers.GenerationMixin.generate

    def generate(self, *args, generation_config=None, **kwargs):
        sampled.append((self.training, generation_config.temperature, generation_config.top_p))
        return real(self, *args, generation_config=generation_config, **kwargs)

    monkeypatch.setattr(transformers.GenerationMixin, "generate", generate)
    settings = _preset().model_copy(update={"max_completion_length": 6, "gradient_checkpointing": False,
                                            "validation": GrpoValidation(every_steps=1)})
    runtime = ModelRuntime(device="cpu")
    model, processor = load_trainable_vlm(str(build_tiny_qwen2_vl(tmp_path / "tiny")), runtime)
    _, log = run_grpo_stage(model, processor, train, [lambda completions, **_: [0.5] * len(completions)], settings,
                            1, runtime, tmp_path / "work", lora=LoraSettings(), eval_dataset=val)
    assert log.steps == 1
    assert {(t, p) for _, t, p in sampled} == {(1.0, 1.0), (0.6, 0.95)}  # rollouts, and the validation override
