"""The Prefect flow run's name: pairsmith's run id, so a run in the UI and ``pairsmith stats --run`` match.

Every flow passes ``flow_run_name=pairsmith_run_name``; Prefect calls it when the flow run starts and
it reads the run's ``config`` parameter. Configs name their run with ``run_id()`` (render, imports
through their importer, propose-regions, med-edit, Img-Diff, refilter) or ``run_name()`` (finetune);
a flow without a run id of its own (``maintenance``, ``evaluate``, whose id needs the pinned tables)
gets ``<flow name>-<UTC time>``. A name that cannot be worked out never fails the run.
"""

from __future__ import annotations

from datetime import datetime, timezone


def run_id_of(config) -> str | None:
    """pairsmith's run id for a flow's ``config`` (a pydantic model), or None if it has none."""
    if getattr(config, "importer", None) and hasattr(config, "batch_size"):  # an import: its importer names it
        from pairsmith.tasks.imports import load_importer

        return load_importer(config.importer).run_id(config)
    for name in ("run_id", "run_name"):
        method = getattr(config, name, None)
        if callable(method):
            return method()
    return None


def pairsmith_run_name() -> str:
    """The name of the flow run being started (called by Prefect, no arguments)."""
    from prefect.runtime import flow_run

    try:
        run_id = run_id_of(flow_run.parameters.get("config"))
    except Exception:  # a name is never worth a failed run
        run_id = None
    return run_id or f"{flow_run.flow_name}-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
