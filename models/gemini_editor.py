"""Image editing with Gemini through ``google-genai``: source image + request in, edited image out.

MED (design.md §4.4) edits each source photo with Gemini's image model. The client sends the
image as inline data next to the text request and reads the edited image from the response's
inline data. What can go wrong per item becomes a reason, not an exception:

* ``edit_blocked_prompt``: the request was refused (``prompt_feedback.block_reason``);
* ``edit_blocked_safety``: the candidate stopped for safety/prohibited content/recitation;
* ``edit_no_image``: the model answered with text only;
* ``edit_api_error``: HTTP errors left after the client's own retries (429 and 5xx are retried
  with exponential backoff by google-genai's ``HttpRetryOptions``).

Requests run on abandonable threads (``interrupts.interruptible_map``): Ctrl-C stops a run at once
even while requests sit in that backoff.

A rejected API key fails the whole run at once (every item would fail the same way). The key is
read from the environment or a Prefect Secret block when the client is built and is only ever
placed in the request header: configs hold the variable's *name*, never its value.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from pairsmith.models.runtime import NOT_CONTENT

BLOCKING_FINISH_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_PROHIBITED_CONTENT",
})
AUTH_ERRORS = frozenset({401, 403})


class GeminiAuthError(RuntimeError):
    """The API key is missing or rejected; no item can succeed, so the run stops."""


class GeminiClientConfig(BaseModel):
    """How to reach Gemini: key, endpoint, retries, timeout, concurrency (every Gemini caller's)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    api_key_env: str = Field("GEMINI_API_KEY", description="environment variable holding the API key", json_schema_extra=NOT_CONTENT)
    secret_block: str | None = Field(None, description="Prefect Secret block with the key, used if the env var is unset", json_schema_extra=NOT_CONTENT)
    base_url: str | None = Field(None, description="API endpoint override (proxy, local test server)", json_schema_extra=NOT_CONTENT)
    retry_attempts: int = Field(5, ge=1, le=20, description="tries per request, the first included", json_schema_extra=NOT_CONTENT)
    retry_initial_delay: float = Field(1.0, ge=0.0, le=60.0, json_schema_extra=NOT_CONTENT)
    retry_max_delay: float = Field(30.0, ge=0.0, le=600.0, json_schema_extra=NOT_CONTENT)
    timeout_s: float = Field(120.0, gt=0, le=3600, json_schema_extra=NOT_CONTENT)
    concurrency: int = Field(4, ge=1, le=64, description="requests in flight at once", json_schema_extra=NOT_CONTENT)


class GeminiEditConfig(GeminiClientConfig):
    model_id: str = Field("gemini-2.5-flash-image", description="Gemini image-editing model")


@dataclass(frozen=True)
class EditRequest:
    image: bytes
    mime_type: str
    instruction: str


@dataclass(frozen=True)
class EditResult:
    image: bytes | None
    mime_type: str | None
    text: str | None
    reason: str | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def resolve_api_key(config: GeminiClientConfig) -> str:
    key = os.environ.get(config.api_key_env)
    if key:
        return key
    if config.secret_block:
        from prefect.blocks.system import Secret

        return Secret.load(config.secret_block).get()
    raise GeminiAuthError(
        f"no Gemini API key: set {config.api_key_env} or store it in a Prefect Secret block "
        "and name it in secret_block"
    )


def gemini_client(config: GeminiClientConfig):
    """A ``google.genai.Client`` with the key, endpoint, timeout and retry policy of ``config``."""
    from google import genai
    from google.genai import types

    return genai.Client(
        api_key=resolve_api_key(config),
        http_options=types.HttpOptions(
            base_url=config.base_url,
            timeout=int(config.timeout_s * 1000),
            retry_options=types.HttpRetryOptions(
                attempts=config.retry_attempts, initial_delay=config.retry_initial_delay,
                max_delay=config.retry_max_delay,
            ),
        ),
    )


class GeminiEditor:
    """Thread-safe; one ``genai.Client`` per editor, built on first use."""

    def __init__(self, config: GeminiEditConfig):
        self.config = config
        self._client = None

    def __getstate__(self) -> dict:
        return {"config": self.config}  # never pickle a client carrying the key

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def client(self):
        if self._client is None:
            self._client = gemini_client(self.config)
        return self._client

    def edit_batch(self, requests: list[EditRequest]) -> list[EditResult]:
        """Results in request order; at most ``concurrency`` requests in flight."""
        results: list[EditResult | None] = [None] * len(requests)
        for index, result in self.edit_each(requests):
            results[index] = result
        return results

    def edit_each(self, requests: list[EditRequest]) -> Iterator[tuple[int, EditResult]]:
        """``(request index, result)`` as each response arrives (at most ``concurrency`` in flight), so
        a caller can store every paid response the moment it has it."""
        if not requests:
            return
        from pairsmith.flows.engine.interrupts import interruptible_map

        self.client()  # a missing key fails here, once, before any request
        # Not a ThreadPoolExecutor: a request can sit minutes in the client's backoff (429/5xx) or
        # its timeout, and a stop must not wait for it. An error or a stopped caller sends nothing more.
        yield from interruptible_map(self.edit, requests, self.config.concurrency)

    def edit(self, request: EditRequest) -> EditResult:
        from google.genai import errors, types

        try:
            response = self.client().models.generate_content(
                model=self.config.model_id,
                contents=[
                    types.Part.from_bytes(data=request.image, mime_type=request.mime_type),
                    request.instruction,
                ],
                config=types.GenerateContentConfig(response_modalities=["IMAGE", "TEXT"]),
            )
        except errors.APIError as err:
            if err.code in AUTH_ERRORS:
                raise GeminiAuthError(f"Gemini rejected the API key (HTTP {err.code})") from None
            return EditResult(None, None, None, "edit_api_error", f"HTTP {err.code}: {err.message}")
        return parse_edit_response(response)


def parse_edit_response(response) -> EditResult:
    """Pick the edited image out of a generate_content response, or say why there is none."""
    feedback = getattr(response, "prompt_feedback", None)
    if feedback is not None and getattr(feedback, "block_reason", None):
        return EditResult(None, None, None, "edit_blocked_prompt", str(_enum_name(feedback.block_reason)))
    candidates = response.candidates or []
    if not candidates:
        return EditResult(None, None, None, "edit_no_image", "no candidates")
    candidate = candidates[0]
    finish = _enum_name(candidate.finish_reason)
    parts = (candidate.content.parts if candidate.content and candidate.content.parts else [])
    texts = [p.text for p in parts if getattr(p, "text", None)]
    text = " ".join(texts) or None
    for part in parts:
        inline = getattr(part, "inline_data", None)
        if inline is not None and inline.data and (inline.mime_type or "").startswith("image/"):
            return EditResult(inline.data, inline.mime_type, text)
    if finish in BLOCKING_FINISH_REASONS:
        return EditResult(None, None, text, "edit_blocked_safety", finish)
    return EditResult(None, None, text, "edit_no_image", f"finish_reason {finish}; text: {(text or '')[:200]}")


def _enum_name(value) -> str | None:
    if value is None:
        return None
    return getattr(value, "name", None) or str(value)
