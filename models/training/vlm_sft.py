"""LoRA supervised fine-tuning of a VLM with TRL's ``SFTTrainer`` (MED Table 5's settings as the defaults).

The dataset is conversational prompt/completion with the images in the prompt, so TRL's vision
collator masks the prompt (and the image tokens in it) out of the labels: the loss covers only the
answer. Images are decoded per batch by the collator, which is why dataset preparation is skipped.

Two objectives (``SftSettings.objective``):

- ``plain``: the caption loss on the model fed both images as they are (two image inputs, or one
  side-by-side picture), as LLaMA-Factory trains.
- ``feature-difference``: MED's Eq. 7 (MED §3.4), ``l_cap(Z[I(x) - I(x_hat)], S(t, t_hat))``: the
  vision encoder ``I`` (Qwen2-VL's tower and merger, the features the language model receives)
  encodes the source image ``x`` and the edited image ``x_hat`` separately; the language model ``Z``
  is fed their difference in place of one image's tokens, and the target is the sample's answer
  (for ``med-diff-qa`` the rewritten difference description, MED Fig. 14). The prompt keeps its
  first image placeholder (where the difference goes) and loses the second. Qwen2-VL class only
  (its ``forward`` takes precomputed ``mm_encoder_outputs``).

  The same visual grid for both images: the edited image is resized to the source image's size
  (PIL bicubic) before the processor, so the processor's ``smart_resize`` (same ``min_pixels`` /
  ``max_pixels``) gives both the same ``image_grid_thw`` and ``I(x) - I(x_hat)`` is taken token by
  token; a grid mismatch after that is an error, never a silent crop. Each image goes through the
  tower in its own call, so two identical images give exactly zero. With LoRA dropout on the
  tower's layers (MED Table 5: 0.1, vision tower unfrozen), training-mode encodings of the two
  images draw independent dropout masks once the adapter has moved off zero, as any dropout does.

Per-group learning rates (``SftSettings.vision_learning_rate``, OmniDiff supp. Table 10: ViT 2e-6,
the rest 1e-5): the vision tower's trainable parameters (``vlm_training.in_vision_tower``) form
their own optimizer groups at that rate; the scheduler scales every group alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.runtime import ModelRuntime
from pairsmith.models.training.vlm_training import LoraSettings, TrainLog, in_vision_tower, quiet_console, trainer_args

Objective = Literal["plain", "feature-difference"]
AFTER_PIXELS = "pixel_values_after"  # the collator's key for the edited images' pixels (feature-difference)
# Models whose forward takes precomputed image features (``mm_encoder_outputs``) with one feature row
# per image token, so a difference of two images' features can stand in for one image's.
EQ7_MODEL_TYPES = ("qwen2_vl", "qwen2_5_vl")


class SftSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    objective: Objective = Field(
        "plain", description="'plain': the caption loss on both images as given; 'feature-difference': MED "
        "Eq. 7, the language model fed I(x) - I(x_hat) (Qwen2-VL class, layout multi)",
    )
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0, description="MED Table 5: 1e-4 (the base rate: "
                                 "every trainable parameter outside the vision tower when vision_learning_rate is set)")
    vision_learning_rate: float | None = Field(
        None, gt=0.0, le=1.0, description="the vision tower's own rate (OmniDiff supp. Table 10: 2e-6); "
        "None: learning_rate for every parameter",
    )
    lr_scheduler: str = Field("cosine", description="transformers scheduler name (MED: cosine)")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="share of steps warming up (MED: 0.1)")
    per_device_batch_size: int = Field(4, ge=1, le=4096, description="samples per device step (MED Table 5: 16)")
    gradient_accumulation_steps: int = Field(4, ge=1, le=4096, description="MED Table 5: 8")
    epochs: float = Field(1.0, gt=0.0, le=1000.0, description="passes over the data when max_steps is not set")
    max_steps: int | None = Field(None, ge=1, description="optimizer steps; overrides epochs")
    max_length: int | None = Field(None, ge=16, description="truncate sequences (images count as tokens)")
    gradient_checkpointing: bool = False
    logging_steps: int = Field(1, ge=1)
    seed: int = Field(0, ge=0)

    @property
    def batch_size(self) -> int:
        """Samples per optimizer step on one process: per_device_batch_size x gradient_accumulation_steps
        (on N GPUs the global batch is N times this)."""
        return self.per_device_batch_size * self.gradient_accumulation_steps


def first_image_only(prompt: list[dict]) -> list[dict]:
    """The conversational prompt with its first image block kept and every later one removed."""
    seen = False
    out = []
    for message in prompt:
        content = message["content"]
        if isinstance(content, list):
            kept = []
            for block in content:
                if block.get("type") == "image":
                    if seen:
                        continue
                    seen = True
                kept.append(block)
            message = {**message, "content": kept}
        out.append(message)
    return out


@dataclass
class DifferenceCollator:
    """Batches for Eq. 7: TRL's vision collator over the prompt with one image placeholder and the
    source image, plus the edited images' pixels under ``pixel_values_after``, resized to the source's
    size first so both have the same grid (checked). Items must carry exactly two images."""

    inner: Any  # trl's DataCollatorForVisionLanguageModeling
    processor: Any

    def __call__(self, examples: list[dict]) -> dict:
        from PIL import Image

        one, afters = [], []
        for i, example in enumerate(examples):
            images = example["images"]
            if len(images) != 2:
                raise ValueError(f"feature-difference: item {i} has {len(images)} images, needs the pair "
                                 "(source, edited) as two images (data.layout multi)")
            before, after = images
            if after.size != before.size:
                after = after.resize(before.size, Image.Resampling.BICUBIC)
            one.append({**example, "prompt": first_image_only(example["prompt"]), "images": [before]})
            afters.append(after)
        batch = self.inner(one)
        processed = self.processor.image_processor(images=afters, return_tensors="pt")
        if processed["image_grid_thw"].tolist() != batch["image_grid_thw"].tolist():
            raise ValueError(f"feature-difference: edited images map to grids {processed['image_grid_thw'].tolist()}, "
                             f"the source images to {batch['image_grid_thw'].tolist()}")
        batch[AFTER_PIXELS] = processed["pixel_values"]
        return batch


def feature_difference_inputs(model, inputs: dict) -> dict:
    """The model inputs of Eq. 7: ``pixel_values`` (sources) and ``pixel_values_after`` (edits) encoded by
    the model's vision encoder, one call each, and their difference handed to the forward as
    precomputed image features (``mm_encoder_outputs``) for the prompt's one image placeholder per sample."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    inputs = dict(inputs)
    before_px, after_px = inputs.pop("pixel_values"), inputs.pop(AFTER_PIXELS)
    grid = inputs["image_grid_thw"]
    encoder = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not hasattr(encoder, "get_image_features"):
        raise ValueError(f"feature-difference needs a Qwen2-VL-class model; {type(encoder).__name__} has no "
                         "get_image_features")
    before = encoder.get_image_features(before_px, grid).pooler_output
    after = encoder.get_image_features(after_px, grid).pooler_output
    difference = tuple(b - a for b, a in zip(before, after))
    inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=difference)}
    return inputs


