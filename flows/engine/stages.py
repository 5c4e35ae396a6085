"""How a flow calls a stage for one batch: the task run named ``<stage>-<batch>``, GPU-tagged if needed.

Stage tasks (``pairsmith.tasks.stage``) carry the stage's name; this names each of their runs after
the batch, so the Prefect UI, ``stage_stats`` and the drop-off table all show the same name.
"""

from __future__ import annotations

from pairsmith.flows.engine.task_runners import gpu_task


def batch_step(task, batch: str, gpu: bool = False):
    """``task`` with its run named ``<task name>-<batch>``; tagged ``gpu`` (a ``tag:gpu`` slot) when
    its model runs on a GPU."""
    return gpu_task(task.with_options(task_run_name=f"{task.name}-{batch}"), gpu)
