"""The refilter flow: re-apply thresholds to a run's stored scores, no model needed.

Img-Diff chose its thresholds by an ablation: filter the same candidates with several settings,
train, compare. Every candidate pairsmith makes is stored with its scores, so each setting is a
re-filter of the stored rows: ``pairsmith refilter --run RUN --config thresholds.yaml``. Any pipeline
whose verdicts are stored can be re-filtered (``pairsmith.filters.refilterable``: Img-Diff's
replacement and removal, med-edit's similarity filter).

The new verdicts overwrite ``status`` / ``drop_stage`` / ``drop_reason`` of the run's pairs and
``status`` / ``reason`` of its regions (column updates of the changed rows, by key: their images are
never read; exports follow pair status).
The funnel goes to ``stage_stats`` under its own run id, ``<run>-refilter-<thresholds hash>``, so
``pairsmith stats --run`` shows each setting beside the original, and to the ``filter-dropoff``
artifact. Re-running with the same file rewrites the same rows: nothing changes the second time.
What the thresholds cannot decide stays as it was (see ``pairsmith.filters.rejudge``).
"""

from __future__ import annotations

import time
from collections import Counter

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from pairsmith.filters.refilterable import METHODS, RefilterThresholds
from pairsmith.filters.rejudge import RejudgeResult, pair_columns, region_columns, rejudge_pairs
from pairsmith.flows.engine.batching import batch_name
from pairsmith.flows.engine.flow_runs import claim_run
from pairsmith.flows.refilter_config import RefilterConfig  # noqa: F401  (the flow's config, re-exported)
from pairsmith.flows.engine.funnel import publish_dropoff, run_funnel
from pairsmith.flows.engine.stages import batch_step
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.storage.store import PairStore, open_store, sql_in, sql_literal
from pairsmith.tasks.write_batch import write_batch

FLOW_NAME = "refilter"
BATCH_PAIRS = 500  # pairs re-judged and committed together (fixed: it names the stats batches)


class RefilterSummary(BaseModel):
    source_run: str
    run_id: str
    db: str
    pairs: int  # the source run's pairs of a refilterable pipeline
    pairs_rejudged: int
    regions_rejudged: int
    pairs_changed: int
    regions_changed: int
    pairs_kept_before: int
    pairs_kept_after: int
    not_rejudged: dict[str, int]  # "regions: citm_before missing at caption_filter" -> count
    left_alone: dict[str, int]  # "pairs dropped at generate" -> count
    seconds: float


def check_refilterable(run: str, pairs: list[dict]) -> Counter:
    """The run's pairs per method; a ValueError if none was made by a refilterable pipeline."""
    methods = Counter(p["method"] for p in pairs)
    if not any(m in METHODS for m in methods):
        found = ", ".join(f"{m} ({n})" for m, n in methods.items()) or "no pairs"
        raise ValueError(f"run {run!r} has no {' / '.join(METHODS)} pairs to re-filter ({found})")
    return methods


def _readable(store: PairStore, table: str, wanted: list[str]) -> list[str]:
    present = set(store.table(table).schema.names)
    return [c for c in wanted if c in present]


@task(name="rejudge", cache_policy=NO_CACHE)
def rejudge(db: str, run: str, pair_ids: list[str], thresholds: RefilterThresholds) -> RejudgeResult:
    """Read one batch's scores (no image bytes) and judge them under ``thresholds``."""
    store = open_store(db)
    pairs = store.read("pairs", where=sql_in("pair_id", pair_ids), columns=_readable(store, "pairs", pair_columns(thresholds)))
    regions = store.read(
        "regions", where=f"run_id = {sql_literal(run)} AND {sql_in('pair_id', pair_ids)}",
        columns=_readable(store, "regions", region_columns(thresholds)),
    )
    samples = store.read("samples", where=sql_in("pair_id", pair_ids), columns=["pair_id"])
    start = time.perf_counter()
    result = rejudge_pairs(
        pairs.to_pylist(), regions.to_pylist(), set(samples.column("pair_id").to_pylist()), thresholds
    )
    elapsed = time.perf_counter() - start
    for stats in result.stages.values():  # the batch's judging time, shared out over its stages
        stats.seconds = elapsed / max(1, len(result.stages))
    return result


def _verdicts(table: str, updates: dict[str, dict], detail: str) -> list[dict]:
    """Column updates by key: the new verdicts (and, for pairs, what dropped them)."""
    key = "pair_id" if table == "pairs" else "region_id"
    rows = []
    for row_id in sorted(updates):
        row = {key: row_id, **updates[row_id]}
        if table == "pairs":
            row["drop_detail"] = detail if row["status"] == "dropped" else None
        rows.append(row)
    return rows


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Re-apply thresholds to a run's stored scores (Img-Diff, med-edit); no model runs.")
def refilter(config: RefilterConfig) -> RefilterSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    store = open_store(config.db)
    run_id = config.run_id()
    claim_run(run_id)  # a flow run of it killed with -9: marked CRASHED in Prefect
    source = f"run_id = {sql_literal(config.run)}"
    listing = store.read("pairs", where=source, columns=["pair_id", "method", "status"]).to_pylist()
    methods = check_refilterable(config.run, listing)
    kept_before = sum(1 for p in listing if p["status"] == "kept")
    ids = sorted(p["pair_id"] for p in listing)
    detail = f"refilter {run_id}"
    total = RejudgeResult()
    n_pair_changes = n_region_changes = 0
    for lo in range(0, len(ids), BATCH_PAIRS):
        batch = batch_name(range(lo, lo + BATCH_PAIRS))  # the full width: the names stored runs have
        result = batch_step(rejudge, batch)(config.db, config.run, ids[lo:lo + BATCH_PAIRS], config.thresholds)
        batch_step(write_batch, batch)(
            config.db, run_id, FLOW_NAME, batch,
            {},
            result.ordered_stages(set(methods)),
            updates={
                "pairs": _verdicts("pairs", result.pair_updates, detail),
                "regions": _verdicts("regions", result.region_updates, detail),
            },
        )
        n_pair_changes += len(result.pair_updates)
        n_region_changes += len(result.region_updates)
        total.pairs_rejudged += result.pairs_rejudged
        total.regions_rejudged += result.regions_rejudged
        total.not_rejudged += result.not_rejudged
        total.left_alone += result.left_alone
    publish_dropoff(run_id, run_funnel(store, run_id))
    if total.not_rejudged:
        logger.info("run %s: not re-judged (scores missing): %s", config.run, dict(total.not_rejudged))
    return RefilterSummary(
        source_run=config.run, run_id=run_id, db=config.db, pairs=sum(methods[m] for m in METHODS),
        pairs_rejudged=total.pairs_rejudged, regions_rejudged=total.regions_rejudged,
        pairs_changed=n_pair_changes, regions_changed=n_region_changes, pairs_kept_before=kept_before,
        pairs_kept_after=store.count("pairs", f"{source} AND status = 'kept'"),
        not_rejudged=dict(total.not_rejudged), left_alone=dict(total.left_alone),
        seconds=round(time.perf_counter() - start, 3),
    )
