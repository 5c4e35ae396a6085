"""Caption pairs for Img-Diff's object replacement: the source caption and the same caption with one
object swapped, by an instruction LLM or by the noun lexicon.

LLM mode (Img-Diff used Vicuna-1.5) loads any transformers chat model through
``pairsmith.models.adapters.chat_llm.ChatLlm`` and asks it, in batches (left padding, one ``generate`` per
``batch_size`` captions), to replace one object; its answers go through ``parse_rewrite_answer``. A
model whose tokenizer has no chat template (Vicuna-1.5) gets Vicuna's own conversation format.
Lexicon mode swaps a noun for one of the same category from a JSON lexicon and needs no model at all.

Either way each caption gets a ``CaptionRewrite``; one that could not be rewritten carries a
reason instead of a caption, so the flow stores it as a dropped row.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pairsmith.models.adapters.caption_answer import REWRITE_PROMPT, CaptionRewrite, parse_rewrite_answer
from pairsmith.models.adapters.chat_llm import VICUNA_TEMPLATE, ChatLlm, ChatLlmConfig, LoadedLlm, chat_text
from pairsmith.models.lazy import LazyModel
from pairsmith.models.lexicon.noun_lexicon import CATEGORIES, NounLexicon
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

__all__ = ["VICUNA_TEMPLATE", "CaptionRewriter", "CaptionRewriterConfig"]

ROUND_SEED_STEP = 1_000_003  # round r of a caption draws its lexicon replacement with seed + r * this


class CaptionRewriterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    mode: Literal["llm", "lexicon"] = Field("llm", description="an instruction LLM, or the noun lexicon (no model)")
    model_id: str = Field("lmsys/vicuna-7b-v1.5", description="LLM mode: hub id or local folder of a chat model")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime)
    batch_size: int = Field(16, ge=1, le=1024, description="LLM mode: captions per generate() call", json_schema_extra=NOT_CONTENT)
    max_new_tokens: int = Field(96, ge=8, le=1024)
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy decoding")
    prompt: str = Field(REWRITE_PROMPT, description="LLM instruction; {caption} is replaced by the source caption")
    max_changed_words: int = Field(3, ge=1, le=20, description="an answer changing more words is dropped")
    lexicon_path: str | None = Field(
        None, description="lexicon mode: JSON lexicon file, or a shipped one by name: 'default' (~400 nouns), "
        "'paper' (5,528 WordNet nouns, Img-Diff supp. §11); None: the default one",
    )
    categories: tuple[str, ...] = Field(CATEGORIES, description="lexicon mode: categories whose nouns may be swapped")
    seed: int = Field(0, description="lexicon choices and LLM sampling are seeded from this")
    rounds: int = Field(
        1, ge=1, le=100, description="rounds of noun replacement per source caption (Img-Diff supp. §11): "
        "candidates i = k*rounds ... k*rounds + rounds - 1 rewrite caption k, each round its own replacement "
        "(lexicon: its own draw; LLM: its own sample, so rounds > 1 needs temperature > 0)",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_has_caption(cls, prompt: str) -> str:
        if "{caption}" not in prompt:
            raise ValueError("prompt must contain {caption}")
        return prompt

    @model_validator(mode="after")
    def _rounds_differ(self) -> "CaptionRewriterConfig":
        if self.rounds > 1 and self.mode == "llm" and self.temperature == 0:
            raise ValueError("rounds > 1 with an LLM needs temperature > 0: greedy decoding answers every round alike")
        return self

    @field_validator("categories")
    @classmethod
    def _known_categories(cls, categories: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(categories) - set(CATEGORIES))
        if unknown or not categories:
            raise ValueError(f"categories must be a non-empty subset of {list(CATEGORIES)}; unknown: {unknown}")
        return categories


class CaptionRewriter(LazyModel[CaptionRewriterConfig]):
    def _llm(self) -> ChatLlm:
        c = self.config
        return ChatLlm(ChatLlmConfig(model_id=c.model_id, runtime=c.runtime, max_new_tokens=c.max_new_tokens,
                                     temperature=c.temperature, seed=c.seed, batch_size=c.batch_size))

    def _load(self) -> LoadedLlm | NounLexicon:
        if self.config.mode == "lexicon":
            return NounLexicon.load(self.config.lexicon_path, self.config.categories)
        return self._llm().loaded()

    def rewrite_batch(self, captions: Sequence[str], rounds: Sequence[int] | None = None) -> list[CaptionRewrite]:
        """One ``CaptionRewrite`` per caption, in order; ``rounds[j]`` is caption j's round (0 = the first:
        the same rewrite as without rounds; lexicon mode draws each round's replacement anew)."""
        if self.config.mode == "lexicon":
            lexicon = self.loaded()
            rounds = rounds or [0] * len(captions)
            return [lexicon.rewrite(caption, self.config.seed + ROUND_SEED_STEP * r)
                    for caption, r in zip(captions, rounds)]
        results: list[CaptionRewrite | None] = [
            None if caption.strip() else CaptionRewrite(caption, reason="rewrite_empty_caption") for caption in captions
        ]
        todo = [i for i, r in enumerate(results) if r is None]
        for start in range(0, len(todo), self.config.batch_size):
            chunk = todo[start:start + self.config.batch_size]
            answers = self.generate_answers([captions[i] for i in chunk], batch_index=start)
            for i, answer in zip(chunk, answers):
                results[i] = parse_rewrite_answer(captions[i], answer, self.config.max_changed_words)
        return [r for r in results if r is not None]

    def rewrite(self, caption: str) -> CaptionRewrite:
        return self.rewrite_batch([caption])[0]

    def generate_answers(self, captions: Sequence[str], batch_index: int = 0) -> list[str]:
        """The LLM's raw answers for one batch of captions (one ``generate`` call)."""
        if self.config.mode != "llm":
            raise ValueError("generate_answers needs mode 'llm'")
        prompts = [self.config.prompt.replace("{caption}", c.strip()) for c in captions]
        return self._llm().generate_chunk(prompts, seed_offset=batch_index)

    _chat_text = staticmethod(chat_text)
