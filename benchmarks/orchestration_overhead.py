"""What Prefect and LanceDB cost per run: a 1,000-item flow whose items do almost nothing.

The flow has the shape of the real ones: per batch, one compute task (here: ``--item-ms`` of
sleep per item, standing in for a model call), then the single writer task (``write_batch``:
merge_insert of one pairs row per item, then the batch's stage stats), a progress-artifact update,
and at the end the funnel read back from LanceDB and published as the ``filter-dropoff`` artifact.
Everything that is not the items' own time is overhead:

* storage: time inside LanceDB upserts (measured around ``PairStore.upsert``);
* Prefect: the rest (task-run state changes, artifacts, the flow run itself).

Overhead is paid per run (about 1 s of it is Prefect's own end-of-run wait, measured with an empty
flow) and per batch (two task runs, two upserts, one artifact update), so its share falls as batches
grow and as items do more work; the table shows where it drops under the 5 % target. Prefect's ephemeral server start-up is paid once per process and printed on
its own line (a worker serving a deployment pays it once, not per run).

    python benchmarks/orchestration_overhead.py --items 1000 --item-ms 20 --batch-sizes 10,50,100,250
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from pairsmith.storage.verdict import KEEP, StageStats  # noqa: E402
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel  # noqa: E402
from pairsmith.flows.engine.progress import RunProgress  # noqa: E402
from pairsmith.storage.ids import stable_id  # noqa: E402
from pairsmith.storage.schemas import PairRow, utc_now  # noqa: E402
from pairsmith.storage.store import PairStore, open_store  # noqa: E402
from pairsmith.tasks.write_batch import write_batch  # noqa: E402

FLOW_NAME = "orchestration-overhead"
TIMERS = {"work": 0.0, "storage": 0.0}


def _timed_upsert(real):
    def upsert(self, name, rows):
        start = time.perf_counter()
        try:
            return real(self, name, rows)
        finally:
            TIMERS["storage"] += time.perf_counter() - start
    return upsert


PairStore.upsert = _timed_upsert(PairStore.upsert)  # measurement only: the same upsert runs


@task(name="score-items", cache_policy=NO_CACHE)
def score_items(indices: range, run_id: str, item_seconds: float) -> tuple[list[PairRow], StageStats]:
    stats = StageStats("score")
    rows = []
    for i in indices:
        start = time.perf_counter()
        time.sleep(item_seconds)  # the item's own work
        TIMERS["work"] += time.perf_counter() - start
        rows.append(PairRow(pair_id=stable_id(FLOW_NAME, run_id, i), run_id=run_id, method="benchmark",
                            width=0, height=0, status="kept", created_at=utc_now()))
        stats.record(KEEP)
    return rows, stats


@flow(name=FLOW_NAME)
def overhead_flow(db: str, items: int, batch_size: int, item_seconds: float) -> str:
    run_id = f"{FLOW_NAME}-{batch_size}"
    store = open_store(db)
    done = store.completed_batches(run_id)
    batches = [range(s, min(s + batch_size, items)) for s in range(0, items, batch_size)]
    with RunProgress(key=f"{FLOW_NAME}-progress", total=items, description="items") as progress:
        for indices in batches:
            name = f"{indices.start:07d}-{indices.stop:07d}"
            if name in done:
                continue
            rows, stats = score_items.with_options(task_run_name=f"score-items-{name}")(indices, run_id, item_seconds)
            write_batch.with_options(task_run_name=f"write-batch-{name}")(db, run_id, FLOW_NAME, name, {"pairs": rows}, [stats])
            progress.advance(len(indices))
            progress.flush()
    publish_dropoff(run_id, run_funnel(store, run_id))
    return run_id


@flow(name=f"{FLOW_NAME}-empty")
def empty_flow() -> None:
    """Prefect's own per-run cost, with nothing of ours in it."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--item-ms", type=float, default=20.0, help="work per item in milliseconds")
    parser.add_argument("--batch-sizes", default="10,50,100,250")
    args = parser.parse_args()

    start = time.perf_counter()
    overhead_flow(tempfile.mkdtemp(prefix="warm-up-"), 1, 1, 0.0)  # starts Prefect's ephemeral server
    print(f"Prefect start-up (once per process): {time.perf_counter() - start:.1f} s")
    start = time.perf_counter()
    empty_flow()
    print(f"an empty flow run: {time.perf_counter() - start:.2f} s (Prefect 3.8.8 joins its heartbeat thread, "
          "which sleeps in 1 s steps, at the end of every flow run)")
    print(f"{args.items} items x {args.item_ms:g} ms of work\n")
    print(f"{'batch size':>10} {'batches':>8} {'wall s':>8} {'work s':>8} {'storage s':>10} {'Prefect s':>10} {'overhead':>9}")
    points = []  # (batches, overhead seconds)
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        TIMERS.update(work=0.0, storage=0.0)
        db = tempfile.mkdtemp(prefix=f"overhead-{batch_size}-")
        start = time.perf_counter()
        run_id = overhead_flow(db, args.items, batch_size, args.item_ms / 1000)
        wall = time.perf_counter() - start
        assert PairStore(db).count("pairs", f"run_id = '{run_id}'") == args.items
        work, storage = TIMERS["work"], TIMERS["storage"]
        prefect = wall - work - storage
        print(f"{batch_size:>10} {-(-args.items // batch_size):>8} {wall:>8.1f} {work:>8.1f} {storage:>10.2f} "
              f"{prefect:>10.2f} {100 * (wall - work) / wall:>8.1f}%")
        points.append((-(-args.items // batch_size), wall - work))
    if len(points) >= 2:  # overhead = per_run + per_batch * batches, by least squares
        n = len(points)
        mean_x, mean_y = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
        per_batch = (sum((x - mean_x) * (y - mean_y) for x, y in points)
                     / max(sum((x - mean_x) ** 2 for x, _ in points), 1e-9))
        per_run = mean_y - per_batch * mean_x
        work = args.items * args.item_ms / 1000
        budget = 0.05 / 0.95 * work - per_run  # what batches may cost for overhead to stay under 5 %
        print(f"\noverhead ~ {per_run:.2f} s per run + {1000 * per_batch:.0f} ms per batch")
        if budget <= 0:
            print(f"under 5 % needs more than {per_run / (0.05 / 0.95) / args.items * 1000:.0f} ms of work per item "
                  f"at this per-run cost, whatever the batch size")
        else:
            print(f"under 5 %: batches of at least {args.items * per_batch / budget:.0f} items at {args.item_ms:g} ms per item")


if __name__ == "__main__":
    main()
