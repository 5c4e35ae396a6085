"""The ``import`` flow: any registered importer's dataset into the store, batch by batch.

The importer lists its entries once (names and text only), the entries are cut into batches of
``batch_size`` and each batch is one ``read``/``load``/``samples`` task run
(``pairsmith.tasks.imports.load_entries``) and one LanceDB commit (``write_batch``), so memory holds
one batch's images and a crash loses at most one batch. Re-running resumes: a batch whose stage
stats are stored is skipped, except batches where an image was missing or unreadable, which are
redone (copy the missing files in and run the same command again). The flow runs under the name
``import-<importer>`` (``import-med-bench``, ``import-spot-the-diff``, ...).
"""

from __future__ import annotations

import time
from collections import Counter

from prefect import flow
from pydantic import BaseModel

from pairsmith.flows.engine.batching import batch_name, batch_ranges
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.run_outcome import batches_with_errors
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.progress import tracked
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.imports import load_importer
from pairsmith.tasks.imports.base import ImportConfig
from pairsmith.tasks.imports.load_entries import load_entries
from pairsmith.tasks.write_batch import write_batch

# Drops a re-run retries: the files may be there by then.
RETRY_REASONS = ("load_missing_image", "load_unreadable")


class ImportSummary(BaseModel):
    run_id: str
    db: str
    dataset: str
    sample_task: str
    entries: int  # listed in the files, each pair once
    duplicates: int  # exact repeats collapsed into an earlier entry
    batches: int
    batches_resumed: int
    pairs_kept: int
    pairs_dropped: int
    samples: int
    splits: dict[str, int]  # samples per split
    categories: dict[str, int]  # samples per category (change type), where the set has one
    seconds: float


@flow(flow_run_name=pairsmith_run_name, name="import", description="Store a published image-difference dataset's pairs and samples.")
def import_dataset(config: ImportConfig) -> ImportSummary:
    start = time.perf_counter()
    importer = load_importer(config.importer)
    run_id = importer.run_id(config)
    store = open_store(config.db)
    store.check_reachable()
    listing = importer.listing(config)
    batches = batch_ranges(len(listing.entries), config.batch_size)
    done = store.completed_batches(run_id) - batches_with_errors(store, run_id, also=RETRY_REASONS)
    pending = [b for b in batches if batch_name(b) not in done]
    for indices in tracked(pending, len(listing.entries), f"{importer.flow_name}-progress", f"importing {importer.name}"):
        name = batch_name(indices)
        result = batch_step(load_entries, name)(importer, config, [listing.entries[i] for i in indices], run_id)
        pairs, samples = result.value
        write_batch.with_options(task_run_name=f"write-batch-{name}")(
            config.db, run_id, importer.flow_name, name, {"pairs": pairs, "samples": samples}, result.stats)
    funnel = run_funnel(store, run_id)
    if funnel:
        publish_dropoff(run_id, funnel)
    run_filter = f"run_id = {sql_literal(run_id)}"
    rows = store.read("samples", where=run_filter, columns=["split", "category"]).to_pylist()
    return ImportSummary(
        run_id=run_id, db=config.db, dataset=importer.dataset(config), sample_task=importer.sample_task,
        entries=len(listing.entries), duplicates=listing.duplicates,
        batches=len(batches), batches_resumed=len(batches) - len(pending),
        pairs_kept=store.count("pairs", f"{run_filter} AND status = 'kept'"),
        pairs_dropped=store.count("pairs", f"{run_filter} AND status = 'dropped'"),
        samples=len(rows), splits=dict(sorted(Counter(r["split"] for r in rows).items())),
        categories=dict(sorted(Counter(r["category"] for r in rows if r["category"]).items())),
        seconds=round(time.perf_counter() - start, 3),
    )


def run_import(config: ImportConfig) -> ImportSummary:
    """Run ``config``'s importer as the flow ``import-<importer>`` (what ``pairsmith import`` calls)."""
    return import_dataset.with_options(name=f"import-{config.importer}")(config)
