"""GRPO of a VLM with TRL's ``GRPOTrainer``, one curriculum stage per call (DiG's settings as defaults).

DiG trains stage by stage (single → double → mixed differences), each for its own number of steps.
Each stage is a fresh trainer over that stage's samples on the *same* model: the first stage adds
the LoRA adapter, later stages continue it. The reference policy of the KL term is the policy the
stage starts from: in stage 1 the base model (adapter switched off), in later stages a frozen copy
of the adapter that TRL adds as ``ref`` (dropped again after the stage, so only the trained
adapter is saved). No second copy of the base model is held.

TRL's ``beta`` (the KL weight) defaults to 0; DiG's 0.01 is set here. The reward functions are
passed in, so this module knows nothing of boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.training.vlm_training import LoraSettings, TrainLog, quiet_console, trainer_args


class GrpoValidation(BaseModel):
    """Validation during GRPO, as DiG runs it (supplementary Table 5, "Validation override: T=0.6, p=0.95,
    n=1", EasyR1's ``val_override_config``): the stage's samples of ``split`` are answered with these
    sampling settings instead of the rollouts' and their rewards logged (``eval_reward`` in the run card's
    logs). How often is not stated: EasyR1's example config validates before training and every 5 steps
    (``val_before_train``, ``val_freq``), pairsmith's assumption."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    temperature: float = Field(0.6, gt=0.0, le=2.0, description="DiG supp. Table 5: 0.6")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="DiG supp. Table 5: 0.95")
    n: int = Field(1, ge=1, le=256, description="answers per validation prompt (DiG supp. Table 5: 1)")
    every_steps: int = Field(5, ge=1, description="validate every N training steps (not stated; EasyR1's val_freq 5)")
    before_train: bool = Field(True, description="validate once before the first step (EasyR1's val_before_train)")
    split: str = Field("val", min_length=1, description="samples of this split (the stage's subsets) validate")


class GrpoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    learning_rate: float = Field(1e-6, gt=0.0, le=1.0, description="DiG: 1e-6")
    beta: float = Field(0.01, ge=0.0, le=10.0, description="KL weight (DiG: 0.01; TRL's default is 0)")
    num_generations: int = Field(5, ge=2, le=256, description="rollouts per prompt (DiG: 5)")
    temperature: float = Field(1.0, gt=0.0, le=2.0, description="sampling temperature of rollouts (DiG: 1.0)")
    max_completion_length: int = Field(256, ge=1, le=8192, description="tokens per rollout")
    per_device_batch_size: int = Field(5, ge=1, le=4096, description="completions per device step")
    gradient_accumulation_steps: int = Field(1, ge=1, le=4096)
    lr_scheduler: str = Field(
        "constant", description="each stage is a new trainer, so a decaying schedule would restart per stage"
    )
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0, description="AdamW weight decay (DiG: 1e-2; TRL's default 0)")
    max_grad_norm: float = Field(1.0, gt=0.0, le=1e6, description="gradient clipping (DiG: 1.0)")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling of rollouts (DiG: 1.0)")
    epsilon: float = Field(0.2, gt=0.0, le=1.0, description="clip range of the ratio, Eq. 5 (DiG: not stated; TRL's 0.2)")
    filter_range: tuple[float, float] | None = Field(
        None, description="online filter (DiG: [0.01, 0.99], EasyR1's on the overall reward): a group whose mean "
        "reward lies outside [low, high] (every rollout right, or every one wrong) is masked out of the loss; "
        "None: no filter (TRL's behaviour)",
    )
    validation: GrpoValidation | None = Field(
        None, description="validate each stage on its val-split samples with DiG's override sampling "
        "(supp. Table 5); None: no validation",
    )
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = Field(
        "dapo", description="how token losses are averaged: 'grpo' = DiG's Eq. 6 (each completion's tokens "
        "averaged, then the completions), 'dapo' = TRL's default (over every token of the batch, no length bias)",
    )

    @model_validator(mode="after")
    def _groups_fit(self) -> "GrpoSettings":
        if self.filter_range is not None and not 0.0 <= self.filter_range[0] <= self.filter_range[1] <= 1.0:
            raise ValueError(f"filter_range {list(self.filter_range)} must be [low, high] with 0 <= low <= high <= 1")
        batch = self.per_device_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(
                f"per_device_batch_size x gradient_accumulation_steps = {batch} must be a multiple of "
                f"num_generations = {self.num_generations} (each prompt's rollouts form one group)"
            )
        return self


def validation_args(validation: GrpoValidation | None, per_device_batch_size: int) -> dict:
    """TRL's evaluation arguments for ``validation`` (none without it). TRL samples evaluation answers
    with the rollouts' temperature and top-p; the trainer swaps in the override (``validation_sampling``)."""
    if validation is None:
        return {}
    batch = per_device_batch_size - per_device_batch_size % validation.n or validation.n
    return dict(eval_strategy="steps", eval_steps=validation.every_steps, eval_on_start=validation.before_train,
                num_generations_eval=validation.n, per_device_eval_batch_size=batch)


