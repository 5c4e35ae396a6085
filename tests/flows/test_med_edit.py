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
from pairsmith.models.adapters.clip_scorer import ClipScorer
from pairsmith.models.lazy import clear_loaded
from pairsmith.models.tiny.builders import build_tiny_clip
from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl
from pairsmith.storage.store import PairStore
from pairsmith.tasks.med.samples import LETTERS, QA_QUESTIONS
from tests.conftest import render_run
from tests.fake_gemini import FakeGemini
from tests.med_replies import med_reply

pytestmark = pytest.mark.slow

API_KEY = "med-test-key-7c41e0aa"
EDITOR = "gemini-2.5-flash-image"
STAGES = ["source", "med-filter", "med-request", "edit", "similarity", "med-complete", "med-caption",
          "med-difference", "med-judge-1", "med-judge-2", "med-rewrite", "med_samples", "med-bench"]


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


def _roles(server) -> dict:
    """MED's three model roles on the fake Gemini server, answering each figure's prompt in its format
    (tests/med_replies.py): a tiny random model cannot write "**Final Recommendation:** **Yes**"."""
    server.text_reply = med_reply
    gemini = {"base_url": server.base_url, "retry_initial_delay": 0.01, "retry_max_delay": 0.05}
    return {role: {"backend": "gemini", "model_id": f"med-{role}", "gemini": gemini}
            for role in ("mllm", "llm", "answer_writer")}


def _edits(server) -> list:
    """The requests that reached the editor (the roles' chat requests go to the same server)."""
    return [r for r in server.log if r.model == EDITOR]


