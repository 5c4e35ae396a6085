"""Ctrl-C stops a run cleanly, and no child process outlives the CLI (issue 11 cases 17 and 18).

The CLI runs as a user runs it: its own process (group), Prefect's ephemeral API server started by
it. Both tests render tiny pairs so that a batch commits within seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pairsmith.storage.store import PairStore

pytestmark = pytest.mark.slow

PAIRSMITH = str(Path(sys.executable).with_name("pairsmith"))
TINY = ["--pairs", "60", "--batch-size", "3", "--width", "64", "--height", "48", "--samples", "1"]


def _start(db: Path, ignore_sigint: bool = False) -> subprocess.Popen:
    def prepare():  # what a shell does to a job started with `&`: SIGINT ignored
        if ignore_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([PAIRSMITH, "render", *TINY, "--db", str(db)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=prepare)


def _server_of(cli: subprocess.Popen, timeout: float = 240) -> psutil.Process:
    """The ephemeral Prefect API server the CLI started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(cli.pid).children(recursive=True):
            try:
                if "prefect.server.api.server:create_app" in " ".join(child.cmdline()):
                    return child
            except psutil.NoSuchProcess:
                continue
        assert cli.poll() is None, cli.communicate()
        time.sleep(0.2)
    raise AssertionError("the CLI started no Prefect server")


def _wait_for_a_committed_batch(db: Path, cli: subprocess.Popen, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            done = PairStore(str(db)).count("stage_stats")
            if done:
                return done
        assert cli.poll() is None, cli.communicate()
        time.sleep(0.5)
    raise AssertionError("no batch was committed in time")


def test_ctrl_c_ends_the_run_with_130_keeps_committed_batches_and_stops_the_server(tmp_path):
    db = tmp_path / "db"
    cli = _start(db, ignore_sigint=True)  # the hard case: started in the background by a script
    try:
        server = _server_of(cli)
        _wait_for_a_committed_batch(db, cli)
        assert server.is_running(), "the server must survive until the CLI stops it"
        start = time.monotonic()
        os.killpg(cli.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C: the whole process group
        _, err = cli.communicate(timeout=120)
        elapsed = time.monotonic() - start
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "pairsmith: aborted" or "pairsmith: aborted" in err
    assert elapsed < 60
    psutil.wait_procs([server], timeout=10)
    assert not server.is_running(), "Prefect's server outlived the CLI"
    store = PairStore(str(db))
    batches = set(store.read("stage_stats", columns=["batch"]).column("batch").to_pylist())
    assert batches and store.count("pairs") == 3 * len(batches)  # whole batches only, none half-written


def test_kill_9_of_the_cli_never_leaves_the_prefect_server_running(tmp_path):
    cli = _start(tmp_path / "db")
    try:
        server = _server_of(cli)
        cli.send_signal(signal.SIGKILL)  # no atexit, no cleanup of any kind in the CLI
        cli.wait(timeout=30)
        gone, alive = psutil.wait_procs([server], timeout=15)
    finally:
        if cli.poll() is None:
            cli.kill()
    for orphan in alive:
        orphan.kill()
    assert not alive, "Prefect's ephemeral server outlived a kill -9 of the CLI"
