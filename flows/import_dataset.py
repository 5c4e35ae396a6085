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

from collections import Counter

from prefect import flow

from pairsmith.flows.engine.resume import batches_holding, changed_since, retry_indices, stored_spans
from pairsmith.flows.engine.run import Batch, ItemRetry, Output, Run, RunSpec, RunSummary, declare
from pairsmith.flows.engine.run_outcome import is_error_reason
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.storage.stage_names import current
from pairsmith.storage.store import open_store, sql_literal
from pairsmith.tasks.imports import load_importer
from pairsmith.tasks.imports.base import ImportConfig
from pairsmith.tasks.imports.load_entries import load_entries

# Drops of the load stage are about an image file: a re-run retries one whose file appeared or changed
# since (pairsmith.flows.engine.resume.changed_since), and --retry-failed retries them all.
LOAD_STAGE = "image_load"

# The stages of every import, in the order they run and are stored (tasks/imports/load_entries.py).
PIPELINE = declare(
    "import",
    ("read", "the entry fits the published format"),
    (LOAD_STAGE, "both images are inside the dataset's folders, present, sound and not one picture"),
    ("import_samples", "the kept pair gave its samples"),
)


def _may_load_now(importer, config: ImportConfig, listing, ids: list[str]):
    entry_of = dict(zip(ids, listing.entries))

    def should(row: dict) -> bool:
        if is_error_reason(row["drop_reason"]):
            return True
        if current(importer.flow_name, row["drop_stage"]) != LOAD_STAGE:  # "load" before the rename
            return False
        if config.retry_failed:
            return True
        entry = entry_of.get(row["pair_id"])
        paths = importer.image_paths(config, entry) if entry is not None else []
        if row["drop_reason"] == "load_missing_image":  # both files there now
            return bool(paths) and all(p.is_file() for p in paths)
        return any(changed_since(p, row["created_at"]) for p in paths)

    return should


class ImportSummary(RunSummary):
    dataset: str
    sample_task: str
    entries: int  # listed in the files, each pair once
    duplicates: int  # exact repeats collapsed into an earlier entry
    entries_retried: int = 0  # stored as dropped, tried again: an image file changed, or --retry-failed
    pairs_kept: int
    pairs_dropped: int
    samples: int
    splits: dict[str, int]  # samples per split
    categories: dict[str, int]  # samples per category (change type), where the set has one


@flow(flow_run_name=pairsmith_run_name, name="import", description="Store a published image-difference dataset's pairs and samples.")
def import_dataset(config: ImportConfig) -> ImportSummary:
    importer = load_importer(config.importer)
    store = open_store(config.db)
    store.check_reachable()
    listing = importer.listing(config)
    n = len(listing.entries)
    ids = importer.item_ids(config, listing)
    should_retry = _may_load_now(importer, config, listing, ids)
    retry: set[int] = set()

    def holding_retries(store, run_id: str) -> set[str]:
        retry.update(retry_indices(store, run_id, ids, should_retry))
        return batches_holding(stored_spans(store, run_id), retry)

    # Per entry (pairsmith.flows.engine.resume): entries already counted are skipped whatever the batch
    # size; a batch is redone when one of its entries failed with an error or its image may now load.
    run = Run.start(RunSpec(
        importer.flow_name, config.db, PIPELINE, importer.run_id(config), n, config.batch_size,
        lambda entries, size: importer.legacy_run_id(config, entries, size), redo=holding_retries,
        item_retry=ItemRetry(lambda span: ids[span.start:span.stop], should_retry),
        description=f"importing {importer.name}",
    ), store)

    def load(batch: Batch) -> Output:
        result = batch.step(load_entries)(importer, config, [listing.entries[i] for i in batch.indices], run.run_id)
        pairs, samples = result.value
        return Output({"pairs": pairs, "samples": samples}, result.stats)

    run.execute(load)
    rows = run.store.read("samples", where=f"run_id = {sql_literal(run.run_id)}",
                          columns=["split", "category"]).to_pylist()
    return run.finish(
        ImportSummary, dataset=importer.dataset(config), sample_task=importer.sample_task,
        entries=n, duplicates=listing.duplicates,
        entries_retried=len(retry.union(*(r.indices for r in run.redos))),
        samples=len(rows), splits=dict(sorted(Counter(r["split"] for r in rows).items())),
        categories=dict(sorted(Counter(r["category"] for r in rows if r["category"]).items())),
    )


def run_import(config: ImportConfig) -> ImportSummary:
    """Run ``config``'s importer as the flow ``import-<importer>`` (what ``pairsmith import`` calls)."""
    return import_dataset.with_options(name=f"import-{config.importer}")(config)
