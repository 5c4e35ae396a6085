"""A vision-language chat model through transformers: images + a prompt in, text out, in batches.

Every pipeline that asks a VLM something (region captions, difference captions, MED's editability
gate and caption alignment, benchmark answers) goes through this adapter, so the loader path is
the one users hit with a hub id (``AutoModelForImageTextToText`` / ``AutoProcessor``), the device
and dtype are chosen once, and requests are batched the way a GPU wants them (left padding, one
``generate`` call per batch).

Multi-image prompts are sent as the model's own chat template builds them (one image entry per
image, in order). A model that takes one image gets the side-by-side picture from the caller.

Closed questions (yes/no, one of N categories) are answered by ``score_options_batch``: the
mean log-likelihood of each option as the assistant's reply, as lm-eval scores multiple choice.
That always yields one of the options, so a pipeline never has to parse free text for a decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.lazy import LazyModel
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime


class VlmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    model_id: str = Field("Qwen/Qwen2-VL-2B-Instruct", description="hub id or local folder")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    max_new_tokens: int = Field(128, ge=1, le=4096)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy decoding")
    seed: int | None = Field(None, description="torch seed set before sampled generation (reproducible runs)")
    batch_size: int = Field(4, ge=1, le=256, description="requests per generate() call", json_schema_extra=NOT_CONTENT)
    system_prompt: str | None = None


@dataclass(frozen=True)
class VlmRequest:
    images: tuple[Image.Image, ...]
    prompt: str


@dataclass(frozen=True)
class OptionScores:
    """Mean log-likelihood per token of each option; ``best`` is the index of the highest."""

    scores: tuple[float, ...]

    @property
    def best(self) -> int:
        return max(range(len(self.scores)), key=self.scores.__getitem__)


@dataclass
class _Loaded:
    model: object
    processor: object
    device: object


class VlmChat(LazyModel[VlmConfig]):
    def _load(self) -> _Loaded:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        rt = self.config.runtime
        rt.check_model_source(self.config.model_id)  # seconds, not minutes of hub retries
        device = rt.torch_device()
        processor = AutoProcessor.from_pretrained(self.config.model_id, **rt.hf_kwargs())
        processor.tokenizer.padding_side = "left"  # generation continues from the right end
        model = AutoModelForImageTextToText.from_pretrained(
            self.config.model_id, dtype=rt.torch_dtype(),
            adapter_kwargs=rt.hf_kwargs(),  # transformers looks for a PEFT adapter without them
            **rt.hf_kwargs(),
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
        if sample and self.config.seed is not None:
            torch.manual_seed(self.config.seed)
        with torch.inference_mode():
            out = loaded.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=sample,
                temperature=self.config.temperature if sample else None, top_p=None, top_k=None,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in processor.batch_decode(new_tokens, skip_special_tokens=True)]

    def score_options_batch(self, requests: list[VlmRequest], options: list[list[str]]) -> list[OptionScores]:
        """For each request, how likely the model finds each of its options as the full answer."""
        if len(requests) != len(options):
            raise ValueError(f"{len(requests)} requests but {len(options)} option lists")
        if any(not opts for opts in options):
            raise ValueError("every request needs at least one option")
        rows = [(i, opt) for i, opts in enumerate(options) for opt in opts]
        flat: list[float] = []
        for start in range(0, len(rows), self.config.batch_size):
            chunk = rows[start:start + self.config.batch_size]
            flat += self._score([(requests[i], opt) for i, opt in chunk])
        out, k = [], 0
        for opts in options:
            out.append(OptionScores(tuple(flat[k:k + len(opts)])))
            k += len(opts)
        return out

    def _score(self, rows: list[tuple[VlmRequest, str]]) -> list[float]:
        import torch

        loaded = self.loaded()
        processor = loaded.processor
        prompts = [processor.apply_chat_template(self._messages(r), add_generation_prompt=True, tokenize=False)
                   for r, _ in rows]
        images = [[im.convert("RGB") for im in r.images] for r, _ in rows]
        has_images = any(images)
        # Prompt lengths in tokens (images expanded), then prompt + option, right-padded.
        prompt_ids = processor(text=prompts, images=images if has_images else None, padding=False)["input_ids"]
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "right"
        try:
            inputs = processor(
                text=[p + opt for p, (_, opt) in zip(prompts, rows)],
                images=images if has_images else None, padding=True, return_tensors="pt",
            ).to(loaded.device)
        finally:
            tokenizer.padding_side = "left"
        with torch.inference_mode():
            logits = loaded.model(**inputs).logits.float()
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = inputs["input_ids"][:, 1:]
        token_lp = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        scores = []
        for row, ids in enumerate(prompt_ids):
            start = len(ids) - 1  # logits at position t predict token t + 1
            end = int(inputs["attention_mask"][row].sum()) - 1
            span = token_lp[row, start:end]
            scores.append(float(span.mean()) if span.numel() else float("-inf"))
        return scores
