"""Image pairs from caption pairs: SDXL base + Prompt2Prompt "refine", as Img-Diff makes them.

Each pair is a source and a target caption that differ in one object ("a cat on a sofa" / "a dog
on a sofa"). Both images start from the same noise (the same seed) and the target copies the
source's attention (self-attention for the first ``self_replace`` of the steps, cross-attention
of shared words for the first ``cross_replace``), so the two images differ mostly where the
object differs. Img-Diff's settings are the config defaults: 50 steps, guidance 7.5, refine edit,
self 0.4, cross 1.0. The edit itself follows Img-Diff's generator exactly (see
``pairsmith.models.adapters.p2p_attention``).

Seeds: each pair is denoised from its own seed, stored with the pair, so a pair can be made again
alone and does not depend on what else ran. The references do not allow that: google/prompt-to-prompt's
notebooks reuse one generator across calls (an image depends on the calls before it) and Img-Diff's
Data-Juicer mapper (``sdxl_prompt2prompt_mapper``) draws an unrecorded seed per sample.

Precision: Img-Diff ran SDXL in float16; pairsmith's runtime default is bfloat16 on GPUs that support
it. ``dtype: float16`` gives Img-Diff's precision. SDXL's own VAE overflows in float16, so diffusers
decodes with it in float32 (its config's ``force_upcast``); ``vae_id: madebyollin/sdxl-vae-fp16-fix``
(the SDXL VAE fine-tuned to stay finite in float16; its pixels differ slightly) can decode in float16.

``generate_pairs`` takes its components explicitly (a loaded ``StableDiffusionXLPipeline`` and a
config); ``SdxlP2PGenerator`` is the lazy, picklable adapter flows use.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Literal, Sequence

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.models.lazy import LazyModel
from pairsmith.models.adapters.p2p_attention import AttentionEdit, RefineController, p2p_processors, refinement_alignment
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLPipeline

MAX_SEED = 2**63 - 1  # seeds are stored in an int64 column


class SdxlP2PConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    model_id: str = Field("stabilityai/stable-diffusion-xl-base-1.0", description="hub id or local folder")
    variant: str | None = Field(None, description='weight variant to load, e.g. "fp16" (half the download)')
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        None, description="precision of this model, over the runtime's; None: the runtime's (auto: bfloat16 on "
                          "GPUs that support it). Img-Diff: float16, best with vae_id madebyollin/sdxl-vae-fp16-fix",
    )
    vae_id: str | None = Field(
        None, description="hub id or folder of a VAE used in place of the pipeline's; "
                          "madebyollin/sdxl-vae-fp16-fix decodes in float16 without NaNs (SDXL's own VAE is "
                          "upcast to float32 to decode); None: the pipeline's own VAE",
    )
    steps: int = Field(50, ge=1, le=1000, description="denoising steps (Img-Diff: 50)")
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0, description="classifier-free guidance (Img-Diff: 7.5)")
    height: int = Field(1024, ge=16, le=4096, description="image height in pixels, a multiple of 8")
    width: int = Field(1024, ge=16, le=4096, description="image width in pixels, a multiple of 8")
    self_replace: float = Field(
        0.4, ge=0.0, le=1.0,
        description="the target copies self-attention in the first int(steps * self_replace) steps (Img-Diff: 0.4)",
    )
    cross_replace: float = Field(
        1.0, ge=0.0, le=1.0,
        description="the target copies cross-attention in the first int(cross_replace * (steps + 1)) steps, "
                    "Prompt-to-Prompt's rule (Img-Diff: 1.0)",
    )
    self_replace_min_downscale: int = Field(
        32, ge=1, le=4096,
        description="copy self-attention only in layers of at most ceil(height/N) x ceil(width/N) positions "
                    "(Img-Diff's P2P for SDXL: 32, the 32x32 maps of a 1024 px image, but it uses the width "
                    "twice); 1 = every layer",
    )
    negative_prompt: str | None = Field(None, description="None: SDXL's zero unconditional embedding")
    pairs_per_call: int = Field(2, ge=1, le=64, description="pairs denoised together (2 images each, x2 with guidance)", json_schema_extra=NOT_CONTENT)

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_8(cls, value: int) -> int:
        if value % 8:
            raise ValueError(f"must be a multiple of 8 (the VAE's downscale), got {value}")
        return value

    def self_max_tokens(self) -> int:
        """Query positions of the coarsest layer whose self-attention is copied: from height and width."""
        scale = self.self_replace_min_downscale
        return -(-self.height // scale) * -(-self.width // scale)

    def torch_dtype(self):
        """``dtype`` if set, else the runtime's."""
        import torch

        return self.runtime.torch_dtype() if self.dtype is None else getattr(torch, self.dtype)


@dataclass(frozen=True)
class PairRequest:
    source: str
    target: str
    seed: int | None = None  # None: a random seed, returned in the ImagePair


