"""An LLM judge of difference captions: how much of the reference does a prediction cover, 0–100?

OmniDiff (Liu et al., ICCV 2025, arXiv:2503.11093; supplementary §9.3, Table 13) scores captions
with an LLM beside BLEU-4, METEOR, ROUGE-L, CIDEr and SPICE: GPT-4o reads the human reference and
the model's difference caption, identifies the reference's aspects, and scores 0 to 100 the share
of them the prediction covers "through exact or partial matches", each aspect counting equally,
with a short justification. ``JUDGE_PROMPT`` is the prompt of OmniDiff supp. Fig. 6 ("Prompt for
LLM-based Evaluation") word for word: its two slots are the reference (``{standard_answer}``) and
the prediction (``{assistant_response}``). The figure asks for a score and a justification in no
fixed layout; ``pairsmith.tasks.answers.judge_answer.parse_judge_answer`` reads them and counts a reply
that states no single score in 0–100 or no justification as unparseable.

The judge model is configurable (``judge.backend`` / ``judge.model_id``): the paper's is GPT-4o,
which pairsmith does not call; here it runs on any transformers chat model (``backend:
transformers``, through ``pairsmith.models.adapters.chat_llm.ChatLlm``) or on Gemini (``backend: gemini``, a
text-only ``generate_content`` through the client ``pairsmith.models.adapters.gemini_editor.gemini_client``
builds), a substitution a report must state. This module only asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pairsmith.models.adapters.chat_llm import ChatLlm, ChatLlmConfig
from pairsmith.models.failures import is_transient
from pairsmith.models.adapters.gemini_editor import AUTH_ERRORS, GeminiAuthError, GeminiClientConfig, gemini_client
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime

# OmniDiff supp. Fig. 6, verbatim (the PDF's list items "(1)".."(4)" one per line).
JUDGE_PROMPT = """You are an impartial judge evaluating text similarity. Your job is to evaluate a \
model-generated caption for the difference between two images against a human-annotated Ground Truth \
caption. Follow these guidelines:
(1) Carefully read the Ground Truth caption and model-generated caption.
(2) Identify aspects in the Ground Truth caption and calculate the percentage covered (through exact or \
partial matches) in the model-generated caption.
(3) Score from 0 to 100, where each aspect contributes equally to the score.
(4) Provide your score (0-100) and a short justification.

Standard answer: {standard_answer}
Assistant's response: {assistant_response}"""


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
    """Fig. 6's prompt for one caption: ``reference`` (the Ground Truth; several as a "- " list) is
    its "Standard answer", ``prediction`` its "Assistant's response" ("(empty)" when blank)."""
    return JUDGE_PROMPT.format(standard_answer=reference.strip(),
                               assistant_response=prediction.strip() or "(empty)")


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
        from pairsmith.storage.interrupts import interruptible_map

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
