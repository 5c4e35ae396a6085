"""Image editing with Gemini through ``google-genai``: source image + request in, edited image out.

MED (design.md §4.4) edits each source photo with Gemini's image model. The client sends the
image as inline data next to the text request and reads the edited image from the response's
inline data. What can go wrong per item becomes a reason, not an exception:

* ``edit_blocked_prompt``: the request was refused (``prompt_feedback.block_reason``);
* ``edit_blocked_safety``: the candidate stopped for safety/prohibited content/recitation;
* ``edit_no_image``: the model answered with text only;
* ``edit_api_error``: a transient failure left after the client's own retries (HTTP 408 / 429 /
  5xx, a timeout, a dropped connection: google-genai's ``HttpRetryOptions`` retries them with
  exponential backoff); not cached, so the next run asks again;
* ``edit_rejected``: a deterministic refusal (HTTP 400 invalid argument or payload too large, 404,
  413, ...): cached like an answer, never paid for again, with the service's message as detail;
* ``edit_request_too_large``: the photo cannot be brought under the request limit (not sent).

The kind is read from the error (``pairsmith.models.failures.is_transient``: its HTTP status or
exception type), not guessed. Before a request is sent its size is checked against Gemini's 20 MB
inline request limit (``max_request_bytes``; the image travels base64-encoded, 4/3 of its bytes):
a photo that would exceed it is re-encoded as JPEG, then scaled down until it fits
(``fit_request``), and the result's ``note`` says what was sent instead.

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

from pairsmith.models.failures import is_transient
from pairsmith.models.runtime import NOT_CONTENT

BLOCKING_FINISH_REASONS = frozenset({
    "SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_PROHIBITED_CONTENT",
})
AUTH_ERRORS = frozenset({401, 403})
GEMINI_REQUEST_LIMIT = 20_000_000
"""Bytes: Gemini's limit on a whole inline request (images base64-encoded, text and JSON included)."""
REQUEST_OVERHEAD = 4096  # bytes of JSON around the parts, generously


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
    max_request_bytes: int = Field(
        GEMINI_REQUEST_LIMIT, ge=10_000, le=1_000_000_000, json_schema_extra=NOT_CONTENT,
        description="largest request sent (bytes, base64 image included); a larger photo is re-encoded "
                    "or scaled down first (default: Gemini's 20 MB inline request limit)",
    )


class GeminiEditConfig(GeminiClientConfig):
    model_id: str = Field("gemini-2.5-flash-image", description="Gemini image-editing model")
    retry_rejected: bool = Field(
        False, json_schema_extra=NOT_CONTENT,
        description="send again the requests Gemini refused for good (edit_rejected, cached); default: reuse the refusal",
    )


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
    note: str | None = None  # what was done to the request before it was sent (re-encoded, scaled)

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
        from pairsmith.storage.interrupts import interruptible_map

        self.client()  # a missing key fails here, once, before any request
        # Not a ThreadPoolExecutor: a request can sit minutes in the client's backoff (429/5xx) or
        # its timeout, and a stop must not wait for it. An error or a stopped caller sends nothing more.
        yield from interruptible_map(self.edit, requests, self.config.concurrency)

    def edit(self, request: EditRequest) -> EditResult:
        """One request, sized to fit ``max_request_bytes`` first; a failure is a result with its
        reason (transient ``edit_api_error`` or deterministic ``edit_rejected``), except a rejected
        key, which raises ``GeminiAuthError``."""
        try:
            request, note = fit_request(request, self.config.max_request_bytes)
        except RequestTooLarge as err:
            return EditResult(None, None, None, "edit_request_too_large", str(err))
        import httpx
        from google.genai import errors

        try:
            response = self._send(request)
        except (errors.APIError, httpx.HTTPError, OSError) as err:  # the service's or the network's answer;
            reason, detail = classify_edit_error(err)  # anything else is a bug and stops the run loudly
            return EditResult(None, None, None, reason, detail if not note else f"{detail} ({note})", note)
        result = parse_edit_response(response)
        if note:
            result = EditResult(result.image, result.mime_type, result.text, result.reason,
                                result.detail if result.reason else note, note)
        return result

    def _send(self, request: EditRequest):
        from google.genai import errors, types

        try:
            return self.client().models.generate_content(
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
            raise


def classify_edit_error(err: BaseException) -> tuple[str, str]:
    """``(reason, detail)`` for a request that failed: ``edit_api_error`` if the error is transient
    (``pairsmith.models.failures.is_transient``), else ``edit_rejected``; the detail is the HTTP
    status and the service's message, or the exception's type and message."""
    from google.genai import errors

    if isinstance(err, errors.APIError):
        detail = f"HTTP {err.code} {err.status or ''}: {err.message or ''}".replace("  ", " ").strip()
    else:
        detail = f"{type(err).__name__}: {err}"
    return ("edit_api_error" if is_transient(err) else "edit_rejected"), detail[:1000]


class RequestTooLarge(ValueError):
    """The photo cannot be brought under the request limit even scaled down."""


MIN_SIDE = 256  # px: a photo is never scaled below this to make it fit


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.0f} KiB"


def request_bytes(image_bytes: int, instruction: str) -> int:
    """Size of an inline request: the image base64-encoded, the instruction, the JSON around them."""
    return 4 * ((image_bytes + 2) // 3) + len(instruction.encode()) + REQUEST_OVERHEAD


def fit_request(request: EditRequest, limit: int) -> tuple[EditRequest, str | None]:
    """``request`` if it fits ``limit`` bytes; else the same photo re-encoded as JPEG (quality 95),
    then scaled down (Lanczos, keeping its aspect) until it fits, with a note saying what was sent
    (``"over the request limit of 19.1 MiB: sent as JPEG 3.1 MiB instead of image/png 16.6 MiB"``).
    Raises ``RequestTooLarge`` when even a photo of ``MIN_SIDE`` px does not fit."""
    if request_bytes(len(request.image), request.instruction) <= limit:
        return request, None
    import io

    from PIL import Image

    budget = (limit - REQUEST_OVERHEAD - len(request.instruction.encode())) * 3 // 4
    if budget <= 0:
        raise RequestTooLarge(f"the instruction alone exceeds the request limit of {_size(limit)}")
    image = Image.open(io.BytesIO(request.image))
    image.load()
    image = image.convert("RGB")
    original = image.size

    def jpeg(img) -> bytes:
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=95)
        return buf.getvalue()

    data = jpeg(image)
    while len(data) > budget:
        scale = max(0.5, min(0.9, (budget / len(data)) ** 0.5))
        size = (round(image.width * scale), round(image.height * scale))
        if min(size) < MIN_SIDE:
            raise RequestTooLarge(
                f"{request.mime_type} of {_size(len(request.image))} ({original[0]}x{original[1]}) does not fit "
                f"the request limit of {_size(limit)} even as JPEG at {image.width}x{image.height} ({_size(len(data))})")
        image = image.resize(size, Image.Resampling.LANCZOS)
        data = jpeg(image)
    scaled = f" scaled from {original[0]}x{original[1]} to {image.width}x{image.height}" if image.size != original else ""
    note = (f"over the request limit of {_size(limit)}: sent as JPEG {_size(len(data))}{scaled} "
            f"instead of {request.mime_type} {_size(len(request.image))}")
    return EditRequest(data, "image/jpeg", request.instruction), note


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
