"""The ``maintenance`` flow: merge small LanceDB fragments and remove old versions, sized in bytes.

Every batch commit adds a table version and a small data fragment. Maintenance does two things per
table, with pylance's options (LanceDB's ``optimize()`` counts rows, so a table of image rows always
looked small and was rewritten whole after any new fragment, and its old copy stayed a week):

* **compaction of the small fragments only** (``storage/compaction.py``, the same rule the writer
  applies during long runs). A fragment is *small* when its data files hold less than a quarter of
  ``target_fragment_mb``; small neighbours are merged into fragments of about ``target_fragment_mb``
  (the row target is that size over the table's measured bytes per row: some 1,900 render pairs,
  or a million stage-stats rows, for 256 MiB). Every other fragment is passed to Lance as excluded,
  so a maintain after a small write rewrites that write and nothing else, unless a fragment lost
  more than 10% of its rows to updates (then it is rewritten to drop them). Pages are copied without
  re-encoding where Lance can (``try_binary_copy``) and read in batches of about 16 MiB, so memory
  does not grow with the table;
* **cleanup of old versions** (``cleanup_old_versions``), which deletes the files only old versions
  use, the pre-compaction copies included. It keeps the safety window (``keep_versions_days``,
  default 7: a reader or export still working on a version younger than that is not broken
  underneath) and every tagged version with its files (Lance skips tagged versions:
  ``error_if_tagged_old_versions=False``), so ``pairsmith export --at TAG`` keeps working. Deleting
  old export tags (``drop_export_tags_older_than_days``) lets a later run reclaim what they held.

Before that, the *running* tags of exports killed before they finished (``export-...running.<host>.<pid>``
whose process is gone, ``storage/versions.py``) are deleted, so the versions they pinned can go.

Each table's figures (fragments rewritten and their bytes, versions, bytes on disk before and after,
bytes freed, seconds) are logged and published as the ``maintenance-report`` artifact.

Run it when no flow writes (the nightly deployment runs it after the render): compaction and a
concurrent merge_insert may conflict, and the task retries.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.flows.engine.progress import tracked
from pairsmith.flows.engine.run_name import pairsmith_run_name
from pairsmith.flows.maintenance_config import MaintenanceConfig  # noqa: F401  (the flow's config, re-exported)
from pairsmith.storage.compaction import compact_small_fragments
from pairsmith.storage.db_uri import is_object_store
from pairsmith.storage.store import PairStore, open_store
from pairsmith.storage.versions import EXPORT_TAG_PREFIX, RUNNING, sweep_dead_tags

FLOW_NAME = "maintenance"
_install_prefect_compat()  # `prefect deploy` imports this module: see flows/engine/prefect_compat.py

REPORT_ARTIFACT_KEY = "maintenance-report"


class TableReport(BaseModel):
    table: str
    versions_before: int
    versions_after: int
    fragments_before: int
    fragments_after: int
    fragments_rewritten: int = Field(description="small (or mostly deleted) fragments compaction merged")
    bytes_rewritten: int = Field(description="data bytes of the fragments merged")
    bytes_freed: int = Field(description="bytes cleanup deleted (old versions' files)")
    bytes_on_disk_before: int | None = Field(None, description="local databases only")
    bytes_on_disk_after: int | None = None
    tagged_versions: int = Field(0, description="versions kept because a tag names them")
    tags_dropped: list[str] = Field(default_factory=list)
    seconds: float


class MaintenanceSummary(BaseModel):
    db: str
    tables: list[TableReport]
    dead_tags_swept: list[str] = Field(default_factory=list, description="running tags of commands that died")
    seconds: float


def _disk_bytes(uri: str, table: str) -> int | None:
    if is_object_store(uri):
        return None
    root = Path(uri) / f"{table}.lance"
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) if root.exists() else None


def _drop_old_export_tags(table, timestamps: dict[int, datetime], older_than: datetime) -> list[str]:
    dropped = []
    for tag, info in table.tags.list().items():
        made = timestamps.get(int(info["version"]))
        if tag.startswith(EXPORT_TAG_PREFIX) and RUNNING not in tag and made is not None and made < older_than:
            table.tags.delete(tag)
            dropped.append(tag)
    return sorted(dropped)


def maintain_table(store: PairStore, name: str, config: MaintenanceConfig) -> TableReport:
    """Compact ``name``'s small fragments and clean versions outside the window; tagged versions stay."""
    start = time.perf_counter()
    table = store.table(name)
    versions = table.list_versions()
    stamps = {int(v["version"]): v["timestamp"] for v in versions}  # naive local time, as LanceDB gives it
    ds = store.dataset(name)
    fragments = [f.metadata for f in ds.get_fragments()]
    report = dict(table=name, versions_before=len(versions), fragments_before=len(fragments),
                  bytes_on_disk_before=_disk_bytes(store.uri, name))
    dropped: list[str] = []
    if config.drop_export_tags_older_than_days is not None:
        dropped = _drop_old_export_tags(
            table, stamps, datetime.now() - timedelta(days=config.drop_export_tags_older_than_days))
    plan, rewritten = compact_small_fragments(ds, int(config.target_fragment_mb * (1 << 20)))
    cleaned = store.dataset(name).cleanup_old_versions(
        older_than=timedelta(days=config.keep_versions_days), error_if_tagged_old_versions=False)
    table.checkout_latest()
    return TableReport(
        **report, versions_after=len(table.list_versions()),
        fragments_after=len(store.dataset(name).get_fragments()), fragments_rewritten=rewritten,
        bytes_rewritten=plan.bytes_rewritten if rewritten else 0, bytes_freed=int(cleaned.bytes_removed),
        bytes_on_disk_after=_disk_bytes(store.uri, name), tagged_versions=len(table.tags.list()),
        tags_dropped=dropped, seconds=round(time.perf_counter() - start, 3),
    )


