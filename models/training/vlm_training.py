"""What SFT and GRPO share: loading a VLM to train, LoRA settings, precision, the log, the adapter.

The model loads through ``AutoModelForImageTextToText`` / ``AutoProcessor`` exactly as ``VlmChat``
loads it, so a hub id, a local folder and the tiny test checkpoint take one path. LoRA defaults are
MED's (Table 5: rank 8, alpha 16, dropout 0.1 on every linear layer); peft's ``"all-linear"`` also
adapts the vision tower, which is how MED's "Unfreeze Vision Tower: True" reads for a LoRA run;
``vision_tower: false`` (MED Table 6, LLaVA-1.6) excludes the tower's modules (``VISION_TOWER``) from LoRA.

Only the adapter is saved (``PeftModel.save_pretrained``), with the processor beside it; reloading
is ``PeftModel.from_pretrained(base, adapter_dir)`` on the same base model id.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.runtime import ModelRuntime

ADAPTER_DIR = "adapter"
# The vision tower's parameters by name, as LLaMA-Factory delimits it for its ``freeze_vision_tower``
# (src/llamafactory/model/model_utils/visual.py): Qwen2-VL / Qwen2.5-VL ``visual.patch_embed`` and
# ``visual.blocks`` (its ``visual.merger`` is the projector, not the tower), LLaVA-NeXT ``vision_tower``,
# Mllama (LLaMA-3.2-Vision) ``vision_model``. Matched anywhere in a dotted name (peft prefixes it).
VISION_TOWER = re.compile(r"(^|\.)(visual\.(patch_embed|blocks)|vision_tower|vision_model)\.")


def in_vision_tower(name: str) -> bool:
    """Whether the parameter or module ``name`` (dotted, as ``named_parameters`` gives it) is in the vision tower."""
    return VISION_TOWER.search(name + ".") is not None


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    rank: int = Field(8, ge=1, le=1024, description="LoRA rank r (MED: 8)")
    alpha: int = Field(16, ge=1, le=4096, description="LoRA alpha (MED: 16)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="LoRA dropout (MED: 0.1)")
    target_modules: str | list[str] = Field(
        "all-linear", description="'all-linear' (every linear layer, vision tower included) or module names"
    )
    vision_tower: bool = Field(
        True, description="train the vision tower: LoRA on its linear layers too (MED Tables 5 and 7: "
        "'Unfreeze Vision Tower True'); false leaves it frozen (MED Table 6, LLaVA-1.6)",
    )

    def peft_config(self):
        from peft import LoraConfig

        extra = {} if self.vision_tower else {"exclude_modules": VISION_TOWER_MODULES}
        return LoraConfig(
            r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
            target_modules=self.target_modules, task_type="CAUSAL_LM", **extra,
        )


# peft's ``exclude_modules`` as a regex (``re.fullmatch`` on the module's dotted name): the tower's modules.
VISION_TOWER_MODULES = r"(.*\.)?(visual\.(patch_embed|blocks)|vision_tower|vision_model)\..*"


def load_trainable_vlm(model_id: str, runtime: ModelRuntime):
    """(model, processor) on the runtime's device and dtype, in training mode."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    runtime.check_model_source(model_id)  # raises ModelUnavailable in seconds, not minutes of hub retries
    processor = AutoProcessor.from_pretrained(model_id, **runtime.hf_kwargs())
    model = AutoModelForImageTextToText.from_pretrained(
        model_id, dtype=runtime.torch_dtype(), **runtime.hf_kwargs()
    ).to(runtime.torch_device())
    model.train()
    return model, processor


def precision_args(runtime: ModelRuntime) -> dict[str, Any]:
    """Trainer flags for the runtime: mixed precision on GPUs only (TRL turns bf16 on by default)."""
    import torch

    device = runtime.torch_device()
    dtype = runtime.torch_dtype()
    on_gpu = device.type == "cuda"
    return {
        "use_cpu": device.type == "cpu",
        "bf16": on_gpu and dtype == torch.bfloat16,
        "fp16": on_gpu and dtype == torch.float16,
    }


def trainer_args(settings, runtime: ModelRuntime, work_dir, show_progress: bool) -> dict[str, Any]:
    """The TrainingArguments SFT and GRPO share: optimiser and batch settings of ``settings`` (an
    ``SftSettings`` or ``GrpoSettings``), no checkpoints, no reporting, the runtime's precision."""
    return dict(
        output_dir=str(work_dir),
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        per_device_train_batch_size=settings.per_device_batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        activation_checkpointing=settings.gradient_checkpointing,  # TRL would default it to on
        logging_steps=settings.logging_steps,
        seed=settings.seed,
        save_strategy="no",  # the flow saves the adapter itself, once whole
        report_to="none",
        disable_tqdm=not show_progress,
        **precision_args(runtime),
    )


def quiet_console(trainer, show_progress: bool) -> None:
    """Without progress bars, transformers prints every log dict to stdout; the caller logs them instead."""
    if not show_progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)


@dataclass
class TrainLog:
    """The trainer's per-step log, without the end-of-training summary line."""

    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_state(cls, state) -> "TrainLog":
        history = [dict(h) for h in state.log_history if "train_runtime" not in h]
        summary = next((dict(h) for h in state.log_history if "train_runtime" in h), {})
        return cls(steps=int(state.global_step), history=history, summary=summary)

    def values(self, key: str) -> list[float]:
        return [float(h[key]) for h in self.history if key in h]

    def last(self, key: str) -> float | None:
        values = self.values(key)
        return values[-1] if values else None

    def all_finite(self, key: str) -> bool:
        values = self.values(key)
        return bool(values) and all(math.isfinite(v) for v in values)


def save_adapter(model, processor, out_dir: str | Path) -> Path:
    """The LoRA weights and config (not the base model) plus the processor, in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