@dataclass
class ImagePair:
    before: Image.Image
    after: Image.Image
    seed: int
    source_prompt: str
    target_prompt: str


def generate_pairs(
    pipe: "StableDiffusionXLPipeline",
    sources: Sequence[str],
    targets: Sequence[str],
    seeds: Sequence[int],
    config: SdxlP2PConfig,
    observer: Callable[[AttentionEdit], None] | None = None,
) -> list[ImagePair]:
    """Denoise all pairs as one batch (source, target, source, target, ...) and split the images."""
    import torch

    # 1. Check the inputs: one source, one target and one seed per pair, no empty prompt.
    _check_inputs(sources, targets, seeds)

    # 2. Align each target prompt's tokens with its source's (refinement mapper + alphas).
    tokenizer = pipe.tokenizer or pipe.tokenizer_2  # same BPE; the refiner has only the second
    alignments = [
        refinement_alignment(_token_ids(tokenizer, s), _token_ids(tokenizer, t), tokenizer.model_max_length)
        for s, t in zip(sources, targets)
    ]
    controller = RefineController(
        alignments, config.steps, config.self_replace, config.cross_replace, config.self_max_tokens(), observer,
    )

    # 3. One CPU generator per image, both images of a pair seeded alike: the same starting noise
    #    (and the same sampler noise), and the same noise on any device.
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds for _ in range(2)]
    prompts = [p for pair in zip(sources, targets) for p in pair]

    # 4. Denoise with the P2P processors installed; the step callback advances the controller.
    negative = None if config.negative_prompt is None else [config.negative_prompt] * len(prompts)
    with p2p_processors(pipe.unet, controller):
        images = pipe(
            prompt=prompts, negative_prompt=negative, num_inference_steps=config.steps,
            guidance_scale=config.guidance_scale, height=config.height, width=config.width,
            generator=generators, callback_on_step_end=controller.on_step_end, output_type="pil",
        ).images

    # 5. Split the batch back into (before, after) pairs.
    return [
        ImagePair(images[2 * k], images[2 * k + 1], seed, source, target)
        for k, (source, target, seed) in enumerate(zip(sources, targets, seeds))
    ]


def _check_inputs(sources: Sequence[str], targets: Sequence[str], seeds: Sequence[int]) -> None:
    if not sources:
        raise ValueError("no prompt pairs given")
    if not (len(sources) == len(targets) == len(seeds)):
        raise ValueError(f"mismatched batch: {len(sources)} sources, {len(targets)} targets, {len(seeds)} seeds")
    for i, (source, target) in enumerate(zip(sources, targets)):
        for role, prompt in (("source", source), ("target", target)):
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"pair {i}: empty {role} prompt {prompt!r}")
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"pair {i}: seed must be an int in [0, 2**63 - 1], got {seed!r}")


def _token_ids(tokenizer, prompt: str) -> list[int]:
    """The ids the pipeline's first text encoder sees (start and end tokens, truncated to 77)."""
    return tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids


class SdxlP2PGenerator(LazyModel[SdxlP2PConfig]):
    """Loads SDXL base once per process; ``generate_batch`` splits requests into pipeline calls."""

    def _load(self) -> "StableDiffusionXLPipeline":
        from diffusers import AutoencoderKL, StableDiffusionXLPipeline

        rt, dtype = self.config.runtime, self.config.torch_dtype()
        rt.check_model_source(self.config.model_id)  # seconds, not minutes of hub retries
        extra = {"variant": self.config.variant} if self.config.variant else {}
        if self.config.vae_id:
            extra["vae"] = AutoencoderKL.from_pretrained(self.config.vae_id, dtype=dtype, **rt.hf_kwargs())
        pipe = StableDiffusionXLPipeline.from_pretrained(
            self.config.model_id, dtype=dtype, **extra, **rt.hf_kwargs()
        ).to(rt.torch_device())
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def generate_batch(self, requests: Sequence[PairRequest]) -> list[ImagePair]:
        """One ImagePair per request, in order, with the seed used (drawn here where none is given)."""
        if not requests:
            return []
        seeds = [r.seed if r.seed is not None else random.SystemRandom().randrange(2**31) for r in requests]
        _check_inputs([r.source for r in requests], [r.target for r in requests], seeds)
        pipe = self.loaded()
        pairs: list[ImagePair] = []
        step = self.config.pairs_per_call
        for start in range(0, len(requests), step):
            chunk = requests[start:start + step]
            pairs += generate_pairs(
                pipe, [r.source for r in chunk], [r.target for r in chunk], seeds[start:start + step], self.config,
            )
        return pairs

    def generate(self, source: str, target: str, seed: int | None = None) -> ImagePair:
        return self.generate_batch([PairRequest(source, target, seed)])[0]
