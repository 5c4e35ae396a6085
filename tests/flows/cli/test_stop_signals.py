"""Ctrl-C and SIGTERM stop any command within seconds (issue 22, kind 2).

A stop prints that it is stopping, keeps what was committed, leaves no child process (Blender's
render worker, Prefect's server), exits 130 (SIGINT) or 143 (SIGTERM), and the same command run
again resumes. The waits that used to hold a signal for minutes are tried here: a Cycles render
at high samples (it ran in the CLI's own process) and Gemini requests in their client's backoff
(they ran on a thread pool that the interpreter joins at exit).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from pairsmith.storage import interrupts
from pairsmith.storage.store import PairStore
from tests.fake_gemini import FakeGemini

PAIRSMITH = str(Path(sys.executable).with_name("pairsmith"))
STOP_BOUND = interrupts.STOP_SECONDS + 3  # seconds a stop may take, from the signal to the exit


def _children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return ""


def _alive(procs: list[psutil.Process]) -> list[str]:
    _, alive = psutil.wait_procs(procs, timeout=3)
    left = [_cmdline(p) or str(p.pid) for p in alive]
    for proc in alive:
        proc.kill()
    return left


def _stop(cli: subprocess.Popen, signum: int) -> tuple[float, str, list[psutil.Process]]:
    """Signal the CLI's process group as a terminal does; seconds until it exited, its stderr, and
    the child processes it had when signalled."""
    children = _children(cli.pid)
    start = time.monotonic()
    os.killpg(cli.pid, signum)
    try:
        _, err = cli.communicate(timeout=120)
    finally:
        if cli.poll() is None:
            cli.kill()
    return time.monotonic() - start, err, children


# -- fast: the pieces ------------------------------------------------------------------------------


def _scene():
    from pairsmith.scenes.scene_sampler import as_object_map, sample_scene

    return as_object_map(sample_scene(np.random.default_rng(0), 3, 5))


def test_a_stop_interrupts_a_high_sample_render_at_once_and_kills_the_blender_worker():
    """A render of minutes (4096 samples) is cut within a second; the next render starts a new worker."""
    from pairsmith.scenes import render_worker
    from pairsmith.scenes.blender_render import RenderSettings, get_renderer

    renderer = get_renderer(RenderSettings(width=400, height=300, samples=4096))
    renderer.prepare()
    worker = render_worker._worker.proc

    def stop(signum, frame):
        raise KeyboardInterrupt("SIGALRM")

    previous = signal.signal(signal.SIGALRM, stop)
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            renderer.render_color(_scene(), 1)
        elapsed = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert elapsed < 3, f"the render held the stop for {elapsed:.1f} s"
    assert worker.poll() is not None, "the Blender worker outlived the stop"
    small = get_renderer(RenderSettings(width=48, height=32, samples=1))
    assert small.render_index(_scene()).shape == (32, 48)  # a new worker
    assert render_worker._worker.proc.pid != worker.pid


def test_the_blender_worker_ends_when_its_parent_is_killed_9():
    script = (
        "import sys, numpy as np\n"
        "from pairsmith.scenes import render_worker\n"
        "from pairsmith.scenes.blender_render import RenderSettings, get_renderer\n"
        "from pairsmith.scenes.scene_sampler import as_object_map, sample_scene\n"
        "r = get_renderer(RenderSettings(width=400, height=300, samples=4096)); r.prepare()\n"
        "print(render_worker._worker.proc.pid, flush=True)\n"
        "r.render_color(as_object_map(sample_scene(np.random.default_rng(0), 3, 5)), 1)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = psutil.Process(int(parent.stdout.readline()))
        time.sleep(0.5)  # rendering now
        parent.kill()
        parent.wait(10)
        gone, alive = psutil.wait_procs([worker], timeout=5)
    finally:
        if parent.poll() is None:
            parent.kill()
    for proc in alive:
        proc.kill()
    assert not alive, "Blender's worker outlived a kill -9 of the process that started it"


def test_interruptible_map_leaves_calls_that_hang_as_soon_as_a_stop_is_asked(monkeypatch):
    started = threading.Event()

    def hangs(item):
        started.set()
        time.sleep(60)

    def ask_to_stop():
        started.wait(5)
        monkeypatch.setattr(interrupts, "_requested", "SIGTERM")

    threading.Thread(target=ask_to_stop, daemon=True).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        list(interrupts.interruptible_map(hangs, range(8), workers=2))
    assert time.monotonic() - start < 2


def test_gemini_requests_in_backoff_give_way_to_a_stop(monkeypatch):
    """Requests answered 429 wait in google-genai's backoff (here 30 s a try); a stop asked for
    from another thread ends the batch within a second, and no further request is sent."""
    from pairsmith.models.adapters.gemini_editor import EditRequest, GeminiEditConfig, GeminiEditor

    monkeypatch.setenv("GEMINI_API_KEY", "stop-test-key")
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, "PNG")
    requests = [EditRequest(buf.getvalue(), "image/png", f"[429x1000] make it blue {i}") for i in range(6)]
    with FakeGemini() as server:
        editor = GeminiEditor(GeminiEditConfig(base_url=server.base_url, concurrency=2, retry_attempts=3,
                                               retry_initial_delay=30.0, retry_max_delay=60.0))

        def ask_to_stop():
            deadline = time.monotonic() + 30
            while len(server.log) < 2 and time.monotonic() < deadline:  # both workers are in backoff
                time.sleep(0.05)
            time.sleep(0.3)
            monkeypatch.setattr(interrupts, "_requested", "SIGINT")

        threading.Thread(target=ask_to_stop, daemon=True).start()
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            editor.edit_batch(requests)
        elapsed = time.monotonic() - start
        sent = len(server.log)
        time.sleep(0.5)
        assert len(server.log) == sent
    assert sent == 2 and all(r.status == 429 for r in server.log)
    assert elapsed < 5, f"the backoff held the stop for {elapsed:.1f} s"


# -- slow: the CLI as a user runs it ---------------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_during_a_high_sample_render_stops_within_seconds_and_the_rerun_resumes(tmp_path):
    """The issue's example: SIGINT mid-render at high samples used to wait for the pair (minutes);
    now the CLI says it is stopping and exits 130 within seconds, Blender's worker and Prefect's
    server are gone, the committed pair stays, and the same command finishes the run."""
    db = tmp_path / "db"
    cmd = [PAIRSMITH, "render", "--pairs", "2", "--batch-size", "1", "--samples", "512",
           "--width", "96", "--height", "72", "--db", str(db)]
    cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 400
        while not (db.exists() and PairStore(str(db)).count("stage_stats")):  # the first pair is committed
            assert cli.poll() is None, cli.communicate()
            assert time.monotonic() < deadline, "no batch was committed in time"
            time.sleep(0.5)
        time.sleep(2.0)  # the second pair is rendering now (one pair takes ~20 s here)
        workers = [p for p in _children(cli.pid) if "pairsmith.scenes.render_worker" in _cmdline(p)]
        assert workers, "Blender does not render in a worker process"
        elapsed, err, children = _stop(cli, signal.SIGINT)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, err[-2000:]
    assert "pairsmith: stopping (SIGINT)" in err
    assert elapsed < STOP_BOUND, f"SIGINT took {elapsed:.1f} s"
    assert not _alive(children), "a child process outlived the CLI"
    store = PairStore(str(db))
    assert store.count("pairs") == 1 and store.count("stage_stats") > 0  # the committed pair only, whole
    stats = subprocess.run([PAIRSMITH, "stats", "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert "incomplete: 1 of the 2 items its last start asked for are stored" in stats.stdout  # no hole to see

    rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "1 of 2 batches were already stored" in rerun.stdout
    assert PairStore(str(db)).count("pairs") == 2
    stats = subprocess.run([PAIRSMITH, "stats", "--db", str(db)], capture_output=True, text=True, timeout=120)
    assert "complete (2 batches)" in stats.stdout and "incomplete" not in stats.stdout


@pytest.fixture(scope="module")
def med_models(tmp_path_factory):
    from pairsmith.models.tiny.builders import build_tiny_clip
    from pairsmith.models.tiny.qwen2_vl import build_tiny_qwen2_vl

    root = tmp_path_factory.mktemp("stop-models")
    return build_tiny_qwen2_vl(root / "vlm"), build_tiny_clip(root / "clip")


@pytest.mark.slow
def test_sigterm_while_med_edit_sits_in_gemini_backoff_stops_within_seconds_and_the_rerun_pays_nothing_twice(
        tmp_path, med_models):
    """Another command, another wait: `run med-edit` whose Gemini answers 429 for the second
    batch waits minutes in the client's backoff; SIGTERM ends it within seconds (exit 143), every
    paid edit is stored, and the re-run sends no request for an edit already paid for."""
    import yaml

    from pairsmith.flows.med_edit_config import MedEditConfig
    from tests.flows.test_med_edit import _edits, _roles

    vlm, clip = med_models
    folder = tmp_path / "photos"
    folder.mkdir()
    rows = []
    for i in range(8):
        img = Image.new("RGB", (160, 120), (30 * i, 200 - 20 * i, 90))
        img.save(folder / f"photo{i}.png")
        rows.append({"image": f"photo{i}.png", "caption": f"A red ball on table {i}."})
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(r) for r in rows))
    import hashlib

    shas = [hashlib.sha256((folder / f"photo{i}.png").read_bytes()).hexdigest() for i in range(8)]
    env = {**os.environ, "GEMINI_API_KEY": "stop-test-key"}
    with FakeGemini() as server:
        server.script.update({sha: "429x1000" for sha in shas[4:]})
        config = MedEditConfig.model_validate(dict(
            db=str(tmp_path / "med.lance"),
            sources={"folder": {"images_dir": str(folder), "captions": str(captions)}},
            batch_size=4,
            **_roles(server),  # MED's model roles on the fake server, answering in each figure's format
            clip={"model_name": clip.model_name, "pretrained": str(clip.weights), "model_config_file": str(clip.config_file)},
            editor={"base_url": server.base_url, "retry_attempts": 20, "retry_initial_delay": 30.0,
                    "retry_max_delay": 60.0},
        ))
        path = tmp_path / "med.yaml"
        path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
        cmd = [PAIRSMITH, "run", "med-edit", "--config", str(path)]
        cli = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, cwd=tmp_path, env=env)
        try:
            deadline = time.monotonic() + 400
            while not any(r.status == 429 for r in server.log):  # a request is in backoff
                assert cli.poll() is None, cli.communicate()
                assert time.monotonic() < deadline, "no request reached the fake Gemini in time"
                time.sleep(0.2)
            time.sleep(1.0)
            elapsed, err, children = _stop(cli, signal.SIGTERM)
        finally:
            if cli.poll() is None:
                cli.kill()
        assert cli.returncode == 143, err[-2000:]
        assert "pairsmith: stopping (SIGTERM)" in err
        assert elapsed < STOP_BOUND, f"SIGTERM took {elapsed:.1f} s"
        assert not _alive(children), "a child process outlived the CLI"
        paid = {r.image_sha for r in _edits(server) if r.status == 200}
        assert PairStore(config.db).count("edits") == len(paid)  # every paid edit was kept

        server.script.clear()  # Gemini is back
        rerun = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
        answered = [r.image_sha for r in _edits(server) if r.status == 200]
    assert len(answered) == len(set(answered)) == 8, "an edit paid for before the stop was requested again"
