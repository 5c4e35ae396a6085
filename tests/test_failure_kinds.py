"""Issue 22, kinds 5 and 6: errors by permanence, and failures that say why (quickly).

Kind 5: a deterministic failure (Gemini's HTTP 400, a picture the processor refuses) is a reason
row with its message, never paid for again; a transient one (429, 5xx, timeouts) is retried; limits
are checked before paying (a photo over Gemini's request limit is re-encoded, a sample the
processor would refuse is counted at selection).
Kind 6: a model that cannot load, an unwritable PREFECT_HOME, an unreachable PREFECT_API_URL fail in
seconds with one line naming the cause.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from pairsmith.models.failures import failure_reason, is_transient
from pairsmith.models.gemini_editor import EditRequest, GeminiEditConfig, GeminiEditor
from pairsmith.storage.schemas import Message, PairRow, SampleRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.storage.verdict import StageStats
from pairsmith.tasks.med.edit_images import RequestBudget, edit_images
from pairsmith.tasks.med.item import MedItem
from pairsmith.tasks.med.sources import SourceRef
from pairsmith.tasks.sample_builders import TWO_IMAGES
from tests.fake_gemini import FakeGemini

KEY = "failure-kinds-key"
ROOT = Path(__file__).resolve().parents[1]


def noisy_png(width: int, height: int, seed: int = 0) -> bytes:
    """A photo-like PNG that does not compress (so its size is known in advance: ~3 bytes a pixel)."""
    rng = random.Random(seed)
    img = Image.frombytes("RGB", (width, height), bytes(rng.randrange(256) for _ in range(width * height * 3)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def med_item(i: int, image: bytes, instruction: str = "Can you turn the wall white and output the image?") -> MedItem:
    ref = SourceRef(source_id=f"s{i}", caption="a wall", path=f"photo{i}.png")
    w, h = Image.open(io.BytesIO(image)).size
    return MedItem(ref=ref, pair_id=f"p{i}", image=image, mime_type="image/png", width=w, height=h,
                   edit_instruction=instruction)


def run_edit_stage(db: str, editor: GeminiEditor, images: list[bytes]) -> tuple[list[MedItem], StageStats]:
    items = [med_item(i, data) for i, data in enumerate(images)]
    result = edit_images(items, editor, db, RequestBudget(100))
    return items, result.stats[0]


def editor_for(server: FakeGemini, **kw) -> GeminiEditor:
    return GeminiEditor(GeminiEditConfig(base_url=server.base_url, retry_initial_delay=0.01, retry_max_delay=0.05,
                                         **kw))


# --- kind 5: errors by permanence ---------------------------------------------------------------


def test_a_request_gemini_refuses_for_its_size_is_a_final_reason_row_never_paid_for_again(tmp_path, monkeypatch):
    """The issue's example: Gemini answers HTTP 400 "payload size exceeds the limit". That is
    ``edit_rejected`` with Gemini's message, stored in ``edits``; the re-run sends nothing for it.
    (The client's own limit is set above the server's here, so the request does go out.)"""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    big, small = noisy_png(400, 300, seed=1), noisy_png(64, 48, seed=2)
    db = str(tmp_path / "med.lance")
    with FakeGemini(max_request_bytes=200_000) as server:
        items, stats = run_edit_stage(db, editor_for(server), [big, small])
        assert sorted(r.status for r in server.log) == [200, 400]
        assert stats.reasons == {"edit_rejected": 1} and stats.n_kept == 1
        assert items[0].drop_reason == "edit_rejected"
        assert "HTTP 400" in items[0].drop_detail and "payload size exceeds the limit" in items[0].drop_detail
        stored = PairStore(db).read("edits").to_pylist()
        assert {r["reason"] for r in stored} == {"edit_rejected", None}

        sent = len(server.log)
        items, stats = run_edit_stage(db, editor_for(server), [big, small])  # the re-run
        assert len(server.log) == sent, "a request refused for good was paid for again"
        assert stats.reasons == {"edit_rejected": 1} and "payload size" in items[0].drop_detail

        # asked explicitly, it is sent again
        run_edit_stage(db, editor_for(server, retry_rejected=True), [big, small])
        assert len(server.log) == sent + 1


def test_a_photo_over_the_request_limit_is_re_encoded_before_sending_and_the_pair_says_so(tmp_path, monkeypatch):
    """The 12 MP WebP that became a 16.6 MiB PNG, in small: a PNG over the client's request limit is
    sent as a JPEG that fits (scaled down if need be), it is edited (no 400), and the kept item's
    ``drop_detail`` (and the cached edit's ``detail``) record what was sent."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    big = noisy_png(500, 400, seed=3)  # ~600 KB as PNG: over a 300 KB limit once base64-encoded
    with FakeGemini(max_request_bytes=300_000) as server:
        items, stats = run_edit_stage(str(tmp_path / "med.lance"), editor_for(server, max_request_bytes=300_000), [big])
        assert [r.status for r in server.log] == [200] and server.sizes[0] <= 300_000
        assert server.log[0].image_sha != hashlib.sha256(big).hexdigest()  # a re-encoded copy went out
    assert stats.n_kept == 1 and items[0].edited is not None
    note = items[0].drop_detail
    assert note.startswith("over the request limit") and "sent as JPEG" in note and "image/png" in note
    assert PairStore(str(tmp_path / "med.lance")).read("edits").to_pylist()[0]["detail"] == note


def test_transient_gemini_errors_are_retried_and_left_for_the_next_run_deterministic_ones_are_not(
        tmp_path, monkeypatch):
    """Another case of the kind: 429 / 500 are retried by the client and, if still failing, are
    ``edit_api_error`` (not cached: the next run asks again); a 400 invalid argument is
    ``edit_rejected`` (cached); a photo that cannot fit even scaled down is ``edit_request_too_large``
    and costs no request at all."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    flaky, hopeless, refused = noisy_png(40, 30, seed=4), noisy_png(40, 30, seed=5), noisy_png(40, 30, seed=6)
    db = str(tmp_path / "med.lance")
    with FakeGemini() as server:
        server.script.update({hashlib.sha256(flaky).hexdigest(): "429x2", hashlib.sha256(hopeless).hexdigest(): "500x99",
                              hashlib.sha256(refused).hexdigest(): "400"})
        items, stats = run_edit_stage(db, editor_for(server, retry_attempts=3), [flaky, hopeless, refused])
        assert stats.n_kept == 1 and stats.reasons == {"edit_api_error": 1, "edit_rejected": 1}
        assert items[1].drop_detail.startswith("HTTP 500") and items[2].drop_detail.startswith("HTTP 400")
        assert len(server.requests_for(hashlib.sha256(hopeless).hexdigest())) == 3  # retried with backoff
        before = len(server.log)
        run_edit_stage(db, editor_for(server, retry_attempts=1), [flaky, hopeless, refused])
        again = [r.image_sha for r in server.log[before:]]
        assert again == [hashlib.sha256(hopeless).hexdigest()]  # only the transient one is asked again

        tiny_limit = editor_for(server, max_request_bytes=10_000)
        items, stats = run_edit_stage(str(tmp_path / "other.lance"), tiny_limit, [noisy_png(600, 600, seed=7)])
        assert stats.reasons == {"edit_request_too_large": 1} and "does not fit" in items[0].drop_detail
        assert len(server.log) == before + 1  # nothing sent for it


def test_the_kind_of_an_error_is_read_from_the_error():
    from google.genai import errors

    def api(code: int) -> BaseException:
        cls = errors.ServerError if code >= 500 else errors.ClientError
        return cls(code, {"error": {"code": code, "message": "m", "status": "S"}})

    assert [is_transient(api(c)) for c in (400, 404, 413, 429, 408, 500, 503)] == [False, False, False, True, True,
                                                                                  True, True]
    import httpx

    assert is_transient(httpx.ReadTimeout("slow")) and is_transient(TimeoutError()) and is_transient(ConnectionError())
    assert not is_transient(ValueError("absolute aspect ratio must be smaller than 200, got 218.75"))
    assert failure_reason("generate", ValueError("x")) == "generate_rejected"
    assert failure_reason("generate", TimeoutError()) == "generate_error"
    from pairsmith.flows.engine.run_outcome import is_error_reason

    assert not is_error_reason("edit_rejected") and is_error_reason("edit_api_error")  # batches retried: errors only


def _pair(pair_id: str, width: int, height: int) -> PairRow:
    return PairRow(pair_id=pair_id, run_id="r", method="dig-render", width=width, height=height, status="kept",
                   created_at=utc_now())


def _sample(sample_id: str, pair_id: str, split: str = "train") -> SampleRow:
    return SampleRow(sample_id=sample_id, pair_id=pair_id, run_id="r", method="dig-render", task="diff-caption",
                     conversation=[Message(role="user", content=TWO_IMAGES + "What changed?"),
                                   Message(role="assistant", content="The cube moved.")],
                     answer="The cube moved.", split=split, created_at=utc_now())


@pytest.fixture(scope="module")
def qwen_processor(tmp_path_factory) -> str:
    """Qwen2-VL's own image processor (the part of a checkpoint selection reads), saved as a model folder."""
    from transformers import Qwen2VLImageProcessor

    folder = tmp_path_factory.mktemp("qwen-processor")
    Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16).save_pretrained(folder)
    return str(folder)


