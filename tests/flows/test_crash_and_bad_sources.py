"""Resilience: kill -9 mid-run, broken source images, two writers at once, a renderer that raises."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairsmith.flows.cli.main import main
from pairsmith.flows.dig_render_config import DigRenderConfig
from pairsmith.flows.engine.funnel import run_funnel
from pairsmith.flows.engine.run_outcome import EXIT_ITEM_ERRORS
from pairsmith.storage.image_folder import ImageFolderConfig, read_image_folder
from pairsmith.storage.store import PairStore, sql_literal
from pairsmith.tasks.dig.plan_scenes import dig_pair_id

PAIRSMITH = str(Path(sys.executable).with_name("pairsmith"))
SMALL = ["--width", "96", "--height", "72", "--samples", "2", "--max-changes", "2"]
SMALL_CONFIG = {"render": {"width": 96, "height": 72, "samples": 2}, "sampling": {"max_changes": 2}}
TABLE_KEYS = {"pairs": "pair_id", "regions": "region_id", "samples": "sample_id", "stage_stats": "stat_id"}


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300"}
    env.pop("PREFECT_API_URL", None)
    return env


def _assert_run_is_whole(store: PairStore, config: DigRenderConfig) -> None:
    """Every pair of the run stored once, the funnel adds up and matches the stored rows."""
    run = f"run_id = {sql_literal(config.run_id())}"
    for table, key in TABLE_KEYS.items():
        ids = store.read(table, columns=[key]).column(key).to_pylist()
        assert len(ids) == len(set(ids)), f"duplicate ids in {table}"
    pair_ids = set(store.read("pairs", where=run, columns=["pair_id"]).column("pair_id").to_pylist())
    assert pair_ids == {dig_pair_id(config.content_key(), i) for i in range(config.pairs)}
    funnel = run_funnel(store, config.run_id())
    assert funnel[0].n_in == config.pairs
    for stage in funnel:
        assert stage.n_in == stage.n_kept + stage.n_dropped and stage.n_dropped == sum(stage.reasons.values())
    for earlier, later in zip(funnel, funnel[1:]):
        assert later.n_in == earlier.n_kept
    kept = store.read("pairs", where=f"{run} AND status = 'kept'").to_pylist()
    assert len(kept) == funnel[-1].n_kept
    assert store.count("pairs", f"{run} AND status = 'dropped'") == config.pairs - len(kept)
    samples = store.read("samples", where=run, columns=["pair_id"]).column("pair_id").to_pylist()
    regions = store.read("regions", where=f"{run} AND status = 'kept'", columns=["pair_id"]).column("pair_id").to_pylist()
    for pair in kept:  # no kept pair lost its samples or boxes
        assert samples.count(pair["pair_id"]) >= 2
        assert regions.count(pair["pair_id"]) == pair["n_changes"]
    assert store.count("stage_stats", run) == len(config.batches()) * len(funnel)


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path):
    db = tmp_path / "db"
    args = ["--pairs", "16", "--batch-size", "2", "--db", str(db), *SMALL]
    config = DigRenderConfig(db=str(db), pairs=16, batch_size=2, **SMALL_CONFIG)
    delay = random.uniform(0.0, 1.0)
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen([PAIRSMITH, "render", *args], cwd=tmp_path, env=_env(tmp_path / "home"),
                                stdout=log, stderr=subprocess.STDOUT)
        store = PairStore(str(db))
        deadline = time.monotonic() + 400
        while not store.completed_batches(config.run_id()):
            assert proc.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "no batch was stored within 400 s"
            time.sleep(0.2)
        time.sleep(delay)  # a random point after the first batch: mid-render or mid-write
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(60) == -signal.SIGKILL
    done_at_kill = store.completed_batches(config.run_id())
    assert 1 <= len(done_at_kill) < 8, f"killed {delay:.2f} s after the first batch, {len(done_at_kill)} done"

    again = subprocess.run([PAIRSMITH, "render", *args], cwd=tmp_path, env=_env(tmp_path / "home"),
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(done_at_kill)} of 8 batches were already stored" in again.stdout
    _assert_run_is_whole(store, config)


@pytest.mark.slow
def test_two_runs_writing_one_database_at_once_lose_nothing(tmp_path):
    db = tmp_path / "shared.lance"
    procs = []
    for seed in (1, 2):
        cmd = [PAIRSMITH, "render", "--pairs", "6", "--batch-size", "2", "--seed", str(seed), "--db", str(db), *SMALL]
        # Each process its own Prefect home, as on two machines; the database is the shared part.
        procs.append(subprocess.Popen(cmd, cwd=tmp_path, env=_env(tmp_path / f"home-{seed}"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err[-2000:]
        assert "Stored 6 pairs" in out
    store = PairStore(str(db))
    configs = [DigRenderConfig(db=str(db), pairs=6, batch_size=2, seed=s, **SMALL_CONFIG) for s in (1, 2)]
    assert {r["run_id"] for r in store.runs()} == {c.run_id() for c in configs}
    for config in configs:
        _assert_run_is_whole(store, config)
    assert store.count("pairs") == 12 and store.count("stage_stats") == 2 * 3 * 4


def test_a_renderer_that_raises_mid_batch_gives_reason_rows_exit_3_and_a_rerun_retries(capsys, tmp_path, monkeypatch):
    from pairsmith.scenes.blender_render import BlenderRenderer

    real = BlenderRenderer.render_color
    calls = {"n": 0}

    def failing_third_render(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # inside the first batch, after its first pair
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BlenderRenderer, "render_color", failing_third_render)
    db = tmp_path / "db"
    args = ["render", "--pairs", "6", "--batch-size", "3", "--db", str(db), *SMALL]
    config = DigRenderConfig(db=str(db), pairs=6, batch_size=3, **SMALL_CONFIG)
    code = main(args)
    out, err = capsys.readouterr()
    assert code == EXIT_ITEM_ERRORS
    assert "1 item failed with errors (render_error (1))" in err and "run the same command again" in err
    assert "Stored 6 pairs" in out  # the run went on past the failure
    store = PairStore(str(db))
    failed = store.read("pairs", where="drop_reason = 'render_error'").to_pylist()
    assert len(failed) == 1 and failed[0]["status"] == "dropped" and failed[0]["drop_stage"] == "render"
    assert failed[0]["drop_detail"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert failed[0]["pair_id"] in {dig_pair_id(config.content_key(), i) for i in range(3)}
    second_batch = {dig_pair_id(config.content_key(), i) for i in range(3, 6)}
    assert second_batch <= {p["pair_id"] for p in store.read("pairs").to_pylist()}
    _assert_run_is_whole(store, config)

    monkeypatch.setattr(BlenderRenderer, "render_color", real)  # the GPU is back
    code = main(args)
    out, _ = capsys.readouterr()
    assert code == 0 and "1 of 2 batches were already stored" in out  # only the failed batch was redone
    assert store.count("pairs", "drop_reason = 'render_error'") == 0
    _assert_run_is_whole(store, config)


# -- a source folder with broken images ------------------------------------------------------------


def _png(width: int, height: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A decompression bomb's shape: a valid PNG header claiming width x height, almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def broken_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    (folder / "good.png").write_bytes(_png(64, 48))
    (folder / "sub" / "good.jpg").write_bytes(_jpeg(80, 60))
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "not-an-image.png").write_bytes(b"GIF? no: " * 40)
    (folder / "truncated.png").write_bytes(_png(200, 150)[:3000])
    (folder / "truncated.jpg").write_bytes(_jpeg(200, 150)[:2000])
    damaged = bytearray(_png(100, 80))
    damaged[200:260] = b"\xff" * 60
    (folder / "damaged.png").write_bytes(bytes(damaged))
    (folder / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    (folder / "large.png").write_bytes(_png(400, 300))
    (folder / "notes.txt").write_text("not an image suffix: ignored")
    return folder


EXPECTED_DROPS = {
    "empty.jpg": "source_empty_file",
    "not-an-image.png": "source_not_an_image",
    "truncated.png": "source_truncated",
    "truncated.jpg": "source_truncated",
    "damaged.png": "source_corrupt",
    "bomb.png": "source_too_large",
    "large.png": "source_too_large",
    "missing.jpg": "source_missing",
}


def test_broken_images_in_a_source_folder_become_reason_rows(broken_folder, tmp_path):
    captions = tmp_path / "captions.jsonl"
    captions.write_text("\n".join(json.dumps(c) for c in [
        {"file": "good.png", "caption": "Noise on a square."},
        {"file_name": "sub/good.jpg", "caption": "More noise."},
        {"file": "missing.jpg", "caption": "A photo nobody copied."},
    ]))
    scan = read_image_folder(ImageFolderConfig(path=str(broken_folder), captions_path=str(captions), max_pixels=100_000))
    assert {d.path: d.reason for d in scan.drops} == EXPECTED_DROPS
    assert [(i.path, i.width, i.height, i.caption) for i in scan.images] == [
        ("good.png", 64, 48, "Noise on a square."), ("sub/good.jpg", 80, 60, "More noise.")]
    assert "120000 pixels > max_pixels 100000" in next(d.detail for d in scan.drops if d.path == "large.png")
    stats = scan.stats
    assert (stats.n_in, stats.n_kept, stats.n_dropped) == (10, 2, 8) and sum(stats.reasons.values()) == 8

    store = PairStore(str(tmp_path / "db"))  # the reason rows a flow stores for them
    store.upsert("pairs", [d.pair_row("med-edit-test", "med-edit") for d in scan.drops])
    rows = store.read("pairs").to_pylist()
    assert {(r["drop_stage"], r["drop_reason"]) for r in rows} == {("source", r) for r in EXPECTED_DROPS.values()}
    assert all(r["status"] == "dropped" and r["drop_detail"] for r in rows)


def test_coco_captions_and_a_malformed_captions_file(broken_folder, tmp_path):
    coco = tmp_path / "captions.json"
    coco.write_text(json.dumps({"images": [{"id": 7, "file_name": "good.png"}],
                                "annotations": [{"image_id": 7, "caption": "one"}, {"image_id": 7, "caption": "two"}]}))
    scan = read_image_folder(ImageFolderConfig(path=str(broken_folder), captions_path=str(coco), require_caption=True))
    assert [(i.path, i.captions) for i in scan.images] == [("good.png", ["one", "two"])]
    assert {d.path: d.reason for d in scan.drops}["sub/good.jpg"] == "source_no_caption"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"file": "good.png", "caption": "ok"}\n{"file": "good.png"\n')
    with pytest.raises(ValueError, match=r"bad.jsonl' line 2: not valid JSON"):
        read_image_folder(ImageFolderConfig(path=str(broken_folder), captions_path=str(bad)))
