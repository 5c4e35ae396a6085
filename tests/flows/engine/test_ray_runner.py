"""``--runner ray``: render batches on Ray workers, the same rows as the default runner."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pairsmith.flows.cli.main import main
from pairsmith.flows.engine.task_runners import GPU_TAG, RunnerSettings, gpu_task, submit_batch
from tests.conftest import render_run

SMALL = {"render": {"width": 96, "height": 72, "samples": 2}, "sampling": {"max_changes": 2}}


def test_ray_settings_are_checked_before_anything_starts():
    assert RunnerSettings().parallel is False
    assert RunnerSettings(kind="ray", ray_num_cpus=2).ray_init_kwargs() == {"include_dashboard": False, "num_cpus": 2}
    assert RunnerSettings(ray_address="ray://head:10001").kind == "ray"  # a Ray option without a kind means Ray
    with pytest.raises(ValidationError, match="need kind 'ray'"):
        RunnerSettings(kind="inline", ray_address="ray://head:10001")
    with pytest.raises(ValidationError, match="a cluster at ray_address has its own CPUs"):
        RunnerSettings(kind="ray", ray_address="ray://head:10001", ray_num_cpus=4)


def test_cli_ray_options_imply_the_ray_runner_and_conflicts_are_one_line(capsys, tmp_path):
    code = main(["render", "--runner", "inline", "--ray-cpus", "2", "--db", str(tmp_path / "db")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "need kind 'ray', not 'inline'" in err
    code = main(["render", "--ray-address", "ray://head:10001", "--ray-cpus", "2", "--db", str(tmp_path / "db")])
    assert code == 2 and "has its own CPUs" in capsys.readouterr().err  # --ray-* alone selected the Ray runner
    assert not (tmp_path / "db").exists()


def test_gpu_batches_carry_the_gpu_tag_and_ask_ray_for_gpus():
    from prefect import task
    from prefect_ray.context import RemoteOptionsContext

    @task(tags={"render"})
    def work(x: int) -> int:
        return x

    class Recorder:  # stands in for the started RayTaskRunner: records what submit() was given
        def submit(self, task, parameters):
            self.tags, self.options = task.tags, dict(RemoteOptionsContext.get().current_remote_options)

    settings = RunnerSettings(kind="ray", cpus_per_task=2, gpus_per_task=0.5)
    runner = Recorder()
    submit_batch(runner, work, {"x": 1}, settings, on_gpu=True)
    assert runner.tags == {"render", GPU_TAG} and runner.options == {"num_cpus": 2, "num_gpus": 0.5}
    submit_batch(runner, work, {"x": 1}, settings, on_gpu=False)
    assert runner.tags == {"render"} and runner.options == {"num_cpus": 2, "num_gpus": 0}
    assert gpu_task(work, False) is work


def _rows(store) -> dict[str, list]:
    return {
        "pairs": sorted((p["pair_id"], p["status"], p["drop_reason"], p["n_changes"])
                        for p in store.read("pairs").to_pylist()),
        "regions": sorted((r["region_id"], r["pair_id"], tuple(r["box"]), r["status"])
                          for r in store.read("regions").to_pylist()),
        "samples": sorted((s["sample_id"], s["answer"]) for s in store.read("samples").to_pylist()),
        "stage_stats": sorted((s["stat_id"], s["n_in"], s["n_kept"], s["n_dropped"])
                              for s in store.read("stage_stats").to_pylist()),
    }


@pytest.mark.slow
def test_render_on_a_local_ray_with_2_cpus_stores_the_same_rows_as_the_default_runner(tmp_path, monkeypatch):
    from prefect_ray import RayTaskRunner

    submitted = []
    real_submit = RayTaskRunner.submit

    def counting_submit(self, task, parameters, *args, **kwargs):
        submitted.append(task.task_run_name)
        return real_submit(self, task, parameters, *args, **kwargs)

    monkeypatch.setattr(RayTaskRunner, "submit", counting_submit)
    on_ray = render_run(tmp_path / "ray", pairs=5, batch_size=2, runner={"kind": "ray", "ray_num_cpus": 2}, **SMALL)
    inline = render_run(tmp_path / "inline", pairs=5, batch_size=2, **SMALL)

    assert submitted == ["render-0000000-0000002", "render-0000002-0000004", "render-0000004-0000005"]  # <stage>-<batch>
    assert on_ray.summary.run_id == inline.summary.run_id  # the runner is not part of the run
    assert on_ray.summary.pairs_kept == inline.summary.pairs_kept >= 4
    ray_rows, inline_rows = _rows(on_ray.store), _rows(inline.store)
    assert len(ray_rows["pairs"]) == 5 and ray_rows["regions"]
    assert ray_rows == inline_rows
