"""The Gemini editing adapter against a local server speaking the real REST protocol."""

from __future__ import annotations

import hashlib
import io
import logging
import pickle

import pytest
from PIL import Image

from pairsmith.models.adapters.gemini_editor import EditRequest, GeminiAuthError, GeminiEditConfig, GeminiEditor
from tests.fake_gemini import FakeGemini

KEY = "test-key-5f1b2c"


def png(colour: str, size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server():
    with FakeGemini() as s:
        yield s


def editor(server, **kw) -> GeminiEditor:
    cfg = dict(base_url=server.base_url, retry_initial_delay=0.01, retry_max_delay=0.05, concurrency=3)
    return GeminiEditor(GeminiEditConfig(**{**cfg, **kw}))


def test_edits_come_back_as_images_with_retries_and_reasons(server, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    images = {name: png(name) for name in ("red", "green", "blue", "gray", "yellow", "purple", "cyan")}
    server.script.update({
        sha(images["green"]): "429x2", sha(images["blue"]): "500x1", sha(images["gray"]): "blocked",
        sha(images["yellow"]): "prompt-blocked", sha(images["purple"]): "text-only", sha(images["cyan"]): "500x9",
    })
    requests = [EditRequest(data, "image/png", f"Can you turn the {name} wall white and output the image?")
                for name, data in images.items()]
    results = editor(server).edit_batch(requests)
    by_name = dict(zip(images, results))
    for name in ("red", "green", "blue"):
        r = by_name[name]
        assert r.ok and r.mime_type == "image/png"
        edited = Image.open(io.BytesIO(r.image))
        assert edited.size == (64, 48) and r.image != images[name]
    assert by_name["gray"].reason == "edit_blocked_safety" and by_name["gray"].detail == "IMAGE_SAFETY"
    assert by_name["yellow"].reason == "edit_blocked_prompt"
    assert by_name["purple"].reason == "edit_no_image" and "can't edit" in by_name["purple"].text
    assert by_name["cyan"].reason == "edit_api_error" and by_name["cyan"].detail.startswith("HTTP 500")
    assert len(server.requests_for(sha(images["green"]))) == 3  # two 429s, then the edit
    assert len(server.requests_for(sha(images["cyan"]))) == 5  # the default 5 attempts, then a reason
    assert {r.api_key for r in server.log} == {KEY}
    assert {r.model for r in server.log} == {"gemini-2.5-flash-image"}


def test_missing_or_rejected_key_stops_before_or_at_the_first_request(server, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(GeminiAuthError, match="set GEMINI_API_KEY"):
        editor(server).edit_batch([EditRequest(png("red"), "image/png", "edit")])
    assert server.log == []
    monkeypatch.setenv("GEMINI_API_KEY", "wrong")
    with pytest.raises(GeminiAuthError, match="HTTP 401"):
        editor(server).edit_batch([EditRequest(png("red"), "image/png", "edit [401]")])


def test_the_key_never_reaches_logs_or_pickles(server, monkeypatch, caplog):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    server.script[sha(png("red"))] = "429x1"
    ed = editor(server)
    with caplog.at_level(logging.DEBUG):
        assert ed.edit_batch([EditRequest(png("red"), "image/png", "edit")])[0].ok
    assert KEY not in caplog.text
    assert KEY.encode() not in pickle.dumps(ed)
    assert KEY not in ed.config.model_dump_json()


def test_the_key_can_come_from_a_prefect_secret_block(server, monkeypatch):
    from prefect.blocks.system import Secret

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    Secret(value=KEY).save("pairsmith-gemini-test", overwrite=True)
    ed = editor(server, secret_block="pairsmith-gemini-test")
    assert ed.edit_batch([EditRequest(png("red"), "image/png", "edit")])[0].ok
    assert {r.api_key for r in server.log} == {KEY}
    assert KEY not in ed.config.model_dump_json()
