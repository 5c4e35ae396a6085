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
    # another case of the kind: a file where the runs folder should be is refused, not written into
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    config.write_text(yaml.safe_dump({"method": "sft", "db": db, "model_id": "x/y", "output_dir": str(mine)}))
    assert main(["finetune", "--config", str(config)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err and mine.read_text() == "mine"


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_flow_run_left_running_by_a_killed_process_is_marked_crashed_by_the_next_run():
    import time

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from pairsmith.flows.engine.flow_runs import OWNER_TAG, claim_run, run_tag
    from pairsmith.storage.process_owner import host_name

    @flow(name="leftover-probe")
    def probe(run_id: str) -> list[str]:
        return claim_run(run_id)

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        now = int(time.time())
        with get_client(sync_client=True) as client:
            dead = client.create_flow_run(probe, tags=[run_tag("run-x"), f"{OWNER_TAG}{host_name()}:{_dead_pid()}:{now}"],
                                          state=Running())
            alive = client.create_flow_run(probe, tags=[run_tag("run-x"), f"{OWNER_TAG}{host_name()}:{sleeper.pid}:{now + 5}"],
                                           state=Running())
            other = client.create_flow_run(probe, tags=[run_tag("run-y"), f"{OWNER_TAG}{host_name()}:{_dead_pid()}:{now}"],
                                           state=Running())
        marked = probe("run-x")
        with get_client(sync_client=True) as client:
            states = {name: client.read_flow_run(run.id).state for name, run in
                      (("dead", dead), ("alive", alive), ("other", other))}
        assert marked == [str(dead.id)]
        assert states["dead"].type.value == "CRASHED" and "is gone" in states["dead"].message
        assert states["alive"].type.value == "RUNNING"  # another process still working on it
        assert states["other"].type.value == "RUNNING"  # another pairsmith run: not this run's business
    finally:
        sleeper.kill()
        sleeper.wait()


def _gone_within(pids: list[int], seconds: float) -> bool:
    import time

    from pairsmith.storage.process_owner import process_started

    deadline = time.time() + seconds
    while time.time() < deadline:
        if all(process_started(p) is None for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_the_watchdog_ends_every_process_the_cli_started_when_the_cli_is_killed(tmp_path):
    """A stand-in for a local Ray: a child that ignores SIGTERM and a grandchild, like raylet's workers."""
    import json
    import os
    import signal

    import psutil

    program = (
        "import subprocess, sys, time, json\n"
        "from pairsmith.flows.engine.task_runners import _start_watchdog\n"
        "dog = _start_watchdog()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import signal, subprocess, sys, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, \"-c\", \"import time; time.sleep(120)\"]); time.sleep(120)'])\n"
        "time.sleep(1.5)\n"
        "print(json.dumps({'dog': dog.pid}), flush=True)\n"
        "time.sleep(120)\n")
    cli = subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, text=True)
    dog = json.loads(cli.stdout.readline())["dog"]
    below = [p.pid for p in psutil.Process(cli.pid).children(recursive=True) if p.pid != dog]
    assert len(below) == 2  # the child and the grandchild
    os.kill(cli.pid, signal.SIGKILL)
    cli.wait()
    assert _gone_within(below, 10)  # SIGTERM ignored: SIGKILL after the grace period
    assert _gone_within([dog], 5)  # and the watchdog itself ends


def test_a_bench_run_on_a_temporary_database_leaves_no_folder(broken_model, tmp_path, capsys, monkeypatch):
    import tempfile

    from tests.conftest import SHARED_DATA, SHARED_DATA_HELP

    bench_json = SHARED_DATA / "med_bench_sample" / "MED_bench_sample.json"
    if not bench_json.exists():
        pytest.skip(f"no MED benchmark sample: {SHARED_DATA_HELP}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code = main(["bench", "med", "--json", str(bench_json), "--model", str(broken_model), "--device", "cpu",
                 "--limit", "2"])
    assert code != 0  # the model cannot load
    assert not list(scratch.glob("pairsmith-bench-*"))  # the temporary database went with the run
