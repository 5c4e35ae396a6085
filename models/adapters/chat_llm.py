"""A text-only chat LLM through transformers: prompts in, answers out, in batches.

Loads any causal chat model with ``AutoTokenizer`` / ``AutoModelForCausalLM`` (a hub id or a local
folder), pads on the left so a batch continues from its right end, and wraps each prompt in the
tokenizer's chat template; a tokenizer without one (Vicuna-1.5) gets FastChat's ``vicuna_v1.1``
format, which Vicuna-1.5 was trained with. The caption rewriter (Img-Diff) and the caption judge
(evaluation) both ask their LLM through this adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.lazy import LazyModel
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

# FastChat's "vicuna_v1.1" conversation template, which Vicuna-1.5 was trained with.
VICUNA_TEMPLATE = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: {prompt} ASSISTANT:"
)


class ChatLlmConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    model_id: str = Field(description="hub id or local folder of a chat model")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    max_new_tokens: int = Field(128, ge=1, le=8192)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy decoding")
    seed: int = Field(0, description="sampled decoding: torch seed of the first generate() call")
    batch_size: int = Field(16, ge=1, le=1024, description="prompts per generate() call", json_schema_extra=NOT_CONTENT)


@dataclass
class LoadedLlm:
    model: Any
    tokenizer: Any
    device: Any


def chat_text(tokenizer, prompt: str) -> str:
    """``prompt`` as one user turn of the tokenizer's chat template, ready for the answer."""
    if tokenizer.chat_template is None:
        return VICUNA_TEMPLATE.format(prompt=prompt)
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)


class ChatLlm(LazyModel[ChatLlmConfig]):
    def _load(self) -> LoadedLlm:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        rt = self.config.runtime
        rt.check_model_source(self.config.model_id)  # seconds, not minutes of hub retries
        device = rt.torch_device()
        tokenizer = AutoTokenizer.from_pretrained(self.config.model_id, **rt.hf_kwargs())
        tokenizer.padding_side = "left"  # generation continues from the right end
        if tokenizer.pad_token is None:  # Llama/Vicuna tokenizers have none
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        # The Auto classes look for a PEFT adapter without the cache/offline kwargs (transformers 5.23):
        # passed explicitly, offline loading makes no network call.
        model = AutoModelForCausalLM.from_pretrained(
            self.config.model_id, dtype=rt.torch_dtype(), adapter_kwargs=rt.hf_kwargs(), **rt.hf_kwargs()
        )
        model.to(device).eval()
        return LoadedLlm(model, tokenizer, device)

    def generate_batch(self, prompts: Sequence[str]) -> list[str]:
        """One answer per prompt, in order, ``batch_size`` prompts per ``generate`` call."""
        answers: list[str] = []
        for start in range(0, len(prompts), self.config.batch_size):
            answers += self.generate_chunk(prompts[start:start + self.config.batch_size], seed_offset=start)
        return answers

    def generate_chunk(self, prompts: Sequence[str], seed_offset: int = 0) -> list[str]:
        """The answers to ``prompts`` from one ``generate`` call (sampling seeded by seed + offset)."""
        import torch

        loaded = self.loaded()
        tokenizer = loaded.tokenizer
        texts = [chat_text(tokenizer, p) for p in prompts]
        inputs = tokenizer(texts, padding=True, return_tensors="pt",
                           add_special_tokens=tokenizer.chat_template is None).to(loaded.device)
        sample = self.config.temperature > 0
        if sample:
            torch.manual_seed(self.config.seed + seed_offset)
        with torch.inference_mode():
            out = loaded.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=sample,
                temperature=self.config.temperature if sample else None, top_p=None, top_k=None,
                pad_token_id=tokenizer.pad_token_id,
            )
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