def sft_trainer_class(objective: Objective, vision_learning_rate: float | None):
    """TRL's ``SFTTrainer``, or a subclass that computes Eq. 7's inputs and / or gives the vision tower
    its own learning rate."""
    from trl import SFTTrainer

    if objective == "plain" and vision_learning_rate is None:
        return SFTTrainer

    class PairsmithSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if objective == "feature-difference":
                inputs = feature_difference_inputs(self.accelerator.unwrap_model(model), inputs)
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)

        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            if vision_learning_rate is None:
                return optimizer
            opt_model = self.model if model is None else model
            vision = {id(p) for n, p in opt_model.named_parameters() if in_vision_tower(n)}
            groups = []
            for group in optimizer.param_groups:
                rest = [p for p in group["params"] if id(p) not in vision]
                tower = [p for p in group["params"] if id(p) in vision]
                groups += [{**group, "params": rest}] if rest else []
                groups += [{**group, "params": tower, "lr": vision_learning_rate}] if tower else []
            optimizer.param_groups.clear()  # no step taken yet: no state to carry over
            for group in groups:
                optimizer.add_param_group(group)
            return optimizer

    return PairsmithSFTTrainer


def sft_config_args(settings: SftSettings, runtime: ModelRuntime, work_dir: str | Path,
                    show_progress: bool = False) -> dict[str, Any]:
    """The keyword arguments of TRL's ``SFTConfig`` (what ``pairsmith finetune --print-args`` shows)."""
    return dict(
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1,
        max_length=settings.max_length,
        remove_unused_columns=False,  # the transform needs pair_id and the conversation to build an item
        dataset_kwargs={"skip_prepare_dataset": True},
        **trainer_args(settings, runtime, work_dir, show_progress),
    )


def run_sft(
    model, processor, dataset, settings: SftSettings, lora: LoraSettings, runtime: ModelRuntime,
    work_dir: str | Path, show_progress: bool = False, callbacks: list | None = None,
):
    """Train LoRA adapters on ``model`` with ``settings.objective``; returns (the peft model, its log)."""
    from trl import SFTConfig
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    args = SFTConfig(**sft_config_args(settings, runtime, work_dir, show_progress))
    collator = None
    if settings.objective == "feature-difference":
        model_type = getattr(model.config, "model_type", None)
        if model_type not in EQ7_MODEL_TYPES:
            raise ValueError(f"train.objective feature-difference (MED Eq. 7) needs a Qwen2-VL-class model "
                             f"({', '.join(EQ7_MODEL_TYPES)}); this model is {model_type!r}")
        inner = DataCollatorForVisionLanguageModeling(processor, max_length=settings.max_length,
                                                      completion_only_loss=True)
        collator = DifferenceCollator(inner, processor)
    trainer = sft_trainer_class(settings.objective, settings.vision_learning_rate)(
        model=model, args=args, train_dataset=dataset, processing_class=processor, peft_config=lora.peft_config(),
        callbacks=callbacks, data_collator=collator,
    )
    quiet_console(trainer, show_progress)
    trainer.train()
    return trainer.model, TrainLog.from_state(trainer.state)
