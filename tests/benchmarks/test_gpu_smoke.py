"""``benchmarks/gpu_smoke.py --cpu``: every GPU code path once, on the CPU, so the GPU check cannot rot.

The script runs as users run it (a subprocess), on tiny models it builds itself; each test reads its
printed lines (``PATH ok|fail SECONDS PEAK_GPU_MEM_MB key=value ...``) and the files it wrote.
"""

from __future__ import annotations

import json
import os
import runpy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_smoke.py"
PATHS = runpy.run_path(str(SCRIPT))["PATHS"]  # the script's own list (its main() does not run)


def _run(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict[str, tuple[str, dict[str, str]]]]:
    # The script sets its own caches and Prefect home under --out; nothing of this process leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HF_", "CUDA_", "YOLO_"))}
    env["OMP_NUM_THREADS"] = "1"  # tiny models gain nothing from threads on a busy 2-core machine
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True,
                          env=env, timeout=1200)
    lines = {}
    for line in proc.stdout.splitlines():  # libraries print too (ultralytics' settings note): take ours
        if line.split(" ", 1)[0] not in PATHS:
            continue
        path, status, seconds, peak, *facts = shlex.split(line)
        assert status in ("ok", "fail") and float(seconds) >= 0 and float(peak) == 0.0, line  # no GPU on the CPU
        lines[path] = (status, dict(fact.split("=", 1) for fact in facts))
    return proc, lines


@pytest.mark.slow
def test_every_gpu_path_runs_on_the_cpu_and_names_its_device_and_dtype(tmp_path):
    out = tmp_path / "smoke"
    proc, lines = _run(out, "--cpu", "--skip", "dig-render")
    expected = [p for p in PATHS if p != "dig-render"]
    assert list(lines) == expected, proc.stdout + proc.stderr[-3000:]
    for path, (status, facts) in lines.items():
        assert status == "ok", (path, facts, (out / "errors" / f"{path}.txt").read_text()[-2000:])
        assert facts["device"] == "cpu", (path, facts)
    assert proc.returncode == 0
    dtypes = {path: facts["dtype"] for path, (_, facts) in lines.items()}
    assert dtypes["p2p-bf16"] == dtypes["p2p-bf16-identical"] == dtypes["inpaint-bf16"] == "bfloat16"
    assert dtypes["p2p-fp16"] == dtypes["p2p-fp16-identical"] == dtypes["inpaint-fp16"] == "float16"
    assert {dtypes[p] for p in expected if "16" not in p} == {"float32"}  # --cpu without --dtype: fp32
    assert lines["p2p-fp16"][1]["vae_decode_dtype"] == "float32"  # the SDXL VAE decodes fp16 latents in fp32
    assert lines["p2p-bf16-identical"][1]["max_pixel_diff"] == lines["p2p-fp16-identical"][1]["max_pixel_diff"] == "0"
    assert lines["fastsam"][1]["predictor_fp16"] == "false"
    assert lines["sft"][1]["steps"] == lines["grpo"][1]["steps"] == "2"
    assert lines["sft"][1]["bf16"] == lines["sft"][1]["fp16"] == "false"  # no mixed precision on the CPU
    assert lines["ray"][1]["num_gpus"] == "0" and lines["ray"][1]["ray_gpu_ids"] == "[]"

    results = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["path"] for r in results] == expected and all(r["ok"] for r in results)
    for written in ("p2p-bf16/pair0-before.png", "p2p-fp16/pair1-after.png", "inpaint-fp16/inpainted0.png",
                    "sft/adapter/adapter_model.safetensors", "grpo/adapter/adapter_model.safetensors"):
        assert (out / written).is_file(), written
    assert not (out / "errors").exists()


@pytest.mark.slow
def test_the_render_path_renders_two_pairs_in_its_own_process(tmp_path):
    out = tmp_path / "smoke"
    proc, lines = _run(out, "--cpu", "--only", "dig-render", "--render-size", "64x48", "--render-samples", "2")
    assert proc.returncode == 0, proc.stdout + (out / "dig-render.log").read_text()[-3000:]
    status, facts = lines["dig-render"]
    assert status == "ok" and facts["device"] == "cpu" and facts["cycles_device"] == "CPU"
    assert int(facts["pairs_kept"]) + int(facts["pairs_dropped"]) == 2 and facts["pairs_failed"] == "0"
    assert (out / "dig-render" / "pairsmith.lance").is_dir()


@pytest.mark.slow
def test_a_failing_path_prints_a_fail_line_and_the_others_still_run_and_a_rerun_starts_clean(tmp_path):
    out = tmp_path / "smoke"
    (out / "models").mkdir(parents=True)
    (out / ".pairsmith-gpu-smoke").touch()  # the folder of an earlier smoke run, which it may rewrite
    (out / "models" / "clip").write_text("a file where the tiny CLIP folder goes")
    proc, lines = _run(out, "--cpu", "--only", "clip", "caption-llm")
    assert proc.returncode == 1
    assert lines["clip"][0] == "fail" and lines["clip"][1]["error"].startswith("FileExistsError")
    assert lines["caption-llm"][0] == "ok" and lines["caption-llm"][1]["device"] == "cpu"
    assert "Traceback" in (out / "errors" / "clip.txt").read_text()
    assert "1 failed: clip" in proc.stdout

    (out / "models" / "clip").unlink()
    proc, lines = _run(out, "--cpu", "--only", "clip", "caption-llm")
    assert proc.returncode == 0 and [status for status, _ in lines.values()] == ["ok", "ok"]
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert not (out / "errors" / "clip.txt").exists()


def test_without_a_cuda_gpu_it_says_to_use_cpu_and_creates_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the script would run every path on it")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "smoke")], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "run with --cpu" in proc.stderr
    assert not (tmp_path / "smoke").exists()


def test_a_gpu_render_without_that_gpu_backend_says_what_blender_found(tmp_path):
    """In a subprocess: a failed Blender set-up would leave this process's Blender session half reset."""
    code = (
        "from pairsmith.scenes.blender_render import BlenderRenderer, RenderSettings, cycles_gpu_devices\n"
        "if cycles_gpu_devices('CUDA'):\n"
        "    print('SKIP: Cycles sees a CUDA GPU here')\n"
        "    raise SystemExit(0)\n"
        "assert cycles_gpu_devices('METAL') == []  # macOS only: an empty list here, not an error\n"
        "try:\n"
        "    BlenderRenderer(RenderSettings(device='gpu')).prepare()\n"
        "except RuntimeError as err:\n"
        "    print('ERROR:', err)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    if "SKIP:" in proc.stdout:
        pytest.skip("Cycles sees a CUDA GPU on this machine")
    assert proc.returncode == 0, proc.stderr[-2000:]
    error = next(line for line in proc.stdout.splitlines() if line.startswith("ERROR:"))
    assert "Blender sees no CUDA device (other GPU backends: none)" in error and "device 'cpu'" in error
