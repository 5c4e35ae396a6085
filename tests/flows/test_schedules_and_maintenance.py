"""Operations: prefect.yaml and the README's schedule commands on a real server, GPU slots,
the maintenance flow, and export tags that reproduce an export."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from pairsmith.flows.cli.main import main
from pairsmith.flows.engine.funnel import read_dropoff_artifact, run_funnel
from pairsmith.flows.maintenance import MaintenanceConfig, maintain_table, maintenance
from pairsmith.storage.compaction import compaction_plan
from pairsmith.storage.ids import stable_id
from pairsmith.storage.schemas import StageStatsRow, utc_now
from pairsmith.storage.store import PairStore
from pairsmith.storage.versions import finish_export, list_tags, pin_for_export, pinned_store
from tests.conftest import render_run

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
SMALL_RENDER = {"width": 96, "height": 72, "samples": 2}


def _prefect_yaml() -> dict:
    return yaml.safe_load((ROOT / "prefect.yaml").read_text())


# -- prefect.yaml ---------------------------------------------------------------------------------


def test_prefect_yaml_passes_prefects_own_deploy_models_and_every_entrypoint_loads():
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    raw = _prefect_yaml()
    model = PrefectYamlModel.model_validate(raw)
    by_name = {}
    for deployment in model.deployments:
        flow = load_flow_from_entrypoint(deployment.entrypoint)
        by_name[f"{flow.name}/{deployment.name}"] = deployment
        assert deployment.work_pool.name in ("cpu", "gpu")
        flow.validate_parameters(deployment.parameters)  # the config validates as the flow's parameter
        for schedule in deployment.schedules or []:
            CronSchedule(cron=schedule.cron, timezone=schedule.timezone)  # Prefect's own cron validation
    assert set(by_name) >= {"dig-render/nightly", "dig-render/gpu", "maintenance/nightly"}
    assert by_name["dig-render/nightly"].schedules and by_name["maintenance/nightly"].schedules
    assert by_name["dig-render/gpu"].work_pool.name == "gpu"
    assert by_name["dig-render/gpu"].parameters["config"]["render"]["device"] == "gpu"


def test_a_scheduled_render_seeds_itself_with_its_night():
    from datetime import date

    from pairsmith.flows.dig_render_config import DigRenderConfig

    nightly = DigRenderConfig(**_prefect_yaml()["deployments"][0]["parameters"]["config"])
    monday, tuesday = (nightly.with_schedule_seed(date(2026, 11, d)) for d in (23, 24))
    assert (monday.seed, tuesday.seed) == (20261123, 20261124)
    assert monday.run_id() != tuesday.run_id()  # a new night, new pairs
    assert nightly.with_schedule_seed(date(2026, 11, 23)).run_id() == monday.run_id()  # a retried night resumes
    assert DigRenderConfig(seed=3).with_schedule_seed(date(2026, 11, 23)).seed == 3  # ad-hoc runs keep theirs


def test_gpu_tasks_hold_a_slot_of_the_tag_gpu_limit_while_they_run():
    from prefect import flow, task
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from pairsmith.flows.engine.task_runners import GPU_CONCURRENCY_LIMIT, gpu_task

    def active() -> int:
        with get_client(sync_client=True) as client:
            return client.read_global_concurrency_limit_by_name(GPU_CONCURRENCY_LIMIT).active_slots

    @task
    def probe() -> int:
        return active()

    @flow
    def gpu_and_cpu() -> tuple[int, int, int]:
        return gpu_task(probe, True)(), gpu_task(probe, False)(), active()

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=GPU_CONCURRENCY_LIMIT, limit=1))
    try:
        assert gpu_and_cpu() == (1, 0, 0)
    finally:
        with get_client(sync_client=True) as client:
            client.delete_global_concurrency_limit_by_name(GPU_CONCURRENCY_LIMIT)


# -- the README's "Run on a schedule" commands against a real server -------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readme_schedule_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- schedule-commands:", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


@pytest.fixture
def prefect_server(tmp_path):
    """``prefect server start`` on a free 127.0.0.1 port with its own home; killed at the end."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": url,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING"}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.read() == b"true":
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "prefect server did not answer within 240 s"
            time.sleep(1)
        yield url, env
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
        log.close()


