"""CLIP image and text embeddings through open_clip, and the cosines Img-Diff and MED filter on.

Img-Diff keeps an image pair when the CLIP ViT-B/32 image-image cosine is in (0.90, 0.98), a box
when the two crops' cosine is below 0.85, and a region-caption pair when the captions' text cosine
is below 0.85; MED keeps an edit with image cosine >= 0.7. All of these are one embedding pass
over many images or texts, so the adapter embeds whole lists in chunks of ``batch_size`` (one
forward per chunk) and only then pairs the rows up. Embeddings are L2-normalised, so a cosine is a
dot product. Callers crop; a crop is just an image.

Weights come from open_clip's own loader. Pretrained tags that live on the Hugging Face hub are
resolved to a file here, through ``hf_hub_download`` with the runtime's cache folder and offline
flag, because open_clip's downloader takes neither; the tag's preprocessing and QuickGELU setting
are passed on, so ``ViT-B-32`` + ``openai`` computes what OpenAI's checkpoint was trained with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.lazy import LazyModel
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

# open_clip's default weight file names in a hub repo, safetensors first.
_HUB_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class ClipScorerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    model_name: str = Field(
        "ViT-B-32",
        description="open_clip architecture (ViT-B-32), or 'hf-hub:org/repo' / 'local-dir:/path' holding "
        "open_clip_config.json and the weights",
    )
    pretrained: str | None = Field(
        "openai",
        description="open_clip pretrained tag (openai, laion2b_s34b_b79k, ...) or a weights file; "
        "unused with hf-hub:/local-dir: names",
    )
    model_config_file: str | None = Field(
        None, description="architecture JSON registered with open_clip before loading (custom or tiny models)"
    )
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    batch_size: int = Field(64, ge=1, le=4096, description="images or texts per forward pass", json_schema_extra=NOT_CONTENT)


@dataclass
class _Loaded:
    model: Any
    preprocess: Any
    tokenizer: Any
    device: Any
    dtype: Any


class ClipScorer(LazyModel[ClipScorerConfig]):
    def _load(self) -> _Loaded:
        import open_clip

        rt = self.config.runtime
        if self.config.model_config_file:
            if not Path(self.config.model_config_file).is_file():
                raise FileNotFoundError(f"open_clip model config file not found: {self.config.model_config_file}")
            open_clip.add_model_config(self.config.model_config_file)
        device, dtype = rt.torch_device(), rt.torch_dtype()
        name, pretrained, extra = _resolve_weights(self.config.model_name, self.config.pretrained, rt)
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, precision=_precision(dtype), device=device, cache_dir=rt.cache_dir, **extra
        )
        model.eval()
        tokenizer = open_clip.get_tokenizer(name, cache_dir=rt.cache_dir)
        return _Loaded(model, preprocess, tokenizer, device, dtype)

    def image_embeddings_batch(self, images: Sequence[Image.Image]) -> np.ndarray:
        """(N, D) float32 unit vectors, one row per image, in order."""
        _check_images(images)
        loaded = self.loaded()
        if not images:
            return np.zeros((0, _embed_dim(loaded.model)), dtype=np.float32)
        return np.concatenate([self._embed_images(loaded, images[i:i + self.config.batch_size])
                               for i in range(0, len(images), self.config.batch_size)])

    def text_embeddings_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 unit vectors, one row per text (truncated to CLIP's 77 tokens), in order."""
        loaded = self.loaded()
        if not texts:
            return np.zeros((0, _embed_dim(loaded.model)), dtype=np.float32)
        return np.concatenate([self._embed_texts(loaded, list(texts[i:i + self.config.batch_size]))
                               for i in range(0, len(texts), self.config.batch_size)])

    def image_similarity_batch(self, pairs: Sequence[tuple[Image.Image, Image.Image]]) -> np.ndarray:
        """Cosine of each (image, image) pair: pair similarity, or crop similarity of two crops."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        emb = self.image_embeddings_batch([im for pair in pairs for im in pair])
        return _rowwise_cosine(emb[0::2], emb[1::2])

    def image_text_similarity_batch(self, pairs: Sequence[tuple[Image.Image, str]]) -> np.ndarray:
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        images = self.image_embeddings_batch([image for image, _ in pairs])
        texts = self.text_embeddings_batch([text for _, text in pairs])
        return _rowwise_cosine(images, texts)

    def text_similarity_batch(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Cosine of each (text, text) pair: Img-Diff's caption similarity (CS) of two region captions."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        emb = self.text_embeddings_batch([text for pair in pairs for text in pair])
        return _rowwise_cosine(emb[0::2], emb[1::2])

    def _embed_images(self, loaded: _Loaded, images: Sequence[Image.Image]) -> np.ndarray:
        import torch

        pixels = torch.stack([loaded.preprocess(im.convert("RGB")) for im in images])
        pixels = pixels.to(loaded.device, dtype=loaded.dtype)
        with torch.inference_mode():
            emb = loaded.model.encode_image(pixels, normalize=True)
        return emb.float().cpu().numpy()

    def _embed_texts(self, loaded: _Loaded, texts: list[str]) -> np.ndarray:
        import torch

        tokens = loaded.tokenizer(texts).to(loaded.device)
        with torch.inference_mode():
            emb = loaded.model.encode_text(tokens, normalize=True)
        return emb.float().cpu().numpy()


def _resolve_weights(model_name: str, pretrained: str | None, rt: ModelRuntime) -> tuple[str, str | None, dict]:
    """(name, pretrained, extra create_model kwargs) for open_clip, with hub files already local."""
    import open_clip

    if model_name.startswith("local-dir:"):
        return model_name, None, {}
    if model_name.startswith("hf-hub:"):
        repo = model_name.removeprefix("hf-hub:")
        config_path = _hub_file(repo, ["open_clip_config.json"], rt, what=model_name)
        _hub_file(repo, list(_HUB_WEIGHT_FILES), rt, what=model_name)
        return f"local-dir:{Path(config_path).parent}", None, {}
    if pretrained is None:
        raise ValueError(f"CLIP model {model_name!r} has no pretrained weights set; a random CLIP scores nothing")
    if os.path.isfile(pretrained):
        return model_name, pretrained, {}
    tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not tag_cfg:
        known = open_clip.list_pretrained_tags_by_model(model_name)
        raise ValueError(f"unknown open_clip pretrained {pretrained!r} for {model_name!r} (not a file; tags: {known})")
    extra = {
        "image_mean": tuple(tag_cfg["mean"]), "image_std": tuple(tag_cfg["std"]),
        "image_interpolation": tag_cfg["interpolation"], "image_resize_mode": tag_cfg["resize_mode"],
        "force_quick_gelu": bool(tag_cfg.get("quick_gelu", False)),
    }
    if not tag_cfg.get("hf_hub"):
        if rt.is_offline():
            raise FileNotFoundError(
                f"open_clip weights {model_name}/{pretrained} download from a URL; offline mode: "
                "pass the downloaded file as pretrained"
            )
        return model_name, pretrained, extra
    # open_clip's convention: "org/repo/" means the default file names, "org/repo/file.bin" one file.
    hub = tag_cfg["hf_hub"]
    if hub.endswith("/"):
        repo, filenames = hub.rstrip("/"), list(_HUB_WEIGHT_FILES)
    else:
        repo, filename = hub.rsplit("/", 1)
        filenames = [filename[:-4] + ".safetensors", filename] if filename.endswith(".bin") else [filename]
    return model_name, _hub_file(repo, filenames, rt, what=f"{model_name}/{pretrained}"), extra


def _hub_file(repo: str, filenames: list[str], rt: ModelRuntime, what: str) -> str:
    """The first of ``filenames`` that the hub (or, offline, the cache) has for ``repo``."""
    from huggingface_hub import hf_hub_download

    errors = []
    for filename in filenames:
        try:
            return hf_hub_download(repo, filename, cache_dir=rt.cache_dir, local_files_only=rt.is_offline())
        except Exception as exc:  # noqa: BLE001 - try the next name, report all below
            errors.append(f"{filename}: {type(exc).__name__}")
    where = f"cache {rt.cache_dir or 'default'}" + (" (offline)" if rt.is_offline() else "")
    raise FileNotFoundError(f"CLIP weights for {what} not found in hub repo {repo} / {where}: {'; '.join(errors)}")


def _precision(dtype) -> str:
    import torch

    return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, "fp32")


def _embed_dim(model) -> int:
    return int(getattr(model.visual, "output_dim", 0) or model.text_projection.shape[-1])


def _check_images(images: Sequence[Image.Image]) -> None:
    for i, im in enumerate(images):
        if im.width < 1 or im.height < 1:
            raise ValueError(f"image {i} is empty ({im.width}x{im.height}); drop zero-area crops before scoring")


def _rowwise_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.clip(np.einsum("nd,nd->n", a, b), -1.0, 1.0).astype(np.float32)
