"""Where a flow's batch tasks run: in the flow's own thread (the default) or on Ray workers.

Inline is the default: a batch is already the unit of work, and Blender or a model loads once in
the flow's process. ``ray`` runs batches in parallel worker processes, on a local Ray started for
the run or on a cluster (``ray_address``). Every Ray worker is a separate process, so it imports
bpy / loads weights itself, once, and keeps them for later batches; on a cluster, every node needs
pairsmith and its dependencies installed (or a ``runtime_env`` that provides them). A local Ray
comes with a watchdog process (``child_watchdog.py``): if the CLI dies, even by ``kill -9``, it
ends the Ray workers and agents within seconds (Ray's own check takes 60-90 s).

GPU work is marked per task, not per flow: a GPU batch asks Ray for ``gpus_per_task`` GPUs and
carries the Prefect tag ``gpu``. Prefect's task engine holds one slot of the global concurrency
limit ``tag:gpu`` for every running task with that tag, in whichever process runs it, so however
many flows and workers run, at most N GPU tasks run at once once the limit exists
(``prefect gcl create tag:gpu --limit N``). Without the limit, GPU tasks are not throttled.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GPU_TAG = "gpu"
GPU_CONCURRENCY_LIMIT = f"tag:{GPU_TAG}"  # the global concurrency limit Prefect checks for the tag


class RunnerSettings(BaseModel):
    """How a flow runs its batch tasks; never part of a run id (the rows do not depend on it)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["inline", "ray"] = Field(
        "inline", description="inline: one batch at a time in the flow's process; ray: batches in parallel on Ray"
    )
    ray_address: str | None = Field(
        None, description="existing Ray cluster, e.g. ray://head:10001 or 'auto'; default: start a local Ray"
    )
    ray_num_cpus: int | None = Field(None, ge=1, le=4096, description="CPUs of the local Ray (default: all cores)")
    cpus_per_task: float = Field(1.0, gt=0, le=256, description="Ray CPUs each batch task reserves")
    gpus_per_task: float = Field(1.0, ge=0, le=16, description="Ray GPUs each GPU batch task reserves")
    max_pending_batches: int = Field(
        8, ge=1, le=10_000, description="batches submitted ahead of the writer; bounds results held in memory"
    )
    runtime_env: dict[str, Any] | None = Field(
        None, description="Ray runtime_env for the workers, e.g. {'working_dir': '.'} on a cluster"
    )

    @model_validator(mode="after")
    def _ray_options_need_ray(self) -> "RunnerSettings":
        """A Ray address or CPU count without a runner kind means the Ray runner; with kind inline, an error."""
        if "kind" not in self.model_fields_set and (self.ray_address or self.ray_num_cpus):
            object.__setattr__(self, "kind", "ray")
        if self.kind != "ray" and (self.ray_address or self.ray_num_cpus or self.runtime_env):
            raise ValueError(f"ray_address, ray_num_cpus and runtime_env need kind 'ray', not {self.kind!r}")
        if self.ray_address and self.ray_num_cpus:
            raise ValueError("ray_num_cpus sizes a local Ray; a cluster at ray_address has its own CPUs")
        return self

    @property
    def parallel(self) -> bool:
        return self.kind != "inline"

    def ray_init_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"include_dashboard": False}
        if self.ray_num_cpus is not None:
            kwargs["num_cpus"] = self.ray_num_cpus
        if self.runtime_env:
            kwargs["runtime_env"] = self.runtime_env
        return kwargs


def gpu_task(task, on_gpu: bool):
    """The task as a GPU task (tagged, so it takes a ``tag:gpu`` slot) when it runs on a GPU."""
    if not on_gpu:
        return task
    return task.with_options(tags={*task.tags, GPU_TAG})


@contextmanager
def open_task_runner(settings: RunnerSettings) -> Iterator[Any]:
    """A started task runner for ``settings``, or None for inline runs (tasks called directly)."""
    if not settings.parallel:
        yield None
        return
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as err:  # an optional extra on machines that do not scale out
        raise RuntimeError("runner 'ray' needs prefect-ray and ray: pip install -e '.[ray]'") from err
    runner = RayTaskRunner(address=settings.ray_address, init_kwargs=settings.ray_init_kwargs())
    watchdog = _start_watchdog() if settings.ray_address is None else None  # a local Ray: our children
    with warnings.catch_warnings():
        # Ray starts its processes with fork+exec, which lancedb's fork warning cannot tell from a bare fork.
        warnings.filterwarnings("ignore", message="lancedb fork support is experimental")
        runner.__enter__()
    try:
        yield runner
    finally:
        try:
            runner.__exit__(None, None, None)
        finally:
            if watchdog is not None:
                watchdog.terminate()
                watchdog.wait()


def _start_watchdog():
    """``child_watchdog.py`` watching this process: if it dies, even by ``kill -9``, the local Ray's
    workers and agents it started are ended within seconds instead of lingering 60-90 s."""
    import subprocess
    import sys
    from pathlib import Path

    if not Path("/proc/self/stat").exists():  # the watchdog reads Linux's /proc
        return None
    script = Path(__file__).with_name("child_watchdog.py")
    return subprocess.Popen([sys.executable, str(script), str(os.getpid())], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def submit_batch(runner, task, parameters: dict[str, Any], settings: RunnerSettings, on_gpu: bool = False):
    """Submit one batch task to ``runner`` with its Ray resources; returns a Prefect future."""
    from prefect_ray.context import remote_options

    resources = {"num_cpus": settings.cpus_per_task, "num_gpus": settings.gpus_per_task if on_gpu else 0}
    with remote_options(**resources):
        return runner.submit(gpu_task(task, on_gpu), parameters)
