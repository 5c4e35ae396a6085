"""An LLM judge of difference captions: how much of the reference does a prediction cover, 0–100?

OmniDiff (Liu et al., ICCV 2025, arXiv:2503.11093) scores captions with an LLM beside BLEU, METEOR,
ROUGE-L and CIDEr: the judge compares a predicted difference description with the human reference
and scores, 0 to 100, how many of the reference's aspects the prediction gets right. The paper's
prompt text was not in the sources reachable here; ``JUDGE_PROMPT`` states that rubric in our own
words (aspects of the reference covered correctly, wrong statements count as misses, extra
details neither help nor hurt unless they contradict the reference, a short justification first).

The judge runs on any transformers chat model (``backend: transformers``, through
``pairsmith.models.chat_llm.ChatLlm``) or on Gemini (``backend: gemini``, a text-only
``generate_content`` through the client ``pairsmith.models.gemini_editor.gemini_client`` builds).
Answers are read by ``pairsmith.filters.judge_answer.parse_judge_answer``; this module only asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.models.chat_llm import ChatLlm, ChatLlmConfig
from pairsmith.models.failures import is_transient
from pairsmith.models.gemini_editor import AUTH_ERRORS, GeminiAuthError, GeminiClientConfig, gemini_client
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

JUDGE_PROMPT = """You grade a description of the differences between two images against a reference \
description of the same differences written by people.

Reference description:
{reference}

Description to grade:
{prediction}

First break the reference into its separate aspects: every change it reports, which object or part \
of the scene each change concerns, that object's attributes (kind, colour, size, material, shape), \
where it is, and what happened to it. Then check each aspect: the description to grade covers it \
only if it states it correctly. A wrong statement about an aspect counts as missing it. Details the \
reference does not mention neither add nor subtract, unless they contradict the reference.

The score is the share of the reference's aspects that the description covers, from 0 (none) to \
100 (all of them).

Answer with one JSON object and nothing else:
{{"justification": "<one or two sentences: which aspects are covered, which are missed or wrong>", \
"score": <integer from 0 to 100>}}"""


DEFAULT_MODELS = {"transformers": "Qwen/Qwen2.5-7B-Instruct", "gemini": "gemini-2.5-flash"}


class CaptionJudgeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    backend: Literal["transformers", "gemini"] = Field("transformers", description="where the judge runs")
    model_id: str = Field(DEFAULT_MODELS["transformers"], description="chat model: hub id or local folder, or a "
                          f"Gemini model id; default {DEFAULT_MODELS['transformers']} or {DEFAULT_MODELS['gemini']}")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime, description="transformers backend only")
    max_new_tokens: int = Field(256, ge=16, le=4096, description="transformers backend: length of the answer")
    batch_size: int = Field(8, ge=1, le=256, description="transformers backend: prompts per generate() call",
                            json_schema_extra=NOT_CONTENT)
    gemini: GeminiClientConfig = Field(default_factory=GeminiClientConfig, description="gemini backend: key, "
                                       "endpoint, retries, concurrency")

    @model_validator(mode="before")
    @classmethod
    def _backend_default_model(cls, data):
        if isinstance(data, dict) and data.get("backend") in DEFAULT_MODELS and not data.get("model_id"):
            return {**data, "model_id": DEFAULT_MODELS[data["backend"]]}
        return data


@dataclass(frozen=True)
class JudgeReply:
    """The judge's raw answer to one caption, or why there is none (``error``)."""

    answer: str | None
    error: str | None = None
    transient: bool = True  # with error: may the same request succeed later (pairsmith.models.failures)?


def judge_prompt(reference: str, prediction: str) -> str:
    return JUDGE_PROMPT.format(reference=reference.strip(), prediction=prediction.strip() or "(empty)")


class CaptionJudge:
    """Cheap to build and to pickle; the model (or Gemini client) is made on first use."""

    def __init__(self, config: CaptionJudgeConfig):
        self.config = config
        self._client = None

    def __getstate__(self) -> dict:
        return {"config": self.config}  # never a client carrying the key

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def judge_batch(self, pairs: list[tuple[str, str]]) -> list[JudgeReply]:
        """One reply per (reference, prediction), in order. A transformers batch that raises raises
        (the caller isolates items); a Gemini request that fails is that item's error; a rejected
        Gemini key raises ``GeminiAuthError``, since no item can succeed."""
        prompts = [judge_prompt(reference, prediction) for reference, prediction in pairs]
        if self.config.backend == "transformers":
            return [JudgeReply(a) for a in self._llm().generate_batch(prompts)]
        if not prompts:
            return []
        from pairsmith.flows.engine.interrupts import interruptible_map

        client = self._gemini()
        # Abandonable threads, not a pool: Ctrl-C must not wait for requests in the client's backoff.
        replies = dict(interruptible_map(lambda p: self._ask_gemini(client, p), prompts, self.config.gemini.concurrency))
        return [replies[i] for i in range(len(prompts))]

    def _llm(self) -> ChatLlm:
        c = self.config
        return ChatLlm(ChatLlmConfig(model_id=c.model_id, runtime=c.runtime, max_new_tokens=c.max_new_tokens,
                                     batch_size=c.batch_size))

    def _gemini(self):
        if self._client is None:
            self._client = gemini_client(self.config.gemini)
        return self._client

    def _ask_gemini(self, client, prompt: str) -> JudgeReply:
        from google.genai import errors, types

        try:
            response = client.models.generate_content(
                model=self.config.model_id, contents=[prompt],
                config=types.GenerateContentConfig(temperature=0.0),  # thinking models spend output tokens too
            )
        except errors.APIError as err:
            if err.code in AUTH_ERRORS:
                raise GeminiAuthError(f"Gemini rejected the API key (HTTP {err.code})") from None
            return JudgeReply(None, f"HTTP {err.code}: {err.message}", is_transient(err))
        text = response.text
        if not text:
            return JudgeReply(None, "no text in the answer", transient=False)
        return JudgeReply(text)
