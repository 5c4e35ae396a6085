"""A vision-language chat model through transformers: images + a prompt in, text out, in batches.

Every pipeline that asks a VLM something (region captions, difference captions, MED's editability
gate and caption alignment, benchmark answers) goes through this adapter, so the loader path is
the one users hit with a hub id (``AutoModelForImageTextToText`` / ``AutoProcessor``), the device
and dtype are chosen once, and requests are batched the way a GPU wants them (left padding, one
``generate`` call per batch).

Multi-image prompts are sent as the model's own chat template builds them (one image entry per
image, in order). A model that takes one image gets the side-by-side picture from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from models.lazy import LazyModel
from models.runtime import ModelRuntime


class VlmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model_id: str = Field("Qwen/Qwen2-VL-2B-Instruct", description="hub id or local folder")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    max_new_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy decoding")
    batch_size: int = Field(4, ge=1, le=256, description="requests per generate() call")
    system_prompt: str | None = None


@dataclass(frozen=True)
class VlmRequest:
    images: tuple[Image.Image, ...]
    prompt: str


@dataclass
class _Loaded:
    model: object
    processor: object
    device: object


class VlmChat(LazyModel[VlmConfig]):
    def _load(self) -> _Loaded:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        rt = self.config.runtime
        device = rt.torch_device()
        processor = AutoProcessor.from_pretrained(self.config.model_id, **rt.hf_kwargs())
        processor.tokenizer.padding_side = "left"  # generation continues from the right end
        model = AutoModelForImageTextToText.from_pretrained(
            self.config.model_id, dtype=rt.torch_dtype(), **rt.hf_kwargs()
        ).to(device)
        model.eval()
        return _Loaded(model, processor, device)

    def _messages(self, request: VlmRequest) -> list[dict]:
        content = [{"type": "image"} for _ in request.images] + [{"type": "text", "text": request.prompt}]
        messages = [{"role": "user", "content": content}]
        if self.config.system_prompt:
            messages.insert(0, {"role": "system", "content": [{"type": "text", "text": self.config.system_prompt}]})
        return messages

    def generate_batch(self, requests: list[VlmRequest]) -> list[str]:
        """One answer per request, in order; requests may carry different numbers of images."""
        answers: list[str] = []
        for start in range(0, len(requests), self.config.batch_size):
            answers += self._generate(requests[start:start + self.config.batch_size])
        return answers

    def generate(self, images: list[Image.Image], prompt: str) -> str:
        return self.generate_batch([VlmRequest(tuple(images), prompt)])[0]

    def _generate(self, batch: list[VlmRequest]) -> list[str]:
        import torch

        loaded = self.loaded()
        processor = loaded.processor
        texts = [processor.apply_chat_template(self._messages(r), add_generation_prompt=True, tokenize=False)
                 for r in batch]
        images = [[im.convert("RGB") for im in r.images] for r in batch]
        inputs = processor(
            text=texts, images=images if any(images) else None, padding=True, return_tensors="pt"
        ).to(loaded.device)
        sample = self.config.temperature > 0
        with torch.inference_mode():
            out = loaded.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=sample,
                temperature=self.config.temperature if sample else None, top_p=None, top_k=None,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in processor.batch_decode(new_tokens, skip_special_tokens=True)]