def _config(tmp_path, models, server, folder, captions, **overrides) -> MedEditConfig:
    vlm, clip = models
    data = dict(
        db=str(tmp_path / "med.lance"),
        sources={"folder": {"images_dir": str(folder), "captions": str(captions)}},
        batch_size=4,
        **_roles(server),
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
        log = _edits(server)
    store = PairStore(config.db)
    funnel = run_funnel(store, summary.run_id)
    assert [s.stage for s in funnel] == STAGES
    for earlier, later in zip(funnel[:-1], funnel[1:-1]):  # the batches' chain; med-bench asks candidates only
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
            assert p["edit_instruction"].startswith("Hi, This is a photo of A red ball on table ")
            assert p["edit_instruction"].endswith(" and output the image?")
            assert p["caption_after"].startswith("A blue ball on table ") and p["difference"]
            assert 0.7 <= p["pair_clip_sim"] <= 1.0 and p["origin"].startswith("file:")
            # the photo keeps its codec, the editor answers PNG: the pair says so
            assert p["image_format"] == ("JPEG/PNG" if p["origin"].endswith(".jpg") else "PNG"), p["origin"]
    # One request per source that reached the edit stage, plus the retried 429.
    assert len(log) == by_stage["edit"].n_in + 1
    assert len({r.image_sha for r in log}) == by_stage["edit"].n_in
    assert all(r.instruction.startswith("Hi, This is a photo of") for r in log)  # MED Fig. 8's template
    samples = store.read("samples").to_pylist()
    qa = [s for s in samples if s["task"] == "med-diff-qa"]
    assert len(qa) == summary.pairs_kept
    for s in qa:
        question = s["conversation"][0]["content"].removeprefix("<image>\n<image>\n")
        assert question in QA_QUESTIONS and s["answer"].startswith("In the second image")  # Fig. 14's rewrite
    # a random CLIP sees the painted square as > 0.95 similar: every kept pair is a candidate, and with
    # fewer than 15 per type every one is a benchmark item, withheld from training
    mcq = [s for s in samples if s["task"] == "med-mcq"]
    assert summary.bench_items == len(mcq) == summary.pairs_kept
    assert all(s["split"] == "bench" for s in qa + mcq)


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
        first = len(_edits(server))
        assert first > 0 and PairStore(config.db).count("edits") == first
        errors = dict(next(s for s in run_funnel(PairStore(config.db), first_run.run_id)
                           if s.stage == "similarity").reasons)
        assert errors.get("similarity_error", 0) >= 1 and first_run.pairs_kept >= 1  # batch 1 kept its pairs
        monkeypatch.setattr(ClipScorer, "image_similarity_batch", real)
        summary = med_edit(config)
        shas = [r.image_sha for r in _edits(server)]
    assert summary.batches_resumed == 1
    assert len(shas) == len(set(shas)), "an already edited item was sent to Gemini again"
    assert PairStore(config.db).count("pairs") == 6
    assert not any(r["drop_reason"] == "similarity_error" for r in PairStore(config.db).read("pairs").to_pylist())


def test_every_paid_edit_is_stored_as_it_arrives_and_a_crash_mid_batch_never_pays_twice(
        tmp_path, models, monkeypatch):
    """Issue 11 case 2: a run killed after 4 of a batch's 8 responses keeps those 4; the re-run
    sends the other 4 only."""
    from pairsmith.models.adapters.gemini_editor import GeminiEditor

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
        assert len(_edits(server)) == 4 and PairStore(config.db).count("edits") == 4  # stored before the crash
        monkeypatch.setattr(GeminiEditor, "edit", real_edit)
        med_edit(config)
        shas = [r.image_sha for r in _edits(server)]
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
                assert len(_edits(server)) == 2 and PairStore(config.db).count("edits") == 2
                assert "stopped early" in capsys.readouterr().err
        shas = [r.image_sha for r in _edits(server)]
    out = capsys.readouterr().out
    assert "med-edit" in out and "source" in out and len(shas) == len(set(shas)) == 4


def test_pairs_in_the_store_are_sources_too(tmp_path, models, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    rendered = render_run(tmp_path / "med.lance", pairs=2, sampling={"max_changes": 1})
    vlm, clip = models
    with FakeGemini() as server:
        config = MedEditConfig.model_validate(dict(
            db=rendered.config.db, sources={"store": {"methods": ["dig-render"]}},
            **_roles(server),
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


def test_the_paper_preset_runs_every_step_and_its_funnel_names_each_steps_reasons(tmp_path, models, monkeypatch,
                                                                                 capsys):
    """configs/papers/med/data.yaml with tiny CLIP and the fake Gemini server (editor and MED's model
    roles, answering in each figure's format), through `pairsmith run med-edit`; one photo per fault."""
    import yaml

    from pairsmith.flows.cli.main import main
    from tests.med_replies import FAULTS

    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    _, clip = models
    faults = [f for f in FAULTS if f not in ("answer-bad", "wrong-bad")]  # the benchmark's: see test_med_bench_builder
    folder = tmp_path / "photos"
    rows = _photos(folder, len(faults) + 24, seed=5)  # clean photos: every type at least twice
    for row, fault in zip(rows, faults):
        row["caption"] += f" #fault-{fault}"
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(r) for r in rows))
    # The tiny random CLIP rates any edit of these photos above 0.7; for one photo, a repainted edit's
    # score (0.5) stands in, so the similarity step drops it as the paper's threshold says.
    repainted = Image.open(folder / rows[-2]["image"]).convert("RGB").getpixel((0, 0))
    real = ClipScorer.image_similarity_batch
    monkeypatch.setattr(ClipScorer, "image_similarity_batch", lambda self, pairs: [
        0.5 if before.getpixel((0, 0)) == repainted else sim for (before, _), sim in zip(pairs, real(self, pairs))])
    preset = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/papers/med/data.yaml").read_text())
    with FakeGemini() as server:
        server.script[_sha(folder / rows[-1]["image"])] = "blocked"
        preset.update(db=str(tmp_path / "med.lance"), sources={"folder": {"images_dir": str(folder),
                                                                          "captions": str(captions)}},
                      **_roles(server),
                      clip={"model_name": clip.model_name, "pretrained": str(clip.weights),
                            "model_config_file": str(clip.config_file)})
        preset["editor"].update(base_url=server.base_url, retry_initial_delay=0.01)
        path = tmp_path / "med.yaml"
        path.write_text(yaml.safe_dump(preset))
        assert main(["run", "med-edit", "--config", str(path), "--per-type", "1"]) == 0
        edits = [r for r in server.log if r.model == "gemini-2.0-flash-preview-image-generation"]
    printed = capsys.readouterr().out
    print(printed)  # the funnel, for the record
    assert edits and all(r.instruction.startswith("Hi, This is a photo of A red ball on table ") for r in edits)
    store = PairStore(str(tmp_path / "med.lance"))
    run_id = store.read("pairs", columns=["run_id"]).column("run_id")[0].as_py()
    by_stage = {s.stage: s for s in run_funnel(store, run_id)}
    assert list(by_stage) == STAGES
    for fault, reason in FAULTS.items():
        if fault in faults:
            stage = "med-judge-" + reason.split("_")[2] if reason.startswith("med_judge") else \
                "med-" + reason.split("_")[1]
            assert by_stage[stage].reasons[reason] == 1, (fault, reason, stage, by_stage[stage].reasons)
            assert reason in printed
    assert by_stage["edit"].reasons["edit_blocked_safety"] == 1
    assert dict(by_stage["similarity"].reasons) == {"similarity_too_low": 1}
    kept = by_stage["med-rewrite"].n_kept
    assert kept == 22 and by_stage["med_samples"].n_kept == kept
    samples = store.read("samples").to_pylist()
    mcq = [s for s in samples if s["task"] == "med-mcq"]
    qa = {s["pair_id"]: s for s in samples if s["task"] == "med-diff-qa"}
    assert len(mcq) == 11 == len({s["category"] for s in qa.values()})  # one per type (--per-type 1)
    assert {s["pair_id"] for s in mcq} == {p for p, s in qa.items() if s["split"] == "bench"}
    assert sum(s["split"] != "bench" for s in qa.values()) == kept - len(mcq)  # the rest train


def test_tiny_local_models_in_every_role_answer_and_are_counted(tmp_path, models, monkeypatch):
    """The transformers backend of the roles: a tiny random Qwen2-VL filters (its text is no verdict,
    so every photo is a counted med_filter_unparseable row, none sinks the batch)."""
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    vlm, clip = models
    folder = tmp_path / "photos"
    rows = _photos(folder, 3)
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(r) for r in rows))
    tiny = {"backend": "transformers", "model_id": str(vlm), "max_new_tokens": 8, "runtime": {"device": "cpu"}}
    with FakeGemini() as server:
        config = _config(tmp_path, models, server, folder, captions, mllm=tiny, llm=tiny, answer_writer=tiny)
        summary = med_edit(config)
        assert not _edits(server)
    by_stage = {s.stage: s for s in run_funnel(PairStore(config.db), summary.run_id)}
    assert dict(by_stage["med-filter"].reasons) == {"med_filter_unparseable": 3}
    drops = PairStore(config.db).read("pairs").to_pylist()
    assert all(p["drop_stage"] == "med-filter" and p["drop_detail"] for p in drops)
    clear_loaded()
