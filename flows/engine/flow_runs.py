"""A flow run killed with ``kill -9`` stays RUNNING in Prefect: the next run of the same pairsmith run marks it CRASHED.

A process killed outright cannot tell Prefect it ended, and Prefect's server marks a run crashed
only when a worker's heartbeat says so; a run started from the CLI has none. So every resumable
flow calls ``claim_run(run_id)`` when it starts: its flow run gets two tags,

* ``pairsmith-run:<run id>``: the pairsmith run (same config, same id) it works on;
* ``pairsmith-owner:<host>:<pid>:<unix start time>``: the process running it;

and every *other* flow run with the same ``pairsmith-run`` tag still in state RUNNING whose owner is
gone (``storage/process_owner.py``: its pid is gone or reused on this host; from another host, a
day old) is set to CRASHED, with a message naming the run that found it. A predecessor still
running (another terminal) is left alone. Nothing here ever fails a run: a Prefect error is logged
(at debug level) and the run goes on.
"""

from __future__ import annotations

import logging
import os
import time

log = logging.getLogger("pairsmith.flow_runs")

RUN_TAG = "pairsmith-run:"
OWNER_TAG = "pairsmith-owner:"


def run_tag(run_id: str) -> str:
    return f"{RUN_TAG}{run_id}"


def owner_tag() -> str:
    from pairsmith.storage.process_owner import host_name

    return f"{OWNER_TAG}{host_name()}:{os.getpid()}:{int(time.time())}"


def parse_owner(tags: list[str]) -> tuple[str, int, float] | None:
    """(host, pid, started) from a flow run's owner tag, None when it has none."""
    for tag in tags:
        if tag.startswith(OWNER_TAG):
            host, pid, started = tag.removeprefix(OWNER_TAG).rsplit(":", 2)
            if pid.isdigit() and started.isdigit():
                return host, int(pid), float(started)
    return None


def claim_run(run_id: str, store=None, flow: str | None = None, items: int | None = None) -> list[str]:
    """Tag the current flow run as working on ``run_id`` and mark its dead predecessors CRASHED;
    returns the ids of the flow runs marked (outside a flow run, none). With ``store``, ``flow`` and
    ``items`` (how many items this start asks for), also record the start in the ``run_starts``
    table, which ``stats`` compares with the batches stored to tell a run that stopped early."""
    if store is not None and flow is not None and items is not None:
        record_start(store, run_id, flow, items)
    try:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        if context is None or context.flow_run is None:
            return []
        return _claim(context.flow_run, run_id)
    except Exception as err:  # bookkeeping only: never the reason a run fails
        log.debug("could not check earlier flow runs of %s in Prefect: %s", run_id, err)
        return []


def _claim(me, run_id: str) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, FlowRunFilterTags,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.states import Crashed

    from pairsmith.storage.process_owner import owner_is_gone

    key = run_tag(run_id)
    marked = []
    with get_client(sync_client=True) as client:
        mine = [t for t in (me.tags or []) if not t.startswith(OWNER_TAG)]
        client.update_flow_run(me.id, tags=sorted({*mine, key, owner_tag()}))
        running = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[key]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))),
            sort=FlowRunSort.START_TIME_DESC, limit=200)
        for run in running:
            if run.id == me.id:
                continue
            owner = parse_owner(list(run.tags or []))
            if owner is None or not owner_is_gone(*owner):
                continue
            host, pid, _ = owner
            client.set_flow_run_state(run.id, Crashed(
                message=f"process {pid} on {host} is gone (killed?); found by flow run {me.name} of the same "
                        f"pairsmith run {run_id}"), force=True)
            log.info("flow run %s of %s was left RUNNING by process %d on %s, which is gone: marked CRASHED",
                        run.name, run_id, pid, host)
            marked.append(str(run.id))
    return marked


def record_start(store, run_id: str, flow: str, items: int) -> None:
    """Upsert ``run_id``'s row in ``run_starts`` (its latest start). Bookkeeping: a failure is logged."""
    from pairsmith.storage.process_owner import host_name
    from pairsmith.storage.schemas import RunStartRow, utc_now

    try:
        store.upsert("run_starts", [RunStartRow(run_id=run_id, flow=flow, items=int(items), host=host_name(),
                                                pid=os.getpid(), created_at=utc_now())])
    except Exception as err:  # never the reason a run fails
        log.warning("could not record the start of run %s: %s", run_id, err)