@contextmanager
def validation_sampling(trainer, validation: GrpoValidation):
    """While validating: the override's temperature and top-p in every place TRL's ``GRPOTrainer`` reads
    them (its generation config and kwargs, and the temperature that scales the log-probabilities)."""
    saved = (trainer.temperature, trainer.top_p, getattr(trainer, "generation_config", None),
             getattr(trainer, "generation_kwargs", None))
    trainer.temperature, trainer.top_p = validation.temperature, validation.top_p
    if saved[2] is not None:
        trainer.generation_config = saved[2].__class__.from_dict(
            {**saved[2].to_dict(), "temperature": validation.temperature, "top_p": validation.top_p})
    if isinstance(saved[3], dict):
        trainer.generation_kwargs = {**saved[3], "temperature": validation.temperature, "top_p": validation.top_p}
    try:
        yield trainer
    finally:
        trainer.temperature, trainer.top_p = saved[0], saved[1]
        if saved[2] is not None:
            trainer.generation_config = saved[2]
        if isinstance(saved[3], dict):
            trainer.generation_kwargs = saved[3]


def grpo_args(settings: GrpoSettings, steps: int, runtime: ModelRuntime, work_dir: str | Path,
              show_progress: bool = False, validate: bool | None = None) -> dict:
    """The keyword arguments of TRL's ``GRPOConfig`` for one stage of ``steps`` steps (what
    ``pairsmith finetune --print-args`` shows). ``validate`` (default: whether ``settings.validation`` is
    set) adds the evaluation arguments; a stage without validation samples runs without them."""
    validate = settings.validation is not None if validate is None else validate
    return dict(
        beta=settings.beta,
        num_generations=settings.num_generations,
        temperature=settings.temperature,
        max_completion_length=settings.max_completion_length,
        top_p=settings.top_p,
        epsilon=settings.epsilon,
        loss_type=settings.loss_type,
        weight_decay=settings.weight_decay,
        max_grad_norm=settings.max_grad_norm,
        max_steps=steps,
        **(validation_args(settings.validation, settings.per_device_batch_size) if validate else {}),
        **trainer_args(settings, runtime, work_dir, show_progress),
    )


FILTER_METRIC = "filter/dropped_groups_frac"


def filtering_trainer(filter_range: tuple[float, float] | None, validation: GrpoValidation | None = None):
    """TRL's ``GRPOTrainer``, or a subclass with DiG's online filter (``GrpoSettings.filter_range``).

    The filter reads each group's rewards (all reward functions, weighted as TRL sums them) and zeroes
    the completion mask of the groups whose mean lies outside the range, so their tokens add nothing
    to the loss (policy term and KL alike); the share of groups dropped per step is logged as
    ``filter/dropped_groups_frac``. EasyR1 removes such groups from the batch instead, so with
    ``loss_type: grpo`` a dropped group still counts in the 1/G of Eq. 6 here."""
    from trl import GRPOTrainer

    if filter_range is None and validation is None:
        return GRPOTrainer
    low, high = filter_range if filter_range is not None else (float("-inf"), float("inf"))

    class FilteringGRPOTrainer(GRPOTrainer):
        def evaluate(self, *args, **kwargs):
            if validation is None:
                return super().evaluate(*args, **kwargs)
            with validation_sampling(self, validation):
                return super().evaluate(*args, **kwargs)

        def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
            self._pairsmith_rewards = rewards  # every process's rows, as TRL groups them
            return rewards

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if not self.model.training or filter_range is None:
                return out
            rewards = self._pairsmith_rewards
            overall = (rewards * self.reward_weights.to(rewards.device).unsqueeze(0)).nansum(dim=1)
            group_mean = overall.view(-1, self.num_generations).mean(dim=1)
            keep = (group_mean >= low) & (group_mean <= high)
            rows = keep.repeat_interleave(self.num_generations)
            n_local = out["completion_mask"].shape[0]
            start = self.accelerator.process_index * n_local
            local = rows[start:start + n_local].to(out["completion_mask"].device)
            out["completion_mask"] = out["completion_mask"] * local.unsqueeze(1).to(out["completion_mask"].dtype)
            self._metrics["train"][FILTER_METRIC].append(float((~keep).float().mean().item()))
            return out

    return FilteringGRPOTrainer


def run_grpo_stage(
    model, processor, dataset, reward_funcs: list[Callable], settings: GrpoSettings, steps: int,
    runtime: ModelRuntime, work_dir: str | Path, lora: LoraSettings | None = None, show_progress: bool = False,
    callbacks: list | None = None, eval_dataset=None,
):
    """``steps`` GRPO steps on ``dataset``; ``lora`` adds an adapter (first stage), None continues one.
    With ``settings.validation`` and an ``eval_dataset``, the stage validates on it as the settings say."""
    from trl import GRPOConfig

    validate = settings.validation is not None and eval_dataset is not None and len(eval_dataset) > 0
    args = GRPOConfig(**grpo_args(settings, steps, runtime, work_dir, show_progress, validate=validate))
    trainer = filtering_trainer(settings.filter_range, settings.validation if validate else None)(
        model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
        eval_dataset=eval_dataset if validate else None, processing_class=processor,
        peft_config=lora.peft_config() if lora is not None else None, callbacks=callbacks,
    )
    quiet_console(trainer, show_progress)
    trainer.train()
    model = trainer.model
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")  # TRL's frozen reference copy; the next stage makes its own
        model.set_adapter("default")
    return model, TrainLog.from_state(trainer.state)
