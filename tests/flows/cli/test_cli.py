"""The ``pairsmith`` command: errors are one line and write nothing; the verbs work end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pairsmith.flows.cli.main import main

ROOT = Path(__file__).resolve().parents[3]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bad_inputs(tmp_path):
    not_a_dir = tmp_path / "file.lance"
    not_a_dir.write_text("not a database")
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps({"objects": [
        {"shape": "cube", "color": "pink", "size": "large", "material": "metal", "position": [0, 0]}
    ]}))
    return {"file": str(not_a_dir), "scene": str(scene), "db": str(tmp_path / "fresh.lance")}


@pytest.mark.parametrize(
    "args, expected",
    [
        (["render", "--device", "tpu", "--db", "{db}"], "Invalid value for '--device': 'tpu' is not one of 'cpu', 'gpu'"),
        (["render", "--kind", "explode", "--db", "{db}"], "Invalid value for '--kind'"),
        (["render", "--pairs", "0", "--db", "{db}"], "Invalid value for '--pairs'"),
        (["render", "--colour", "red", "--db", "{db}"], "No such option '--colour'"),
        (["render", "--db", "{file}"], "is a file, not a database folder"),
        (["render", "--db", "ftp://host/db"], "unsupported URI scheme 'ftp'"),
        (["render", "--scenes", "{scene}", "--db", "{db}"], "objects[0].color: Input should be 'blue'"),
        (["render", "--min-changes", "3", "--max-changes", "2", "--db", "{db}"], "min_changes 3 > max_changes 2"),
        (["render", "--config", "{db}.yaml", "--db", "{db}"], "no such file"),
        (["stats", "--db", "{db}", "--run", "nope"], "--run 'nope': no such run"),
        (["export", "--format", "csv", "--out", "{db}-out"], "Invalid value for '--format'"),
    ],
)
def test_bad_input_is_one_line_nonzero_and_writes_nothing(capsys, bad_inputs, args, expected):
    args = [a.format(**bad_inputs) for a in args]
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("pairsmith: error: ")
    assert expected in err
    assert not Path(bad_inputs["db"]).exists()


def test_a_failure_no_command_foresaw_is_one_line_and_exit_1(capsys, tmp_path, monkeypatch):
    from pairsmith.storage.schemas import PairRow, utc_now
    from pairsmith.storage.store import PairStore

    db = str(tmp_path / "db.lance")
    PairStore(db).upsert("pairs", [PairRow(pair_id="p", run_id="r", method="m", width=1, height=1,
                                           status="kept", created_at=utc_now())])

    def broken(self):
        raise RuntimeError("lance error: Not found: _versions/7.manifest,\n /home/runner/work/lance/lance/rust/"
                           "lance-io/src/local.rs:273:40\n  while opening")

    monkeypatch.setattr(PairStore, "runs", broken)
    code, out, err = run_cli(capsys, "stats", "--db", db)
    assert code == 1
    assert err == ("pairsmith: error: RuntimeError: lance error: Not found: _versions/7.manifest while opening "
                   "(PAIRSMITH_TRACEBACK=1 shows where)\n")  # one line, without Lance's Rust source location
    monkeypatch.setenv("PAIRSMITH_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="7.manifest"):
        main(["stats", "--db", db])


def test_config_file_values_are_validated_with_their_source(capsys, tmp_path):
    config = tmp_path / "render.yaml"
    config.write_text("pairs: 3\nrender:\n  samples: -1\n")
    code, _, err = run_cli(capsys, "render", "--config", str(config), "--db", str(tmp_path / "db"))
    assert code == 2 and f"{config}: render.samples: Input should be greater than or equal to 1" in err


@pytest.mark.slow
def test_render_stats_export_and_contact_sheet(capsys, tmp_path):
    db = str(tmp_path / "cli.lance")
    code, out, _ = run_cli(capsys, "render", "--pairs", "3", "--db", db, "--max-changes", "2", "--batch-size", "2")
    assert code == 0
    assert "Stored 3 pairs" in out and db in out
    funnel_lines = [line for line in out.splitlines() if line.split()[:1] in (["scene_plan"], ["render"], ["visibility"], ["dig_samples"])]
    assert [line.split()[0] for line in funnel_lines] == ["scene_plan", "render", "visibility", "dig_samples"]
    assert funnel_lines[0].split()[1:3] == ["3", "3"]

    code, out, _ = run_cli(capsys, "stats", "--db", db)
    assert code == 0 and [line.split()[0] for line in out.splitlines()[2:]] == ["scene_plan", "render", "visibility", "dig_samples"]
    code, listing, _ = run_cli(capsys, "stats", "--db", db, "--list")
    run_id = listing.split()[0]
    assert code == 0 and run_id.startswith("dig-render-") and f"run {run_id}" in out

    code, out, _ = run_cli(capsys, "export", "--db", db, "--format", "sharegpt", "--out", str(tmp_path / "x"), "--task", "grounding")
    assert code == 0 and "Wrote" in out
    records = json.loads((tmp_path / "x" / "sharegpt.json").read_text())
    assert records and all("differs between them" in r["messages"][0]["content"] for r in records)

    sheet = tmp_path / "sheet.png"
    code, out, _ = run_cli(capsys, "contact-sheet", "--db", db, "--out", str(sheet), "--n", "2")
    assert code == 0 and "Drew 2 pairs" in out and sheet.exists()


def test_help_does_not_import_the_heavy_stack():
    code = ("import sys, pairsmith.flows.cli.main; "
            "print(sorted(m for m in ('prefect', 'lancedb', 'bpy', 'torch', 'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.slow
def test_console_script_renders_and_a_second_identical_run_adds_nothing(tmp_path):
    """The README's main job as a user types it, in a fresh process with its own Prefect home."""
    exe = Path(sys.executable).with_name("pairsmith")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home")}
    env.pop("PREFECT_API_URL", None)
    db = tmp_path / "data" / "pairsmith.lance"
    cmd = [str(exe), "render", "--pairs", "2", "--db", str(db)]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "Stored 2 pairs" in first.stdout and "rendering pairs" in first.stderr
    from pairsmith.storage.store import PairStore

    counts = {t: PairStore(str(db)).count(t) for t in ("pairs", "regions", "samples")}
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "1 of 1 batches were already stored" in second.stdout
    assert {t: PairStore(str(db)).count(t) for t in counts} == counts
    assert counts["pairs"] == 2


def test_contact_sheet_draws_pairs_with_red_boxes(capsys, rendered_run, tmp_path):
    sheet = tmp_path / "sheet.png"
    code, _, _ = run_cli(capsys, "contact-sheet", "--db", rendered_run.config.db, "--out", str(sheet), "--n", "4")
    assert code == 0
    img = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
    w = rendered_run.config.render.width
    assert img.shape[1] == 2 * (2 * w + 20) + 3 * 10  # two cells of before|bar|after per row
    red = (img[..., 0] > 200) & (img[..., 1] < 40) & (img[..., 2] < 40)
    assert red.sum() > 100