def _run(args: list[str], env: dict, timeout: int = 300) -> str:
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{shlex.join(args)} -> {done.returncode}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.mark.slow
def test_readme_schedule_commands_deploy_everything_and_a_worker_runs_the_render(prefect_server, tmp_path):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url, env = prefect_server
    commands = _readme_schedule_commands()
    assert commands[0] == "prefect server start &"
    assert commands[1] == "export PREFECT_API_URL=http://127.0.0.1:4200/api"
    worker = commands[-1]
    assert worker == "prefect worker start --pool cpu"
    for command in commands[2:-1]:  # work pools, the GPU limit, prefect deploy --all
        args = shlex.split(command)
        assert args[0] == "prefect"
        _run([PREFECT, *args[1:]], env)

    db = tmp_path / "nightly.lance"
    config = {"db": str(db), "pairs": 3, "batch_size": 2, "render": SMALL_RENDER, "sampling": {"max_changes": 2}}
    started = _run([PREFECT, "deployment", "run", "dig-render/nightly", "--param", f"config={json.dumps(config)}"], env)
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)
    _run([PREFECT, *shlex.split(worker)[1:], "--run-once"], env, timeout=600)

    with temporary_settings({PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        nightly = client.read_deployment_by_name("dig-render/nightly")
        maintenance_deployment = client.read_deployment_by_name("maintenance/nightly")
        gpu = client.read_deployment_by_name("dig-render/gpu")
        limit = client.read_global_concurrency_limit_by_name("tag:gpu")
        table = read_dropoff_artifact(flow_run_id)
    assert run.state.is_completed(), run.state
    assert [s.schedule.cron for s in nightly.schedules] == ["0 2 * * *"]
    assert [s.schedule.cron for s in maintenance_deployment.schedules] == ["30 5 * * *"]
    assert (nightly.work_pool_name, gpu.work_pool_name, maintenance_deployment.work_pool_name) == ("cpu", "gpu", "cpu")
    assert limit.limit == 1

    store = PairStore(str(db))
    (stored_run,) = store.runs()
    funnel = run_funnel(store, stored_run["run_id"])
    assert table is not None
    assert [(r["stage"], r["in"], r["kept"], r["dropped"]) for r in table] == [
        (s.stage, s.n_in, s.n_kept, s.n_dropped) for s in funnel
    ]
    assert table[0]["in"] == 3 and table[-1]["kept"] == store.count("pairs", "status = 'kept'")


# -- maintenance and export tags -----------------------------------------------------------------


def _stat(i: int, run: str = "r") -> StageStatsRow:
    return StageStatsRow(stat_id=stable_id(run, i), run_id=run, flow="test", stage="s", stage_order=0, batch=f"{i:03d}",
                         n_in=i, n_kept=i, n_dropped=0, seconds=0.0, created_at=utc_now())


def _fragments(store: PairStore, table: str) -> list:
    return [f.metadata for f in store.dataset(table).get_fragments()]


def test_maintenance_compacts_cleans_outside_the_window_and_keeps_tagged_versions(tmp_path):
    db = str(tmp_path / "db")
    store = PairStore(db)
    for i in range(4):
        store.upsert("stage_stats", [_stat(i)])
    view, snapshot = pin_for_export(store)
    finish_export(store, snapshot)  # the export is in place: its running tag becomes export-...
    for i in range(4, 8):
        store.upsert("stage_stats", [_stat(i), _stat(0)])  # new rows and a rewritten one

    kept = maintenance(MaintenanceConfig(db=db, keep_versions_days=7)).tables[0]
    assert kept.fragments_after == 1 < kept.fragments_before == kept.fragments_rewritten
    assert kept.versions_after > kept.versions_before and kept.bytes_freed == 0  # nothing is a week old

    held = maintenance(MaintenanceConfig(db=db, keep_versions_days=0)).tables[0]
    assert held.versions_after == 2 and held.tagged_versions == 1  # the tagged version and the latest
    assert held.bytes_freed > 0 and held.bytes_on_disk_after < held.bytes_on_disk_before
    at_tag = pinned_store(store, snapshot.tag).read("stage_stats").to_pylist()
    assert sorted(r["n_in"] for r in at_tag) == [0, 1, 2, 3]
    assert store.count("stage_stats") == 8

    freed = maintenance(MaintenanceConfig(db=db, keep_versions_days=0, drop_export_tags_older_than_days=0)).tables[0]
    assert freed.tags_dropped == [snapshot.tag] and freed.tagged_versions == 0
    assert freed.versions_after == 1 and list_tags(store) == {}
    assert store.count("stage_stats") == 8 and store.duplicate_keys() == {}


def _pair_rows(ids: range, image_kb: int) -> list:
    from pairsmith.storage.schemas import PairRow

    return [PairRow(pair_id=f"p{i:05d}", run_id="r", method="dig-render", image_before=os.urandom(image_kb << 10),
                    width=8, height=8, status="kept", created_at=utc_now()) for i in ids]


def test_maintenance_after_a_small_write_rewrites_only_the_small_fragments(tmp_path):
    """Sized in bytes: with a 2 MiB target, 64 KiB rows make 32-row fragments; big ones stay as they are."""
    store = PairStore(str(tmp_path / "db"))
    for lo in range(0, 64, 4):  # 16 commits of 4 rows
        store.upsert("pairs", _pair_rows(range(lo, lo + 4), 64))
    config = MaintenanceConfig(db=store.uri, keep_versions_days=0, target_fragment_mb=2, tables=["pairs"])
    first = maintain_table(store, "pairs", config)
    assert first.fragments_rewritten == 16 and first.fragments_after == 2  # 2 x 32 rows of 2 MiB
    big = {f.id for f in _fragments(store, "pairs")}

    for lo in range(64, 70, 2):  # a small write: 3 commits
        store.upsert("pairs", _pair_rows(range(lo, lo + 2), 64))
    second = maintain_table(store, "pairs", config)
    assert second.fragments_rewritten == 3 and second.bytes_rewritten < 3 * 2 * 70 << 10
    assert big <= {f.id for f in _fragments(store, "pairs")}  # the 2 MiB fragments were not touched
    assert second.fragments_after == 3 and store.count("pairs") == 70
    data = sum(d.file_size_bytes for f in _fragments(store, "pairs") for d in f.files)
    assert second.bytes_on_disk_after < 1.2 * data  # old versions' files are gone

    plan = compaction_plan(_fragments(store, "pairs"), 2 << 20)
    assert plan.rewrite == [] or not plan.worth_running()


def test_maintain_and_versions_commands(capsys, tmp_path):
    db = str(tmp_path / "db")
    code = main(["maintain", "--db", db])
    assert code == 2 and "no tables yet" in capsys.readouterr().err
    store = PairStore(db)
    for i in range(3):
        store.upsert("stage_stats", [_stat(i)])
    assert main(["maintain", "--db", db, "--keep-days", "0"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"stage_stats\s+\d+ -> 1\s+3 -> 1", out), out
    pin_for_export(store)  # pins and tags the current versions, as an export does first
    assert main(["versions", "--db", db]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("current  stage_stats@") and lines[1].startswith("export-")


@pytest.mark.slow
def test_an_export_tag_reproduces_the_export_after_more_writes_and_maintenance(capsys, tmp_path):
    db = tmp_path / "db"
    render_run(db, pairs=2, render=SMALL_RENDER, sampling={"max_changes": 1})
    first = tmp_path / "first"
    assert main(["export", "--db", str(db), "--format", "llava", "--out", str(first)]) == 0
    tag = re.search(r"tagged (export-\S+):", capsys.readouterr().out).group(1)

    render_run(db, pairs=2, seed=5, render=SMALL_RENDER, sampling={"max_changes": 1})  # another run, more rows
    assert main(["maintain", "--db", str(db), "--keep-days", "0"]) == 0
    again, latest = tmp_path / "again", tmp_path / "latest"
    assert main(["export", "--db", str(db), "--format", "llava", "--out", str(again), "--at", tag]) == 0
    assert main(["export", "--db", str(db), "--format", "llava", "--out", str(latest)]) == 0
    out = capsys.readouterr().out
    assert f"tagged {tag}:" in out  # --at re-uses the tag instead of making a new one

    def records(folder: Path) -> list[dict]:
        return json.loads((folder / "llava.json").read_text())

    assert records(again) == records(first)
    assert sorted(p.name for p in (again / "images").iterdir()) == sorted(p.name for p in (first / "images").iterdir())
    assert len(records(latest)) > len(records(first))
    assert main(["export", "--db", str(db), "--format", "llava", "--out", str(tmp_path / "x"), "--at", "export-nope"]) == 2
    assert "--at 'export-nope': no such tag" in capsys.readouterr().err
