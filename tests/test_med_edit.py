"""The med-edit flow on a tiny VLM, a tiny CLIP and a local fake Gemini server."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from pairsmith.flows.engine.funnel import run_funnel
from pairsmith.flows.med_edit import med_edit
from pairsmith.flows.med_edit_config import MedEditConfig
from pairsmith.models.clip_scorer import ClipScorer
from pairsmith.models.lazy import clear_loaded
from pairsmith.models.tiny.builders import build_tiny_clip
from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
from pairsmith.storage.store import PairStore
from pairsmith.tasks.med.samples import LETTERS, QA_QUESTIONS
from tests.conftest import render_run
from tests.fake_gemini import FakeGemini

pytestmark = pytest.mark.slow

API_KEY = "med-test-key-7c41e0aa"
STAGES = ["source", "gate", "edit_plan", "edit", "similarity", "caption_align", "med_samples", "mcq"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("med-models")
    return build_tiny_qwen2_vl(root / "vlm"), build_tiny_clip(root / "clip")


def _photos(folder: Path, n: int, seed: int = 0) -> list[dict]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        img = Image.new("RGB", (160, 120), tuple(rng.randrange(256) for _ in range(3)))
        ImageDraw.Draw(img).ellipse([30, 20, 90, 80], fill=(rng.randrange(256), 40, 40))
        img.save(folder / f"photo{i}.{'jpg' if i % 2 else 'png'}")
        rows.append({"image": f"photo{i}.{'jpg' if i % 2 else 'png'}", "caption": f"A red ball on table {i}."})
    return rows


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def source_folder(tmp_path):
    folder = tmp_path / "photos"
    rows = _photos(folder, 8)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    rows[7]["caption"] = ""  # a photo without a caption cannot be described to the editor
    rows += [{"image": "missing.jpg", "caption": "a cat"}, {"image": "empty.jpg", "caption": "a dog"},
             {"image": "broken.png", "caption": "a car"}]
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(r) for r in rows))
    return folder, captions


def _config(tmp_path, models, server, folder, captions, **overrides) -> MedEditConfig:
    vlm, clip = models
    data = dict(
        db=str(tmp_path / "med.lance"),
        sources={"folder": {"images_dir": str(folder), "captions": str(captions)}},
        batch_size=4,
        vlm={"model_id": str(vlm), "temperature": 1.0, "seed": 0, "max_new_tokens": 16, "runtime": {"device": "cpu"}},
        decisions={"gate_margin": -100.0, "match_margin": -100.0},  # a random model must not decide for us
        clip={"model_name": clip.model_name, "pretrained": str(clip.weights), "model_config_file": str(clip.config_file)},
        editor={"base_url": server.base_url, "retry_initial_delay": 0.01, "retry_max_delay": 0.05},
    )
    data.update(overrides)
    return MedEditConfig.model_validate(data)


def test_med_edit_end_to_end(tmp_path, models, source_folder, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    folder, captions = source_folder
    with FakeGemini() as server:
        server.script.update({_sha(folder / "photo3.jpg"): "blocked", _sha(folder / "photo4.png"): "text-only",
                              _sha(folder / "photo5.jpg"): "429x1"})
        config = _config(tmp_path, models, server, folder, captions)
        summary = med_edit(config)
        log = list(server.log)
    store = PairStore(config.db)
    funnel = run_funnel(store, summary.run_id)
    assert [s.stage for s in funnel] == STAGES
    for earlier, later in zip(funnel, funnel[1:]):
        assert later.n_in == earlier.n_kept
    for s in funnel:
        assert s.n_in == s.n_kept + s.n_dropped
    by_stage = {s.stage: s for s in funnel}
    assert by_stage["source"].n_in == 11
    assert dict(by_stage["source"].reasons) == {
        "source_missing": 1, "source_empty_file": 1, "source_not_an_image": 1, "source_no_caption": 1}
    assert dict(by_stage["edit"].reasons) == {"edit_blocked_safety": 1, "edit_no_image": 1}

    pairs = store.read("pairs").to_pylist()
    assert len(pairs) == 11 and summary.pairs_kept + summary.pairs_dropped == 11
    for p in pairs:
        assert (p["status"] == "dropped") == bool(p["drop_reason"])
        if p["status"] == "kept":
            assert p["image_before"] and p["image_after"] and p["image_before"] != p["image_after"]
            assert p["edit_instruction"].startswith("This is a photo of ") and p["edit_instruction"].endswith(
                " and output the image?")
            assert p["difference"].startswith("In the second image")
            assert 0.7 <= p["pair_clip_sim"] <= 1.0 and p["origin"].startswith("file:")
            # the photo keeps its codec, the editor answers PNG: the pair says so
            assert p["image_format"] == ("JPEG/PNG" if p["origin"].endswith(".jpg") else "PNG"), p["origin"]
    # One request per source that reached the edit stage, plus the retried 429.
    assert len(log) == by_stage["edit"].n_in + 1
    assert len({r.image_sha for r in log}) == by_stage["edit"].n_in
    samples = store.read("samples").to_pylist()
    qa = [s for s in samples if s["task"] == "med-diff-qa"]
    assert len(qa) == summary.pairs_kept
    for s in qa:
        question = s["conversation"][0]["content"].removeprefix("<image>\n<image>\n")
        assert question in QA_QUESTIONS and s["answer"].startswith("In the second image")
    assert all(s["split"] == "bench" for s in qa)  # a random CLIP sees the painted square as >= 0.95 similar


def _scan_store(store: PairStore) -> str:
    return "\n".join(str(store.read(t).to_pylist()) for t in store.table_names())


def test_api_key_never_reaches_logs_store_or_artifacts(tmp_path, models, source_folder, monkeypatch, capfd):
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    folder, captions = source_folder
    with FakeGemini() as server:
        config = _config(tmp_path, models, server, folder, captions,
                         sources={"folder": {"images_dir": str(folder), "captions": str(captions)}, "limit": 3})
        state = med_edit(config, return_state=True)
        assert {r.api_key for r in server.log} == {API_KEY}  # it did travel, in the request header
    assert API_KEY not in _scan_store(PairStore(config.db))
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # logs travel to the API in the background: send them before reading them
    run_id = str(state.state_details.flow_run_id)
    with get_client(sync_client=True) as client:
        logs = client.request("POST", "/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200, "offset": 0, "sort": "TIMESTAMP_ASC"}).json()
        artifacts = client.request("POST", "/artifacts/filter", json={
            "artifacts": {"flow_run_id": {"any_": [run_id]}}, "limit": 50, "offset": 0, "sort": "CREATED_DESC"}).json()
        flow_run = client.request("GET", f"/flow_runs/{run_id}").json()
    assert logs and artifacts
    assert API_KEY not in json.dumps(logs) + json.dumps(artifacts) + json.dumps(flow_run)
    out, err = capfd.readouterr()
    assert API_KEY not in out + err


def test_a_model_error_costs_only_its_items_and_the_rerun_sends_no_second_request(
        tmp_path, models, source_folder, monkeypatch):
    """CLIP failing on the second batch drops that batch's items as ``similarity_error`` (the run
    goes on); the re-run redoes that batch from the cached edits, paying for nothing twice."""
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    folder, captions = source_folder
    real = ClipScorer.image_similarity_batch
    calls = {"n": 0}

    def fails_on_second_batch(self, pairs):
        calls["n"] += 1
        if calls["n"] >= 2:
            raise ConnectionError("worker lost")  # transient (issue 22): its batch is retried
        return real(self, pairs)

    with FakeGemini() as server:
        config = _config(tmp_path, models, server, folder, captions, batch_size=3,
                         sources={"folder": {"images_dir": str(folder), "captions": str(captions)}, "limit": 6})
        monkeypatch.setattr(ClipScorer, "image_similarity_batch", fails_on_second_batch)
        first_run = med_edit(config)
        first = len(server.log)
        assert first > 0 and PairStore(config.db).count("edits") == first
        errors = dict(next(s for s in run_funnel(PairStore(config.db), first_run.run_id)
                           if s.stage == "similarity").reasons)
        assert errors.get("similarity_error", 0) >= 1 and first_run.pairs_kept >= 1  # batch 1 kept its pairs
        monkeypatch.setattr(ClipScorer, "image_similarity_batch", real)
        summary = med_edit(config)
        shas = [r.image_sha for r in server.log]
    assert summary.batches_resumed == 1
    assert len(shas) == len(set(shas)), "an already edited item was sent to Gemini again"
    assert PairStore(config.db).count("pairs") == 6
    assert not any(r["drop_reason"] == "similarity_error" for r in PairStore(config.db).read("pairs").to_pylist())


def test_every_paid_edit_is_stored_as_it_arrives_and_a_crash_mid_batch_never_pays_twice(
        tmp_path, models, monkeypatch):
    """Issue 11 case 2: a run killed after 4 of a batch's 8 responses keeps those 4; the re-run
    sends the other 4 only."""
    from pairsmith.models.gemini_editor import GeminiEditor

    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    folder = tmp_path / "eight"
    rows = _photos(folder, 8, seed=3)
    captions = tmp_path / "eight.jsonl"
    captions.write_text("\n".join(json.dumps(r) for r in rows))
    real_edit, answered = GeminiEditor.edit, []

    def dies_after_four_responses(self, request):
        if len(answered) == 4:
            raise RuntimeError("worker killed")
        answered.append(real_edit(self, request))
        return answered[-1]

    with FakeGemini() as server:
        config = _config(tmp_path, models, server, folder, captions, batch_size=8,
                         editor={"base_url": server.base_url, "concurrency": 1, "retry_initial_delay": 0.01})
        monkeypatch.setattr(GeminiEditor, "edit", dies_after_four_responses)
        assert med_edit(config, return_state=True).is_failed()
        assert len(server.log) == 4 and PairStore(config.db).count("edits") == 4  # stored before the crash
        monkeypatch.setattr(GeminiEditor, "edit", real_edit)
        med_edit(config)
        shas = [r.image_sha for r in server.log]
    assert len(shas) == 8 and len(set(shas)) == 8, "an edit paid for before the crash was requested again"
    assert PairStore(config.db).count("edits") == 8


def test_request_budget_stops_the_run_and_the_next_run_continues(tmp_path, models, source_folder, monkeypatch,
                                                                 capsys):
    """Through the CLI: `pairsmith run med-edit --config FILE` exits 75 when the budget stops it."""
    import yaml

    from pairsmith.flows.cli.main import main

    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    folder, captions = source_folder
    four = {"folder": {"images_dir": str(folder), "captions": str(captions)}, "limit": 4}
    with FakeGemini() as server:
        for budget, expected_exit in ((2, 75), (500, 0)):
            config = _config(tmp_path, models, server, folder, captions, request_budget=budget, sources=four)
            path = tmp_path / f"med-{budget}.yaml"
            path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
            assert main(["run", "med-edit", "--config", str(path)]) == expected_exit
            if budget == 2:
                assert len(server.log) == 2 and PairStore(config.db).count("edits") == 2
                assert "stopped early" in capsys.readouterr().err
        shas = [r.image_sha for r in server.log]
    out = capsys.readouterr().out
    assert "med-edit" in out and "source" in out and len(shas) == len(set(shas)) == 4


def test_pairs_in_the_store_are_sources_too(tmp_path, models, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    rendered = render_run(tmp_path / "med.lance", pairs=2, sampling={"max_changes": 1})
    vlm, clip = models
    with FakeGemini() as server:
        config = MedEditConfig.model_validate(dict(
            db=rendered.config.db, sources={"store": {"methods": ["dig-render"]}},
            vlm={"model_id": str(vlm), "temperature": 1.0, "seed": 0, "max_new_tokens": 16},
            decisions={"gate_margin": -100.0, "match_margin": -100.0},
            clip={"model_name": clip.model_name, "pretrained": str(clip.weights),
                  "model_config_file": str(clip.config_file)},
            editor={"base_url": server.base_url},
        ))
        summary = med_edit(config)
    med_pairs = PairStore(config.db).read("pairs", where="method = 'med-edit'").to_pylist()
    assert summary.sources == 2 and len(med_pairs) == 2
    dig = {p["pair_id"]: p for p in PairStore(config.db).read("pairs", where="method = 'dig-render'").to_pylist()}
    for p in med_pairs:
        assert p["origin"].startswith("pair:")
        source = dig[p["origin"].removeprefix("pair:")]
        assert p["image_before"] == source["image_before"]
    clear_loaded()


def test_balance_letters_spreads_right_answers_evenly():
    from pairsmith.tasks.med.samples import balance_letters, mcq_sample

    samples = [mcq_sample(pair_id=f"p{i}", run_id="r", correct="In the second image, the ball is blue.",
                          wrong=["In the second image, the ball is green.", "In the second image, the cup is blue.",
                                 "In the second image, two balls are blue."],
                          category="Attribute", split="train", correct_letter="A") for i in range(10)]
    balanced = balance_letters(samples)
    counts = {letter: sum(s.answer == letter for s in balanced) for letter in LETTERS}
    assert max(counts.values()) - min(counts.values()) <= 1
    for s in balanced:
        right = s.options[LETTERS.index(s.answer)]
        assert right.endswith("the ball is blue.") and right.startswith(f"{s.answer}. ")
        assert s.conversation[1].content == s.answer and s.options[0] in s.conversation[0].content
        assert sorted(o[3:] for o in s.options) == sorted(o[3:] for o in samples[0].options)
