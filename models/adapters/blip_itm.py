"""BLIP image-text matching through transformers: does this crop show this noun or caption?

Img-Diff scores crops against the replaced nouns (BITM > 0.35), crops against their region
captions (CITM > 0.4), and for removal the original and inpainted crops against the VLM's
description (> 0.35 / < 0.2). ``BlipForImageTextRetrieval`` offers two scores: the ITM head's
probability of "match" (image and text fused by cross-attention) and the contrastive cosine of the
projected embeddings. Both are computed here from one vision pass and stored, and
``BlipItmConfig.score`` says which one a filter reads, so switching is a re-filter, not a re-run.

The two scores are computed exactly as ``BlipForImageTextRetrieval.forward`` computes them (with
``use_itm_head`` True and False), but the vision tower runs once per batch instead of twice, and the
cosine is taken row by row (pair i's image with pair i's text) instead of as an N x N matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.lazy import LazyModel
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

ItmKind = Literal["itm", "cosine"]


class BlipItmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    model_id: str = Field("Salesforce/blip-itm-large-coco", description="hub id or local folder")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    batch_size: int = Field(32, ge=1, le=4096, description="(image, text) pairs per forward pass", json_schema_extra=NOT_CONTENT)
    score: ItmKind = Field("itm", description="which score filters use: ITM-head match probability or cosine", json_schema_extra=NOT_CONTENT)
    max_text_tokens: int = Field(35, ge=4, le=512, description="texts are truncated to this many tokens (BLIP: 35)")


@dataclass(frozen=True)
class ItmScores:
    """Both scores per (image, text) pair, in input order; ``selected`` is the configured one."""

    itm: np.ndarray
    cosine: np.ndarray
    kind: ItmKind = "itm"

    @property
    def selected(self) -> np.ndarray:
        return self.itm if self.kind == "itm" else self.cosine

    def __len__(self) -> int:
        return len(self.itm)


@dataclass
class _Loaded:
    model: Any
    processor: Any
    device: Any
    dtype: Any


class BlipItmScorer(LazyModel[BlipItmConfig]):
    def _load(self) -> _Loaded:
        from transformers import BlipForImageTextRetrieval, BlipProcessor

        rt = self.config.runtime
        rt.check_model_source(self.config.model_id)  # seconds, not minutes of hub retries
        device, dtype = rt.torch_device(), rt.torch_dtype()
        processor = BlipProcessor.from_pretrained(self.config.model_id, **rt.hf_kwargs())
        model = BlipForImageTextRetrieval.from_pretrained(self.config.model_id, dtype=dtype, **rt.hf_kwargs())
        model.to(device).eval()
        return _Loaded(model, processor, device, dtype)

    def score_batch(self, pairs: Sequence[tuple[Image.Image, str]]) -> ItmScores:
        """ITM probability and cosine for each (image, text) pair, one forward per ``batch_size`` pairs."""
        for i, (image, text) in enumerate(pairs):
            if image.width < 1 or image.height < 1:
                raise ValueError(f"pair {i}: image is empty ({image.width}x{image.height}); drop zero-area crops first")
            if not text or not text.strip():
                raise ValueError(f"pair {i}: text is empty")
        itm, cosine = [], []
        for start in range(0, len(pairs), self.config.batch_size):
            chunk_itm, chunk_cos = self._score(pairs[start:start + self.config.batch_size])
            itm.append(chunk_itm)
            cosine.append(chunk_cos)
        empty = np.zeros(0, dtype=np.float32)
        return ItmScores(np.concatenate(itm) if itm else empty, np.concatenate(cosine) if cosine else empty,
                         self.config.score)

    def selected_batch(self, pairs: Sequence[tuple[Image.Image, str]]) -> np.ndarray:
        return self.score_batch(pairs).selected

    def _score(self, pairs: Sequence[tuple[Image.Image, str]]) -> tuple[np.ndarray, np.ndarray]:
        import torch
        from torch.nn.functional import normalize

        loaded = self.loaded()
        model = loaded.model
        inputs = loaded.processor(
            images=[image.convert("RGB") for image, _ in pairs], text=[text for _, text in pairs],
            padding=True, truncation=True, max_length=self.config.max_text_tokens, return_tensors="pt",
        ).to(loaded.device)
        text_kwargs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        with torch.inference_mode():
            image_embeds = model.vision_model(pixel_values=inputs["pixel_values"].to(loaded.dtype)).last_hidden_state
            image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
            fused = model.text_encoder(
                **text_kwargs, encoder_hidden_states=image_embeds, encoder_attention_mask=image_atts
            ).last_hidden_state
            itm = model.itm_head(fused[:, 0, :]).float().softmax(dim=-1)[:, 1]
            text_embeds = model.text_encoder(**text_kwargs).last_hidden_state
            image_feat = normalize(model.vision_proj(image_embeds[:, 0, :]).float(), dim=-1)
            text_feat = normalize(model.text_proj(text_embeds[:, 0, :]).float(), dim=-1)
            cosine = (image_feat * text_feat).sum(dim=-1)
        return itm.cpu().numpy().astype(np.float32), cosine.cpu().numpy().astype(np.float32)
