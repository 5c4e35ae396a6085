"""The single writer of a flow: commits one batch's rows to LanceDB.

Order matters for crash safety. Pairs, regions and samples go first, stage stats last: a batch
counts as done only once its stats are stored, so a run killed mid-write redoes the whole batch
on the next invocation, and the upserts on deterministic ids replace what was half-written
instead of duplicating it. A batch of new rows is a plain append (see ``storage/store.py``), so a
long run's writes cost the same per batch at the end as at the start.

Every pair and sample row carries a ``dataset`` (design.md §3): an importer sets the public set's
name; rows of our own pipelines that name none get their ``method`` (``dig-render``, ``med-edit``, ...).

``updates`` set some columns of existing rows (new verdicts from ``refilter``) without reading or
rewriting their other columns in Python, image bytes included.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NO_CACHE

from pairsmith.storage import interrupts
from pairsmith.storage.verdict import StageStats
from pairsmith.storage.ids import stable_id
from pairsmith.storage.pair_images import image_extension
from pairsmith.storage.stage_names import first_name
from pairsmith.storage.schemas import LanceModel, ReasonCount, StageStatsRow, utc_now
from pairsmith.storage.store import open_store


@dataclass
class WrittenCounts:
    pairs: int
    regions: int
    samples: int


def stage_rows(run_id: str, flow_name: str, batch: str, stages: list[StageStats]) -> list[StageStatsRow]:
    return [
        StageStatsRow(
            stat_id=stable_id(run_id, first_name(flow_name, s.stage), batch), run_id=run_id, flow=flow_name, stage=s.stage,
            stage_order=order, batch=batch, n_in=s.n_in, n_kept=s.n_kept, n_dropped=s.n_dropped,
            drop_reasons=[ReasonCount(reason=r, count=c) for r, c in s.reasons.most_common()],
            seconds=round(s.seconds, 4), created_at=utc_now(),
        )
        for order, s in enumerate(stages)
    ]


def completed(row: LanceModel) -> LanceModel:
    """The row with the columns every writer owes filled in: ``dataset`` of a pair or sample naming
    none is its ``method``; ``image_format`` of a pair with images is their stored format read from
    the bytes (PNG, JPEG, or before/after such as JPEG/PNG for a photo and its generated edit)."""
    update = {}
    if getattr(row, "dataset", "") is None and getattr(row, "method", None):
        update["dataset"] = row.method
    if getattr(row, "image_format", "") is None and getattr(row, "image_before", None) and row.image_after:
        try:
            before, after = (image_extension(b).upper().replace("JPG", "JPEG") for b in (row.image_before, row.image_after))
        except ValueError:  # bytes PIL cannot read: stored as they are, the format left unknown
            return row.model_copy(update=update) if update else row
        update["image_format"] = before if before == after else f"{before}/{after}"
    return row.model_copy(update=update) if update else row


@task(name="write-batch", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2)
def write_batch(
    db_uri: str,
    run_id: str,
    flow_name: str,
    batch: str,
    tables: dict[str, list[LanceModel]],
    stages: list[StageStats],
    updates: dict[str, list[dict]] | None = None,
) -> WrittenCounts:
    """Upsert ``tables`` (name -> rows), apply ``updates`` (name -> key + columns to set), then the
    batch's stage stats; returns rows newly inserted."""
    with interrupts.deferred():  # Ctrl-C during a commit stops the run once the batch is whole
        return _commit(db_uri, run_id, flow_name, batch, tables, stages, updates)


def _commit(db_uri, run_id, flow_name, batch, tables, stages, updates) -> WrittenCounts:
    store = open_store(db_uri)
    inserted = {name: store.upsert(name, [completed(r) for r in rows]) for name, rows in tables.items()}
    for name, rows in (updates or {}).items():
        store.update(name, rows)
    store.upsert("stage_stats", stage_rows(run_id, flow_name, batch, stages))
    return WrittenCounts(
        pairs=inserted.get("pairs", 0), regions=inserted.get("regions", 0), samples=inserted.get("samples", 0)
    )
