"""A local stand-in for the Gemini REST API, for tests that must not touch the internet.

It answers ``POST /v1beta/models/{model}:generateContent`` (and ``/v1/...``) the way the real service does (JSON
with camelCase fields, base64 ``inlineData`` images, ``finishReason``, ``promptFeedback``,
``{"error": {...}}`` bodies), so ``google.genai.Client`` runs unchanged against it through
``HttpOptions(base_url=...)``. Behaviour per request is scripted by the test, keyed by the source
image's SHA-256 (or by a ``[marker]`` in the instruction):

``ok`` (default: returns the image with a coloured square painted in), ``429xN`` / ``500xN`` (fail
N times, then succeed), ``blocked`` (candidate stopped for IMAGE_SAFETY), ``prompt-blocked``
(promptFeedback.blockReason), ``text-only`` (a text answer, no image), ``401`` (key rejected),
``400`` (invalid argument). A request larger than ``max_request_bytes`` (the real service's 20 MB
inline limit by default) is answered 400 INVALID_ARGUMENT "Request payload size exceeds the limit",
as the real service answers it.

A request with text only (a text model, e.g. a caption judge), or one with images that asks for text
only (``responseModalities: ["TEXT"]``: Gemini as a multimodal chat model), is answered by
``text_reply(prompt)`` when the test sets it: a text candidate, as ``generate_content`` returns.

Every request is logged (model, key header, instruction, image hash), so a test can prove that a
re-run sent no second request for an item already edited.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageDraw

ROUTE = re.compile(r"^/v1(?:beta|alpha)?/models/(?P<model>[^:/]+):generateContent$")
MARKER = re.compile(r"\[(ok|429x\d+|500x\d+|blocked|prompt-blocked|text-only|401|400)\]")
REAL_LIMIT = 20 * 1024 * 1024


@dataclass
class LoggedRequest:
    model: str
    api_key: str | None
    instruction: str
    image_sha: str | None
    status: int


@dataclass
class FakeGemini:
    """Start with ``with FakeGemini() as server:``; ``server.base_url`` goes into the client."""

    script: dict[str, str] = field(default_factory=dict)  # image sha256 -> behaviour
    text_reply: Callable[[str], str] | None = None  # text-only requests: prompt -> answer text
    log: list[LoggedRequest] = field(default_factory=list)
    max_request_bytes: int = REAL_LIMIT
    sizes: list[int] = field(default_factory=list)  # body bytes of every request, in arrival order
    _failures: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> "FakeGemini":
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def requests_for(self, image_sha: str) -> list[LoggedRequest]:
        return [r for r in self.log if r.image_sha == image_sha]

    # -- behaviour ------------------------------------------------------------------------
    def respond(self, model: str, key: str | None, body: dict) -> tuple[int, dict]:
        parts = [p for c in body.get("contents", []) for p in c.get("parts", [])]
        text = " ".join(p["text"] for p in parts if "text" in p)
        image = next((p["inlineData"] for p in parts if "inlineData" in p), None)
        data = _b64decode(image["data"]) if image else None
        sha = hashlib.sha256(data).hexdigest() if data else None
        modalities = (body.get("generationConfig") or {}).get("responseModalities") or []
        if self.text_reply is not None and modalities == ["TEXT"]:
            with self._lock:
                self.log.append(LoggedRequest(model, key, text, sha, 200))
            return 200, _candidate([{"text": self.text_reply(text)}], model)
        marker = MARKER.search(text)
        behaviour = marker.group(1) if marker else self.script.get(sha or "", "ok")
        status, payload = self._behave(behaviour, sha or text, model, data, text)
        with self._lock:
            self.log.append(LoggedRequest(model, key, text, sha, status))
        return status, payload

    def _behave(self, behaviour: str, item: str, model: str, data: bytes | None, text: str) -> tuple[int, dict]:
        if behaviour == "400":
            return 400, _error(400, "Request contains an invalid argument.", "INVALID_ARGUMENT")
        if behaviour == "401":
            return 401, _error(401, "API key not valid. Please pass a valid API key.", "UNAUTHENTICATED")
        failing = re.fullmatch(r"(429|500)x(\d+)", behaviour)
        if failing:
            code, times = int(failing.group(1)), int(failing.group(2))
            with self._lock:
                seen = self._failures.get((item, behaviour), 0)
                self._failures[(item, behaviour)] = seen + 1
            if seen < times:
                status = "RESOURCE_EXHAUSTED" if code == 429 else "INTERNAL"
                return code, _error(code, "try again later", status)
        if behaviour == "prompt-blocked":
            return 200, {"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": model}
        if behaviour == "blocked":
            return 200, {"candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}], "modelVersion": model}
        if behaviour == "text-only":
            return 200, _candidate([{"text": "I can't edit this image, but here is a description."}], model)
        if data is None and self.text_reply is not None:
            return 200, _candidate([{"text": self.text_reply(text)}], model)
        if data is None:
            return 400, _error(400, "no image in request", "INVALID_ARGUMENT")
        return 200, _candidate([{"text": "Here is the edited image."},
                                {"inlineData": {"mimeType": "image/png", "data": _edited(data, text)}}], model)


def _b64decode(text: str) -> bytes:
    """The API takes standard or URL-safe base64, padded or not (google-genai sends URL-safe)."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _candidate(parts: list[dict], model: str) -> dict:
    return {
        "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 34, "totalTokenCount": 46},
        "modelVersion": model,
    }


def _error(code: int, message: str, status: str) -> dict:
    return {"error": {"code": code, "message": message, "status": status}}


def _edited(data: bytes, instruction: str) -> str:
    """The source with a square painted in: a small local edit, as MED's edits are."""
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    colour = tuple(hashlib.sha256(instruction.encode()).digest()[:3])
    ImageDraw.Draw(img).rectangle([w // 3, h // 3, w // 3 + w // 5, h // 3 + h // 5], fill=colour)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _handler_for(server: FakeGemini):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            route = ROUTE.match(self.path.split("?")[0])
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length)
            body = json.loads(raw_body or b"{}")
            with server._lock:
                server.sizes.append(len(raw_body))
            if route is not None and len(raw_body) > server.max_request_bytes:
                status, payload = 400, _error(
                    400, f"Request payload size exceeds the limit: {server.max_request_bytes} bytes.", "INVALID_ARGUMENT")
                parts = [p for c in body.get("contents", []) for p in c.get("parts", [])]
                image = next((p["inlineData"] for p in parts if "inlineData" in p), None)
                sha = hashlib.sha256(_b64decode(image["data"])).hexdigest() if image else None
                with server._lock:
                    server.log.append(LoggedRequest(route["model"], self.headers.get("x-goog-api-key"),
                                                    " ".join(p.get("text", "") for p in parts), sha, 400))
            elif route is None:
                status, payload = 404, _error(404, f"no route {self.path}", "NOT_FOUND")
            else:
                try:
                    status, payload = server.respond(route["model"], self.headers.get("x-goog-api-key"), body)
                except Exception as err:  # a bug here must show up as an HTTP error, not a hang
                    status, payload = 500, _error(500, f"fake server error: {err!r}", "INTERNAL")
            raw = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):  # keep test output clean
            pass

    return Handler
