"""One model role of a pipeline (MED's MLLM, text LLM, answer writer): a prompt with or without
images in, a text answer out, on a local transformers model or on Gemini.

MED (§3.1-3.3) gives each step a model: Qwen2.5-VL-72B (an MLLM) filters, writes edit requests,
captions and judges; Qwen3-32B (a text-only LLM) writes the difference and the SFT rewrite; GPT-4o
writes the benchmark's answers. ``RoleChatConfig`` is one such role: ``backend: transformers`` runs a
hub id or local folder (an image-text model through ``pairsmith.models.adapters.vlm_chat.VlmChat`` when the
role is shown images, a chat LLM through ``pairsmith.models.adapters.chat_llm.ChatLlm`` when it is not);
``backend: gemini`` sends each prompt (its images inline, PNG) to Gemini's ``generate_content`` with
the client ``pairsmith.models.adapters.gemini_editor.gemini_client`` builds. Every role may name the same model.

``ask_batch`` returns one answer per request, in order: a string, or for Gemini the exception that
request ended with (a request is paid once: it is not sent again because another item failed). A
transformers batch that raises raises (``pairsmith.tasks.stage.call_per_item`` isolates items); a
rejected Gemini key raises ``GeminiAuthError``, since no item can succeed.
"""

from __future__ import annotations

import io
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.adapters.chat_llm import ChatLlm, ChatLlmConfig
from pairsmith.models.adapters.gemini_editor import AUTH_ERRORS, GeminiAuthError, GeminiClientConfig, gemini_client
from pairsmith.models.runtime import NOT_CONTENT, ModelRuntime
from pairsmith.models.adapters.vlm_chat import VlmChat, VlmConfig, VlmRequest


class RoleChatConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    backend: Literal["transformers", "gemini"] = Field("transformers", description="where the role's model runs")
    model_id: str = Field(description="hub id or local folder (transformers), or a Gemini model id")
    runtime: ModelRuntime = Field(default_factory=ModelRuntime, description="transformers backend only")
    max_new_tokens: int = Field(512, ge=1, le=8192, description="transformers backend: longest answer (tokens)")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy decoding")
    seed: int = Field(0, description="sampled decoding: torch seed")
    batch_size: int = Field(4, ge=1, le=256, description="transformers backend: prompts per generate() call",
                            json_schema_extra=NOT_CONTENT)
    gemini: GeminiClientConfig = Field(default_factory=GeminiClientConfig,
                                       description="gemini backend: key, endpoint, retries, concurrency")


class RoleChat:
    """Cheap to build and to pickle; the model (or Gemini client) is made on first use."""

    def __init__(self, config: RoleChatConfig):
        self.config = config
        self._client = None

    def __getstate__(self) -> dict:
        return {"config": self.config}  # never a client carrying the key

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    @property
    def model_id(self) -> str:
        return self.config.model_id

    def ask_batch(self, requests: list[VlmRequest]) -> list[str | Exception]:
        if not requests:
            return []
        if self.config.backend == "transformers":
            if any(r.images for r in requests):
                return self._vlm().generate_batch(requests)
            return self._llm().generate_batch([r.prompt for r in requests])
        from pairsmith.storage.interrupts import interruptible_map

        client = self._gemini()
        answers = dict(interruptible_map(lambda r: self._ask_gemini(client, r), requests,
                                         self.config.gemini.concurrency))
        return [answers[i] for i in range(len(requests))]

    def _vlm(self) -> VlmChat:
        c = self.config
        return VlmChat(VlmConfig(model_id=c.model_id, runtime=c.runtime, max_new_tokens=min(c.max_new_tokens, 4096),
                                 temperature=c.temperature, seed=c.seed, batch_size=c.batch_size))

    def _llm(self) -> ChatLlm:
        c = self.config
        return ChatLlm(ChatLlmConfig(model_id=c.model_id, runtime=c.runtime, max_new_tokens=c.max_new_tokens,
                                     temperature=c.temperature, seed=c.seed, batch_size=c.batch_size))

    def _gemini(self):
        if self._client is None:
            self._client = gemini_client(self.config.gemini)
        return self._client

    def _ask_gemini(self, client, request: VlmRequest) -> str | Exception:
        from google.genai import errors, types

        parts = []
        for image in request.images:
            buf = io.BytesIO()
            image.convert("RGB").save(buf, format="PNG")
            parts.append(types.Part.from_bytes(data=buf.getvalue(), mime_type="image/png"))
        try:
            response = client.models.generate_content(
                model=self.config.model_id, contents=[*parts, request.prompt],
                config=types.GenerateContentConfig(temperature=self.config.temperature, response_modalities=["TEXT"]),
            )
        except errors.APIError as err:
            if err.code in AUTH_ERRORS:
                raise GeminiAuthError(f"Gemini rejected the API key (HTTP {err.code})") from None
            return err
        except Exception as err:  # noqa: BLE001 - a network failure is this request's, not the batch's
            return err
        return response.text or ""
