"""The ``import`` flow: any registered importer's dataset into the store, batch by batch.

The importer lists its entries once (names and text only), the entries are cut into batches of
``batch_size`` and each batch is one ``read``/``load``/``samples`` task run
(``pairsmith.tasks.imports.load_entries``) and one LanceDB commit (``write_batch``), so memory holds
one batch's images and a crash loses at most one batch. Re-running resumes per entry: entries
already stored are skipped whatever ``--batch-size`` is, except an entry whose image could not be
loaded and whose file appeared or changed since (copy the good file in and run the same command
again), or every such entry with ``--retry-failed``; its stored batch is redone. The flow runs under the name
``import-<importer>`` (``import-med-bench``, ``import-spot-the-diff``, ...).
"""

from __future__ import annotations

import time
from collections import Counter

from prefect import flow
from pydantic import BaseModel

from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.resume import (
    batches_holding, changed_since, plan_item_redos, plan_resume, resolve_run_id, retry_indices, stored_spans,
)
from pairsmith.flows.engine.run_outcome import batches_with_errors, is_error_reason
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.flow_runs import claim_run
from pairsmith.flows.engine.progress import tracked
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.imports import load_importer
from pairsmith.tasks.imports.base import ImportConfig
from pairsmith.tasks.imports.load_entries import load_entries
from pairsmith.tasks.write_batch import write_batch

# Drops of the load stage are about an image file: a re-run retries one whose file appeared or changed
# since (pairsmith.flows.engine.resume.changed_since), and --retry-failed retries them all.
LOAD_STAGE = "load"


def _may_load_now(importer, config: ImportConfig, listing, ids: list[str]):
    entry_of = dict(zip(ids, listing.entries))

    def should(row: dict) -> bool:
        if is_error_reason(row["drop_reason"]):
            return True
        if row["drop_stage"] != LOAD_STAGE:
            return False
        if config.retry_failed:
            return True
        entry = entry_of.get(row["pair_id"])
        paths = importer.image_paths(config, entry) if entry is not None else []
        if row["drop_reason"] == "load_missing_image":  # both files there now
            return bool(paths) and all(p.is_file() for p in paths)
        return any(changed_since(p, row["created_at"]) for p in paths)

    return should


class ImportSummary(BaseModel):
    run_id: str
    db: str
    dataset: str
    sample_task: str
    entries: int  # listed in the files, each pair once
    duplicates: int  # exact repeats collapsed into an earlier entry
    batches: int
    batches_resumed: int
    entries_retried: int = 0  # stored as dropped, tried again: an image file changed, or --retry-failed
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
    store = open_store(config.db)
    store.check_reachable()
    listing = importer.listing(config)
    n = len(listing.entries)
    run_id, legacy = resolve_run_id(store, importer.flow_name, importer.run_id(config),
                                    lambda entries, size: importer.legacy_run_id(config, entries, size),
                                    (n, config.batch_size))
    # Per entry (pairsmith.flows.engine.resume): entries already counted are skipped whatever the batch
    # size; a batch is redone when one of its entries failed with an error or its image may now load.
    claim_run(run_id, store, importer.flow_name, n)  # a flow run of it killed with -9: marked CRASHED in Prefect
    ids = importer.item_ids(config, listing)
    should_retry = _may_load_now(importer, config, listing, ids)
    retry = retry_indices(store, run_id, ids, should_retry)
    redos, whole = plan_item_redos(store, run_id, batches_with_errors(store, run_id) | batches_holding(
        stored_spans(store, run_id), retry), lambda span: ids[span.start:span.stop], should_retry)
    work = plan_resume(store, run_id, n, config.batch_size, redo=whole, legacy=legacy)
    steps = [(batch_name(r), list(r), None) for r in work.todo] + [(r.batch, r.indices, r) for r in redos]
    for name, indices, redo in tracked(steps, n, f"{importer.flow_name}-progress", f"importing {importer.name}",
                                           size=lambda step: len(step[1])):
        result = batch_step(load_entries, name)(importer, config, [listing.entries[i] for i in indices], run_id)
        pairs, samples = result.value
        write_batch.with_options(task_run_name=f"write-batch-{name}")(
            config.db, run_id, importer.flow_name, name, {"pairs": pairs, "samples": samples},
            redo.restated(result.stats) if redo else result.stats)
    funnel = run_funnel(store, run_id)
    if funnel:
        publish_dropoff(run_id, funnel)
    run_filter = f"run_id = {sql_literal(run_id)}"
    rows = store.read("samples", where=run_filter, columns=["split", "category"]).to_pylist()
    return ImportSummary(
        run_id=run_id, db=config.db, dataset=importer.dataset(config), sample_task=importer.sample_task,
        entries=len(listing.entries), duplicates=listing.duplicates,
        batches=work.stored_batches + len(work.todo) - len(work.redone),
        batches_resumed=work.stored_batches - len(work.redone) - len(redos),
        entries_retried=len(set(retry).union(*(r.indices for r in redos))),
        pairs_kept=store.count("pairs", f"{run_filter} AND status = 'kept'"),
        pairs_dropped=store.count("pairs", f"{run_filter} AND status = 'dropped'"),
        samples=len(rows), splits=dict(sorted(Counter(r["split"] for r in rows).items())),
        categories=dict(sorted(Counter(r["category"] for r in rows if r["category"]).items())),
        seconds=round(time.perf_counter() - start, 3),
    )


def run_import(config: ImportConfig) -> ImportSummary:
    """Run ``config``'s importer as the flow ``import-<importer>`` (what ``pairsmith import`` calls)."""
    return import_dataset.with_options(name=f"import-{config.importer}")(config)
