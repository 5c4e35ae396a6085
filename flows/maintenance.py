"""The ``maintenance`` flow: compact LanceDB tables and remove old versions, safely.

Every batch commit adds a table version and a small data fragment, so a busy database grows many of
both. ``optimize()`` merges the fragments and deletes the files of old versions. Two things bound
what it may delete:

* the safety window (``keep_versions_days``, default 7): a version younger than that is kept, so a
  reader or an export still working on it is not broken underneath;
* tags: a tagged version (every export tags what it read) is kept with its files, so
  ``pairsmith export --at TAG`` still works. LanceDB refuses a cleanup that would reach a tagged
  version, so the window of a table stops just before its oldest tagged version; deleting old export
  tags (``drop_export_tags_older_than_days``) lets later runs reclaim the space behind them.

Run it when no flow writes (the nightly deployment runs it after the render): compaction and a
concurrent merge_insert may conflict, and the task retries.
"""

from __future__ import annotations

import time
import warnings
from datetime import datetime, timedelta
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pairsmith.flows.engine.prefect_compat import install as _install_prefect_compat
from pairsmith.storage.db_uri import DEFAULT_DB, check_db_uri, is_object_store
from pairsmith.storage.schemas import TABLES
from pairsmith.storage.store import open_store
from pairsmith.storage.versions import EXPORT_TAG_PREFIX

FLOW_NAME = "maintenance"
_install_prefect_compat()  # `prefect deploy` imports this module: see flows/engine/prefect_compat.py

REPORT_ARTIFACT_KEY = "maintenance-report"
# LanceDB measures "older than" from its own clock, a moment after ours: keep a margin before a tag.
TAG_MARGIN = timedelta(seconds=5)


class MaintenanceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    db: str = Field(DEFAULT_DB, description="LanceDB URI")
    keep_versions_days: float = Field(
        7.0, ge=0.0, le=3650.0,
        description="never remove versions younger than this; 0 keeps only the latest and tagged versions, "
        "which is safe only when nothing else uses the database",
    )
    drop_export_tags_older_than_days: float | None = Field(
        None, ge=0.0, le=36500.0,
        description="delete export-* tags older than this first (default: keep every export reproducible)",
    )
    tables: list[str] = Field(default_factory=lambda: list(TABLES), description="tables to maintain")

    @field_validator("db")
    @classmethod
    def _db(cls, value: str) -> str:
        return check_db_uri(value)

    @field_validator("tables")
    @classmethod
    def _tables(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if t not in TABLES]
        if unknown:
            raise ValueError(f"unknown table {unknown[0]!r}; tables are {', '.join(TABLES)}")
        return value


class TableReport(BaseModel):
    table: str
    versions_before: int
    versions_after: int
    fragments_before: int
    fragments_after: int
    bytes_on_disk_before: int | None = Field(None, description="local databases only")
    bytes_on_disk_after: int | None = None
    held_by_tag: str | None = Field(None, description="the tag that stopped the cleanup window early, if any")
    tags_dropped: list[str] = Field(default_factory=list)
    seconds: float


class MaintenanceSummary(BaseModel):
    db: str
    tables: list[TableReport]
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
        if tag.startswith(EXPORT_TAG_PREFIX) and made is not None and made < older_than:
            table.tags.delete(tag)
            dropped.append(tag)
    return sorted(dropped)


def cleanup_window(
    now: datetime, keep: timedelta, tagged: dict[str, datetime]
) -> tuple[timedelta, str | None]:
    """How far back optimize() may clean: the safety window, shortened to spare the oldest tag."""
    cutoff, holder = now - keep, None
    if tagged:
        oldest_tag, oldest = min(tagged.items(), key=lambda kv: kv[1])
        if oldest - TAG_MARGIN < cutoff:
            cutoff, holder = oldest - TAG_MARGIN, oldest_tag
    return now - cutoff, holder