@task(name="optimize-table", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def optimize_table(config: MaintenanceConfig, name: str) -> TableReport:
    return maintain_table(open_store(config.db), name, config)


@flow(flow_run_name=pairsmith_run_name, name=FLOW_NAME, description="Compact LanceDB tables and remove versions outside the safety window; keep tagged versions.")
def maintenance(config: MaintenanceConfig = MaintenanceConfig()) -> MaintenanceSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    store = open_store(config.db)
    store.check_reachable()
    present = set(store.table_names())
    swept = sweep_dead_tags(store)
    if swept:
        logger.info("deleted %d tag(s) left by exports that died: %s", len(swept), ", ".join(swept))
    reports = []
    tables = [name for name in config.tables if name in present]  # nothing written yet: no empty table made
    for (name,) in tracked([[t] for t in tables], len(tables), f"{FLOW_NAME}-progress", "maintaining tables"):
        report = optimize_table.with_options(task_run_name=f"optimize-table-{name}")(config, name)
        logger.info(
            "%s: versions %d -> %d, fragments %d -> %d (%d small ones merged, %.1f MB rewritten), %.1f MB freed, "
            "%d tagged version(s) kept, %.1f s", name, report.versions_before, report.versions_after,
            report.fragments_before, report.fragments_after, report.fragments_rewritten,
            report.bytes_rewritten / 1e6, report.bytes_freed / 1e6, report.tagged_versions, report.seconds,
        )
        reports.append(report)
    summary = MaintenanceSummary(db=config.db, tables=reports, dead_tags_swept=swept, seconds=round(time.perf_counter() - start, 3))
    _publish_report(summary)
    return summary


def _publish_report(summary: MaintenanceSummary) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        table=[r.model_dump(exclude={"tags_dropped"}) | {"tags dropped": ", ".join(r.tags_dropped) or "none"}
               for r in summary.tables],
        key=REPORT_ARTIFACT_KEY,
        description=f"LanceDB maintenance of `{summary.db}`: versions, fragments and bytes before and after.",
    )


def format_report(summary: MaintenanceSummary) -> str:
    """A plain-text table for the terminal."""
    lines = [f"{'table':<12} {'versions':>13} {'fragments':>13} {'merged':>7} {'MB on disk':>17}  note"]
    for r in summary.tables:
        mb = (f"{r.bytes_on_disk_before / 1e6:.1f} -> {r.bytes_on_disk_after / 1e6:.1f}"
              if r.bytes_on_disk_before is not None and r.bytes_on_disk_after is not None else "-")
        note = f"{r.tagged_versions} tagged version(s) kept" if r.tagged_versions else ""
        if r.tags_dropped:
            note = (note + "; " if note else "") + f"dropped {len(r.tags_dropped)} old export tag(s)"
        lines.append(f"{r.table:<12} {f'{r.versions_before} -> {r.versions_after}':>13} "
                     f"{f'{r.fragments_before} -> {r.fragments_after}':>13} {r.fragments_rewritten:>7} {mb:>17}  {note}")
    if summary.dead_tags_swept:
        lines.append(f"deleted {len(summary.dead_tags_swept)} tag(s) left by exports that died: "
                     + ", ".join(summary.dead_tags_swept))
    return "\n".join(lines)

