"""Prefect tasks that train LoRA adapters: one SFT run, or a GRPO curriculum, then save the adapter.

Each task loads the model itself (from ``model_id``) and builds its dataset from sample rows and
pinned table versions, so the flow passes only settings, text rows and paths. Every trainer log
line (loss, reward, KL, ...) also goes to the Prefect run log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pairsmith.tasks.answers.grounding_reward import DigRewardConfig
from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.training.vlm_grpo import GrpoSettings, run_grpo_stage
from pairsmith.models.training.vlm_sft import SftSettings, run_sft
from pairsmith.models.training.vlm_training import ADAPTER_DIR, LoraSettings, TrainLog, load_trainable_vlm, save_adapter
from pairsmith.tasks.training.dig_reward import DigReward
from pairsmith.storage.box_format import BoxFormat
from pairsmith.tasks.training.training_data import Layout, PairImages, PinnedTables, training_dataset


@dataclass
class StagePlan:
    name: str
    subsets: list[str]
    steps: int | None  # None: the settings decide (SFT epochs / max_steps)
    rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]] = field(default_factory=list)  # GRPO validation (GrpoSettings.validation)


@dataclass
class StageOutcome:
    name: str
    subsets: list[str]
    n_samples: int
    steps_planned: int | None
    log: TrainLog

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name, "subsets": self.subsets, "n_samples": self.n_samples,
            "steps_planned": self.steps_planned, "steps": self.log.steps,
            "final_loss": self.log.last("loss"), "final_reward": self.log.last("reward"),
            "loss_finite": self.log.all_finite("loss"),
        }


@dataclass
class TrainedAdapter:
    adapter_dir: Path
    stages: list[StageOutcome] = field(default_factory=list)


def _log_callback():
    """A transformers callback that copies each trainer log line into the Prefect run log."""
    from transformers import TrainerCallback

    logger = get_run_logger()

    class PrefectLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                shown = {k: round(v, 5) if isinstance(v, float) and math.isfinite(v) else v
                         for k, v in logs.items() if k in ("loss", "reward", "reward_std", "kl", "learning_rate",
                                                           "grad_norm", "dig/f1", "dig/mean_iou", "dig/format")}
                if shown:
                    logger.info("step %d: %s", state.global_step, shown)

    return PrefectLog()


def _dataset(db: str, pinned: PinnedTables, rows, layout: Layout, *, grpo: bool, box: BoxFormat | None):
    images = PairImages(db, pinned.pairs_version)
    return training_dataset(rows, images, layout, with_completion=not grpo, with_boxes=grpo, box=box)


@task(name="train-sft", cache_policy=NO_CACHE)
def train_sft(
    model_id: str, runtime: ModelRuntime, lora: LoraSettings, settings: SftSettings, db: str, pinned: PinnedTables,
    plan: StagePlan, layout: Layout, run_dir: Path, show_progress: bool = False, box: BoxFormat | None = None,
) -> TrainedAdapter:
    """LoRA SFT on the plan's samples; the adapter goes to ``run_dir/adapter``."""
    logger = get_run_logger()
    model, processor = load_trainable_vlm(model_id, runtime)
    dataset = _dataset(db, pinned, plan.rows, layout, grpo=False, box=box)
    logger.info("SFT of %s on %d samples", model_id, len(plan.rows))
    model, log = run_sft(model, processor, dataset, settings, lora, runtime, run_dir / "trainer",
                         show_progress=show_progress, callbacks=[_log_callback()])
    adapter_dir = save_adapter(model, processor, run_dir / ADAPTER_DIR)
    return TrainedAdapter(adapter_dir, [StageOutcome(plan.name, plan.subsets, len(plan.rows), plan.steps, log)])


@task(name="train-grpo", cache_policy=NO_CACHE)
def train_grpo(
    model_id: str, runtime: ModelRuntime, lora: LoraSettings, settings: GrpoSettings, reward: DigRewardConfig,
    db: str, pinned: PinnedTables, plans: list[StagePlan], layout: Layout, run_dir: Path, show_progress: bool = False,
    box: BoxFormat | None = None,
) -> TrainedAdapter:
    """The curriculum: each stage a GRPO trainer over its samples, continuing one LoRA adapter."""
    logger = get_run_logger()
    model, processor = load_trainable_vlm(model_id, runtime)
    reward_funcs = [DigReward(reward)]
    outcomes: list[StageOutcome] = []
    for i, plan in enumerate(plans):
        logger.info("GRPO stage %d/%d %r: %d samples, %d steps", i + 1, len(plans), plan.name, len(plan.rows),
                    plan.steps)
        dataset = _dataset(db, pinned, plan.rows, layout, grpo=True, box=box)
        val = _dataset(db, pinned, plan.val_rows, layout, grpo=True, box=box) if plan.val_rows else None
        if settings.validation is not None and val is None:
            logger.warning("GRPO stage %r: no %s samples to validate on; validation skipped", plan.name,
                           settings.validation.split)
        model, log = run_grpo_stage(
            model, processor, dataset, reward_funcs, settings, plan.steps, runtime, run_dir / "trainer" / plan.name,
            lora=lora if i == 0 else None, show_progress=show_progress, callbacks=[_log_callback()],
            eval_dataset=val,
        )
        outcomes.append(StageOutcome(plan.name, plan.subsets, len(plan.rows), plan.steps, log))
    adapter_dir = save_adapter(model, processor, run_dir / ADAPTER_DIR)
    return TrainedAdapter(adapter_dir, outcomes)