@task(name="optimize-table", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def optimize_table(config: MaintenanceConfig, name: str) -> TableReport:
    """Compact one table and clean versions outside the window; tagged versions are never touched."""
    start = time.perf_counter()
    store = open_store(config.db)
    table = store.table(name)
    versions = table.list_versions()
    stamps = {int(v["version"]): v["timestamp"] for v in versions}  # naive local time, as LanceDB gives it
    now = datetime.now()
    report = dict(
        table=name, versions_before=len(versions),
        fragments_before=table.stats()["fragment_stats"]["num_fragments"],
        bytes_on_disk_before=_disk_bytes(store.uri, name),
    )
    dropped: list[str] = []
    if config.drop_export_tags_older_than_days is not None:
        dropped = _drop_old_export_tags(table, stamps, now - timedelta(days=config.drop_export_tags_older_than_days))
    tagged = {tag: stamps[int(info["version"])] for tag, info in table.tags.list().items() if int(info["version"]) in stamps}
    older_than, holder = cleanup_window(datetime.now(), timedelta(days=config.keep_versions_days), tagged)
    with warnings.catch_warnings():  # LanceDB warns about a zero window; the config's description does too
        warnings.simplefilter("ignore", UserWarning)
        table.optimize(cleanup_older_than=older_than)
    return TableReport(
        **report, versions_after=len(table.list_versions()),
        fragments_after=table.stats()["fragment_stats"]["num_fragments"],
        bytes_on_disk_after=_disk_bytes(store.uri, name), held_by_tag=holder, tags_dropped=dropped,
        seconds=round(time.perf_counter() - start, 3),
    )


@flow(name=FLOW_NAME, description="Compact LanceDB tables and remove versions outside the safety window; keep tagged versions.")
def maintenance(config: MaintenanceConfig = MaintenanceConfig()) -> MaintenanceSummary:
    start = time.perf_counter()
    logger = get_run_logger()
    store = open_store(config.db)
    store.check_reachable()
    present = set(store.table_names())
    reports = []
    for name in config.tables:
        if name not in present:
            continue  # nothing written yet; do not create an empty table
        report = optimize_table.with_options(task_run_name=f"optimize-table-{name}")(config, name)
        logger.info(
            "%s: versions %d -> %d, fragments %d -> %d%s", name, report.versions_before, report.versions_after,
            report.fragments_before, report.fragments_after,
            f" (cleanup stopped before tag {report.held_by_tag})" if report.held_by_tag else "",
        )
        reports.append(report)
    summary = MaintenanceSummary(db=config.db, tables=reports, seconds=round(time.perf_counter() - start, 3))
    _publish_report(summary)
    return summary


def _publish_report(summary: MaintenanceSummary) -> None:
    from prefect.artifacts import create_table_artifact

    create_table_artifact(
        table=[r.model_dump(exclude={"tags_dropped"}) | {"tags dropped": ", ".join(r.tags_dropped) or "-"}
               for r in summary.tables],
        key=REPORT_ARTIFACT_KEY,
        description=f"LanceDB maintenance of `{summary.db}`: versions and fragments before and after.",
    )


def format_report(summary: MaintenanceSummary) -> str:
    """A plain-text table for the terminal."""
    lines = [f"{'table':<12} {'versions':>13} {'fragments':>13} {'MB on disk':>15}  note"]
    for r in summary.tables:
        mb = (f"{r.bytes_on_disk_before / 1e6:.1f} -> {r.bytes_on_disk_after / 1e6:.1f}"
              if r.bytes_on_disk_before is not None and r.bytes_on_disk_after is not None else "-")
        note = f"kept from tag {r.held_by_tag}" if r.held_by_tag else ""
        if r.tags_dropped:
            note = (note + "; " if note else "") + f"dropped {len(r.tags_dropped)} old export tag(s)"
        lines.append(f"{r.table:<12} {f'{r.versions_before} -> {r.versions_after}':>13} "
                     f"{f'{r.fragments_before} -> {r.fragments_after}':>13} {mb:>15}  {note}")
    return "\n".join(lines)