def _selection_db(tmp_path: Path, sizes: dict[str, tuple[int, int]]) -> PairStore:
    store = PairStore(str(tmp_path / "train.lance"))
    store.upsert("pairs", [_pair(pid, w, h) for pid, (w, h) in sizes.items()])
    store.upsert("samples", [_sample(f"s-{pid}", pid) for pid in sizes])
    return store


def test_a_sample_the_processor_refuses_is_a_counted_select_reason_not_an_abort(tmp_path, qwen_processor):
    """The issue's example: a 7000x32 image (aspect 218, Qwen2-VL's processor allows 200) is left
    out at selection as ``select_aspect_too_large``; the others are selected."""
    from pairsmith.models.runtime import ModelRuntime
    from pairsmith.tasks.training.training_data import DataSelection, ProcessorCheck, pin_tables, select_samples

    store = _selection_db(tmp_path, {"ok": (320, 240), "sliver": (7000, 32), "tall": (40, 600)})
    selection = DataSelection(tasks=["diff-caption"], splits=["train"])
    check = ProcessorCheck(qwen_processor, ModelRuntime(offline=True))
    picked = select_samples(store, pin_tables(store, selection), selection, training=True, check=check)
    assert sorted(r["pair_id"] for r in picked.rows) == ["ok", "tall"]
    assert dict(picked.stats.reasons) == {"select_aspect_too_large": 1} and picked.stats.n_in == 3
    # Another case of the kind: side by side, a 600x40 pair becomes a 1220x40 picture: fine; a
    # 4100x40 one becomes 8220x40 (aspect 205): refused in that layout only.
    store = _selection_db(tmp_path / "b", {"wide": (4100, 40), "ok": (600, 40)})
    for layout, expected in (("multi", 0), ("side-by-side", 1)):
        selection = DataSelection(tasks=["diff-caption"], splits=["train"], layout=layout)
        picked = select_samples(store, pin_tables(store, selection), selection, training=True, check=check)
        assert picked.stats.reasons.get("select_aspect_too_large", 0) == expected, layout
