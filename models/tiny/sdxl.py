"""Build tiny random SDXL pipelines, saved as normal diffusers folders, for tests without weights.

No SDXL weights can be downloaded in CI, so tests build pipelines of a few million parameters
from configs and load them back through the loaders users hit with a hub id
(``StableDiffusionXLPipeline.from_pretrained``, ``AutoPipelineForInpainting.from_pretrained``).
The architecture is SDXL's own (UNet with ``text_time`` added conditioning, two CLIP text
encoders whose hidden states are concatenated, a KL VAE); only the sizes are small. The
tokenizers use CLIP's real BPE vocabulary, bundled with open_clip, so prompts tokenize exactly
as with the hub tokenizers and Prompt2Prompt's token alignment sees real word pieces.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

MAX_TOKENS = 77  # CLIP's context; without it CLIPTokenizer cannot pad ("int too big to convert")
TEXT_WIDTH = 32  # each text encoder; the UNet's cross-attention dim is the two concatenated
TIME_EMBED_DIM = 8


def write_clip_tokenizer_files(out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` of CLIP's BPE (open_clip's bundled copy)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = gzip.open(default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:49152 - 256 - 2 + 1]]
    byte_chars = list(bytes_to_unicode().values())  # the first 256 entries
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vocab_file, merges_file = out_dir / "vocab.json", out_dir / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    merges_file.write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vocab_file, merges_file


def clip_tokenizers(*pad_tokens: str) -> list:
    """``CLIPTokenizer``s with CLIP's real vocabulary, one per pad token.

    SDXL's first tokenizer pads with the end token, its second with "!".
    """
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file = write_clip_tokenizer_files(tmp)
        return [CLIPTokenizer(vocab=str(vocab_file), merges=str(merges_file), pad_token=pad,
                              model_max_length=MAX_TOKENS) for pad in pad_tokens]


def _components(seed: int, scheduler) -> dict:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer, tokenizer_2 = clip_tokenizers("<|endoftext|>", "!")
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=3,
        num_attention_heads=4, max_position_embeddings=MAX_TOKENS, projection_dim=TEXT_WIDTH,
        hidden_act="gelu", layer_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED_DIM,
        # SDXL's added conditioning: pooled text embedding of encoder 2 + 6 size/crop numbers.
        projection_class_embeddings_input_dim=TIME_EMBED_DIM * 6 + TEXT_WIDTH,
        cross_attention_dim=2 * TEXT_WIDTH, norm_num_groups=1,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=128,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, norm_num_groups=32,
    )
    return dict(
        vae=vae, unet=unet, scheduler=scheduler,
        text_encoder=CLIPTextModel(text_config), text_encoder_2=CLIPTextModelWithProjection(text_config),
        tokenizer=tokenizer, tokenizer_2=tokenizer_2,
    )


def _save_text_to_image(out_dir: str | Path, seed: int, scheduler_class, timestep_spacing: str) -> Path:
    """A tiny ``StableDiffusionXLPipeline`` with SDXL's scaled-linear betas, saved to ``out_dir``."""
    from diffusers import StableDiffusionXLPipeline

    scheduler = scheduler_class(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
                                timestep_spacing=timestep_spacing)
    pipe = StableDiffusionXLPipeline(**_components(seed, scheduler), force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(Path(out_dir))
    return Path(out_dir)


def build_tiny_sdxl(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random tiny SDXL base pipeline to ``out_dir`` (Euler scheduler, as SDXL base ships)."""
    from diffusers import EulerDiscreteScheduler

    return _save_text_to_image(out_dir, seed, EulerDiscreteScheduler, "leading")


def build_tiny_sdxl_turbo(out_dir: str | Path, seed: int = 0) -> Path:
    """Write a random tiny SDXL-turbo-shaped pipeline to ``out_dir``.

    sdxl-turbo ships as a text-to-image ``StableDiffusionXLPipeline`` with a 4-channel UNet and an
    Euler-ancestral "trailing" scheduler; ``AutoPipelineForInpainting`` maps that folder to
    ``StableDiffusionXLInpaintPipeline``, which inpaints with a 4-channel UNet by re-imposing the
    noised original outside the mask at every step. The tiny copy has the same layout, so the
    mapping and that inpainting path are what the tests run.
    """
    from diffusers import EulerAncestralDiscreteScheduler

    return _save_text_to_image(out_dir, seed, EulerAncestralDiscreteScheduler, "trailing")


def hub_cache_copy(cache_dir: str | Path, repo_id: str, pipeline_dir: str | Path) -> Path:
    """Copy a pipeline folder into the hub cache layout under ``cache_dir``; returns the snapshot.

    With it, ``from_pretrained(repo_id, cache_dir=cache_dir, local_files_only=True)`` finds the tiny
    pipeline as if ``repo_id`` had been downloaded, so a test can run a config's real hub id offline.
    Subfolders (unet/, vae/, ...) are copied too, which diffusers pipelines need.
    """
    import hashlib
    import shutil

    repo_dir = Path(cache_dir) / ("models--" + repo_id.replace("/", "--"))
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    shutil.copytree(pipeline_dir, snapshot, dirs_exist_ok=True)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
