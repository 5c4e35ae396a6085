"""Issue 22, kind 8 beyond exports: failed runs remove their own tags and empty run folders, a flow
run killed with ``kill -9`` is marked CRASHED by the next run, and Ray workers do not outlive the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pairsmith.flows.cli.main import main
from pairsmith.storage.store import PairStore
from pairsmith.storage.versions import list_tags
from tests.synthetic_db import SyntheticRun, build


@pytest.fixture
def db(tmp_path) -> str:
    store = PairStore(str(tmp_path / "db.lance"))
    build(store, SyntheticRun(unique_bytes=100), 20, batch_pairs=10)
    return store.uri


@pytest.fixture
def broken_model(tmp_path) -> Path:
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_vl"}')  # loads nothing: no weights, no processor
    return folder


def test_a_failed_finetune_removes_its_tag_and_its_empty_run_folder(db, broken_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({"method": "sft", "db": db, "model_id": str(broken_model),
                                      "runtime": {"device": "cpu"}, "output_dir": str(tmp_path / "runs" / "mine"),
                                      "train": {"max_steps": 1}}))
    assert main(["finetune", "--config", str(config)]) != 0
    assert list_tags(PairStore(db)) == {}  # no finetune-* tag pins versions for a run that left nothing
    assert not (tmp_path / "runs").exists()  # the folders it created, empty, are gone


def test_an_evaluation_that_answers_nothing_removes_its_tag(db, broken_model, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code = main(["evaluate", "--db", db, "--model", str(broken_model), "--split", "test", "--task", "grounding",
                 "--limit", "2", "--device", "cpu"])
    assert code != 0
    assert not [t for t in list_tags(PairStore(db)) if t.startswith("evaluate-")]


def test_finetune_output_dir_inside_the_database_is_refused(db, tmp_path, capsys):
    config = tmp_path / "sft.yaml"
    config.write_text(yaml.safe_dump({"method": "sft", "db": db, "model_id": "x/y", "output_dir": f"{db}/runs"}))
    before = sorted(p.name for p in Path(db).iterdir())
    assert main(["finetune", "--config", str(config)]) == 2
    assert "inside the database" in capsys.readouterr().err
    assert sorted(p.name for p in Path(db).iterdir()) == before
