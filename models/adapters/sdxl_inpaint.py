"""Object removal by inpainting: SDXL-turbo repaints a mask with "background, nothing, 8k".

Img-Diff's removal pipeline masks an object found by FastSAM and inpaints the mask with
SDXL-turbo in a few steps without guidance; the inpainted image becomes the "after" image. The
model sees the image at its working resolution (the longer side ``resolution``, both sides
multiples of 8); its output is resized back to the input size and pasted into the original
through the (optionally dilated) mask, so every pixel outside the mask is the original pixel
and the pair differs only where the object was.

Requests are grouped by working size (the pipeline takes one size per call) and run
``batch_size`` at a time, each with its own seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.models.lazy import LazyModel
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLInpaintPipeline


class InpaintConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    model_id: str = Field("stabilityai/sdxl-turbo", description="hub id or local folder")
    variant: str | None = Field(None, description='weight variant to load, e.g. "fp16"')
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    prompt: str = Field("background, nothing, 8k", min_length=1, description="Img-Diff's removal prompt")
    steps: int = Field(4, ge=1, le=100, description="scheduler steps; sdxl-turbo needs few")
    guidance_scale: float = Field(0.0, ge=0.0, le=20.0, description="sdxl-turbo is trained without guidance")
    strength: float = Field(
        0.9999, gt=0.0, le=1.0,
        description="how far the masked region is noised; diffusers' SDXL inpainting default. "
                    "int(steps * strength) steps run, so it must be >= 1",
    )
    resolution: int = Field(512, ge=64, le=2048, description="longer side the model works at (sdxl-turbo: 512)")
    mask_dilation: int = Field(0, ge=0, le=64, description="grow the mask by this many pixels (covers object edges)")
    batch_size: int = Field(4, ge=1, le=64, description="images per pipeline call", json_schema_extra=NOT_CONTENT)

    @model_validator(mode="after")
    def _runs_a_step(self) -> "InpaintConfig":
        if int(self.steps * self.strength) < 1:
            raise ValueError(f"steps * strength must reach 1 step, got {self.steps} * {self.strength}")
        return self


@dataclass(frozen=True)
class InpaintRequest:
    image: Image.Image
    mask: Image.Image  # same size as image; nonzero = repaint
    seed: int = 0


class SdxlInpainter(LazyModel[InpaintConfig]):
    """Loads the inpainting pipeline once per process through ``AutoPipelineForInpainting``."""

    def _load(self) -> "StableDiffusionXLInpaintPipeline":
        from diffusers import AutoPipelineForInpainting

        rt = self.config.runtime
        rt.check_model_source(self.config.model_id)  # seconds, not minutes of hub retries
        extra = {"variant": self.config.variant} if self.config.variant else {}
        pipe = AutoPipelineForInpainting.from_pretrained(
            self.config.model_id, dtype=rt.torch_dtype(), **extra, **rt.hf_kwargs()
        ).to(rt.torch_device())
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def inpaint_batch(self, requests: Sequence[InpaintRequest]) -> list[Image.Image]:
        """One RGB image per request, in order, at the request's size; unchanged outside the mask."""
        masks = [self._mask(i, r) for i, r in enumerate(requests)]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault(working_size(r.image.size, self.config.resolution), []).append(i)
        out: list[Image.Image | None] = [None] * len(requests)
        for size, indices in groups.items():
            for start in range(0, len(indices), self.config.batch_size):
                chunk = indices[start:start + self.config.batch_size]
                painted = self._run(size, [requests[i] for i in chunk], [masks[i] for i in chunk])
                for i, image in zip(chunk, painted):
                    original = requests[i].image.convert("RGB")
                    out[i] = Image.composite(image.resize(original.size, Image.BICUBIC), original, masks[i])
        return out

    def inpaint(self, image: Image.Image, mask: Image.Image, seed: int = 0) -> Image.Image:
        return self.inpaint_batch([InpaintRequest(image, mask, seed)])[0]

    def _mask(self, index: int, request: InpaintRequest) -> Image.Image:
        """Binary L mask, dilated; a bad item raises a one-line ValueError naming it."""
        if isinstance(request.seed, bool) or not isinstance(request.seed, int) or not 0 <= request.seed < 2**63:
            raise ValueError(f"item {index}: seed must be an int in [0, 2**63 - 1], got {request.seed!r}")
        if request.mask.size != request.image.size:
            raise ValueError(f"item {index}: mask size {request.mask.size} != image size {request.image.size}")
        mask = request.mask.convert("L").point(lambda v: 255 if v > 127 else 0)
        if mask.getbbox() is None:
            raise ValueError(f"item {index}: mask is empty (nothing to inpaint)")
        if self.config.mask_dilation:
            mask = mask.filter(ImageFilter.MaxFilter(2 * self.config.mask_dilation + 1))
        return mask

    def _run(self, size: tuple[int, int], requests: list[InpaintRequest],
             masks: list[Image.Image]) -> list[Image.Image]:
        import torch

        width, height = size
        pipe = self.loaded()
        return pipe(
            prompt=[self.config.prompt] * len(requests),
            image=[r.image.convert("RGB").resize(size, Image.BICUBIC) for r in requests],
            mask_image=[m.resize(size, Image.NEAREST) for m in masks],
            height=height, width=width,
            num_inference_steps=self.config.steps, guidance_scale=self.config.guidance_scale,
            strength=self.config.strength,
            generator=[torch.Generator("cpu").manual_seed(r.seed) for r in requests],
            output_type="pil",
        ).images


def working_size(size: tuple[int, int], resolution: int) -> tuple[int, int]:
    """(width, height) with the longer side ``resolution``, aspect kept, both multiples of 8."""
    width, height = size
    scale = resolution / max(width, height)
    return max(8, round(width * scale / 8) * 8), max(8, round(height * scale / 8) * 8)

