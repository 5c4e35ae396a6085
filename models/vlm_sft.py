"""LoRA supervised fine-tuning of a VLM with TRL's ``SFTTrainer`` (MED's recipe as the defaults).

The dataset is conversational prompt/completion with the images in the prompt, so TRL's vision
collator masks the prompt (and the image tokens in it) out of the labels: the loss covers only the
answer. Images are decoded per batch by the collator, which is why dataset preparation is skipped.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.vlm_training import LoraSettings, TrainLog, quiet_console, trainer_args


class SftSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="MED: 1e-4")
    lr_scheduler: str = Field("cosine", description="transformers scheduler name (MED: cosine)")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="share of steps warming up (MED: 0.1)")
    per_device_batch_size: int = Field(4, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(4, ge=1, le=4096)
    epochs: float = Field(1.0, gt=0.0, le=1000.0, description="passes over the data when max_steps is not set")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    max_length: int | None = Field(None, ge=16, description="truncate sequences (images count as tokens)")
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)


def run_sft(
    model, processor, dataset, settings: SftSettings, lora: LoraSettings, runtime: ModelRuntime,
    work_dir: str | Path, show_progress: bool = False, callbacks: list | None = None,
):
    """Train LoRA adapters on ``model``; returns (the peft model, its log)."""
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        max_length=settings.max_length,
        remove_unused_columns=False,  # the transform needs pair_id and the conversation to build an item
        dataset_kwargs={"skip_prepare_dataset": True},
        **trainer_args(settings, runtime, work_dir, show_progress),
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=processor, peft_config=lora.peft_config(),
        callbacks=callbacks,
    )
    quiet_console(trainer, show_progress)
    trainer.train()
    return trainer.model, TrainLog.from_state(trainer.state)
